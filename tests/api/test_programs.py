"""/v1/programs: compiled at submission (422 with lines), analysed for review, approved with a pin."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import AuditEvent
from authz.contract_models import AuthorizationStatus
from sandbox.runtime import Runtime
from tests.api.conftest import Party, make_operator
from tests.compute.factories import MEAN_TAX, compute_contract

ROWS_OUT = """\
out = []
total = 0
for r in data:
    total += r["annual_tax"]
    out.append(r)
print(total)
result = {"rows": out, "k": params["k"]}
"""


def _submit(client: FlaskClient, operator: Party, contract: str, source: str, name: str = "均值") -> Any:
    body = {"authorization_id": contract, "name": name, "source": source}
    return client.post("/v1/programs", json=body, headers=operator.headers)


def _events(runtime: Runtime, target: str) -> list[tuple[str, str, str | None]]:
    with runtime.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.target_id == target).order_by(AuditEvent.seq)
        return [(e.action, e.outcome, e.actor_id) for e in session.execute(query).scalars()]


def test_submission_stores_the_sha256_and_an_analysis_for_the_reviewer(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = compute_contract(runtime, operator.id)
    response = _submit(client, operator, contract, MEAN_TAX)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "pending_review" and body["name"] == "均值"
    assert body["sha256"] == hashlib.sha256(MEAN_TAX.encode()).hexdigest()
    analysis = body["analysis"]
    assert analysis["fields_read"] == ["_dataset", "annual_tax"]
    assert analysis["names_called"] == ["stats.mean"]
    assert analysis["loops"] == [{"kind": "comprehension", "line": 2}]
    assert analysis["output_may_carry_rows"] is False
    assert analysis["output_bounds"] == {"mean_tax": [0.0, 100000.0]}
    assert analysis["data_given"] == {"enterprise_tax": ["credit_code", "year", "district", "annual_tax"]}
    assert analysis["fields_outside_contract"] == []
    assert _events(runtime, body["id"]) == [("program.submit", "success", operator.id)]
    # The name is one line of visible text, as the reviewer's list shows it.
    for name in ("均\n值", "\u202e值均", "", "x" * 201):
        refused = _submit(client, operator, contract, MEAN_TAX, name=name)
        assert refused.status_code == 422, name
        assert [d["field"] for d in refused.get_json()["error"]["details"]] == ["name"]


def test_the_analysis_shows_loops_calls_params_and_output_that_could_carry_rows(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    contract = compute_contract(runtime, operator.id, datasets={"enterprise_tax": ["district"]})
    analysis = _submit(client, operator, contract, ROWS_OUT).get_json()["analysis"]
    assert analysis["output_may_carry_rows"] is True
    assert {"kind": "for", "line": 3} in analysis["loops"]
    assert analysis["prints"] is True and analysis["params_read"] == ["k"]
    assert analysis["fields_outside_contract"] == ["annual_tax"]  # the contract gives district only


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("import os\nresult = os.listdir('/')\n", [1, 2, 2]),
        ("x = 1\nresult = (\n", [2]),
        ("result = ().__class__.__mro__\n", [1, 1]),
        ("def f():\n    return open('/etc/passwd').read()\nresult = f()\n", [2, 2]),
        ("OUTPUT_BOUNDS = [5, 1]\nresult = 1\n", [1]),
    ],
    ids=["import", "syntax", "dunder", "open", "bad_bounds"],
)
def test_submission_refuses_syntax_and_policy_errors_with_line_numbers(
    runtime: Runtime, client: FlaskClient, operator: Party, source: str, lines: list[int]
) -> None:
    contract = compute_contract(runtime, operator.id)
    response = _submit(client, operator, contract, source)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid"
    assert [problem["line"] for problem in error["details"]] == lines
    # Prose, never an exception's repr ("syntax error: …", not "SyntaxError: …").
    assert all(p["message"] and "Error:" not in p["message"] for p in error["details"])


def test_submission_needs_an_active_contract_of_ones_own_that_grants_compute(
    runtime: Runtime, client: FlaskClient, operator: Party
) -> None:
    no_compute = compute_contract(runtime, operator.id, operations=["aggregate"])
    assert _submit(client, operator, no_compute, MEAN_TAX).get_json()["error"]["code"] == "out_of_scope"
    revoked = compute_contract(runtime, operator.id, status=AuthorizationStatus.REVOKED)
    response = _submit(client, operator, revoked, MEAN_TAX)
    assert (response.status_code, response.get_json()["error"]["code"]) == (403, "authorization_inactive")
    other = make_operator(runtime, client, "另一家公司", "913701023C5YYYY271")
    theirs = compute_contract(runtime, other.id)
    assert _submit(client, operator, theirs, MEAN_TAX).status_code == 404


def test_approval_pins_the_sha256_and_may_allow_exact_release(
    runtime: Runtime, client: FlaskClient, operator: Party, reviewer: Party
) -> None:
    contract = compute_contract(runtime, operator.id)
    program = _submit(client, operator, contract, MEAN_TAX).get_json()
    url = f"/v1/programs/{program['id']}"
    assert client.post(f"{url}/approve", json={}, headers=operator.headers).status_code == 403
    response = client.post(
        f"{url}/approve", json={"comment": "用途明确", "allow_exact_release": True}, headers=reviewer.headers
    )
    assert response.status_code == 200, response.get_json()
    approved = response.get_json()
    assert approved["status"] == "approved" and approved["exact_release_allowed"] is True
    assert approved["approved_sha256"] == program["sha256"]
    again = client.post(f"{url}/approve", json={}, headers=reviewer.headers)
    assert (again.status_code, again.get_json()["error"]["code"]) == (409, "conflict")
    assert client.post(f"{url}/reject", json={"comment": "晚了"}, headers=reviewer.headers).status_code == 409
    # The same source submitted again is a new program, pending review like any other.
    twin = _submit(client, operator, contract, MEAN_TAX).get_json()
    assert twin["id"] != program["id"] and twin["status"] == "pending_review"
    actions = _events(runtime, program["id"])
    assert actions[:2] == [
        ("program.submit", "success", operator.id),
        ("program.approve", "success", reviewer.id),
    ]


def test_rejection_needs_a_comment_the_operator_can_read(
    runtime: Runtime, client: FlaskClient, operator: Party, reviewer: Party
) -> None:
    contract = compute_contract(runtime, operator.id)
    program = _submit(client, operator, contract, MEAN_TAX).get_json()
    url = f"/v1/programs/{program['id']}"
    assert client.post(f"{url}/reject", json={}, headers=reviewer.headers).status_code == 422
    response = client.post(f"{url}/reject", json={"comment": "输出过细"}, headers=reviewer.headers)
    assert response.get_json()["status"] == "rejected"
    mine = client.get(url, headers=operator.headers).get_json()
    assert (mine["status"], mine["decision_comment"]) == ("rejected", "输出过细")
    assert _events(runtime, program["id"])[-1] == ("program.reject", "success", reviewer.id)


def test_operators_see_only_their_own_programs_and_staff_see_all(
    runtime: Runtime, client: FlaskClient, operator: Party, reviewer: Party, auditor: Party
) -> None:
    other = make_operator(runtime, client, "另一家公司", "913701023C5YYYY271")
    mine = _submit(client, operator, compute_contract(runtime, operator.id), MEAN_TAX).get_json()
    theirs = _submit(client, other, compute_contract(runtime, other.id), MEAN_TAX).get_json()
    assert client.get(f"/v1/programs/{theirs['id']}", headers=operator.headers).status_code == 404
    missing = client.get("/v1/programs/00000000-0000-4000-8000-000000000000", headers=operator.headers)
    assert missing.status_code == 404 and missing.get_json() == {
        "error": {"code": "not_found", "message": "no such program"}
    }
    listed = client.get("/v1/programs", headers=operator.headers).get_json()["programs"]
    assert [p["id"] for p in listed] == [mine["id"]] and "source" not in listed[0]
    queue = client.get("/v1/programs?status=pending_review", headers=reviewer.headers).get_json()["programs"]
    assert {p["id"] for p in queue} == {mine["id"], theirs["id"]}
    shown = client.get(f"/v1/programs/{theirs['id']}", headers=auditor.headers).get_json()
    assert shown["source"] == MEAN_TAX
