"""The console with Flask's test client: every page, its role guard, CSRF, both languages,
operator isolation, and the decisions that reach the same services as the API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask, session
from flask.sessions import NullSession
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import AuditEvent
from authz.consent import Consent
from authz.contract_models import Authorization
from sandbox.runtime import Runtime
from sandbox.web import i18n
from sandbox.web.console import PAGES, PUBLIC
from tests.web.conftest import (
    Operator,
    approved_contract,
    consent_for,
    csrf_of,
    sign_in,
    sign_in_operator,
)

pytestmark = pytest.mark.usefixtures("people")
TEMPLATES = Path(__file__).resolve().parents[2] / "sandbox" / "web" / "templates"

# Each role's pages; every other role is refused them.
ROLE_PAGES = {
    "reviewer1": ["/console/review"],
    "auditor1": ["/console/audit", "/console/audit/usage"],
    "firm1": ["/console/me"],
    "admin1": ["/console/admin"],
}


def _events(runtime: Runtime, action: str) -> list[AuditEvent]:
    with runtime.sessions() as session:
        return list(session.execute(select(AuditEvent).where(AuditEvent.action == action)).scalars())


def test_every_label_exists_in_both_languages() -> None:
    assert set(i18n.MESSAGES["en"]) == set(i18n.MESSAGES["zh"])
    assert all(i18n.MESSAGES[lang][key].strip() for lang in i18n.LANGUAGES for key in i18n.MESSAGES[lang])
    used = set()
    for path in TEMPLATES.rglob("*.html"):
        used |= set(re.findall(r"t\('([a-z_]+\.[a-z_.]+)'\)", path.read_text(encoding="utf-8")))
    missing = used - set(i18n.MESSAGES["en"])
    assert not missing, f"labels used in templates but not translated: {missing}"


def test_every_console_page_declares_a_permission(app: Flask) -> None:
    assert len(PAGES) > 20
    for page in PAGES:
        assert page.permission is PUBLIC or page.permission.value
    routed = {r.endpoint for r in app.url_map.iter_rules() if r.endpoint.startswith("web.")}
    assert routed == {page.endpoint for page in PAGES}


def test_pages_without_a_session_redirect_to_sign_in(client: FlaskClient) -> None:
    for paths in ROLE_PAGES.values():
        for path in paths:
            response = client.get(path)
            assert response.status_code == 302
            assert response.headers["Location"].startswith("/console/login")


@pytest.mark.parametrize("username", list(ROLE_PAGES))
def test_each_role_sees_its_pages_and_is_refused_the_others(
    client: FlaskClient, runtime: Runtime, username: str
) -> None:
    sign_in(client, username)
    for path in ROLE_PAGES[username]:
        assert client.get(path).status_code == 200, path
    for other, paths in ROLE_PAGES.items():
        if other != username:
            for path in paths:
                assert client.get(path).status_code == 403, path
    denied = [e for e in _events(runtime, "request.denied") if e.error_code == "forbidden"]
    assert denied, "a refused page is an audit event"


def test_session_cookie_flags_and_logout(client: FlaskClient) -> None:
    response = client.get("/console/login")
    cookie = response.headers["Set-Cookie"]
    for flag in ("HttpOnly", "SameSite=Lax", "Secure", "Path=/console"):
        assert flag in cookie
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    sign_in(client, "reviewer1")
    assert client.get("/console/review").status_code == 200
    token = csrf_of(client, "/console/review")
    client.post("/console/logout", data={"csrf_token": token})
    assert client.get("/console/review").status_code == 302


def test_signing_out_is_an_audit_event_of_the_party_once(client: FlaskClient, runtime: Runtime) -> None:
    """Signing in was recorded and signing out was not: the log could not say when a session ended."""
    sign_in(client, "reviewer1")
    token = csrf_of(client, "/console/review")
    assert client.post("/console/logout", data={"csrf_token": token}).status_code == 302
    (login,) = _events(runtime, "auth.login")
    (logout,) = _events(runtime, "auth.logout")
    assert (logout.actor_kind, logout.actor_id) == ("reviewer", login.actor_id)
    assert (logout.target_type, logout.target_id) == ("reviewer", login.actor_id)
    assert logout.outcome == "success" and logout.details == {"via": "console"} and logout.seq > login.seq
    client.post("/console/logout", data={"csrf_token": token})  # no session: nothing more to record
    assert len(_events(runtime, "auth.logout")) == 1


def test_only_console_paths_open_the_session(app: Flask, client: FlaskClient) -> None:
    """The cookie is scoped to /console; elsewhere the session is empty and cannot be written."""
    sign_in(client, "reviewer1")
    for path in ("/console", "/console/review"):
        with app.test_request_context(path):
            assert not isinstance(session, NullSession)
    cookie = client.get_cookie("sandbox_console", path="/console")
    assert cookie is not None
    for path in ("/v1/verify", "/healthz", "/consoles", "/"):
        with app.test_request_context(path, headers={"Cookie": f"sandbox_console={cookie.value}"}):
            assert isinstance(session, NullSession) and session.get("user") is None
            with pytest.raises(RuntimeError):
                session["user"] = {"role": "admin"}
    response = client.get("/healthz")
    assert "Set-Cookie" not in response.headers and "Cookie" not in response.headers.get("Vary", "")
    assert client.get("/console/review").status_code == 200  # the signed-in session is untouched


def test_wrong_password_is_refused_and_logged(client: FlaskClient, runtime: Runtime) -> None:
    token = csrf_of(client)
    response = client.post(
        "/console/login", data={"username": "reviewer1", "password": "wrong password!", "csrf_token": token}
    )
    assert response.status_code == 401
    assert any(e.error_code == "unauthenticated" for e in _events(runtime, "request.denied"))


def test_a_form_without_its_csrf_token_is_refused(
    client: FlaskClient, runtime: Runtime, pending_contract: str
) -> None:
    sign_in(client, "reviewer1")
    response = client.post(f"/console/review/contracts/{pending_contract}/approve", data={"comment": "ok"})
    assert response.status_code == 400
    assert "csrf_invalid" in response.get_data(as_text=True)
    response = client.post(
        f"/console/review/contracts/{pending_contract}/approve", data={"csrf_token": "forged"}
    )
    assert response.status_code == 400
    with runtime.sessions() as session:
        assert session.get(Authorization, pending_contract).status == "pending"  # type: ignore[union-attr]
    assert any(e.error_code == "csrf_invalid" for e in _events(runtime, "request.denied"))


def test_login_itself_needs_the_csrf_token(client: FlaskClient) -> None:
    response = client.post("/console/login", data={"username": "reviewer1", "password": "x" * 20})
    assert response.status_code == 400


def test_reviewer_approves_with_tightened_limits_then_revokes(
    client: FlaskClient, runtime: Runtime, pending_contract: str
) -> None:
    sign_in(client, "reviewer1")
    page = client.get(f"/console/review/contracts/{pending_contract}").get_data(as_text=True)
    assert "enterprise_tax" in page and "limit_daily_quota" in page
    token = csrf_of(client, "/console/review")
    response = client.post(
        f"/console/review/contracts/{pending_contract}/approve",
        data={"csrf_token": token, "comment": "用途明确", "limit_daily_quota": "50"},
    )
    assert response.status_code == 302
    with runtime.sessions() as session:
        contract = session.get(Authorization, pending_contract)
        assert contract is not None and (contract.status, contract.daily_quota) == ("approved", 50)
    response = client.post(
        f"/console/review/contracts/{pending_contract}/revoke", data={"csrf_token": token, "reason": "违规"}
    )
    assert response.status_code == 302
    with runtime.sessions() as session:
        assert session.get(Authorization, pending_contract).status == "revoked"  # type: ignore[union-attr]
    (event,) = _events(runtime, "authorization.revoke")
    assert event.actor_kind == "reviewer"


def test_loosening_a_limit_is_refused_with_the_reason_shown(
    client: FlaskClient, pending_contract: str
) -> None:
    sign_in(client, "reviewer1")
    token = csrf_of(client, "/console/review")
    response = client.post(
        f"/console/review/contracts/{pending_contract}/approve",
        data={"csrf_token": token, "limit_daily_quota": "999999"},
        follow_redirects=True,
    )
    assert "limits.daily_quota" in response.get_data(as_text=True)


def test_operator_sees_its_contract_and_not_anothers(
    client: FlaskClient, runtime: Runtime, op_a: Operator, op_b: Operator
) -> None:
    mine, theirs = approved_contract(runtime, op_a), approved_contract(runtime, op_b)
    sign_in_operator(client, op_a)
    home = client.get("/console/operator")
    assert home.status_code == 200 and mine in home.get_data(as_text=True)
    assert client.get(f"/console/operator/contracts/{mine}").status_code == 200
    assert client.get(f"/console/operator/contracts/{theirs}").status_code == 404
    assert client.get(f"/console/review/contracts/{theirs}").status_code == 403
    assert client.get("/console/audit").status_code == 403


def test_subject_revokes_its_consent(client: FlaskClient, runtime: Runtime, op_a: Operator) -> None:
    consent_id = consent_for(runtime, op_a)
    sign_in(client, "firm1")
    page = client.get("/console/me").get_data(as_text=True)
    assert consent_id in page
    token = csrf_of(client, "/console/me")
    response = client.post(f"/console/me/consents/{consent_id}/revoke", data={"csrf_token": token})
    assert response.status_code == 302
    with runtime.sessions() as session:
        assert session.get(Consent, consent_id).revoked_at is not None  # type: ignore[union-attr]
    again = client.post(f"/console/me/consents/{consent_id}/revoke", data={"csrf_token": token})
    assert again.status_code == 302  # refused (already revoked), shown on the page


def test_subject_grants_consent(client: FlaskClient, runtime: Runtime, op_a: Operator) -> None:
    sign_in(client, "firm1")
    token = csrf_of(client, "/console/me")
    response = client.post(
        "/console/me/consents",
        data={
            "csrf_token": token,
            "operator_id": op_a.id,
            "purpose": "申请贷款",
            "templates": ["tax_paid_at_least"],
            "valid_days": "30",
        },
    )
    assert response.status_code == 302
    assert len(_events(runtime, "consent.grant")) == 1


def test_odd_numbers_and_times_in_the_console_are_refused_not_failed(
    client: FlaskClient, runtime: Runtime, op_a: Operator
) -> None:
    """Superscript digits pass str.isdigit but not int; times out of range once in UTC; a seq
    past the database's integers. Each was a 500."""
    sign_in(client, "auditor1")
    for path in (
        "/console/audit?cursor=%C2%B2",
        "/console/audit?since=0001-01-01T00:00%2B01:00",
        "/console/audit?until=9999-12-31T23:59-01:00",
        "/console/audit/export?since=0001-01-01T00:00%2B01:00",
    ):
        assert client.get(path).status_code == 422, path
    assert client.get("/console/audit/events/99999999999999999999").status_code == 404
    assert client.get("/console/audit?since=2025-01-31T08:00").status_code == 200
    sign_in(client, "firm1")
    assert client.get("/console/me?before=%C2%B2").status_code == 200  # ignored, as any non-number
    response = client.post(
        "/console/me/consents",
        data={"csrf_token": csrf_of(client, "/console/me"), "operator_id": op_a.id, "purpose": "贷款",
              "templates": ["tax_paid_at_least"], "valid_days": "²"},
        follow_redirects=True,
    )  # fmt: skip
    assert response.status_code == 200 and "valid_days" in response.get_data(as_text=True)
    assert _events(runtime, "consent.grant") == []


def test_auditor_searches_and_sees_the_log_verified(client: FlaskClient, runtime: Runtime) -> None:
    sign_in(client, "auditor1")
    page = client.get("/console/audit?action=account.create&outcome=success").get_data(as_text=True)
    assert page.count('class="o-success"') == 4
    assert 'system:<code title="test">' in page  # who acted, from the hashed entry
    assert "integrity ok" in page
    event = _events(runtime, "account.create")[1]
    proof = client.get(f"/console/audit/events/{event.seq}")
    assert proof.status_code == 200 and "integrity ok" in proof.get_data(as_text=True)
    export = client.get("/console/audit/export")
    assert export.status_code == 200 and export.mimetype == "application/x-ndjson"
    assert len(export.get_data(as_text=True).splitlines()) >= event.seq + 1
    usage = client.get("/console/audit/usage").get_data(as_text=True)
    assert usage.count('<svg class="chart') == 3


def test_audit_paging_follows_the_cursor(client: FlaskClient) -> None:
    sign_in(client, "auditor1")
    page = client.get("/console/audit").get_data(as_text=True)
    # Fewer events than a page: no next link. Bad input is a page, not a crash.
    assert 'id="next-page"' not in page
    assert client.get("/console/audit?cursor=abc").status_code == 422
    assert client.get("/console/audit?since=yesterday").status_code == 422


def test_admin_registers_an_operator_issues_credentials_and_rotates_the_key(
    client: FlaskClient, runtime: Runtime
) -> None:
    sign_in(client, "admin1")
    token = csrf_of(client, "/console/admin")
    response = client.post(
        "/console/admin/operators",
        data={
            "csrf_token": token,
            "name": "历下征信服务有限公司",
            "credit_code": "913701023C5XXXX3XY",
            "license_no": "L-9",
        },
    )
    assert response.status_code == 302
    (event,) = _events(runtime, "operator.register")
    issued = client.post(
        f"/console/admin/operators/{event.target_id}/credentials", data={"csrf_token": token}
    )
    assert issued.status_code == 200 and 'id="client-secret"' in issued.get_data(as_text=True)
    (credentials,) = _events(runtime, "operator.credentials")
    client_id = credentials.details["client_id"]
    assert client_id in client.get("/console/admin").get_data(as_text=True)
    revoke = f"/console/admin/operators/{event.target_id}/credentials/{client_id}/revoke"
    # The form's `required` aside, the service refuses a revocation without a reason.
    assert client.post(revoke, data={"csrf_token": token, "reason": " "}).status_code == 302
    assert _events(runtime, "operator.credentials_revoke") == []
    revoked = client.post(revoke, data={"csrf_token": token, "reason": "密钥泄露"}, follow_redirects=True)
    assert revoked.status_code == 200 and "客户端 ID 已撤销" in revoked.get_data(as_text=True)
    (revocation,) = _events(runtime, "operator.credentials_revoke")
    assert revocation.details == {"client_id": client_id, "reason": "密钥泄露"}
    again = client.post(revoke, data={"csrf_token": token, "reason": "x"}, follow_redirects=True)
    assert again.status_code == 200 and "已撤销" in again.get_data(as_text=True)
    assert len(_events(runtime, "operator.credentials_revoke")) == 1
    assert any(e.error_code == "conflict" for e in _events(runtime, "request.denied"))
    assert client.post("/console/admin/keys/rotate", data={"csrf_token": token}).status_code == 302
    assert len(_events(runtime, "key.rotate")) == 1
    created = client.post(
        "/console/admin/accounts",
        data={"csrf_token": token, "username": "rev2", "role": "reviewer", "password": "p" * 14},
    )
    assert created.status_code == 302 and len(_events(runtime, "account.create")) == 5


def test_language_follows_the_browser_and_can_be_switched(client: FlaskClient) -> None:
    english = client.get("/console/login", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "Sign in" in english.get_data(as_text=True) and english.headers["Content-Language"] == "en"
    chinese = client.get("/console/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "登录" in chinese.get_data(as_text=True) and chinese.headers["Content-Language"] == "zh"
    switched = client.get("/console/lang/zh?next=/console/login")
    assert switched.status_code == 302 and switched.headers["Location"] == "/console/login"
    after = client.get("/console/login", headers={"Accept-Language": "en-US"})
    assert after.headers["Content-Language"] == "zh"


def test_language_switch_does_not_redirect_off_site(client: FlaskClient) -> None:
    # A CR or LF (found in a sweep: Werkzeug refuses them in a header, and the redirect was a 500).
    for target in (
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "/console/\n",
        "/x\r\nSet-Cookie: a=b",
    ):
        response = client.get("/console/lang/en", query_string={"next": target})
        assert response.status_code == 302 and response.headers["Location"] == "/console/", target


def test_a_suspended_operator_is_signed_out(client: FlaskClient, runtime: Runtime, op_a: Operator) -> None:
    from audit import Actor, ActorKind
    from core.db import transaction
    from operators import services
    from operators.models import OperatorStatus

    sign_in_operator(client, op_a)
    assert client.get("/console/operator").status_code == 200
    with transaction(runtime.sessions) as session:
        services.set_status(
            session,
            op_a.id,
            OperatorStatus.SUSPENDED,
            reason="test",
            actor=Actor(ActorKind.SYSTEM, "t"),
            request_id=None,
        )
    assert client.get("/console/operator").status_code == 302


def test_an_operator_signed_in_with_a_client_id_since_revoked_is_signed_out(
    client: FlaskClient, runtime: Runtime, op_a: Operator
) -> None:
    """Found in a sweep: the session had outlived its client id's revocation by up to 8 hours."""
    from audit import Actor, ActorKind
    from core.db import transaction
    from operators import services

    sign_in_operator(client, op_a)
    assert client.get("/console/operator").status_code == 200
    with transaction(runtime.sessions) as session:
        other, _ = services.issue_credentials(
            session, op_a.id, actor=Actor(ActorKind.SYSTEM, "t"), request_id=None
        )
    assert client.get("/console/operator").status_code == 200  # another client id changes nothing
    with transaction(runtime.sessions) as session:
        services.revoke_credentials(
            session,
            op_a.id,
            op_a.client_id,
            reason="泄露",
            actor=Actor(ActorKind.SYSTEM, "t"),
            request_id=None,
        )
    refused = client.get("/console/operator")
    assert refused.status_code == 302 and "/console/login" in refused.headers["Location"]
    assert _events(runtime, "request.denied")[-1].error_code == "unauthenticated"
    assert client.get("/console/operator").status_code == 302  # the session is gone, not refused once
    assert other.client_id != op_a.client_id


def test_reviewer_reads_a_program_and_approves_it_with_exact_release(
    client: FlaskClient, runtime: Runtime, op_a: Operator
) -> None:
    from core.db import transaction
    from sandbox.compute import programs
    from sandbox.compute.models import Program
    from tests.compute.factories import MEAN_TAX, compute_contract
    from tests.web.conftest import ADMIN

    contract = compute_contract(runtime, op_a.id)
    with transaction(runtime.sessions) as session:
        program_id = programs.submit_program(
            session,
            runtime.catalog,
            operator_id=op_a.id,
            authorization_id=contract,
            name="均值",
            source=MEAN_TAX,
            actor=ADMIN,
            request_id=None,
        ).id
    sign_in(client, "reviewer1")
    assert program_id in client.get("/console/review").get_data(as_text=True)
    page = client.get(f"/console/review/programs/{program_id}").get_data(as_text=True)
    assert "result" in page and "allow_exact_release" in page
    token = csrf_of(client, "/console/review")
    response = client.post(
        f"/console/review/programs/{program_id}/approve",
        data={"csrf_token": token, "allow_exact_release": "yes"},
    )
    assert response.status_code == 302
    with runtime.sessions() as session:
        program = session.get(Program, program_id)
        assert program is not None and program.status == "approved" and program.exact_release_allowed
    client.post("/console/logout", data={"csrf_token": token})
    sign_in_operator(client, op_a)
    assert client.get("/console/operator").status_code == 200  # the jobs table renders (empty)


def test_an_operator_reads_its_own_audit_events_and_no_others(
    client: FlaskClient, runtime: Runtime, op_a: Operator, op_b: Operator
) -> None:
    """As the API's proof endpoint: another party's event reads as missing (it had been shown whole)."""
    sign_in_operator(client.application.test_client(), op_b)  # an event of op_b's own
    sign_in_operator(client, op_a)
    with runtime.sessions() as session:
        events = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
    mine = next(e for e in events if e.actor_id == op_a.id)
    theirs = next(e for e in events if e.actor_id == op_b.id)
    system = next(e for e in events if e.actor_kind != "operator")
    assert client.get(f"/console/audit/events/{mine.seq}").status_code == 200
    for other in (theirs, system):
        response = client.get(f"/console/audit/events/{other.seq}")
        assert response.status_code == 404
        assert op_b.id not in response.get_data(as_text=True)


@pytest.mark.usefixtures("people")
def test_the_event_search_pages_with_its_own_terms_only(client: FlaskClient) -> None:
    """Other parameters were passed to url_for in the paging links: 'endpoint' or '_method' made a 500."""
    sign_in(client, "auditor1")
    for query in (
        "endpoint=x",
        "cursor=1&_method=POST",
        "_external=1&cursor=1",
        "action=auth.login&_anchor=x",
    ):
        response = client.get(f"/console/audit?{query}")
        assert response.status_code == 200, query
        for link in re.findall(
            r'href="(/console/audit\?[^"]*|https?://[^"]*)"', response.get_data(as_text=True)
        ):
            assert link.startswith("/") and not re.search(r"endpoint|_method|_external|_anchor", link), link


@pytest.mark.usefixtures("people")
def test_a_nul_in_a_form_field_is_refused_on_every_backend(client: FlaskClient) -> None:
    """PostgreSQL cannot store NUL: a console form field with one was a 500 there."""
    token = csrf_of(client)
    response = client.post(
        "/console/login", data={"username": "a\x00b", "password": "x" * 20, "csrf_token": token}
    )
    assert response.status_code == 400


def test_a_limit_is_read_as_typed_in_ascii_digits(
    client: FlaskClient, runtime: Runtime, pending_contract: str
) -> None:
    """int() and float() read "1_0", "٣٠" and "nan": the service gets such text as typed, and refuses it."""
    sign_in(client, "reviewer1")
    token = csrf_of(client, "/console/review")
    for field, typed in (
        ("limit_daily_quota", "1_0"),
        ("limit_min_cell_size", "٣٠"),
        ("limit_epsilon_total", "nan"),
    ):
        client.post(
            f"/console/review/contracts/{pending_contract}/approve",
            data={"csrf_token": token, field: typed},
            follow_redirects=True,
        )
        with runtime.sessions() as session:
            assert session.get(Authorization, pending_contract).status == "pending", (field, typed)  # type: ignore[union-attr]


def test_a_console_path_nobody_serves_answers_with_the_consoles_page(client: FlaskClient) -> None:
    """Flask runs no blueprint's handler for a 404 or 405 of routing: these answered in the API's
    JSON, without the console's headers, until the console took its own paths."""
    missing = client.get("/console/no-such-page", headers={"Accept-Language": "en"})
    wrong = client.delete("/console/login", headers={"Accept-Language": "en"})
    for response, status, code, text in (
        (missing, 404, "not_found", "Not found"),
        (wrong, 405, "method_not_allowed", "Method not allowed"),
    ):
        body = response.get_data(as_text=True)
        assert response.status_code == status and response.mimetype == "text/html"
        assert f"<code>{code}</code>" in body and text in body
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
    assert wrong.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert "Allow" not in missing.headers
    # Other paths, and a path that only begins like the console's, are the API's.
    for path in ("/v1/no-such-thing", "/consoles", "/console-x"):
        response = client.get(path)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found", path


def test_a_console_query_that_is_not_utf8_is_the_consoles_400(client: FlaskClient) -> None:
    """Its error page links back to the page it was on: that link had been a 500 of its own."""
    for path in ("/console/login", "/console/no-such-page"):
        response = client.get(path, environ_overrides={"QUERY_STRING": "next=\xff"})
        assert response.status_code == 400 and response.mimetype == "text/html", path
        assert "<code>bad_request</code>" in response.get_data(as_text=True)


def test_head_of_the_sign_in_page_is_no_sign_in_attempt(client: FlaskClient, runtime: Runtime) -> None:
    head = client.head("/console/login")
    assert head.status_code == 200 and head.get_data() == b""
    assert _events(runtime, "request.denied") == []


def test_a_console_path_nobody_serves_shows_who_is_signed_in(client: FlaskClient) -> None:
    """Its header was a signed-out one (no sign-out button), as if the session had ended."""
    sign_in(client, "reviewer1")
    for response in (client.get("/console/no-such-page"), client.delete("/console/review")):
        body = response.get_data(as_text=True)
        assert response.status_code in (404, 405)
        assert "reviewer1" in body and 'action="/console/logout"' in body
    assert client.get("/console/review").status_code == 200  # the session goes on


def test_admin_accepts_a_non_conforming_code_and_withdraws_it(client: FlaskClient, runtime: Runtime) -> None:
    """The console reaches the same service as /v1/accepted-codes: checked, audited, listed."""
    from core.identifiers import is_valid_uscc

    code = "913701023C5XXXX131"  # the organization code is right, the final check character is not
    assert not is_valid_uscc(code)
    sign_in(client, "admin1")
    token = csrf_of(client, "/console/admin")
    page = client.get("/console/admin").get_data(as_text=True)
    assert 'id="h-codes"' in page and 'action="/console/admin/codes"' in page

    conforming = client.post(
        "/console/admin/codes",
        data={"csrf_token": token, "code": "913701023C5XXXX13C", "reason": "核对登记簿"},
        follow_redirects=True,
    )
    assert conforming.status_code == 200 and "check characters are right" in conforming.get_data(as_text=True)
    assert _events(runtime, "code.accept") == []
    assert client.post("/console/admin/codes", data={"code": code, "reason": "x"}).status_code == 400  # CSRF

    accepted = client.post(
        "/console/admin/codes",
        data={"csrf_token": token, "code": code, "reason": "核对登记簿"},
        follow_redirects=True,
    )
    body = accepted.get_data(as_text=True)
    assert accepted.status_code == 200 and "代码已认可" in body and f"<code>{code}</code>" in body
    (event,) = _events(runtime, "code.accept")
    assert event.details == {"reason": "核对登记簿"} and code not in event.entry

    withdrawn = client.post(
        f"/console/admin/codes/{event.target_id}/withdraw",
        data={"csrf_token": token, "reason": "登记簿已更正"},
        follow_redirects=True,
    )
    assert withdrawn.status_code == 200 and "认可已撤回" in withdrawn.get_data(as_text=True)
    assert "已撤回" in withdrawn.get_data(as_text=True) and len(_events(runtime, "code.withdraw")) == 1
    # Another role is refused the form (with its own valid CSRF token: the refusal is the role's).
    sign_in(client, "reviewer1")
    theirs = csrf_of(client, "/console/review")
    forged = client.post("/console/admin/codes", data={"csrf_token": theirs, "code": code, "reason": "x"})
    assert forged.status_code == 403 and len(_events(runtime, "code.accept")) == 1


def test_a_console_field_given_twice_or_a_form_that_is_not_utf8_is_a_400(
    client: FlaskClient, runtime: Runtime
) -> None:
    """Found in a sweep: the first of two roles made the account, and a form's %ED%A0%80 was kept
    as the literal text of an operator's name (a raw byte read as a bad CSRF token)."""
    sign_in(client, "admin1")
    token = csrf_of(client, "/console/admin")
    before = len(_events(runtime, "account.create"))
    twice = client.post(
        "/console/admin/accounts",
        data=f"csrf_token={token}&username=rev9&role=auditor&role=admin&password={'p' * 14}",
        content_type="application/x-www-form-urlencoded",
    )
    assert twice.status_code == 400
    assert "&#39;role&#39; is given more than once" in twice.get_data(as_text=True)
    assert client.get("/console/admin?status=pending&status=revoked").status_code == 400
    for body in (b"name=ab%ED%A0%80cd", b"name=ab\xffcd"):
        response = client.post(
            "/console/admin/operators",
            data=b"csrf_token=" + token.encode() + b"&credit_code=x&license_no=L&" + body,
            content_type="application/x-www-form-urlencoded",
        )
        assert response.status_code == 400 and "not UTF-8" in response.get_data(as_text=True), body
    assert len(_events(runtime, "account.create")) == before and _events(runtime, "operator.register") == []
    # 25 qualifications are refused as the API refuses them, not cut to 20 (found in the sweep).
    many = client.post(
        "/console/admin/operators",
        data={"csrf_token": token, "name": "历下征信", "credit_code": "913701023C5XXXX3XY",
              "license_no": "L-9", "qualifications": ",".join(f"资质{n}" for n in range(25))},
        follow_redirects=True,
    )  # fmt: skip
    assert "at most 20 items" in many.get_data(as_text=True)
    assert _events(runtime, "operator.register") == []
    # A consent's templates are ticked several at once: those may repeat.
    sign_in(client, "firm1")
    consents = client.post(
        "/console/me/consents",
        data={"csrf_token": csrf_of(client, "/console/me"), "operator_id": "x", "purpose": "贷款",
              "templates": ["tax_paid_at_least", "enterprise_active"], "valid_days": "30"},
    )  # fmt: skip
    assert consents.status_code != 400


def test_signing_out_ends_the_session_on_the_server_so_a_copy_of_its_cookie_signs_nobody_in(
    app: Flask, client: FlaskClient, runtime: Runtime
) -> None:
    """Found in a sweep: the cookie was the whole session, so a copy taken before signing out
    (and its CSRF token) kept working for its 8 hours, and made an account."""
    from sandbox.models import ConsoleSession

    sign_in(client, "admin1")
    token = csrf_of(client, "/console/admin")
    cookie = client.get_cookie("sandbox_console", path="/console")
    assert cookie is not None
    assert client.post("/console/logout", data={"csrf_token": token}).status_code == 302
    thief = app.test_client()
    thief.set_cookie("sandbox_console", cookie.value, path="/console")
    page = thief.get("/console/admin")
    assert page.status_code == 302 and "/console/login" in page.headers["Location"]
    before = len(_events(runtime, "account.create"))
    thief.set_cookie("sandbox_console", cookie.value, path="/console")
    made = thief.post(
        "/console/admin/accounts",
        data={"csrf_token": token, "username": "replayed", "role": "reviewer", "password": "p" * 14},
    )
    assert made.status_code in (302, 400, 403) and len(_events(runtime, "account.create")) == before
    with runtime.sessions() as session:
        ended = session.execute(select(ConsoleSession).where(ConsoleSession.ended_at.is_not(None))).scalars()
        assert [s.role for s in ended] == ["admin"]
    sign_in(client, "admin1")  # a new sign-in is a new session
    assert client.get("/console/admin").status_code == 200


def test_console_sessions_past_their_life_are_refused_and_dropped_at_the_next_sign_in(
    client: FlaskClient, runtime: Runtime
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from core.db import transaction
    from sandbox.models import ConsoleSession
    from sandbox.services.console import SESSION_LIFE

    sign_in(client, "auditor1")
    assert client.get("/console/audit").status_code == 200
    with transaction(runtime.sessions) as session:  # as if signed in 8 hours and a second ago
        old = runtime.clock() - SESSION_LIFE - timedelta(seconds=1)
        session.execute(update(ConsoleSession).values(started_at=old))
    assert client.get("/console/audit").status_code == 302
    sign_in(client, "auditor1")
    with runtime.sessions() as session:
        rows = session.execute(select(ConsoleSession)).scalars().all()
    assert len(rows) == 1 and rows[0].ended_at is None


def test_a_form_posted_after_the_session_ended_comes_back_to_its_page_not_to_a_post_only_address(
    client: FlaskClient,
) -> None:
    """Found in a sweep: next= named the form's address, which takes only a POST: a 405 after signing in."""
    token = csrf_of(client)
    cases = (
        (
            {"Referer": "http://localhost/console/admin?tab=keys"},
            "/console/login?next=/console/admin?tab%3Dkeys",
        ),
        ({"Referer": "https://evil.example/console/admin"}, "/console/login"),
        ({}, "/console/login"),
    )
    for headers, location in cases:
        response = client.post("/console/admin/keys/rotate", data={"csrf_token": token}, headers=headers)
        assert response.status_code == 302, headers
        assert response.headers["Location"].replace("%2F", "/") == location, (headers, response.headers)
    assert (
        client.get("/console/admin?x=1")
        .headers["Location"]
        .replace("%2F", "/")
        .endswith("next=/console/admin?x%3D1")
    )
