"""The administrator's page: operators (register, credentials, suspend), accounts, accepted credit
codes, signing keys."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, current_app, g, render_template, request
from sqlalchemy.orm import Session

from authz import accepted_codes
from authz.accounts import ACCOUNT_ROLES, create_account
from authz.permissions import Permission, Role
from core.db import transaction
from core.errors import Invalid, SandboxError
from operators import services as operators
from operators.models import OperatorStatus
from sandbox.runtime import Runtime
from sandbox.services import console as console_service
from sandbox.web.console import done, page, refused, runtime, user


def _change(action: Callable[[Session, Runtime], object], message: str) -> Response:
    """Run ``action`` in one transaction; back to the page with ``message``, or with the refusal."""
    rt = runtime()
    try:
        with transaction(rt.sessions) as session:
            action(session, rt)
    except SandboxError as exc:
        return refused(exc, "web.admin_home")
    return done(message, "web.admin_home")


@page("/admin", permission=Permission.OPERATORS_WRITE)
def admin_home() -> str:
    """Operators, accounts and keys, each with its forms."""
    rt = runtime()
    with rt.sessions() as session:
        return render_template(
            "admin/home.html",
            operators=operators.list_operators(session),
            credentials=operators.credentials_by_operator(session),
            accounts=console_service.list_accounts(session),
            codes=accepted_codes.list_codes(session),
            keys=console_service.signing_keys(session),
            roles=[r.value for r in ACCOUNT_ROLES],
        )


@page("/admin/operators", permission=Permission.OPERATORS_WRITE, methods=("POST",))
def admin_register_operator() -> Response:
    """Register a licensed operator."""
    qualifications = [q.strip() for q in request.form.get("qualifications", "").split(",") if q.strip()]
    return _change(
        lambda session, rt: operators.register_operator(
            session,
            name=request.form.get("name", ""),
            credit_code=request.form.get("credit_code", "").strip(),
            license_no=request.form.get("license_no", ""),
            qualifications=qualifications,
            actor=user().actor,
            request_id=g.request_id,
            clock=rt.clock,
        ),
        "flash.operator_registered",
    )


@page(
    "/admin/operators/<operator_id>/credentials", permission=Permission.CREDENTIALS_ISSUE, methods=("POST",)
)
def admin_issue_credentials(operator_id: str) -> str:
    """New client credentials, shown on this response only (never put in a cookie or a redirect)."""
    rt = runtime()
    with transaction(rt.sessions) as session:
        credential, secret = operators.issue_credentials(
            session, operator_id, actor=user().actor, request_id=g.request_id, clock=rt.clock
        )
        operator = operators.get_operator(session, operator_id)
        return render_template(
            "admin/credentials.html", operator=operator, client_id=credential.client_id, secret=secret
        )


@page(
    "/admin/operators/<operator_id>/credentials/<client_id>/revoke",
    permission=Permission.CREDENTIALS_ISSUE,
    methods=("POST",),
)
def admin_revoke_credentials(operator_id: str, client_id: str) -> Response:
    """Revoke one client id, with a reason: it gets no more tokens."""
    return _change(
        lambda session, rt: operators.revoke_credentials(
            session,
            operator_id,
            client_id,
            reason=request.form.get("reason", "").strip(),
            actor=user().actor,
            request_id=g.request_id,
            clock=rt.clock,
        ),
        "flash.credentials_revoked",
    )


def _set_status(operator_id: str, status: OperatorStatus, message: str) -> Response:
    return _change(
        lambda session, rt: operators.set_status(
            session,
            operator_id,
            status,
            reason=request.form.get("reason", ""),
            actor=user().actor,
            request_id=g.request_id,
            clock=rt.clock,
        ),
        message,
    )


@page("/admin/operators/<operator_id>/suspend", permission=Permission.OPERATORS_SUSPEND, methods=("POST",))
def admin_suspend(operator_id: str) -> Response:
    """Suspend: the operator's next request (API or console) is refused."""
    return _set_status(operator_id, OperatorStatus.SUSPENDED, "flash.operator_suspended")


@page("/admin/operators/<operator_id>/reinstate", permission=Permission.OPERATORS_SUSPEND, methods=("POST",))
def admin_reinstate(operator_id: str) -> Response:
    """Reinstate a suspended operator."""
    return _set_status(operator_id, OperatorStatus.ACTIVE, "flash.operator_reinstated")


@page("/admin/accounts", permission=Permission.USERS_MANAGE, methods=("POST",))
def admin_create_account() -> Response:
    """A staff or subject account; the service lists every problem."""
    try:
        role = Role(request.form.get("role", ""))
    except ValueError:
        problem = Invalid("no such role", details=[{"field": "role", "message": "unknown"}])
        return refused(problem, "web.admin_home")
    return _change(
        lambda session, rt: create_account(
            session,
            username=request.form.get("username", "").strip(),
            role=role,
            password=request.form.get("password", ""),
            subject_id=request.form.get("subject_id", "").strip() or None,
            actor=user().actor,
            clock=rt.clock,
        ),
        "flash.account_created",
    )


@page("/admin/codes", permission=Permission.CODES_MANAGE, methods=("POST",))
def admin_accept_code() -> Response:
    """Accept a real credit code whose check character does not conform (see core.accepted_codes)."""
    return _change(
        lambda session, rt: accepted_codes.accept_code(
            session,
            code=request.form.get("code", "").strip(),
            reason=request.form.get("reason", ""),
            actor=user().actor,
            request_id=g.request_id,
            clock=rt.clock,
        ),
        "flash.code_accepted",
    )


@page("/admin/codes/<code_id>/withdraw", permission=Permission.CODES_MANAGE, methods=("POST",))
def admin_withdraw_code(code_id: str) -> Response:
    """Withdraw an acceptance, with a reason: the code is refused as mistyped again."""
    return _change(
        lambda session, rt: accepted_codes.withdraw_code(
            session,
            code_id,
            reason=request.form.get("reason", ""),
            actor=user().actor,
            request_id=g.request_id,
            clock=rt.clock,
        ),
        "flash.code_withdrawn",
    )


@page("/admin/keys/rotate", permission=Permission.KEYS_MANAGE, methods=("POST",))
def admin_rotate_key() -> Response:
    """A new active signing key; the old one stays published so what it signed still verifies."""
    console_service.rotate_key(runtime(), actor=user().actor, request_id=g.request_id)
    # This process verifies tokens with a cached key list; let it see the new key at once.
    current_app.extensions["sandbox.keys"].clear()
    return done("flash.key_rotated", "web.admin_home")
