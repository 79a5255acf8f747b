"""The app skeleton: health, request ids, the error shape, OpenAPI, JWKS."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import create_engine, select
from sqlalchemy.exc import OperationalError

from audit import AuditEvent
from core import keys
from core.errors import ConfigurationError
from sandbox.api.parsing import parse_body, parse_query
from sandbox.api.registry import ENDPOINTS
from sandbox.runtime import Runtime


class _Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=10)
    count: int = Field(ge=0)


class _EchoQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=10, ge=-5, le=100)
    after: int | None = None
    name: str | None = None


@pytest.fixture
def echo_app(app: Flask) -> Flask:
    def echo() -> object:
        return jsonify(parse_body(_Echo).model_dump())

    def boom() -> object:
        raise RuntimeError("secret internal detail /etc/passwd")

    def misconfigured() -> object:
        raise ConfigurationError("no such home /srv/secret")

    def database_failed() -> object:
        raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    def echo_query() -> object:
        return jsonify(parse_query(_EchoQuery).model_dump())

    app.add_url_rule("/test/echo", view_func=echo, methods=["POST"])
    app.add_url_rule("/test/echo-query", view_func=echo_query)
    app.add_url_rule("/test/boom", view_func=boom)
    app.add_url_rule("/test/misconfigured", view_func=misconfigured)
    app.add_url_rule("/test/database-failed", view_func=database_failed)
    return app


def _error(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    return body["error"]


def test_healthz_reports_databases_and_policy(client: FlaskClient, runtime: Runtime) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["control_db"] == "ok" and body["data_db"] == "ok"
    assert body["policy_sha256"] == runtime.catalog.sha256


def test_healthz_is_503_when_control_database_is_unreachable(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = create_engine("sqlite:////nonexistent-folder/control.sqlite")
    monkeypatch.setattr(runtime, "engine", broken)
    response = client.get("/healthz")
    broken.dispose()
    assert response.status_code == 503
    assert response.get_json()["control_db"] == "unavailable"


def test_request_id_is_echoed_when_well_formed_and_replaced_otherwise(client: FlaskClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-Id": "bank-42.abc"}).headers["X-Request-Id"]
        == "bank-42.abc"
    )
    replaced = client.get("/healthz", headers={"X-Request-Id": "<script>" * 40}).headers["X-Request-Id"]
    assert len(replaced) == 32 and "<" not in replaced
    assert client.get("/nope").headers["X-Request-Id"]


def test_unknown_path_and_wrong_method_are_json_errors(client: FlaskClient) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and _error(missing)["code"] == "not_found"
    wrong = client.delete("/healthz")
    assert wrong.status_code == 405 and _error(wrong)["code"] == "method_not_allowed"
    assert wrong.headers["Allow"] == "GET, HEAD, OPTIONS"  # a 405 names what is allowed (RFC 9110)
    assert client.get("/v1/verify").headers["Allow"] == "OPTIONS, POST"
    assert "Allow" not in missing.headers


def test_no_path_is_redirected_to_an_address_from_the_host_header(client: FlaskClient) -> None:
    """Werkzeug would answer "//" in a path, or the console without its slash, with a 308 (an HTML
    page) to an absolute address built from the Host header the client sent."""
    for path in ("/v1//datasets", "//healthz", "/v1/datasets/"):
        response = client.get(path, headers={"Host": "evil.example"})
        assert response.status_code == 404 and "Location" not in response.headers, path
        assert _error(response)["code"] == "not_found"
    console = client.get("/console//login", headers={"Host": "evil.example"})  # the console's own page
    assert console.status_code == 404 and "Location" not in console.headers
    assert console.mimetype == "text/html" and "evil.example" not in console.get_data(as_text=True)
    for path in ("/console", "/console/"):
        response = client.get(path, headers={"Host": "evil.example"})
        assert response.status_code == 302 and response.headers["Location"] == "/console/login", path


def test_body_must_be_json_object(echo_app: Flask) -> None:
    client = echo_app.test_client()
    for kwargs in (
        {"data": "name=x", "content_type": "application/x-www-form-urlencoded"},
        {"data": "{not json", "content_type": "application/json"},
        {"data": '{"name": "x", "count": NaN}', "content_type": "application/json"},
        {"data": b"\xff\xfe", "content_type": "application/json"},
        {"data": "[1, 2]", "content_type": "application/json"},
    ):
        response = client.post("/test/echo", **kwargs)
        assert response.status_code == 400, kwargs
        assert _error(response)["code"] == "bad_request"


def test_deep_nesting_and_lone_surrogates_are_bad_requests(echo_app: Flask) -> None:
    client = echo_app.test_client()
    bodies = [
        "[" * 10_000 + "]" * 10_000,
        '{"a":' * 5_000 + "1" + "}" * 5_000,
        "[" * 40 + "]" * 40,
        '{"name": "\\ud800", "count": 1}',
        '{"\\udfff": 1}',
    ]
    for body in bodies:
        response = client.post("/test/echo", data=body, content_type="application/json")
        assert response.status_code == 400, body[:40]
        assert _error(response)["code"] == "bad_request"


def test_an_integer_too_long_to_read_is_a_bad_request_in_the_apis_words(echo_app: Flask) -> None:
    """Found by a sweep: 5,000 digits were refused in Python's words ("use
    sys.set_int_max_str_digits() to increase the limit"). 4,300 digits still parse, and are then the
    model's to take or refuse."""
    client = echo_app.test_client()
    for digits in (4301, 5000, 100_000):
        body = '{"name": "a", "count": -' + "9" * digits + "}"
        response = client.post("/test/echo", data=body, content_type="application/json")
        assert _error(response) == {
            "code": "bad_request",
            "message": "the body holds an integer of more than 4300 digits",
        }, digits
    for sign, status in (("", 200), ("-", 422)):  # the sign is no digit: both parse
        response = client.post("/test/echo", data='{"name": "a", "count": ' + sign + "9" * 4300 + "}",
                               content_type="application/json")  # fmt: skip
        assert response.status_code == status, sign  # then the echo's model takes it, or not (>= 0)
    assert _error(response)["details"][0]["field"] == "count"


def test_a_repeated_key_is_a_bad_request(echo_app: Flask) -> None:
    """Python would keep the last of two "count" keys, and another parser the first."""
    client = echo_app.test_client()
    cases = {
        '{"name": "a", "count": 1, "count": 2}': "count",
        '{"name": "a", "count": 1, "x": [{"k": 1}, {"k": 1, "k": 1}]}': "k",  # nested, too
    }
    for body, key in cases.items():
        response = client.post("/test/echo", data=body, content_type="application/json")
        assert response.status_code == 400, body
        message = f"the body repeats the key {key!r} in one object"
        assert _error(response) == {"code": "bad_request", "message": message}
    # The same key in two objects is no repeat (here refused by the model, not the parser).
    other = client.post("/test/echo", data='{"name": "a", "count": 1, "x": [{"k": 1}, {"k": 1}]}',
                        content_type="application/json")  # fmt: skip
    assert other.status_code == 422
    assert _error(other)["details"] == [{"field": "x", "message": "unknown field"}]


def test_invalid_body_lists_every_problem(echo_app: Flask) -> None:
    response = echo_app.test_client().post("/test/echo", json={"name": "x" * 11, "count": -1, "extra": 1})
    assert response.status_code == 422
    error = _error(response)
    assert error["code"] == "invalid"
    assert {d["field"] for d in error["details"]} == {"name", "count", "extra"}


def test_chinese_round_trips(echo_app: Flask) -> None:
    response = echo_app.test_client().post("/test/echo", json={"name": "历下区", "count": 1})
    assert response.status_code == 200
    assert "历下区".encode() in response.data
    assert response.get_json() == {"name": "历下区", "count": 1}


def test_oversized_body_is_413(echo_app: Flask) -> None:
    response = echo_app.test_client().post(
        "/test/echo", data=b"{" + b" " * (2 * 1024 * 1024) + b"}", content_type="application/json"
    )
    assert response.status_code == 413
    assert _error(response)["code"] == "too_large"


def test_an_oversized_body_is_413_before_routing_or_authentication(
    client: FlaskClient, runtime: Runtime
) -> None:
    """Whatever the body's type, the path or the token: refused before anything reads it."""
    big = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    for method, path in (("POST", "/v1/verify"), ("GET", "/healthz"), ("POST", "/nope")):
        for content_type in ("application/json", "text/plain", "application/x-www-form-urlencoded"):
            response = client.open(path, method=method, data=big, content_type=content_type)
            assert response.status_code == 413, (path, content_type)
            assert _error(response)["code"] == "too_large"
    # Each refusal is an audit event, as a streamed body's is (a declared length had left none).
    with runtime.sessions() as session:
        denied = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "request.denied", AuditEvent.error_code == "too_large"
            )
        ).all()
    assert len(denied) == 9
    assert {e.details["path"] for e in denied} == {"/v1/verify", "/healthz", "/nope"}


def test_a_query_that_is_not_utf8_is_400(client: FlaskClient) -> None:
    for path in ("/healthz", "/v1/datasets", "/nope"):
        response = client.get(path, environ_overrides={"QUERY_STRING": "a=\xff"})  # a raw byte, not %ff
        assert response.status_code == 400 and _error(response)["code"] == "bad_request", path
        assert _error(response)["message"] == "the query string is not UTF-8"
    # Escaped, too: this had pinned 200, Werkzeug decoding %ff to U+FFFD, so a name or value was
    # read as another than the one sent. A sweep found it against the README's rule; now refused.
    for query in ("a=%ff", "%ED%A0%80=1", "a=%C3"):
        response = client.get(f"/healthz?{query}")
        assert response.status_code == 400 and _error(response)["message"] == "the query string is not UTF-8"
    assert client.get("/healthz?a=%C3%A9&b=%E6%B5%8E").status_code == 200  # é and 济: UTF-8


def _streamed(app: Flask, path: str, body: bytes, content_type: str) -> Any:
    """``body`` posted chunked, with no Content-Length, as gunicorn hands such a body on."""
    return app.test_client().post(
        path,
        input_stream=io.BytesIO(body),
        content_type=content_type,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},  # as gunicorn sets for chunked input
    )


def test_oversized_streamed_body_is_413_not_cut_short(echo_app: Flask) -> None:
    """Chunked, with no Content-Length: Werkzeug reads up to the limit and stops. A valid body
    followed by padding past the limit must be refused, not parsed from its first megabyte."""
    body = b'{"name": "x", "count": 1}'
    response = _streamed(echo_app, "/test/echo", body + b" " * (2 * 1024 * 1024), "application/json")
    assert response.status_code == 413
    assert _error(response)["code"] == "too_large"
    small = _streamed(echo_app, "/test/echo", body, "application/json")
    assert small.status_code == 200, small.get_json()
    # A form the same way (found in review: read before routing, it was parsed from the cut body).
    form = b"grant_type=client_credentials&client_id=a&client_secret=" + b"x" * (2 * 1024 * 1024)
    response = _streamed(echo_app, "/v1/oauth/token", form, "application/x-www-form-urlencoded")
    assert response.status_code == 413 and _error(response)["code"] == "too_large"


def test_unexpected_error_is_500_without_trace(echo_app: Flask, runtime: Runtime) -> None:
    echo_app.config["PROPAGATE_EXCEPTIONS"] = False
    response = echo_app.test_client().get("/test/boom")
    assert response.status_code == 500
    error = _error(response)
    assert error["code"] == "internal_error"
    assert "secret" not in response.get_data(as_text=True) and "Traceback" not in response.get_data(
        as_text=True
    )
    request_id = response.headers["X-Request-Id"]
    assert request_id in error["message"]
    # The failure is an audit event, found by the id the client was told to quote.
    with runtime.sessions() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id)).all()
        assert [(e.action, e.outcome, e.error_code, e.target_id) for e in events] == [
            ("request.failed", "failed", "internal_error", "boom")
        ]
        assert events[0].details == {"method": "GET", "path": "/test/boom"}


def test_a_misconfigured_service_is_500_and_an_audit_event(echo_app: Flask, runtime: Runtime) -> None:
    response = echo_app.test_client().get("/test/misconfigured")
    assert response.status_code == 500
    error = _error(response)
    assert error["code"] == "configuration_error" and "secret" not in error["message"]
    with runtime.sessions() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.request_id == response.headers["X-Request-Id"])
        ).one()
        assert (event.action, event.outcome) == ("request.failed", "failed")
        assert event.error_code == "configuration_error"


def test_a_failed_database_is_not_asked_to_record_its_own_failure(echo_app: Flask, runtime: Runtime) -> None:
    """A 500 from the database (locked, unreachable) writes no event: the write would wait out the
    same timeouts in front of the answer. The log says so instead."""
    echo_app.config["PROPAGATE_EXCEPTIONS"] = False
    response = echo_app.test_client().get("/test/database-failed")
    assert response.status_code == 500 and _error(response)["code"] == "internal_error"
    with runtime.sessions() as session:
        found = select(AuditEvent).where(AuditEvent.request_id == response.headers["X-Request-Id"])
        assert session.scalars(found).all() == []


def test_every_route_declares_a_permission(app: Flask) -> None:
    from sandbox.web.console import PAGES  # console pages declare theirs the same way

    declared = {ep.endpoint for ep in ENDPOINTS} | {page.endpoint for page in PAGES}
    routed = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    undeclared = routed - declared
    assert not undeclared, f"endpoints without a declared permission: {undeclared}"
    for endpoint in ENDPOINTS:
        assert endpoint.permission is not None


def test_openapi_lists_every_declared_endpoint(client: FlaskClient) -> None:
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    for endpoint in ENDPOINTS:
        path = endpoint.rule.replace("<", "{").replace(">", "}")
        for method in endpoint.methods:
            assert method.lower() in document["paths"][path]
    assert "ErrorBody" in document["components"]["schemas"]
    # The token endpoint takes a form, as OAuth clients send it, or JSON: both declared.
    token = document["paths"]["/v1/oauth/token"]["post"]["requestBody"]["content"]
    assert set(token) == {"application/x-www-form-urlencoded", "application/json"}
    assert set(document["paths"]["/v1/verify"]["post"]["requestBody"]["content"]) == {"application/json"}
    assert {"200", "201"} <= set(document["paths"]["/v1/audit/checkpoints"]["post"]["responses"])


def test_jwks_publishes_the_active_key(client: FlaskClient, runtime: Runtime) -> None:
    body = client.get("/.well-known/jwks.json").get_json()
    assert len(body["keys"]) == 1
    jwk = body["keys"][0]
    private = keys.load(runtime.settings.keys_dir, jwk["kid"])
    assert jwk == private.jwk()
    assert "d" not in jwk  # never the private part


def test_nul_characters_are_refused_everywhere(echo_app: Flask, client: FlaskClient) -> None:
    body = echo_app.test_client().post("/test/echo", json={"name": "a\x00b", "count": 1})
    assert body.status_code == 400 and _error(body)["code"] == "bad_request"
    for path in ("/v1/operators/abc%00def", "/healthz?x=%00"):
        response = client.get(path)
        assert response.status_code == 400, path
        assert _error(response)["code"] == "bad_request"


def test_a_query_integer_is_ascii_digits_as_in_a_json_body(echo_app: Flask) -> None:
    """Found in a sweep: pydantic's lax mode read ``1.0``, ``+5``, ``1_000`` and `` 7 `` as numbers."""
    client = echo_app.test_client()
    for query in (
        "limit=1.0",
        "limit=%2B5",
        "limit=1_000",
        "limit=%207%20",
        "after=1e2",
        "after=",
        "after=0x1",
    ):
        response = client.get(f"/test/echo-query?{query}")
        assert response.status_code == 422, (query, response.get_json())
        name = query.split("=")[0]
        assert _error(response)["details"] == [
            {"field": name, "message": "an integer of ASCII digits (no +, point, underscore or space)"}
        ]
    ok = client.get("/test/echo-query?limit=-3&after=0012&name=1.0")  # a string field takes any text
    assert ok.status_code == 200 and ok.get_json() == {"limit": -3, "after": 12, "name": "1.0"}
    # The model's own checks still run after: a range, in its words.
    assert client.get("/test/echo-query?limit=101").status_code == 422


def test_a_compressed_body_is_refused_naming_its_coding(echo_app: Flask) -> None:
    """Werkzeug does not decode Content-Encoding: a gzip body was refused as "not UTF-8"."""
    import gzip

    client = echo_app.test_client()
    body = b'{"name": "a", "count": 1}'
    for coding in ("gzip", "br", "deflate, gzip"):
        data = gzip.compress(body) if coding == "gzip" else body
        response = client.post(
            "/test/echo", data=data, content_type="application/json", headers={"Content-Encoding": coding}
        )
        assert response.status_code == 400, response.get_json()
        assert _error(response)["message"].startswith(f"the body is sent with Content-Encoding {coding!r}")
    plain = client.post(
        "/test/echo", data=body, content_type="application/json", headers={"Content-Encoding": "Identity"}
    )
    assert plain.status_code == 200 and plain.get_json() == {"name": "a", "count": 1}
    form = client.post(
        "/v1/oauth/token",
        data=gzip.compress(b"grant_type=client_credentials&client_id=a&client_secret=b"),
        content_type="application/x-www-form-urlencoded",
        headers={"Content-Encoding": "gzip"},
    )
    assert form.status_code == 400 and "Content-Encoding 'gzip'" in _error(form)["message"]
