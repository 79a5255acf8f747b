"""/v1/jobs end to end: queued over HTTP, run by a real worker (in-process), released, sealed, audited."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from audit import AuditEvent
from authz.consent import SubjectAccess
from authz.contract_models import Authorization
from authz.permissions import Role
from core.db import transaction
from core.seals import verify_seal
from operators.models import Operator, OperatorStatus
from sandbox.compute import execute
from sandbox.compute.execute import RunOptions
from sandbox.compute.inputs import MOCK_ROWS, mock_inputs, program_scope
from sandbox.compute.release import schedule
from sandbox.compute.runner import run_program
from sandbox.compute.worker import run_pending
from sandbox.engine.models import SealedResult
from sandbox.runtime import Runtime
from sandbox.services.seals import check_sealed
from sandbox.services.usage_report import usage_series
from tests.api.conftest import Party, make_account, make_operator
from tests.compute.factories import (
    MEAN_TAX,
    OPTIONS,
    SUM_TAX,
    approved_program,
    compute_contract,
    firm,
    write_tax,
)
from tests.engine import rows

TAXES = [(firm(i), 1000.0 * i) for i in range(1, 61)]  # mean 30,500
SUBJECT = rows.FIRM
FAILS_LOUDLY = """\
OUTPUT_BOUNDS = [0, 1]
paid = [r["annual_tax"] for r in data]
print("secret", paid)
raise ValueError("secret " + str(paid[0]))
"""
SUBJECT_BAND = """\
OUTPUT_BOUNDS = {"band": [0, 3], "rows": [0, 100]}
total = stats.sum([r["annual_tax"] for r in data])
result = {"band": 0 if total < 100000 else (1 if total < 1000000 else 2), "rows": len(data)}
"""


def _queue(client: FlaskClient, operator: Party, contract: str, program: str, **body: Any) -> Any:
    payload = {"program_id": program, "authorization_id": contract, **body}
    return client.post("/v1/jobs", json=payload, headers=operator.headers)


def _run(runtime: Runtime) -> list[str]:
    return run_pending(runtime, OPTIONS, worker="test-worker")


def _job(client: FlaskClient, party: Party, job_id: str) -> Any:
    response = client.get(f"/v1/jobs/{job_id}", headers=party.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _events(runtime: Runtime, job_id: str) -> list[tuple[str, str, str | None]]:
    with runtime.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.target_id == job_id).order_by(AuditEvent.seq)
        return [(e.action, e.outcome, e.error_code) for e in session.execute(query).scalars()]


def test_a_private_job_is_queued_run_released_sealed_and_audited(
    runtime: Runtime, client: FlaskClient, operator: Party, reviewer: Party
) -> None:
    write_tax(runtime, TAXES)
    contract = compute_contract(runtime, operator.id)
    program = approved_program(runtime, operator.id, contract)
    response = _queue(client, operator, contract, program, epsilon=0.5)
    assert response.status_code == 202, response.get_json()
    queued = response.get_json()
    assert (queued["status"], queued["progress"], queued["release"]) == ("queued", 0.0, "private")
    assert queued["partitions"] == 10 and queued["result"] is None and queued["seal"] is None
    job_id = queued["job_id"]

    assert _run(runtime) == [job_id]
    body = _job(client, operator, job_id)
    assert (body["status"], body["progress"], body["error"]) == ("succeeded", 1.0, None)
    assert set(body["result"]) == {"mean_tax"} and 0 <= body["result"]["mean_tax"] <= 100_000
    assert body["epsilon_spent"] == 0.5 and body["network_isolation"] in ("namespace", "user_namespace")
    assert "record" not in body  # per-run detail is for staff

    jwks = client.get("/.well-known/jwks.json").get_json()
    sealed = verify_seal(body["seal"], jwks)
    assert (sealed["kind"], sealed["job_id"], sealed["result"]) == ("compute", job_id, body["result"])
    assert sealed["program_id"] == program and sealed["release"] == "private"
    assert sealed["audit_seq"] == body["audit_seq"] and sealed["operator_id"] == operator.id
    assert "result" in check_sealed(json.dumps(body), jwks).compared
    with runtime.sessions() as session:
        event = session.execute(select(AuditEvent).where(AuditEvent.seq == body["audit_seq"])).scalar_one()
        stored = session.get(SealedResult, job_id)
    assert (event.action, event.actor_id, event.target_type, event.target_id) == (
        "job.finish",
        operator.id,
        "compute",
        job_id,
    )
    assert sealed["audit_leaf_hash"] == event.leaf_hash
    assert stored is not None and stored.kind == "compute" and stored.seal == body["seal"]
    assert _events(runtime, job_id) == [
        ("job.queue", "success", None),
        ("job.start", "success", None),
        ("job.finish", "success", None),
    ]

    staff = _job(client, reviewer, job_id)
    assert len(staff["record"]["runs"]) == 10 and staff["record"]["rows"] == {"enterprise_tax": 60}
    assert staff["record"]["isolation"]["network_isolation"] == body["network_isolation"]
    timetable = schedule(OPTIONS.limits, 10, OPTIONS.concurrency)  # kept, not waited: OPTIONS counts
    assert staff["record"]["schedule"]["seconds"] == timetable.seconds == 5 * timetable.slot_seconds
    assert "schedule" not in body
    usage = client.get(f"/v1/authorizations/{contract}", headers=operator.headers).get_json()["usage"]
    assert (usage["calls_today"], usage["epsilon_spent"]) == (1, 0.5)
    proof = client.get(f"/v1/audit/proofs/inclusion?seq={body['audit_seq']}", headers=operator.headers)
    assert proof.status_code == 200, proof.get_json()


def test_a_one_record_sum_under_default_release_does_not_give_that_records_value(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    value = 123_456.78
    write_tax(runtime, [(SUBJECT, value)])
    contract = compute_contract(runtime, operator.id)
    program = approved_program(runtime, operator.id, contract, SUM_TAX)
    exact = _queue(client, operator, contract, program, release="exact")
    assert (exact.status_code, exact.get_json()["error"]["code"]) == (403, "exact_release_not_allowed")
    job_ids = [
        _queue(client, operator, contract, program, epsilon=1.0).get_json()["job_id"] for _ in range(2)
    ]
    _run(runtime)
    released = [_job(client, operator, job_id)["result"] for job_id in job_ids]
    for result in released:
        assert isinstance(result, int | float) and 0 <= result <= 1_000_000
        # The mean of 10 partition sums (~value / 10), plus Laplace noise of scale (1e6 / 10) / 1.0,
        # clamped into [0, 1e6]: never the value itself.
        assert abs(result - value) > 1.0


def test_exact_release_only_for_a_program_a_reviewer_allowed_it_for(
    runtime: Runtime, client: FlaskClient, operator: Party, reviewer: Party
) -> None:
    write_tax(runtime, TAXES)
    contract = compute_contract(runtime, operator.id)
    program = approved_program(runtime, operator.id, contract, MEAN_TAX, exact=True)
    job_id = _queue(client, operator, contract, program, release="exact").get_json()["job_id"]
    _run(runtime)
    body = _job(client, operator, job_id)
    assert (body["status"], body["release"], body["result"]) == ("succeeded", "exact", {"mean_tax": 30_500.0})
    assert body["epsilon_spent"] == 0.0 and body["epsilon"] is None
    assert len(_job(client, reviewer, job_id)["record"]["runs"]) == 1


def test_a_failed_job_reports_the_error_class_and_line_never_its_message_or_prints(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    write_tax(runtime, TAXES)
    contract = compute_contract(runtime, operator.id)
    program = approved_program(runtime, operator.id, contract, FAILS_LOUDLY, exact=True)
    job_id = _queue(client, operator, contract, program, release="exact").get_json()["job_id"]
    _run(runtime)
    response = client.get(f"/v1/jobs/{job_id}", headers=operator.headers)
    body = response.get_json()
    assert body["status"] == "failed" and body["result"] is None and body["seal"] is None
    assert body["error"] == {
        "code": "program_failed",
        "message": "the program failed (ValueError, line 4)",  # as every API error has one
        "class": "ValueError",
        "line": 4,
        "problem": None,
    }
    text = response.get_data(as_text=True)
    assert "secret" not in text and "1000.0" not in text
    assert _events(runtime, job_id)[-1] == ("job.finish", "failed", "program_failed")


def test_a_private_job_whose_program_fails_everywhere_is_released_noised_and_says_nothing_of_it(
    runtime: Runtime, client: FlaskClient, operator: Party, auditor: Party
) -> None:
    """Whether and where a program fails can depend on the data (a sweep read a firm's tax from
    the failing line): under private release the operator learns neither; the ε is spent."""
    write_tax(runtime, TAXES)
    contract = compute_contract(runtime, operator.id, epsilon_total=1.0, epsilon_per_query=1.0)
    program = approved_program(runtime, operator.id, contract, FAILS_LOUDLY)
    job_id = _queue(client, operator, contract, program, epsilon=0.7).get_json()["job_id"]
    _run(runtime)
    response = client.get(f"/v1/jobs/{job_id}", headers=operator.headers)
    body = response.get_json()
    assert (body["status"], body["error"], body["epsilon_spent"]) == ("succeeded", None, 0.7)
    assert 0 <= body["result"] <= 1
    jwks = client.get("/.well-known/jwks.json").get_json()
    assert verify_seal(body["seal"], jwks)["result"] == body["result"]
    text = response.get_data(as_text=True)
    assert "ValueError" not in text and "secret" not in text and "line" not in text
    for action in ("job.start", "job.finish"):  # events the operator may read as its own
        assert "ValueError" not in json.dumps(_details(runtime, job_id, action))
    usage = client.get(f"/v1/authorizations/{contract}", headers=operator.headers).get_json()["usage"]
    assert usage["epsilon_spent"] == 0.7
    record = _job(client, auditor, job_id)["record"]  # staff see every run
    assert {run["error_class"] for run in record["runs"]} == {"ValueError"}


MOCK_SHAPE = """\
rows = [r for r in data if r["_dataset"] == "enterprise_tax"]
result = {"rows": len(rows), "top": max(r["annual_tax"] for r in rows)}
"""


def test_a_mock_run_shows_a_programs_output_and_failures_over_mock_rows_alone(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    """A private release hides where a program fails; an operator finds out on mock rows, which
    have nothing to protect: the output and the error exactly, for a call and no ε."""
    write_tax(runtime, TAXES)  # real taxes are whole thousands up to 60,000
    contract = compute_contract(runtime, operator.id)
    program = approved_program(runtime, operator.id, contract, MOCK_SHAPE)  # no exact release allowed
    job_id = _queue(client, operator, contract, program, release="mock").get_json()["job_id"]
    failing = approved_program(runtime, operator.id, contract, FAILS_LOUDLY)
    failed_id = _queue(client, operator, contract, failing, release="mock").get_json()["job_id"]
    _run(runtime)
    body = _job(client, operator, job_id)
    assert (body["status"], body["release"], body["epsilon_spent"]) == ("succeeded", "mock", 0.0)
    with runtime.sessions() as session:
        scope = program_scope(runtime.catalog, session.get_one(Authorization, contract))
    expected = run_program(MOCK_SHAPE, mock_inputs(runtime.catalog, scope).rows).result
    assert body["result"] == expected and body["result"]["rows"] == MOCK_ROWS
    assert body["result"]["top"] % 1000 != 0 or body["result"]["top"] > 60_000  # no real tax
    # Not sealed (review): a signed output of made-up rows could pass for a statement about real data.
    assert (body["seal"], body["audit_seq"]) == (None, None)
    with runtime.sessions() as session:
        assert session.get(SealedResult, job_id) is None
    assert _events(runtime, job_id)[-1] == ("job.finish", "success", None)
    assert _details(runtime, job_id, "job.finish")["release"] == "mock"
    failed = _job(client, operator, failed_id)
    assert failed["status"] == "failed" and failed["error"]["class"] == "ValueError"
    assert failed["error"]["line"] == 4 and "secret" not in json.dumps(failed)
    usage = client.get(f"/v1/authorizations/{contract}", headers=operator.headers).get_json()["usage"]
    assert (usage["calls_today"], usage["epsilon_spent"]) == (2, 0.0)
    for bad, field in (
        ({"epsilon": 0.5}, "epsilon"),
        ({"partitions": 4}, "partitions"),
        ({"subject": SUBJECT}, "subject"),
    ):
        response = _queue(client, operator, contract, program, release="mock", **bad)
        assert response.status_code == 422, (bad, response.get_json())
        assert [d["field"] for d in response.get_json()["error"]["details"]] == [field]


def _details(runtime: Runtime, job_id: str, action: str) -> dict[str, Any]:
    with runtime.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.target_id == job_id, AuditEvent.action == action)
        return dict(session.execute(query).scalar_one().details)


def _too_many_rows(monkeypatch: pytest.MonkeyPatch) -> tuple[RunOptions, str]:
    return replace(OPTIONS, max_rows=len(TAXES) - 1), "InputTooLarge"


def _store_fails(monkeypatch: pytest.MonkeyPatch) -> tuple[RunOptions, str]:
    """The data store fails between the job's start and its read (a disk, a dropped connection)."""

    def fails(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("SELECT …", {}, Exception("disk I/O error"))

    monkeypatch.setattr(execute, "load_inputs", fails)
    return OPTIONS, "DataUnavailable"


@pytest.mark.parametrize("failure", [_too_many_rows, _store_fails], ids=["too_many_rows", "store_fails"])
def test_a_job_that_fails_before_its_program_saw_a_row_gives_its_epsilon_back(
    runtime: Runtime,
    client: FlaskClient,
    operator: Party,
    reviewer: Party,
    monkeypatch: pytest.MonkeyPatch,
    failure: Callable[[pytest.MonkeyPatch], tuple[RunOptions, str]],
) -> None:
    write_tax(runtime, TAXES)
    contract = compute_contract(runtime, operator.id, epsilon_total=1.0, epsilon_per_query=1.0)
    program = approved_program(runtime, operator.id, contract)
    job_id = _queue(client, operator, contract, program, epsilon=0.7).get_json()["job_id"]
    options, error_class = failure(monkeypatch)
    assert run_pending(runtime, options, worker="test-worker") == [job_id]

    body = _job(client, operator, job_id)
    assert (body["status"], body["error"]["class"], body["result"], body["seal"]) == (
        "failed", error_class, None, None,
    )  # fmt: skip
    assert body["epsilon_spent"] == 0.0
    assert _details(runtime, job_id, "job.start")["charged_epsilon"] == 0.7
    assert _details(runtime, job_id, "job.finish")["refunded_epsilon"] == 0.7
    usage = client.get(f"/v1/authorizations/{contract}", headers=operator.headers).get_json()["usage"]
    assert (usage["calls_today"], usage["epsilon_spent"], usage["epsilon_remaining"]) == (1, 0.0, 1.0)
    # What was given back pays for the next job, which runs and is charged as any other.
    monkeypatch.undo()
    again = _queue(client, operator, contract, program, epsilon=0.7)
    assert again.status_code == 202, again.get_json()
    _run(runtime)
    assert _job(client, operator, again.get_json()["job_id"])["status"] == "succeeded"
    usage = client.get(f"/v1/authorizations/{contract}", headers=operator.headers).get_json()["usage"]
    assert usage["epsilon_spent"] == 0.7
    # The auditor's daily chart adds up to the ε of record: the refunded job is not in it.
    with runtime.sessions() as session:
        chart = usage_series(session, now=runtime.clock(), authorization_id=contract)
    assert chart.totals["epsilon"] == 0.7 and chart.totals["calls"] == 2


def test_a_job_whose_earlier_attempt_may_have_run_its_program_keeps_its_epsilon(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    """Found in review: attempt 1 ran every partition, lost its lease, and attempt 2's load failure
    gave the ε back although attempt 1's progress had been seen."""
    from authz import usage
    from sandbox.compute.models import ComputeJob

    write_tax(runtime, TAXES)
    contract = compute_contract(runtime, operator.id, epsilon_total=1.0, epsilon_per_query=1.0)
    program = approved_program(runtime, operator.id, contract)
    job_id = _queue(client, operator, contract, program, epsilon=0.7).get_json()["job_id"]
    with transaction(runtime.sessions) as session:  # what a first attempt that was re-queued leaves
        job = session.get(ComputeJob, job_id)
        assert job is not None
        job.attempts, job.charged, job.epsilon_spent = 1, True, 0.7
        usage.spend_epsilon(session, contract, 0.7)
    assert run_pending(runtime, replace(OPTIONS, max_rows=len(TAXES) - 1), worker="test-worker") == [job_id]
    body = _job(client, operator, job_id)
    assert (body["status"], body["error"]["class"], body["epsilon_spent"]) == ("failed", "InputTooLarge", 0.7)
    assert _details(runtime, job_id, "job.finish")["refunded_epsilon"] == 0.0
    usage_now = client.get(f"/v1/authorizations/{contract}", headers=operator.headers).get_json()["usage"]
    assert usage_now["epsilon_spent"] == 0.7


def _quota(runtime: Runtime, client: FlaskClient, operator: Party, reviewer: Party, contract: str) -> None:
    """The first job spends the only call of the day."""


def _budget(runtime: Runtime, client: FlaskClient, operator: Party, reviewer: Party, contract: str) -> None:
    """The first job spends 0.6 of a budget of 1.0."""


def _revoke(runtime: Runtime, client: FlaskClient, operator: Party, reviewer: Party, contract: str) -> None:
    url = f"/v1/authorizations/{contract}/revoke"
    assert client.post(url, json={"reason": "违规"}, headers=reviewer.headers).status_code == 200


def _suspend(runtime: Runtime, client: FlaskClient, operator: Party, reviewer: Party, contract: str) -> None:
    with transaction(runtime.sessions) as session:
        found = session.get(Operator, operator.id)
        assert found is not None
        found.status = OperatorStatus.SUSPENDED.value


def _stale(runtime: Runtime, client: FlaskClient, operator: Party, reviewer: Party, contract: str) -> None:
    """What a load under an older policy leaves: the field's column under another name."""
    for engine in runtime.stores.engines:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE enterprise_tax RENAME COLUMN annual_tax TO tax_paid"))


Change = Callable[[Runtime, FlaskClient, Party, Party, str], None]


@pytest.mark.parametrize(
    ("change", "contract_args", "code"),
    [
        (_quota, {"daily_quota": 1}, "quota_exceeded"),
        (_budget, {"epsilon_total": 1.0, "epsilon_per_query": 1.0}, "budget_exhausted"),
        (_revoke, {}, "authorization_inactive"),
        (_suspend, {}, "operator_suspended"),
        (_stale, {}, "dataset_unavailable"),
    ],
    ids=["quota", "budget", "revoked", "suspended", "stale"],
)
def test_a_job_is_checked_again_when_it_starts_and_ends_denied_with_the_code(
    runtime: Runtime,
    client: FlaskClient,
    operator: Party,
    reviewer: Party,
    change: Change,
    contract_args: dict[str, Any],
    code: str,
) -> None:
    write_tax(runtime, TAXES)
    contract = compute_contract(runtime, operator.id, **contract_args)
    program = approved_program(runtime, operator.id, contract)
    first, second = (
        _queue(client, operator, contract, program, epsilon=0.6).get_json()["job_id"] for _ in range(2)
    )
    change(runtime, client, operator, reviewer, contract)
    _run(runtime)
    outcomes = [_job(client, reviewer, job_id) for job_id in (first, second)]
    if change in (_quota, _budget):  # the first job took what was left
        assert outcomes[0]["status"] == "succeeded"
        outcomes = outcomes[1:]
    for body in outcomes:
        assert body["status"] == "denied" and body["error"]["code"] == code
        assert body["result"] is None and body["seal"] is None and body["epsilon_spent"] == 0.0
        assert _events(runtime, body["job_id"])[-1] == ("job.start", "denied", code)
    if change in (_quota, _budget):  # and now the refusal comes at once
        again = _queue(client, operator, contract, program, epsilon=0.6)
        assert (again.status_code, again.get_json()["error"]["code"]) == (429, code)


def test_a_subject_scoped_job_needs_the_subjects_consent_and_sees_only_its_rows(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    # The subject has two tax years (one row a year: the policy's row key).
    taxes = [rows.tax(code, 2024, paid) for code, paid in [*TAXES, (SUBJECT, 612_345.67)]]
    rows.write(runtime.stores, runtime.catalog, {"enterprise_tax": [*taxes, rows.tax(SUBJECT, 2023, 100.0)]})
    contract = compute_contract(runtime, operator.id)
    program = approved_program(runtime, operator.id, contract, SUBJECT_BAND, exact=True)
    scoped = {"release": "exact", "subject": SUBJECT}
    refused = _queue(client, operator, contract, program, **scoped)
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (403, "consent_required")

    firm_account = make_account(runtime, client, Role.SUBJECT, "firm", subject_id=SUBJECT)
    grant = {"operator_id": operator.id, "purpose": "经营贷评分", "templates": [f"compute:{program}"]}
    response = client.post("/v1/consents", json={**grant, "valid_days": 30}, headers=firm_account.headers)
    assert response.status_code == 201, response.get_json()
    consent_id = response.get_json()["id"]
    job_id = _queue(client, operator, contract, program, **scoped).get_json()["job_id"]
    _run(runtime)
    body = _job(client, operator, job_id)
    assert (body["status"], body["result"], body["subject"]) == ("succeeded", {"band": 1, "rows": 2}, SUBJECT)
    assert verify_seal(body["seal"], client.get("/.well-known/jwks.json").get_json())["subject"] == SUBJECT

    # Consent withdrawn after queueing: the job's start refuses it.
    late = _queue(client, operator, contract, program, **scoped).get_json()["job_id"]
    url = f"/v1/consents/{consent_id}/revoke"
    assert client.post(url, json={}, headers=firm_account.headers).status_code == 200
    _run(runtime)
    assert _job(client, operator, late)["error"]["code"] == "consent_required"

    seen = client.get("/v1/subjects/me/accesses", headers=firm_account.headers).get_json()["accesses"]
    assert [(a["template"], a["outcome"]) for a in seen] == [
        (f"compute:{program}", "denied"),
        (f"compute:{program}", "success"),
        (f"compute:{program}", "denied"),
    ]
    with runtime.sessions() as session:
        accesses = session.execute(select(SubjectAccess.job_id).order_by(SubjectAccess.id)).scalars().all()
    assert accesses[1:] == [job_id, late]


def test_a_consent_may_name_only_a_program_of_that_operator(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    other = make_operator(runtime, client, "另一家公司", "913701023C5YYYY271")
    theirs = approved_program(runtime, other.id, compute_contract(runtime, other.id))
    firm_account = make_account(runtime, client, Role.SUBJECT, "firm", subject_id=SUBJECT)
    grant = {"operator_id": operator.id, "purpose": "x", "templates": [f"compute:{theirs}"], "valid_days": 3}
    response = client.post("/v1/consents", json=grant, headers=firm_account.headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"] == [
        {"field": "templates[0]", "message": "no such program of the operator"}
    ]


def test_a_job_needs_an_approved_program_under_its_own_contract(
    runtime: Runtime, client: FlaskClient, operator: Party, reviewer: Party
) -> None:
    contract = compute_contract(runtime, operator.id)
    body = {"authorization_id": contract, "name": "x", "source": MEAN_TAX}
    pending = client.post("/v1/programs", json=body, headers=operator.headers).get_json()["id"]
    response = _queue(client, operator, contract, pending)
    assert (response.status_code, response.get_json()["error"]["code"]) == (409, "program_not_approved")
    program = approved_program(runtime, operator.id, contract)
    another = compute_contract(runtime, operator.id)
    response = _queue(client, operator, another, program)
    assert (response.status_code, response.get_json()["error"]["code"]) == (422, "invalid")
    no_bounds = approved_program(runtime, operator.id, contract, "result = len(data)\n")
    response = _queue(client, operator, contract, no_bounds)
    assert (response.status_code, response.get_json()["error"]["code"]) == (422, "release_refused")
    for bad in ({"epsilon": 2.0}, {"epsilon": 0.0}, {"partitions": 1}, {"consent_id": "c-1"}):
        response = _queue(client, operator, contract, program, **bad)
        assert response.status_code == 422, (bad, response.get_json())


def test_operators_see_only_their_own_jobs_and_staff_see_all(
    runtime: Runtime, client: FlaskClient, operator: Party, auditor: Party
) -> None:
    other = make_operator(runtime, client, "另一家公司", "913701023C5YYYY271")
    mine = approved_program(runtime, operator.id, contract := compute_contract(runtime, operator.id))
    theirs_contract = compute_contract(runtime, other.id)
    theirs = approved_program(runtime, other.id, theirs_contract)
    my_job = _queue(client, operator, contract, mine).get_json()["job_id"]
    their_job = _queue(client, other, theirs_contract, theirs).get_json()["job_id"]
    hidden = client.get(f"/v1/jobs/{their_job}", headers=operator.headers)
    assert (hidden.status_code, hidden.get_json()["error"]["code"]) == (404, "not_found")
    # Nor may an operator queue a job of another's program, even naming its contract.
    assert _queue(client, operator, theirs_contract, theirs).status_code == 404
    listed = client.get("/v1/jobs", headers=operator.headers).get_json()["jobs"]
    assert [job["job_id"] for job in listed] == [my_job]
    everyone = client.get("/v1/jobs?status=queued", headers=auditor.headers).get_json()["jobs"]
    assert {job["job_id"] for job in everyone} == {my_job, their_job}


def test_a_subject_scoped_job_about_a_code_the_bureau_accepts(
    runtime: Runtime, client: FlaskClient, operator: Party, admin: Party
) -> None:
    """A credit code that fails its check is refused as mistyped, until the bureau accepts it."""
    from core.identifiers import USCC_CHARSET, uscc_check_char

    code = SUBJECT[:17] + USCC_CHARSET[(USCC_CHARSET.index(uscc_check_char(SUBJECT[:17])) + 1) % 31]
    write_tax(runtime, [*TAXES, (code, 612_345.67)])
    contract = compute_contract(runtime, operator.id)
    program = approved_program(runtime, operator.id, contract, SUBJECT_BAND, exact=True)
    scoped = {"release": "exact", "subject": code}
    refused = _queue(client, operator, contract, program, **scoped)
    assert refused.status_code == 422, refused.get_json()
    assert "a character is mistyped" in refused.get_json()["error"]["details"][0]["message"]

    accepted = client.post(
        "/v1/accepted-codes", json={"code": code, "reason": "核对登记簿"}, headers=admin.headers
    )
    assert accepted.status_code == 201, accepted.get_json()
    firm_account = make_account(runtime, client, Role.SUBJECT, "legacy.firm", subject_id=code)
    grant = {"operator_id": operator.id, "purpose": "经营贷评分", "templates": [f"compute:{program}"]}
    response = client.post("/v1/consents", json={**grant, "valid_days": 30}, headers=firm_account.headers)
    assert response.status_code == 201, response.get_json()
    queued = _queue(client, operator, contract, program, **scoped)
    assert queued.status_code == 202, queued.get_json()
    _run(runtime)
    body = _job(client, operator, queued.get_json()["job_id"])
    assert (body["status"], body["result"], body["subject"]) == ("succeeded", {"band": 1, "rows": 1}, code)


def test_an_exact_release_with_epsilon_or_partitions_is_refused_not_ignored(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    """Found in a sweep: both were dropped, and the job queued as an exact release."""
    write_tax(runtime, TAXES)
    contract = compute_contract(runtime, operator.id)
    program = approved_program(runtime, operator.id, contract, SUBJECT_BAND, exact=True)
    for extra, fields in (
        ({"epsilon": 0.5}, ["epsilon"]),
        ({"partitions": 5}, ["partitions"]),
        ({"epsilon": 0.5, "partitions": 5}, ["epsilon", "partitions"]),
    ):
        response = _queue(client, operator, contract, program, release="exact", **extra)
        assert response.status_code == 422, response.get_json()
        assert [d["field"] for d in response.get_json()["error"]["details"]] == fields
    queued = _queue(client, operator, contract, program, release="exact")
    assert queued.status_code == 202, queued.get_json()
    usage = client.get(f"/v1/authorizations/{contract}", headers=operator.headers).get_json()["usage"]
    assert (usage["calls_today"], usage["epsilon_spent"]) == (0, 0.0)  # a call is spent when a job starts
