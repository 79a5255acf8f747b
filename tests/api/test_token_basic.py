"""The token endpoint takes client credentials in ``Authorization: Basic`` too (RFC 6749 §2.3.1,
client_secret_basic): the same token, the same refusals and the same audit events as the body."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote_plus

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from audit import AuditEvent
from core.db import transaction
from core.passwords import hash_secret
from operators.models import OperatorCredential
from sandbox.runtime import Runtime
from tests.api.conftest import Party

TOKEN = "/v1/oauth/token"
GRANT = {"grant_type": "client_credentials"}
CHALLENGE = 'Basic realm="sandbox"'
OPERATOR = {
    "name": "某城商行",
    "credit_code": "913701023C5XXXX217",
    "license_no": "L-1",
    "qualifications": [],
}
# A secret no generated one looks like: a colon, a percent sign, a plus, a space, a slash, Chinese.
SPECIAL_SECRET = "s3:cr%t+ 值/=&?"


@dataclass
class Client:
    """An operator's client id and secret, as the admin received them."""

    operator_id: str
    client_id: str
    client_secret: str


def _basic(client_id: str, client_secret: str) -> dict[str, str]:
    """The header as RFC 6749 §2.3.1 has it: each half form-urlencoded, then joined and base64'd."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def _raw_basic(payload: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(payload).decode()}


@pytest.fixture
def registered(client: FlaskClient, admin: Party) -> Client:
    operator_id = client.post("/v1/operators", json=OPERATOR, headers=admin.headers).get_json()["id"]
    issued = client.post(f"/v1/operators/{operator_id}/credentials", headers=admin.headers).get_json()
    return Client(operator_id, issued["client_id"], issued["client_secret"])


def _token_ok(response: TestResponse, client: FlaskClient) -> None:
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/v1/datasets", headers=headers).status_code == 200


def _refused(response: TestResponse, status: int, code: str) -> str:
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"], error
    return str(error["message"])


def _events(runtime: Runtime, action: str) -> list[AuditEvent]:
    with runtime.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        return list(session.scalars(query))


def test_basic_credentials_get_a_token_with_a_form_body(
    client: FlaskClient, runtime: Runtime, registered: Client
) -> None:
    """What ``curl -u "$CID:$CS" … -d grant_type=client_credentials`` sends."""
    response = client.post(TOKEN, data=GRANT, headers=_basic(registered.client_id, registered.client_secret))
    _token_ok(response, client)
    assert response.headers["Pragma"] == "no-cache" and "WWW-Authenticate" not in response.headers
    issued = _events(runtime, "auth.token")
    assert [(e.actor_kind, e.actor_id, e.outcome) for e in issued] == [
        ("operator", registered.operator_id, "success")
    ]


def test_basic_credentials_get_a_token_with_a_json_body(client: FlaskClient, registered: Client) -> None:
    headers = _basic(registered.client_id, registered.client_secret)
    _token_ok(client.post(TOKEN, json=GRANT, headers=headers), client)
    _token_ok(client.post(TOKEN, json={**GRANT, "scope": "verify"}, headers=headers), client)


def test_the_scheme_name_is_case_insensitive_and_unencoded_safe_characters_pass(
    client: FlaskClient, registered: Client
) -> None:
    """RFC 9110 §11.1: the scheme is case-insensitive. A client that does not form-encode gets
    through when its id and secret hold no character the encoding changes (generated ones do not)."""
    pair = f"{registered.client_id}:{registered.client_secret}".encode()
    header = {"Authorization": "bASIC  " + base64.b64encode(pair).decode() + " "}
    _token_ok(client.post(TOKEN, data=GRANT, headers=header), client)


def test_percent_encoded_special_characters_in_the_secret_are_decoded(
    client: FlaskClient, runtime: Runtime, registered: Client
) -> None:
    """Each half is decoded after the split on the first colon: an encoded colon (%3A) is part of
    the secret, "+" is a space, and escaped UTF-8 is read as UTF-8."""
    with transaction(runtime.sessions) as session:
        session.get(OperatorCredential, registered.client_id).secret_hash = hash_secret(SPECIAL_SECRET)  # type: ignore[union-attr]
    _token_ok(client.post(TOKEN, data=GRANT, headers=_basic(registered.client_id, SPECIAL_SECRET)), client)
    # The same secret sent through the body works too.
    body = {**GRANT, "client_id": registered.client_id, "client_secret": SPECIAL_SECRET}
    _token_ok(client.post(TOKEN, data=body), client)
    # Escaped as %20 rather than "+": the same space.
    pair = f"{registered.client_id}:s3%3Acr%25t%2B%20%E5%80%BC%2F%3D%26%3F".encode()
    _token_ok(client.post(TOKEN, data=GRANT, headers=_raw_basic(pair)), client)
    # Not decoded, the secret is another one: refused as wrong.
    unencoded = _raw_basic(f"{registered.client_id}:{SPECIAL_SECRET}".encode())
    _refused(client.post(TOKEN, data=GRANT, headers=unencoded), 401, "unauthenticated")


@pytest.mark.parametrize(
    "body",
    [
        {"client_id": "other"},
        {"client_secret": "same"},
        {"client_id": "same", "client_secret": "same"},
    ],
    ids=["another id in body", "secret in body", "both in body"],
)
@pytest.mark.parametrize("form", [True, False], ids=["form", "json"])
def test_credentials_in_both_the_header_and_the_body_are_refused(
    client: FlaskClient, runtime: Runtime, registered: Client, body: dict[str, str], form: bool
) -> None:
    """RFC 6749 §2.3: a client uses one authentication method per request. Refused even when
    both name the same valid client, and recorded as a denial; a body client_id that is not the
    header's is refused too."""
    own = {"client_id": registered.client_id, "client_secret": registered.client_secret}
    sent = {k: "91370102MA3C5XXX0X" if v == "other" else own[k] for k, v in body.items()}
    headers = {**_basic(registered.client_id, registered.client_secret), "X-Request-Id": "twice-1"}
    response = (
        client.post(TOKEN, data={**GRANT, **sent}, headers=headers)
        if form
        else client.post(TOKEN, json={**GRANT, **sent}, headers=headers)
    )
    message = _refused(response, 400, "bad_request")
    assert ("not the one the Authorization: Basic header names" if "client_secret" not in body else
            "both in the Authorization header and in the body") in message  # fmt: skip
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert _events(runtime, "auth.token") == []
    denial = _events(runtime, "request.denied")[-1]
    assert (denial.error_code, denial.request_id, denial.outcome) == ("bad_request", "twice-1", "denied")


@pytest.mark.parametrize("form", [True, False], ids=["form", "json"])
def test_a_body_client_id_that_is_the_headers_is_taken(
    client: FlaskClient, registered: Client, form: bool
) -> None:
    """Some OAuth libraries send client_id in the body beside Basic: it only identifies (§3.2.1)."""
    headers = _basic(registered.client_id, registered.client_secret)
    body = {**GRANT, "client_id": registered.client_id}
    response = (
        client.post(TOKEN, data=body, headers=headers)
        if form
        else client.post(TOKEN, json=body, headers=headers)
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["token_type"] == "Bearer"


def test_grant_type_is_still_required_in_the_body(client: FlaskClient, registered: Client) -> None:
    headers = _basic(registered.client_id, registered.client_secret)
    for response in (
        client.post(TOKEN, data={"scope": "x"}, headers=headers),
        client.post(TOKEN, json={}, headers=headers),
        client.post(TOKEN, json={"scope": "x"}, headers=headers),
    ):
        _refused(response, 422, "invalid")
        assert response.get_json()["error"]["details"] == [
            {"field": "grant_type", "message": "Field required"}
        ]
    wrong = client.post(TOKEN, data={"grant_type": "password"}, headers=headers)
    assert "unsupported grant_type" in _refused(wrong, 400, "bad_request")
    extra = client.post(TOKEN, json={**GRANT, "username": "x"}, headers=headers)
    _refused(extra, 422, "invalid")
    query = client.post(f"{TOKEN}?client_id=x", data=GRANT, headers=headers)
    _refused(query, 422, "invalid")


MALFORMED = {
    "empty": "Basic",
    "only spaces": "Basic    ",
    "not base64": "Basic not*base64!",
    "bad padding": "Basic YWJj" + "ZA",
    "non-ascii token": "Basic ÿÿÿÿ",
    "two tokens": "Basic YTpi YTpi",
    "no colon": "Basic " + base64.b64encode(b"op_abcdef").decode(),
    "not utf-8": "Basic " + base64.b64encode(b"op_\xff\xfe:secret").decode(),
    "escape not utf-8": "Basic " + base64.b64encode(b"op_%ff:secret").decode(),
    "escaped surrogate": "Basic " + base64.b64encode(b"op_%ED%A0%80:secret").decode(),
    "empty id": "Basic " + base64.b64encode(b":secret").decode(),
    "empty id and secret": "Basic " + base64.b64encode(b":").decode(),
    "empty secret": "Basic " + base64.b64encode(b"op_abc:").decode(),
    "id too long": "Basic " + base64.b64encode(b"x" * 65 + b":secret").decode(),
    "secret too long": "Basic " + base64.b64encode(b"op_abc:" + b"s" * 257).decode(),
    "NUL in id": "Basic " + base64.b64encode(b"op_%00x:secret").decode(),
    "NUL in secret": "Basic " + base64.b64encode(b"op_abc:se\x00cret").decode(),
}


@pytest.mark.parametrize("header", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_basic_header_is_a_clear_400_never_a_500(
    client: FlaskClient, runtime: Runtime, header: str
) -> None:
    """Each refused as a malformed request, saying what is wrong with the header, with the
    challenge, and recorded as a denial: never a lookup, never a 500 (NUL on PostgreSQL)."""
    response = client.post(TOKEN, data=GRANT, headers={"Authorization": header, "X-Request-Id": "basic-1"})
    message = _refused(response, 400, "bad_request")
    assert "Authorization: Basic" in message
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    denial = _events(runtime, "request.denied")[-1]
    assert (denial.error_code, denial.request_id, denial.actor_kind) == (
        "bad_request",
        "basic-1",
        "anonymous",
    )


def test_the_size_limits_are_the_body_s(client: FlaskClient, registered: Client) -> None:
    """64 characters of id and 256 of secret are read (and refused as wrong), one more is malformed."""
    for client_id, secret in (("x" * 64, "s"), (registered.client_id, "s" * 256)):
        response = client.post(TOKEN, data=GRANT, headers=_basic(client_id, secret))
        _refused(response, 401, "unauthenticated")
    # Limits count characters once decoded, not the escapes that carried them.
    response = client.post(TOKEN, data=GRANT, headers=_basic(registered.client_id, "值" * 256))
    _refused(response, 401, "unauthenticated")


def test_another_scheme_is_not_read_as_client_credentials(client: FlaskClient, registered: Client) -> None:
    """A client that sends a bearer token along with body credentials is answered as before."""
    body = {**GRANT, "client_id": registered.client_id, "client_secret": registered.client_secret}
    _token_ok(client.post(TOKEN, data=body, headers={"Authorization": "Bearer stale.token.here"}), client)
    missing = client.post(TOKEN, data=GRANT, headers={"Authorization": "Bearer stale.token.here"})
    _refused(missing, 422, "invalid")


def test_a_wrong_secret_is_the_body_s_401_with_a_challenge_and_a_denial(
    client: FlaskClient, runtime: Runtime, registered: Client
) -> None:
    via_body = client.post(
        TOKEN,
        data={**GRANT, "client_id": registered.client_id, "client_secret": "wrong"},
        headers={"X-Request-Id": "body-1"},
    )
    via_basic = client.post(
        TOKEN, data=GRANT, headers={**_basic(registered.client_id, "wrong"), "X-Request-Id": "basic-1"}
    )
    unknown = client.post(
        TOKEN, data=GRANT, headers={**_basic("op_nobody", "wrong"), "X-Request-Id": "basic-2"}
    )
    assert via_body.get_json() == via_basic.get_json() == unknown.get_json()
    for response in (via_basic, unknown):
        _refused(response, 401, "unauthenticated")
        assert response.headers["WWW-Authenticate"] == CHALLENGE
    _refused(via_body, 401, "unauthenticated")
    assert "WWW-Authenticate" not in via_body.headers  # as before: the body path sent no header
    denials = [
        (e.request_id, e.error_code, e.outcome, e.actor_kind) for e in _events(runtime, "request.denied")
    ]
    assert denials == [
        ("body-1", "unauthenticated", "denied", "anonymous"),
        ("basic-1", "unauthenticated", "denied", "anonymous"),
        ("basic-2", "unauthenticated", "denied", "anonymous"),
    ]
    assert _events(runtime, "auth.token") == []


def test_a_suspended_operator_is_refused_as_through_the_body(
    client: FlaskClient, runtime: Runtime, registered: Client, reviewer: Party
) -> None:
    suspended = client.post(
        f"/v1/operators/{registered.operator_id}/suspend",
        json={"reason": "许可证过期"},
        headers=reviewer.headers,
    )
    assert suspended.status_code == 200
    body = {**GRANT, "client_id": registered.client_id, "client_secret": registered.client_secret}
    via_body = client.post(TOKEN, data=body)
    via_basic = client.post(TOKEN, data=GRANT, headers=_basic(registered.client_id, registered.client_secret))
    for response in (via_body, via_basic):
        _refused(response, 403, "operator_suspended")
    assert via_body.get_json() == via_basic.get_json()
    codes = [e.error_code for e in _events(runtime, "request.denied")]
    assert codes == ["operator_suspended", "operator_suspended"]
    reinstated = client.post(
        f"/v1/operators/{registered.operator_id}/reinstate",
        json={"reason": "已续期"},
        headers=reviewer.headers,
    )
    assert reinstated.status_code == 200
    _token_ok(
        client.post(TOKEN, data=GRANT, headers=_basic(registered.client_id, registered.client_secret)), client
    )


def test_a_revoked_client_id_is_refused_as_through_the_body(
    client: FlaskClient, runtime: Runtime, registered: Client, admin: Party
) -> None:
    revoke = f"/v1/operators/{registered.operator_id}/credentials/{registered.client_id}/revoke"
    assert client.post(revoke, json={"reason": "密钥泄露"}, headers=admin.headers).status_code == 200
    body = {**GRANT, "client_id": registered.client_id, "client_secret": registered.client_secret}
    via_body = client.post(TOKEN, json=body)
    via_basic = client.post(TOKEN, json=GRANT, headers=_basic(registered.client_id, registered.client_secret))
    for response in (via_body, via_basic):
        _refused(response, 401, "unauthenticated")
    assert via_body.get_json() == via_basic.get_json()
    assert via_basic.headers["WWW-Authenticate"] == CHALLENGE
    with runtime.sessions() as session:
        denied = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.error_code == "unauthenticated")
        )
    assert denied == 2


def test_the_openapi_document_offers_basic_beside_the_body(client: FlaskClient) -> None:
    document = client.get("/openapi.json").get_json()
    token = document["paths"][TOKEN]["post"]
    assert token["security"] == [{}, {"clientSecretBasic": []}]
    assert document["components"]["securitySchemes"]["clientSecretBasic"]["scheme"] == "basic"
    assert "security" not in document["paths"]["/v1/auth/login"]["post"]
