"""POST /v1/verify: every check at the moment it runs, a boolean or band never the value, sealed."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import AuditEvent
from authz.consent import SubjectAccess
from authz.contract_models import Authorization, AuthorizationStatus
from authz.permissions import Role
from core.clock import utcnow
from core.db import transaction
from core.seals import verify_seal
from sandbox.engine.models import SealedResult
from sandbox.runtime import Runtime
from tests.api.conftest import Party, make_account, make_operator
from tests.engine import rows
from tests.factories import make_consent, make_contract

SCOPE = {
    "enterprise_tax": ["credit_code", "year", "annual_tax", "tax_credit_grade"],
    "utilities": ["credit_code", "year", "electricity_kwh"],
    "public_credit": ["credit_code", "dishonest_debtor"],
}
OPERATIONS = [
    "verify:tax_paid_at_least",
    "verify:electricity_usage_band",
    "verify:tax_credit_grade_in",
    "verify:no_dishonest_record",
]
TAX_2024 = {"threshold": 500_000, "year": 2024}
STEP_PROBLEM = "a multiple of 10000 (the policy's step for it)"


@pytest.fixture
def data(runtime: Runtime) -> None:
    """FIRM paid 612,345.67 in 2024 and 100 in 2023, used 30 MWh a month, is not a dishonest debtor."""
    rows.write(
        runtime.stores,
        runtime.catalog,
        {
            "enterprise_tax": [rows.tax(rows.FIRM, 2024, 612_345.67), rows.tax(rows.FIRM, 2023, 100.0)],
            "utilities": rows.utilities(rows.FIRM, 2024, 30_000.0),
            "public_credit": [
                {
                    "credit_code": rows.FIRM,
                    "district": "历下区",
                    "rating": "A",
                    "dishonest_debtor": False,
                    "dishonest_cases": 0,
                    "updated_date": date(2024, 1, 1),
                }
            ],
        },
    )


def _contract(runtime: Runtime, operator: Party, **overrides: Any) -> Authorization:
    args: dict[str, Any] = {
        "datasets": SCOPE,
        "operations": OPERATIONS,
        "daily_quota": 100,
        "now": utcnow() - timedelta(minutes=1),
        **overrides,
    }
    with transaction(runtime.sessions) as session:
        return make_contract(session, operator_id=operator.id, **args)


def _consent(runtime: Runtime, operator: Party, subject: str = rows.FIRM, **kwargs: Any) -> str:
    kwargs.setdefault("templates", ["tax_paid_at_least", "electricity_usage_band", "tax_credit_grade_in"])
    kwargs.setdefault("now", utcnow() - timedelta(minutes=1))
    with transaction(runtime.sessions) as session:
        return make_consent(session, subject_id=subject, operator_id=operator.id, **kwargs).id


def _verify(client: FlaskClient, operator: Party, contract: Authorization, **body: Any) -> Any:
    payload = {"authorization_id": contract.id, "template": "tax_paid_at_least", "subject": rows.FIRM}
    payload.setdefault("params", TAX_2024)
    return client.post("/v1/verify", json={**payload, **body}, headers=operator.headers)


def _calls_today(client: FlaskClient, operator: Party, contract: Authorization) -> int:
    body = client.get(f"/v1/authorizations/{contract.id}", headers=operator.headers).get_json()
    return int(body["usage"]["calls_today"])


@pytest.mark.usefixtures("data")
def test_verify_answers_a_boolean_sealed_against_the_published_keys(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator)
    _consent(runtime, operator)
    response = _verify(client, operator, contract)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["result"] is True
    assert set(body) == {"result", "template", "subject", "params", "authorization_id"} | {
        "job_id",
        "issued_at",
        "audit_seq",
        "seal",
    }
    assert "612345" not in response.get_data(as_text=True)  # never the value
    jwks = client.get("/.well-known/jwks.json").get_json()
    sealed = verify_seal(body["seal"], jwks)
    for name in ("result", "template", "subject", "params", "authorization_id", "job_id", "issued_at"):
        assert sealed[name] == body[name]
    assert sealed["kind"] == "verification" and sealed["kid"] == jwks["keys"][0]["kid"]
    assert sealed["operator_id"] == operator.id and sealed["audit_seq"] == body["audit_seq"]
    with runtime.sessions() as session:
        event = session.execute(select(AuditEvent).where(AuditEvent.seq == body["audit_seq"])).scalar_one()
        stored = session.get(SealedResult, body["job_id"])
    assert (event.action, event.outcome, event.actor_id) == ("verification.run", "success", operator.id)
    assert (event.target_type, event.target_id) == ("verification", body["job_id"])
    assert sealed["audit_leaf_hash"] == event.leaf_hash
    assert rows.FIRM not in event.entry  # the subject's id stays out of the permanent log
    assert stored is not None and stored.seal == body["seal"] and stored.audit_seq == body["audit_seq"]
    assert _calls_today(client, operator, contract) == 1


@pytest.mark.usefixtures("data")
def test_job_event_and_request_ids_grow_with_time(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    """They key indexes every verification inserts into: in order, each insert lands on the last leaf."""
    contract = _contract(runtime, operator)
    _consent(runtime, operator)
    answers = [_verify(client, operator, contract) for _ in range(5)]
    assert all(answer.status_code == 200 for answer in answers)
    jobs = [answer.get_json()["job_id"] for answer in answers]
    requests = [answer.headers["X-Request-Id"] for answer in answers]
    with runtime.sessions() as session:
        seqs = [answer.get_json()["audit_seq"] for answer in answers]
        found = session.execute(select(AuditEvent.seq, AuditEvent.event_id, AuditEvent.request_id)).all()
    events = {seq: (event_id, request_id) for seq, event_id, request_id in found}
    for ids in (jobs, requests, [events[seq][0] for seq in seqs]):
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert all(uuid.UUID(each).version == 7 for each in ids)
    assert [events[seq][1] for seq in seqs] == requests


@pytest.mark.usefixtures("data")
def test_verify_false_below_threshold_and_in_a_year_without_enough_tax(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator)
    _consent(runtime, operator)
    high = _verify(client, operator, contract, params={"threshold": 620_000, "year": 2024})
    below = _verify(client, operator, contract, params={"threshold": 610_000, "year": 2024})
    other_year = _verify(client, operator, contract, params={"threshold": 500_000, "year": 2023})
    assert [r.get_json()["result"] for r in (high, below, other_year)] == [False, True, False]


@pytest.mark.usefixtures("data")
def test_a_threshold_moves_only_by_the_policys_step(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    """Found by a privacy sweep: a threshold any client could move by a cent let 36 yes/no answers
    spell out a firm's exact figure. Off the step it is refused, and the answers narrow the value to
    a band of the step's width (¥10,000 of tax here), never to the value."""
    contract = _contract(runtime, operator)
    _consent(runtime, operator)
    for threshold in (612_345.67, 612_345.68, 615_000, 0, 0.5):
        refused = _verify(client, operator, contract, params={"threshold": threshold, "year": 2024})
        assert refused.status_code == 422, threshold
        (detail,) = refused.get_json()["error"]["details"]
        # Under one step is out of range: "at least 0" is true of any firm with a row that year.
        wanted = STEP_PROBLEM if threshold >= 10_000 else "from 10000.0 to 10000000000.0"
        assert detail == {"field": "params.threshold", "message": wanted}
    assert _calls_today(client, operator, contract) == 0  # refused before a call is spent
    answers = [
        _verify(client, operator, contract, params={"threshold": threshold, "year": 2024})
        for threshold in (600_000, 610_000, 620_000, 6.1e5)
    ]
    assert [r.get_json()["result"] for r in answers] == [True, True, False, True]  # 6.1e5 is 610,000


@pytest.mark.usefixtures("data")
def test_unknown_subject_answers_like_a_real_negative(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator, consent_required=False)
    _consent(runtime, operator, subject=rows.UNKNOWN)
    unknown = _verify(client, operator, contract, subject=rows.UNKNOWN)
    assert unknown.status_code == 200 and unknown.get_json()["result"] is False
    # "not a dishonest debtor" is true of the known firm, and must not be true of an unknown one,
    # or the answer would say who is on file: the template declares unknown_subject false.
    known = _verify(client, operator, contract, template="no_dishonest_record", params={})
    stranger = _verify(
        client, operator, contract, template="no_dishonest_record", params={}, subject=rows.OTHER
    )
    assert (known.get_json()["result"], stranger.get_json()["result"]) == (True, False)
    band = _verify(
        client,
        operator,
        contract,
        template="electricity_usage_band",
        params={"year": 2024},
        subject=rows.UNKNOWN,
    )
    assert band.get_json()["result"] == "none"


@pytest.mark.usefixtures("data")
def test_band_template_answers_a_band_never_the_number(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator)
    _consent(runtime, operator)
    response = _verify(client, operator, contract, template="electricity_usage_band", params={"year": 2024})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["result"] == "medium"  # 360,000 kWh: between 50,000 and 500,000
    assert "360000" not in response.get_data(as_text=True)


@pytest.mark.usefixtures("data")
def test_list_parameter_binds_every_value(runtime: Runtime, client: FlaskClient, operator: Party) -> None:
    contract = _contract(runtime, operator)
    _consent(runtime, operator)
    yes = _verify(
        client,
        operator,
        contract,
        template="tax_credit_grade_in",
        params={"year": 2024, "grades": ["B", "A"]},
    )
    no = _verify(
        client,
        operator,
        contract,
        template="tax_credit_grade_in",
        params={"year": 2024, "grades": ["C", "D"]},
    )
    assert (yes.get_json()["result"], no.get_json()["result"]) == (True, False)


@pytest.mark.parametrize("state", ["missing", "revoked", "expired", "other_template", "other_subject"])
@pytest.mark.usefixtures("data")
def test_verify_denied_without_a_valid_consent(
    runtime: Runtime, client: FlaskClient, operator: Party, state: str
) -> None:
    contract = _contract(runtime, operator)
    consent_id = None
    if state == "revoked":
        consent_id = _consent(runtime, operator, revoked=True)
    elif state == "expired":
        consent_id = _consent(runtime, operator, now=utcnow() - timedelta(days=31), valid_days=30)
    elif state == "other_template":
        consent_id = _consent(runtime, operator, templates=["electricity_usage_band"])
    elif state == "other_subject":
        consent_id = _consent(runtime, operator, subject=rows.OTHER)
    response = _verify(client, operator, contract, consent_id=consent_id)
    assert response.status_code == 403, response.get_json()
    assert response.get_json()["error"]["code"] == "consent_required"
    assert "result" not in response.get_json()
    assert _calls_today(client, operator, contract) == 0  # refused: nothing spent
    with runtime.sessions() as session:
        access = session.execute(select(SubjectAccess)).scalar_one()
        events = session.execute(select(AuditEvent).where(AuditEvent.action == "verification.run")).all()
        denied = session.execute(
            select(AuditEvent).where(AuditEvent.error_code == "consent_required")
        ).scalar_one()
    assert (access.subject_id, access.outcome, access.template) == (rows.FIRM, "denied", "tax_paid_at_least")
    assert events == [] and denied.outcome == "denied"


@pytest.mark.usefixtures("data")
def test_subject_sees_every_check_about_itself(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator)
    _consent(runtime, operator)
    ok = _verify(client, operator, contract)
    refused = _verify(client, operator, contract, template="no_dishonest_record", params={})
    assert (ok.status_code, refused.status_code) == (200, 403)
    firm = make_account(runtime, client, Role.SUBJECT, "firm", subject_id=rows.FIRM)
    accesses = client.get("/v1/subjects/me/accesses", headers=firm.headers).get_json()["accesses"]
    assert [(a["template"], a["outcome"]) for a in accesses] == [
        ("no_dishonest_record", "denied"),
        ("tax_paid_at_least", "success"),
    ]
    assert accesses[1]["job_id"] == ok.get_json()["job_id"]
    assert all(set(a) >= {"operator_name", "authorization_id", "accessed_at"} for a in accesses)
    assert all("result" not in a for a in accesses)


@pytest.mark.parametrize(
    "status",
    [AuthorizationStatus.PENDING, AuthorizationStatus.REVOKED, AuthorizationStatus.REJECTED, "expired"],
)
@pytest.mark.usefixtures("data")
def test_verify_denied_when_authorization_inactive(
    runtime: Runtime, client: FlaskClient, operator: Party, status: Any
) -> None:
    if status == "expired":
        contract = _contract(runtime, operator, now=utcnow() - timedelta(days=31), valid_days=30)
    else:
        contract = _contract(runtime, operator, status=status)
    _consent(runtime, operator)
    response = _verify(client, operator, contract)
    assert response.status_code == 403, response.get_json()
    assert response.get_json()["error"]["code"] == "authorization_inactive"


@pytest.mark.usefixtures("data")
def test_verify_denied_for_a_template_or_field_out_of_scope(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    _consent(runtime, operator)
    narrow = _contract(runtime, operator, operations=["verify:electricity_usage_band"])
    response = _verify(client, operator, narrow)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "out_of_scope"
    # Granted the template, but not the field it sums: refused all the same.
    fieldless = _contract(
        runtime, operator, datasets={"enterprise_tax": ["credit_code", "year"]}, operations=OPERATIONS
    )
    response = _verify(client, operator, fieldless)
    assert response.status_code == 403, response.get_json()
    assert "annual_tax" in response.get_json()["error"]["message"]
    unknown = _verify(client, operator, narrow, template="no_such_template")
    assert unknown.status_code == 422 and unknown.get_json()["error"]["code"] == "invalid"


@pytest.mark.usefixtures("data")
def test_another_operators_contract_reads_as_missing(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    other = make_operator(runtime, client, "另一家运营方", "913701023C6XXXX90H")
    contract = _contract(runtime, other)
    response = _verify(client, operator, contract)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


@pytest.mark.usefixtures("data")
def test_daily_quota_is_spent_then_refused(runtime: Runtime, client: FlaskClient, operator: Party) -> None:
    contract = _contract(runtime, operator, daily_quota=2)
    _consent(runtime, operator)
    statuses = [_verify(client, operator, contract).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = _verify(client, operator, contract)
    assert refused.get_json()["error"]["code"] == "quota_exceeded"
    assert 0 < int(refused.headers["Retry-After"]) <= 24 * 3600  # until the bureau's midnight
    assert _calls_today(client, operator, contract) == 2


@pytest.mark.usefixtures("data")
def test_parameters_and_subject_are_checked_listing_every_problem(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = _contract(runtime, operator)
    _consent(runtime, operator)
    response = _verify(client, operator, contract, params={"threshold": -5, "year": "2024", "extra": 1})
    assert response.status_code == 422
    fields = sorted(p["field"] for p in response.get_json()["error"]["details"])
    assert fields == ["params.extra", "params.threshold", "params.year"]
    for params in (
        {"threshold": float("inf"), "year": 2024},
        {"year": 2024},
        {"threshold": True, "year": 2024},
    ):
        assert _verify(client, operator, contract, params=params).status_code in (400, 422)
    grades = _verify(
        client, operator, contract, template="tax_credit_grade_in", params={"year": 2024, "grades": ["Z"]}
    )
    assert grades.status_code == 422
    # Lower case; a final newline (which a "$" pattern lets through); full-width digits.
    for subject in ("91370102ma3c5xxxx1", rows.FIRM + "\n", "９" + rows.FIRM[1:]):
        bad_subject = _verify(client, operator, contract, subject=subject)
        assert bad_subject.status_code == 422, subject
        assert bad_subject.get_json()["error"]["details"][0]["field"] == "subject"
    # One character mistyped, or two swapped: it names no firm, and is refused as mistyped (it had
    # answered false, which a lender would read as "paid too little").
    swapped = rows.FIRM[:9] + rows.FIRM[10] + rows.FIRM[9] + rows.FIRM[11:]
    assert swapped != rows.FIRM
    for subject in (rows.FIRM[:-1] + ("0" if rows.FIRM[-1] != "0" else "1"), swapped):
        mistyped = _verify(client, operator, contract, subject=subject)
        assert mistyped.status_code == 422, subject
        assert mistyped.get_json()["error"]["details"] == [
            {
                "field": "subject",
                "message": "a unified social credit code; "
                "its check character does not match the rest: a character is mistyped",
            }
        ]
    assert _calls_today(client, operator, contract) == 0


def test_a_subject_must_be_an_id_of_the_kind_its_templates_dataset_is_keyed_by(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    """Found in review: an ID number with one digit mistyped can pass both of a credit code's
    checks (about once in 341 typos), so "either kind" answered such a typo false about a person."""
    contract = _contract(
        runtime,
        operator,
        datasets={"household_registration": ["resident_id", "district"]},
        operations=["verify:household_in_district"],
    )
    typo = "370102199210040067"  # 370102199210040047, its 17th digit mistyped; a valid credit code
    for subject, message in (
        (typo, "a resident ID number; its check character does not match the rest: a character is mistyped"),
        (rows.FIRM, "an 18-character resident ID number"),
    ):
        response = _verify(
            client, operator, contract, template="household_in_district", subject=subject,
            params={"district": "历下区"},
        )  # fmt: skip
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["error"]["details"] == [{"field": "subject", "message": message}]
    valid = _verify(
        client, operator, contract, template="household_in_district", subject="370102199210040047",
        params={"district": "历下区"},
    )  # fmt: skip
    assert valid.status_code == 403 and valid.get_json()["error"]["code"] == "consent_required"
    assert _calls_today(client, operator, contract) == 0


@pytest.mark.usefixtures("data")
def test_query_parameters_beside_a_body_are_refused_not_ignored(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    """Found by a sweep: ``?template=…`` was ignored, running the body's template; and ``%ff``,
    which is no UTF-8, was read as U+FFFD instead of refused like a raw byte."""
    contract = _contract(runtime, operator)
    _consent(runtime, operator)
    body = {"authorization_id": contract.id, "template": "tax_paid_at_least", "subject": rows.FIRM}
    body["params"] = TAX_2024
    for query, fields in (
        ("template=no_dishonest_record", ["query.template"]),
        ("a=1&a=2&b", ["query.a", "query.b"]),
    ):
        response = client.post(f"/v1/verify?{query}", json=body, headers=operator.headers)
        assert response.status_code == 422, response.get_json()
        assert [p["field"] for p in response.get_json()["error"]["details"]] == fields
    for path in ("/v1/verify?a=%ff", "/v1/datasets?%ED%A0%80=1"):
        response = (
            client.post(path, json=body, headers=operator.headers)
            if "verify" in path
            else (client.get(path, headers=operator.headers))
        )
        assert response.status_code == 400 and "not UTF-8" in response.get_json()["error"]["message"], path
    assert _calls_today(client, operator, contract) == 0
    assert client.post("/v1/verify", json=body, headers=operator.headers).status_code == 200


@pytest.mark.usefixtures("data")
def test_a_body_declared_in_a_charset_other_than_utf8_is_refused(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    """JSON is UTF-8: a body declared latin-1 had been read as UTF-8 all the same, as other text
    than its client meant whenever it held a byte over 0x7f."""
    contract = _contract(runtime, operator)
    _consent(runtime, operator)
    body = {"authorization_id": contract.id, "template": "tax_paid_at_least", "subject": rows.FIRM}
    data = json.dumps({**body, "params": TAX_2024}).encode()
    for charset in ("latin-1", "iso-8859-1", "gbk", "utf-16", "utf-8x"):
        response = client.post(
            "/v1/verify",
            data=data,
            content_type=f"application/json; charset={charset}",
            headers=operator.headers,
        )
        assert response.status_code == 400, charset
        error = response.get_json()["error"]
        assert error["code"] == "bad_request" and "send JSON as UTF-8" in error["message"], charset
    assert _calls_today(client, operator, contract) == 0
    for charset in ("utf-8", "UTF-8", '"utf-8"', "utf8"):
        response = client.post(
            "/v1/verify",
            data=data,
            content_type=f"application/json; charset={charset}",
            headers=operator.headers,
        )
        assert response.status_code == 200, (charset, response.get_json())


def test_only_operators_may_verify(runtime: Runtime, client: FlaskClient) -> None:
    auditor = make_account(runtime, client, Role.AUDITOR, "auditor9")
    response = client.post("/v1/verify", json={}, headers=auditor.headers)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"


@pytest.mark.usefixtures("data")
def test_every_request_returns_its_connection_whatever_the_outcome(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    """A request checks out one control-database connection (its token check, a verification's
    reads and write) and returns it at teardown: answered, refused or failed, none leaks."""
    contract = _contract(runtime, operator)
    outcomes = [
        _verify(client, operator, contract).status_code,  # no consent yet: refused, and recorded
        _verify(client, operator, contract, subject="not-a-subject").status_code,
        _verify(client, operator, contract, authorization_id="missing").status_code,
    ]
    _consent(runtime, operator)
    outcomes += [_verify(client, operator, contract).status_code for _ in range(5)]
    outcomes.append(client.get("/v1/datasets", headers=operator.headers).status_code)
    assert outcomes == [403, 422, 404, 200, 200, 200, 200, 200, 200]
    assert runtime.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert _calls_today(client, operator, contract) == 5


@pytest.mark.usefixtures("data")
def test_a_consent_revoked_after_the_checks_refuses_the_answer(
    runtime: Runtime, client: FlaskClient, operator: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks read before the write transaction; a revocation that commits in between wins."""
    from authz import consent as consents
    from sandbox.engine import verify as engine

    contract = _contract(runtime, operator)
    consent_id = _consent(runtime, operator)
    checked = engine._check

    def check_then_revoke(*args: Any) -> Any:
        found = checked(*args)
        with transaction(runtime.sessions) as session:
            stored = session.get(consents.Consent, consent_id)
            assert stored is not None
            stored.revoked_at = utcnow()
        return found

    monkeypatch.setattr(engine, "_check", check_then_revoke)
    response = _verify(client, operator, contract)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "consent_required"
    assert _calls_today(client, operator, contract) == 0  # nothing charged, nothing sealed
    with runtime.sessions() as session:
        assert session.execute(select(SealedResult)).first() is None
        outcomes = session.execute(select(SubjectAccess.outcome)).scalars().all()
    assert outcomes == ["denied"]  # the subject sees the refused check


def test_a_long_list_of_problems_is_cut_and_each_name_shortened(client: FlaskClient, operator: Party) -> None:
    """500 unknown keys would each be listed (60,000 gave an answer 4x the request); a long key is cut."""
    body = {f"unknown_{n}": 1 for n in range(500)} | {"k" * 100_000: 1}
    response = client.post("/v1/verify", json=body, headers=operator.headers)
    assert response.status_code == 422
    error = response.get_json()["error"]
    # 501 unknown keys and the 3 required fields missing: 504, of which 50 are listed.
    assert error["message"] == "504 problem(s) in the request"
    assert len(error["details"]) == 51
    assert error["details"][-1] == {"field": "(more)", "message": "and 454 more problem(s)"}
    assert len(response.get_data()) < 10_000
