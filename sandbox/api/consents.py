"""Consent, by the subjects the data is about: grant, revoke, and see every check made about you."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify
from pydantic import BaseModel, ConfigDict, Field

from authz import consent
from authz.permissions import Permission
from core.clock import rfc3339
from core.db import MAX_INTEGER_KEY, transaction
from core.errors import Invalid
from sandbox.api.auth import principal
from sandbox.api.parsing import parse_body, parse_query
from sandbox.api.registry import route
from sandbox.runtime import Runtime

bp = Blueprint("consents", __name__, url_prefix="/v1")


class ConsentIn(BaseModel):
    """A consent to one operator for named templates and a period; checked against the catalog."""

    model_config = ConfigDict(extra="forbid")
    operator_id: Any
    purpose: Any
    templates: Any
    valid_days: Any


class ConsentOut(BaseModel):
    """A consent."""

    id: str
    subject_id: str
    operator_id: str
    purpose: str
    templates: list[str]
    granted_at: str
    valid_until: str
    revoked_at: str | None


class AccessQuery(BaseModel):
    """A page of accesses: ``before`` is the last id already seen."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=50, ge=1, le=500)
    before: int | None = Field(default=None, ge=1, le=MAX_INTEGER_KEY)


class AccessList(BaseModel):
    """Checks made about the subject, newest first."""

    accesses: list[dict[str, Any]]
    next_before: int | None


def _subject_id() -> str:
    subject_id = principal().subject_id
    if not subject_id:
        raise Invalid(
            "this account names no subject",
            details=[{"field": "account", "message": "a subject account made without --subject-id"}],
        )
    return subject_id


def _out(item: consent.Consent) -> dict[str, Any]:
    return {
        "id": item.id,
        "subject_id": item.subject_id,
        "operator_id": item.operator_id,
        "purpose": item.purpose,
        "templates": item.templates,
        "granted_at": rfc3339(item.granted_at),
        "valid_until": rfc3339(item.valid_until),
        "revoked_at": rfc3339(item.revoked_at) if item.revoked_at else None,
    }


@route(
    bp,
    "/consents",
    methods=("POST",),
    permission=Permission.CONSENTS_MANAGE,
    body=ConsentIn,
    response=ConsentOut,
    status=201,
    summary="Grant an operator consent for named checks about me",
)
def grant() -> tuple[Response, int]:
    """201 with the consent; 422 listing every problem."""
    body = parse_body(ConsentIn)
    runtime: Runtime = current_app.extensions["sandbox"]
    with transaction(runtime.sessions) as session:
        item = consent.grant_consent(
            session,
            runtime.catalog,
            subject_id=_subject_id(),
            operator_id=body.operator_id,
            purpose=body.purpose,
            templates=body.templates,
            valid_days=body.valid_days,
            actor=principal().actor,
            request_id=g.request_id,
            clock=runtime.clock,
        )
        return jsonify(_out(item)), 201


@route(
    bp,
    "/consents/<consent_id>/revoke",
    methods=("POST",),
    permission=Permission.CONSENTS_MANAGE,
    response=ConsentOut,
    summary="Revoke my consent; checks that need it are refused from now on",
)
def revoke(consent_id: str) -> Response:
    """404 for another subject's consent; 409 when already revoked."""
    runtime: Runtime = current_app.extensions["sandbox"]
    with transaction(runtime.sessions) as session:
        item = consent.revoke_consent(
            session,
            consent_id,
            subject_id=_subject_id(),
            actor=principal().actor,
            request_id=g.request_id,
            clock=runtime.clock,
        )
        return jsonify(_out(item))


@route(
    bp,
    "/subjects/me/accesses",
    permission=Permission.ACCESSES_READ_OWN,
    query=AccessQuery,
    response=AccessList,
    summary="Every check made about me: when, by whom, which template, under which contract",
)
def accesses() -> Response:
    """Newest first, paged by id."""
    query = parse_query(AccessQuery)
    runtime: Runtime = current_app.extensions["sandbox"]
    with runtime.sessions() as session:
        found = consent.list_accesses(session, _subject_id(), limit=query.limit, before=query.before)
    items = [
        {
            "id": a.id,
            "accessed_at": rfc3339(a.accessed_at),
            "operator_id": a.operator_id,
            "operator_name": a.operator_name,
            "template": a.template,
            "authorization_id": a.authorization_id,
            "job_id": a.job_id,
            "outcome": a.outcome,
        }
        for a in found
    ]
    next_before = items[-1]["id"] if len(items) == query.limit else None
    return jsonify({"accesses": items, "next_before": next_before})
