"""Client credentials: an operator may hold several; the admin lists and revokes them one by one."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select

from audit import AuditEvent
from sandbox.runtime import Runtime
from tests.api.conftest import Party

OPERATOR = {"name": "某银行", "credit_code": "913701023C5XXXX217", "license_no": "L-1", "qualifications": []}


def _token(client: FlaskClient, client_id: str, secret: str) -> int:
    body = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return client.post("/v1/oauth/token", json=body).status_code


def test_a_revoked_client_id_gets_no_token_and_the_others_still_do(
    client: FlaskClient, runtime: Runtime, admin: Party, operator: Party
) -> None:
    operator_id = client.post("/v1/operators", json=OPERATOR, headers=admin.headers).get_json()["id"]
    url = f"/v1/operators/{operator_id}/credentials"
    old, new = (client.post(url, headers=admin.headers).get_json() for _ in range(2))
    assert _token(client, old["client_id"], old["client_secret"]) == 200
    listed = client.get(url, headers=admin.headers)
    assert listed.status_code == 200
    assert [(c["client_id"], c["revoked_at"]) for c in listed.get_json()["credentials"]] == [
        (old["client_id"], None),
        (new["client_id"], None),
    ]
    assert all(set(c) == {"client_id", "created_at", "revoked_at"} for c in listed.get_json()["credentials"])

    revoke = f"{url}/{old['client_id']}/revoke"
    assert client.post(revoke, json={"reason": "密钥泄露"}, headers=operator.headers).status_code == 403
    revoked = client.post(revoke, json={"reason": "密钥泄露"}, headers=admin.headers)
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"]
    assert _token(client, old["client_id"], old["client_secret"]) == 401
    assert _token(client, new["client_id"], new["client_secret"]) == 200
    again = client.post(revoke, json={"reason": "again"}, headers=admin.headers)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "conflict"
    listed = client.get(url, headers=admin.headers).get_json()["credentials"]
    assert [c["revoked_at"] is not None for c in listed] == [True, False]

    with runtime.sessions() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "operator.credentials_revoke")
        ).one()
        assert (event.target_id, event.outcome) == (operator_id, "success")
        assert event.details == {"client_id": old["client_id"], "reason": "密钥泄露"}


def test_revoking_is_per_operator_and_checks_its_input(
    client: FlaskClient, admin: Party, operator: Party
) -> None:
    first = client.post("/v1/operators", json=OPERATOR, headers=admin.headers).get_json()["id"]
    other = client.post(
        "/v1/operators", json={**OPERATOR, "credit_code": "913701023C5XXXX3XY"}, headers=admin.headers
    ).get_json()["id"]
    theirs = client.post(f"/v1/operators/{other}/credentials", headers=admin.headers).get_json()
    # Another operator's client id, an unknown one, an unknown operator: 404, nothing revoked.
    for path in (
        f"/v1/operators/{first}/credentials/{theirs['client_id']}/revoke",
        f"/v1/operators/{first}/credentials/op_nothing/revoke",
        f"/v1/operators/nobody/credentials/{theirs['client_id']}/revoke",
    ):
        response = client.post(path, json={"reason": "x"}, headers=admin.headers)
        assert response.status_code == 404, path
    assert client.get("/v1/operators/nobody/credentials", headers=admin.headers).status_code == 404
    assert client.get(f"/v1/operators/{other}/credentials?limit=5", headers=admin.headers).status_code == 422
    for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": "x", "extra": 1}):
        response = client.post(
            f"/v1/operators/{other}/credentials/{theirs['client_id']}/revoke",
            json=body,
            headers=admin.headers,
        )
        assert response.status_code == 422, body
    assert _token(client, theirs["client_id"], theirs["client_secret"]) == 200
