"""Contracts and consent over HTTP: the lifecycle, scoping, refusals with their codes, all audited."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import AuditEvent
from authz.permissions import Role
from sandbox.runtime import Runtime
from tests.api.conftest import CONTRACT_REQUEST as REQUEST
from tests.api.conftest import Party, make_account, make_operator


def _events(runtime: Runtime, request_id: str) -> list[tuple[str, str, str | None]]:
    with runtime.sessions() as session:
        rows = session.execute(
            select(AuditEvent.action, AuditEvent.outcome, AuditEvent.error_code)
            .where(AuditEvent.request_id == request_id)
            .order_by(AuditEvent.seq)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.fixture
def pending(client: FlaskClient, operator: Party) -> dict[str, Any]:
    response = client.post("/v1/authorizations", json=REQUEST, headers=operator.headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def test_request_is_pending_with_usage(pending: dict[str, Any]) -> None:
    assert pending["status"] == "pending" and pending["consent_required"] is True
    assert pending["usage"]["calls_today"] == 0 and pending["usage"]["epsilon_remaining"] == 2.0


def test_invalid_request_lists_every_problem(client: FlaskClient, runtime: Runtime, operator: Party) -> None:
    bad = {
        **REQUEST,
        "datasets": {"enterprises": ["credit_code", "legal_rep_id", "nope"], "taxes": ["x"]},
        "operations": ["verify:no_such", "export"],
        "limits": {**REQUEST["limits"], "min_cell_size": 1, "epsilon_total": float("inf")},
    }
    response = client.post(
        "/v1/authorizations",
        data=__import__("json").dumps(bad, allow_nan=True),
        content_type="application/json",
        headers=operator.headers,
    )
    assert response.status_code == 400  # Infinity is not JSON at all
    bad["limits"]["epsilon_total"] = -1
    response = client.post(
        "/v1/authorizations", json=bad, headers={**operator.headers, "X-Request-Id": "bad-1"}
    )
    assert response.status_code == 422
    fields = " ".join(f"{d['field']} {d['message']}" for d in response.get_json()["error"]["details"])
    paths = ("legal_rep_id", "enterprises[2]", "taxes", "operations[0]", "operations[1]", "min_cell_size")
    for expected in (*paths, "epsilon_total"):
        assert expected in fields, (expected, fields)
    assert _events(runtime, "bad-1") == [("request.denied", "denied", "invalid")]


def test_reviewer_approves_once_then_conflict(
    client: FlaskClient, runtime: Runtime, pending: dict[str, Any], reviewer: Party
) -> None:
    url = f"/v1/authorizations/{pending['id']}/approve"
    first = client.post(
        url, json={"comment": "材料齐全", "limits": {"daily_quota": 500}}, headers=reviewer.headers
    )
    assert first.status_code == 200 and first.get_json()["status"] == "approved"
    assert first.get_json()["limits"]["daily_quota"] == 500
    second = client.post(
        url, json={"comment": "again"}, headers={**reviewer.headers, "X-Request-Id": "twice"}
    )
    assert second.status_code == 409 and second.get_json()["error"]["code"] == "conflict"
    assert _events(runtime, "twice") == [("request.denied", "denied", "conflict")]


def test_reviewer_cannot_loosen_limits(client: FlaskClient, pending: dict[str, Any], reviewer: Party) -> None:
    response = client.post(
        f"/v1/authorizations/{pending['id']}/approve",
        json={"limits": {"daily_quota": 10**6}},
        headers=reviewer.headers,
    )
    assert response.status_code == 422


def test_another_operators_contract_reads_as_missing(
    client: FlaskClient, runtime: Runtime, pending: dict[str, Any]
) -> None:
    other = make_operator(runtime, client, "另一家贷款平台有限公司", "913701033C5YYYY27F")
    theirs = client.get(
        f"/v1/authorizations/{pending['id']}", headers={**other.headers, "X-Request-Id": "peek"}
    )
    missing = client.get("/v1/authorizations/00000000-0000-0000-0000-000000000000", headers=other.headers)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_json() == missing.get_json()
    assert _events(runtime, "peek") == [("request.denied", "denied", "not_found")]
    assert client.get("/v1/authorizations", headers=other.headers).get_json()["authorizations"] == []


def test_staff_see_all_and_filter_by_status(
    client: FlaskClient, pending: dict[str, Any], auditor: Party
) -> None:
    listed = client.get("/v1/authorizations?status=pending", headers=auditor.headers).get_json()[
        "authorizations"
    ]
    assert [c["id"] for c in listed] == [pending["id"]]
    assert (
        client.get("/v1/authorizations?status=approved", headers=auditor.headers).get_json()["authorizations"]
        == []
    )
    assert client.get("/v1/authorizations?status=bogus", headers=auditor.headers).status_code == 422


def test_revoke_and_reject_transitions(
    client: FlaskClient, runtime: Runtime, operator: Party, reviewer: Party, pending: dict[str, Any]
) -> None:
    url = f"/v1/authorizations/{pending['id']}"
    assert client.post(f"{url}/revoke", json={"reason": "x"}, headers=reviewer.headers).status_code == 409
    assert client.post(f"{url}/approve", json={}, headers=reviewer.headers).status_code == 200
    revoked = client.post(f"{url}/revoke", json={"reason": "超范围使用"}, headers=reviewer.headers)
    assert revoked.status_code == 200 and revoked.get_json()["status"] == "revoked"
    assert client.post(f"{url}/reject", json={"reason": "x"}, headers=reviewer.headers).status_code == 409
    assert client.post(f"{url}/approve", json={}, headers=operator.headers).status_code == 403


def test_subject_grants_and_revokes_consent(client: FlaskClient, runtime: Runtime, operator: Party) -> None:
    subject = make_account(runtime, client, Role.SUBJECT, "firm-owner", subject_id="913701023C5XXXX13C")
    granted = client.post(
        "/v1/consents",
        json={
            "operator_id": operator.id,
            "purpose": "贷款申请",
            "templates": ["tax_paid_at_least"],
            "valid_days": 30,
        },
        headers=subject.headers,
    )
    assert granted.status_code == 201, granted.get_json()
    consent_id = granted.get_json()["id"]
    assert granted.get_json()["subject_id"] == "913701023C5XXXX13C"
    bad = client.post(
        "/v1/consents",
        json={"operator_id": operator.id, "purpose": "x", "templates": ["nope"], "valid_days": 9999},
        headers=subject.headers,
    )
    assert bad.status_code == 422
    revoked = client.post(f"/v1/consents/{consent_id}/revoke", headers=subject.headers)
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"]
    assert client.post(f"/v1/consents/{consent_id}/revoke", headers=subject.headers).status_code == 409
    accesses = client.get("/v1/subjects/me/accesses", headers=subject.headers)
    assert accesses.status_code == 200 and accesses.get_json() == {"accesses": [], "next_before": None}
    # A cursor past the database's integers is refused, not a driver overflow (a 500).
    for before in (2**63, 2**62 + 1, 0):
        paged = client.get(f"/v1/subjects/me/accesses?before={before}", headers=subject.headers)
        assert paged.status_code == 422, (before, paged.get_json())
    assert client.get(f"/v1/subjects/me/accesses?before={2**62}", headers=subject.headers).status_code == 200
    assert client.post("/v1/consents", json={}, headers=operator.headers).status_code == 403
