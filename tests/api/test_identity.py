"""Tokens: issued for valid credentials only; every forged, stale or foreign token refused and audited."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import AuditEvent
from authz import tokens
from authz.permissions import Role
from core import keyring, keys
from core.clock import utcnow
from core.db import transaction
from sandbox.api.registry import ENDPOINTS, _Public
from sandbox.runtime import Runtime
from tests.api.conftest import PASSWORD, Party


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _key(runtime: Runtime) -> keys.SigningKey:
    with runtime.sessions() as session:
        return keyring.active_key(session, runtime.settings.keys_dir)


def _last_denial(runtime: Runtime) -> AuditEvent:
    with runtime.sessions() as session:
        return session.execute(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).scalar_one()


def _refused(
    client: FlaskClient,
    runtime: Runtime,
    token: str,
    status: int = 401,
    code: str = "unauthenticated",
    path: str = "/v1/datasets",
) -> None:
    response = client.get(path, headers={"Authorization": f"Bearer {token}", "X-Request-Id": "attack-1"})
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code
    event = _last_denial(runtime)
    assert (event.action, event.outcome, event.error_code, event.request_id) == (
        "request.denied",
        "denied",
        code,
        "attack-1",
    )


def test_valid_operator_token_is_accepted(client: FlaskClient, operator: Party) -> None:
    assert client.get("/v1/datasets", headers=operator.headers).status_code == 200


def test_alg_none_is_refused(client: FlaskClient, runtime: Runtime, operator: Party) -> None:
    _header, payload, _ = operator.token.split(".")
    forged = _b64({"alg": "none", "typ": "JWT", "kid": _key(runtime).kid}) + "." + payload + "."
    _refused(client, runtime, forged)


def test_hs256_signed_with_the_public_key_is_refused(
    client: FlaskClient, runtime: Runtime, operator: Party
) -> None:
    key = _key(runtime)
    public_pem = key.public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = jwt.decode(operator.token, options={"verify_signature": False})
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": key.kid})
    body = _b64(claims)
    import hashlib
    import hmac

    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    _refused(client, runtime, forged)


def test_expired_token_is_refused(client: FlaskClient, runtime: Runtime, operator: Party) -> None:
    past = utcnow() - timedelta(hours=2)
    token, _ = tokens.issue(
        _key(runtime), subject=operator.id, role=Role.OPERATOR, ttl_seconds=900, clock=lambda: past
    )
    _refused(client, runtime, token)


@pytest.mark.parametrize(
    "times",
    [
        {"exp": 10**30},
        {"iat": -(10**20)},
        {"nbf": 10**30},
        {"nbf": "soon"},
        {"nbf": ""},
        {"nbf": 1.5},
        "nbf in an hour",
    ],
    ids=[
        "exp past any date",
        "iat before any date",
        "nbf past any date",
        "nbf not a number",
        "nbf empty",
        "nbf not whole",
        "nbf ahead",
    ],
)
def test_token_times_no_date_can_hold_or_not_yet_valid_are_refused(
    client: FlaskClient, runtime: Runtime, operator: Party, times: Any
) -> None:
    """Signed with the service's own key, so only the service could make them: still 401, never 500."""
    now = int(utcnow().timestamp())
    if times == "nbf in an hour":
        times = {"nbf": now + 3600}
    claims = {"iss": tokens.ISSUER, "sub": operator.id, "role": "operator", "iat": now, "nbf": now,
              "exp": now + 900, "jti": "t1", **times}  # fmt: skip
    key = _key(runtime)
    token = jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid, "typ": "JWT"})
    _refused(client, runtime, token)


def test_token_from_another_issuer_is_refused(client: FlaskClient, runtime: Runtime, operator: Party) -> None:
    token, _ = tokens.issue(
        _key(runtime), subject=operator.id, role=Role.OPERATOR, ttl_seconds=900, issuer="https://evil.example"
    )
    _refused(client, runtime, token)


def test_token_signed_by_an_unknown_key_is_refused(
    client: FlaskClient, runtime: Runtime, operator: Party
) -> None:
    token, _ = tokens.issue(keys.generate(), subject=operator.id, role=Role.OPERATOR, ttl_seconds=900)
    _refused(client, runtime, token)


def test_tampered_payload_is_refused(client: FlaskClient, runtime: Runtime, operator: Party) -> None:
    header, payload, signature = operator.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    _refused(client, runtime, f"{header}.{_b64(claims)}.{signature}")


def test_id_claims_that_are_no_storable_text_are_refused(
    client: FlaskClient, runtime: Runtime, operator: Party
) -> None:
    """Found by a sweep: a token signed by the bureau's key whose ``sub`` is a lone surrogate failed
    in the database driver (a 500). Claims that are no text, or over 128 characters, are refused
    as a malformed token before any lookup."""
    key = _key(runtime)
    good = jwt.decode(operator.token, key.public, algorithms=["EdDSA"], issuer=tokens.ISSUER)
    for claim, value in (("sub", "\ud800"), ("sub", "a\x00b"), ("sub", 42), ("sub", ""), ("sub", "x" * 129),
                         ("sub", ["x"]), ("jti", "\udfff"), ("jti", {"a": 1})):  # fmt: skip
        token = jwt.encode({**good, claim: value}, key.private, algorithm="EdDSA", headers={"kid": key.kid})
        _refused(client, runtime, token)
    assert client.get("/v1/datasets", headers=operator.headers).status_code == 200


def test_missing_or_malformed_authorization_is_refused(client: FlaskClient, runtime: Runtime) -> None:
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer x.y"},
    ):
        response = client.get("/v1/datasets", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthenticated"


def test_suspended_operator_is_refused_at_its_next_request(
    client: FlaskClient, runtime: Runtime, operator: Party, reviewer: Party
) -> None:
    assert client.get("/v1/datasets", headers=operator.headers).status_code == 200
    response = client.post(
        f"/v1/operators/{operator.id}/suspend", json={"reason": "许可证过期"}, headers=reviewer.headers
    )
    assert response.status_code == 200 and response.get_json()["status"] == "suspended"
    _refused(client, runtime, operator.token, status=403, code="operator_suspended")
    reinstated = client.post(
        f"/v1/operators/{operator.id}/reinstate", json={"reason": "许可证已续期"}, headers=reviewer.headers
    )
    assert reinstated.status_code == 200
    assert client.get("/v1/datasets", headers=operator.headers).status_code == 200


def test_auditor_calling_a_write_endpoint_is_forbidden(
    client: FlaskClient, runtime: Runtime, auditor: Party, operator: Party
) -> None:
    response = client.post(
        f"/v1/operators/{operator.id}/suspend",
        json={"reason": "x"},
        headers={**auditor.headers, "X-Request-Id": "attack-1"},
    )
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"
    event = _last_denial(runtime)
    assert (event.action, event.error_code, event.actor_kind, event.actor_id) == (
        "request.denied",
        "forbidden",
        "auditor",
        auditor.id,
    )


def test_wrong_credentials_get_no_token(client: FlaskClient, admin: Party) -> None:
    wrong = client.post("/v1/auth/login", json={"username": "admin1", "password": PASSWORD + "x"})
    unknown = client.post("/v1/auth/login", json={"username": "nobody", "password": PASSWORD})
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.get_json()["error"]["message"] == "invalid username or password"
    bad_client = client.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "op_x", "client_secret": "nope"},
    )
    assert bad_client.status_code == 401
    grant = client.post(
        "/v1/oauth/token", data={"grant_type": "password", "client_id": "a", "client_secret": "b"}
    )
    assert grant.status_code == 400


def test_the_token_endpoint_takes_nothing_in_the_query_string(client: FlaskClient) -> None:
    """Found in review: its query string was ignored (a client secret put there would also be in
    every access log). Form and JSON bodies alike."""
    form = {"grant_type": "client_credentials", "client_id": "op_x", "client_secret": "nope"}
    for response in (
        client.post("/v1/oauth/token?client_secret=nope", data=form),
        client.post("/v1/oauth/token?client_id=a&scope=x", json=form),
    ):
        assert response.status_code == 422, response.get_json()
        assert all(p["message"] == "unknown query parameter" for p in response.get_json()["error"]["details"])
    assert client.post("/v1/oauth/token", data=form).status_code == 401  # read, and refused as wrong


def test_a_form_field_given_twice_is_refused(client: FlaskClient, operator: Party) -> None:
    """Which of two client_ids counts would be a guess (the first, in Werkzeug's form): refused."""
    body = "grant_type=client_credentials&client_id=a&client_id=b&client_secret=c"
    response = client.post("/v1/oauth/token", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response.get_json()["error"] == {
        "code": "bad_request",
        "message": "form field 'client_id' is given more than once",
    }


def test_tokens_survive_key_rotation(
    app: Flask, client: FlaskClient, runtime: Runtime, operator: Party
) -> None:
    with transaction(runtime.sessions) as session:
        keyring.rotate(session, runtime.settings.keys_dir)
    app.extensions["sandbox.keys"].clear()
    assert client.get("/v1/datasets", headers=operator.headers).status_code == 200
    assert len(client.get("/.well-known/jwks.json").get_json()["keys"]) == 2


def test_a_key_rotated_in_another_process_is_known_at_its_first_token(
    app: Flask, client: FlaskClient, runtime: Runtime, operator: Party
) -> None:
    """This app's keys were read a moment ago; another worker rotates the key and issues a token
    with the new one: it is accepted at once, not after this app's 30 s cache runs out."""
    assert client.get("/v1/datasets", headers=operator.headers).status_code == 200  # keys read now
    with transaction(runtime.sessions) as session:
        keyring.rotate(session, runtime.settings.keys_dir)
    new_key = _key(runtime)
    token, _ = tokens.issue(new_key, subject=operator.id, role=Role.OPERATOR, ttl_seconds=900)
    response = client.get("/v1/datasets", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_json()
    # A key no one published is still refused.
    forged, _ = tokens.issue(keys.generate(), subject=operator.id, role=Role.OPERATOR, ttl_seconds=900)
    refused = client.get("/v1/datasets", headers={"Authorization": f"Bearer {forged}"})
    assert refused.status_code == 401
    assert refused.get_json()["error"]["message"] == "token signed by an unknown key"


def test_unknown_kids_make_a_bounded_number_of_key_reads(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens with made-up kids may each ask for the keys again; a process reads them at most
    eight times a second for that."""
    from sandbox.api import auth

    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    reads: list[int] = []
    real = auth._KeyCache._read
    monkeypatch.setattr(auth._KeyCache, "_read", staticmethod(lambda rt: reads.append(1) or real(rt)))
    cache = auth._KeyCache()
    for _ in range(50):
        assert _key(runtime).kid in cache.refresh(runtime)
    assert len(reads) == 8
    clock[0] += 1.5
    cache.refresh(runtime)
    assert len(reads) == 9


def test_token_claims(client: FlaskClient, runtime: Runtime, operator: Party) -> None:
    header = jwt.get_unverified_header(operator.token)
    claims = jwt.decode(operator.token, _key(runtime).public, algorithms=["EdDSA"], issuer=tokens.ISSUER)
    assert header["alg"] == "EdDSA" and header["kid"] == _key(runtime).kid
    assert {"iss", "sub", "role", "iat", "exp", "jti"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 900 and claims["role"] == "operator"


@pytest.mark.parametrize(
    "endpoint", [e for e in ENDPOINTS if not isinstance(e.permission, _Public)], ids=lambda e: e.endpoint
)
def test_every_protected_endpoint_requires_a_token(app: Flask, endpoint: object) -> None:
    import re

    rule = re.sub(r"<[^>]+>", "x", endpoint.rule)  # type: ignore[attr-defined]
    for method in endpoint.methods:  # type: ignore[attr-defined]
        response = app.test_client().open(rule, method=method, json={})
        assert response.status_code == 401, (method, rule)


def test_a_remembered_token_is_still_checked_for_time_and_key(runtime: Runtime, operator: Party) -> None:
    key = _key(runtime)
    now = utcnow()
    token, _ = tokens.issue(key, subject=operator.id, role=Role.OPERATOR, ttl_seconds=900, clock=lambda: now)
    memo = tokens.VerifiedTokens(size=2)
    published = {key.kid: key.public}
    assert memo.verify(token, published, clock=lambda: now).subject == operator.id
    with pytest.raises(tokens.Unauthenticated, match="expired"):
        memo.verify(token, published, clock=lambda: now + timedelta(hours=1))
    with pytest.raises(tokens.Unauthenticated, match="unknown key"):
        memo.verify(token, {}, clock=lambda: now)  # the key was retired: the memo does not vouch
    reloaded = {key.kid: serialization.load_pem_public_key(  # the same key, read again
        key.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )}  # fmt: skip
    assert memo.verify(token, reloaded, clock=lambda: now).subject == operator.id  # type: ignore[arg-type]
    others = [
        tokens.issue(key, subject=f"op-{n}", role=Role.OPERATOR, ttl_seconds=900, clock=lambda: now)[0]
        for n in range(3)
    ]
    for other in others:
        memo.verify(other, published, clock=lambda: now)
    assert len(memo._entries) == 2  # bounded: the least recently used are dropped


def test_a_forged_token_is_refused_after_its_original_was_remembered(
    client: FlaskClient, runtime: Runtime, operator: Party
) -> None:
    assert client.get("/v1/datasets", headers=operator.headers).status_code == 200  # remembered now
    header, payload, signature = operator.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "another-operator"
    _refused(client, runtime, f"{header}.{_b64(claims)}.{signature}")
