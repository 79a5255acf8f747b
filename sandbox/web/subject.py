"""The subject's page: consents with revoke buttons, a grant form, and every check made about it."""

from __future__ import annotations

from flask import Response, g, render_template, request

from authz import consent
from authz.permissions import Permission
from core.db import transaction
from core.errors import Invalid, SandboxError
from sandbox.services import console as console_service
from sandbox.web.console import done, page, refused, runtime, user, whole_number


def _subject_id() -> str:
    subject_id = user().subject_id
    if not subject_id:
        raise Invalid("this account names no subject")
    return subject_id


@page("/me", permission=Permission.CONSENTS_MANAGE)
def subject_home() -> str:
    """Consents granted (revocable while in force) and the checks made about me, newest first."""
    rt = runtime()
    subject_id = _subject_id()
    before_raw = request.args.get("before", "")
    before = whole_number(before_raw, 17)
    with rt.sessions() as session:
        consents = consent.list_consents(session, subject_id)
        accesses = consent.list_accesses(session, subject_id, limit=50, before=before)
        names = console_service.operator_names(session)
    return render_template(
        "subject/home.html",
        subject_id=subject_id,
        consents=consents,
        accesses=accesses,
        next_before=accesses[-1].id if len(accesses) == 50 else None,
        names=names,
        templates=sorted(rt.catalog.templates.values(), key=lambda tpl: tpl.name),
        now=rt.clock(),
    )


@page("/me/consents", permission=Permission.CONSENTS_MANAGE, methods=("POST",))
def subject_grant() -> Response:
    """Grant an operator consent for named checks; the service lists every problem."""
    rt = runtime()
    raw_days = request.form.get("valid_days", "").strip()
    days = whole_number(raw_days, 5)
    try:
        with transaction(rt.sessions) as session:
            consent.grant_consent(
                session,
                rt.catalog,
                subject_id=_subject_id(),
                operator_id=request.form.get("operator_id", ""),
                purpose=request.form.get("purpose", ""),
                templates=request.form.getlist("templates"),
                valid_days=days if days is not None else raw_days,
                actor=user().actor,
                request_id=g.request_id,
                clock=rt.clock,
            )
    except SandboxError as exc:
        return refused(exc, "web.subject_home")
    return done("flash.consent_granted", "web.subject_home")


@page("/me/consents/<consent_id>/revoke", permission=Permission.CONSENTS_MANAGE, methods=("POST",))
def subject_revoke(consent_id: str) -> Response:
    """Revoke my consent; checks that need it are refused from now on."""
    rt = runtime()
    try:
        with transaction(rt.sessions) as session:
            consent.revoke_consent(
                session,
                consent_id,
                subject_id=_subject_id(),
                actor=user().actor,
                request_id=g.request_id,
                clock=rt.clock,
            )
    except SandboxError as exc:
        return refused(exc, "web.subject_home")
    return done("flash.consent_revoked", "web.subject_home")
