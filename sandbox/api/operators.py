"""Operator registry endpoints (admin registers and issues credentials; reviewers may suspend)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from flask import Blueprint, Response, current_app, g, jsonify
from pydantic import BaseModel, ConfigDict, Field

from authz.permissions import Permission
from core.clock import rfc3339
from core.db import transaction
from operators import services
from operators.models import Operator, OperatorCredential, OperatorStatus
from sandbox.api.auth import principal
from sandbox.api.parsing import parse_body, parse_query
from sandbox.api.registry import route

bp = Blueprint("operators", __name__, url_prefix="/v1")


class OperatorIn(BaseModel):
    """A licensed operator to register."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    credit_code: str = Field(min_length=18, max_length=18)
    license_no: str = Field(min_length=1, max_length=64)
    qualifications: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=services.MAX_QUALIFICATIONS
    )


class OperatorOut(BaseModel):
    """An operator as staff see it."""

    id: str
    name: str
    credit_code: str
    license_no: str
    qualifications: list[str]
    status: str
    status_reason: str | None
    created_at: str


class OperatorList(BaseModel):
    """Every operator."""

    operators: list[OperatorOut]


class Credentials(BaseModel):
    """A client id and its secret, shown once."""

    client_id: str
    client_secret: str


class CredentialOut(BaseModel):
    """A client id and when it was issued and revoked; its secret is never shown again."""

    client_id: str
    created_at: str
    revoked_at: str | None


class CredentialList(BaseModel):
    """The operator's client ids, oldest first, revoked ones too."""

    credentials: list[CredentialOut]


def _credential(credential: OperatorCredential) -> dict[str, str | None]:
    return {
        "client_id": credential.client_id,
        "created_at": rfc3339(credential.created_at),
        "revoked_at": rfc3339(credential.revoked_at) if credential.revoked_at else None,
    }


class Reason(BaseModel):
    """Why a status changes."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


def _out(operator: Operator) -> dict[str, object]:
    created: datetime = operator.created_at
    return {
        "id": operator.id,
        "name": operator.name,
        "credit_code": operator.credit_code,
        "license_no": operator.license_no,
        "qualifications": operator.qualifications,
        "status": operator.status,
        "status_reason": operator.status_reason,
        "created_at": rfc3339(created),
    }


@route(
    bp,
    "/operators",
    methods=("POST",),
    permission=Permission.OPERATORS_WRITE,
    body=OperatorIn,
    response=OperatorOut,
    status=201,
    summary="Register a licensed operator",
)
def register() -> tuple[Response, int]:
    """201 with the operator."""
    body = parse_body(OperatorIn)
    runtime = current_app.extensions["sandbox"]
    with transaction(runtime.sessions) as session:
        operator = services.register_operator(
            session,
            name=body.name,
            credit_code=body.credit_code,
            license_no=body.license_no,
            qualifications=body.qualifications,
            actor=principal().actor,
            request_id=g.request_id,
            clock=runtime.clock,
        )
        return jsonify(_out(operator)), 201


class NoQuery(BaseModel):
    """A list that takes no parameters (and refuses any it is given, rather than ignore them)."""

    model_config = ConfigDict(extra="forbid")


@route(
    bp,
    "/operators",
    permission=Permission.OPERATORS_READ,
    query=NoQuery,
    response=OperatorList,
    summary="All operators",
)
def list_all() -> Response:
    """Oldest first."""
    parse_query(NoQuery)
    with current_app.extensions["sandbox"].sessions() as session:
        return jsonify({"operators": [_out(o) for o in services.list_operators(session)]})


@route(
    bp,
    "/operators/<operator_id>",
    permission=Permission.OPERATORS_READ,
    response=OperatorOut,
    summary="One operator",
)
def get_one(operator_id: str) -> Response:
    """404 when there is none."""
    with current_app.extensions["sandbox"].sessions() as session:
        return jsonify(_out(services.get_operator(session, operator_id)))


@route(
    bp,
    "/operators/<operator_id>/credentials",
    methods=("POST",),
    permission=Permission.CREDENTIALS_ISSUE,
    response=Credentials,
    status=201,
    summary="New client credentials; the secret is shown once",
)
def credentials(operator_id: str) -> tuple[Response, int]:
    """The secret is stored only as an argon2 hash."""
    runtime = current_app.extensions["sandbox"]
    with transaction(runtime.sessions) as session:
        credential, secret = services.issue_credentials(
            session, operator_id, actor=principal().actor, request_id=g.request_id, clock=runtime.clock
        )
        return jsonify({"client_id": credential.client_id, "client_secret": secret}), 201


@route(
    bp,
    "/operators/<operator_id>/credentials",
    permission=Permission.CREDENTIALS_ISSUE,
    query=NoQuery,
    response=CredentialList,
    summary="The operator's client ids, revoked ones too; never a secret",
)
def list_credentials(operator_id: str) -> Response:
    """Oldest first; 404 when there is no such operator."""
    parse_query(NoQuery)
    with current_app.extensions["sandbox"].sessions() as session:
        found = services.list_credentials(session, operator_id)
        return jsonify({"credentials": [_credential(c) for c in found]})


@route(
    bp,
    "/operators/<operator_id>/credentials/<client_id>/revoke",
    methods=("POST",),
    permission=Permission.CREDENTIALS_ISSUE,
    body=Reason,
    response=CredentialOut,
    summary="Revoke a client id: it gets no more tokens (those it got expire within 15 minutes)",
)
def revoke_credentials(operator_id: str, client_id: str) -> Response:
    """404 when the operator has no such client id, 409 when it is revoked already."""
    body = parse_body(Reason)
    runtime = current_app.extensions["sandbox"]
    with transaction(runtime.sessions) as session:
        credential = services.revoke_credentials(
            session,
            operator_id,
            client_id,
            reason=body.reason,
            actor=principal().actor,
            request_id=g.request_id,
            clock=runtime.clock,
        )
        return jsonify(_credential(credential))


def _set_status(operator_id: str, status: OperatorStatus) -> Response:
    body = parse_body(Reason)
    runtime = current_app.extensions["sandbox"]
    with transaction(runtime.sessions) as session:
        operator = services.set_status(
            session,
            operator_id,
            status,
            reason=body.reason,
            actor=principal().actor,
            request_id=g.request_id,
            clock=runtime.clock,
        )
        return jsonify(_out(operator))


@route(
    bp,
    "/operators/<operator_id>/suspend",
    methods=("POST",),
    permission=Permission.OPERATORS_SUSPEND,
    body=Reason,
    response=OperatorOut,
    summary="Suspend: the operator's next request is refused",
)
def suspend(operator_id: str) -> Response:
    """409 if already suspended."""
    return _set_status(operator_id, OperatorStatus.SUSPENDED)


@route(
    bp,
    "/operators/<operator_id>/reinstate",
    methods=("POST",),
    permission=Permission.OPERATORS_SUSPEND,
    body=Reason,
    response=OperatorOut,
    summary="Reinstate a suspended operator",
)
def reinstate(operator_id: str) -> Response:
    """409 if already active."""
    return _set_status(operator_id, OperatorStatus.ACTIVE)
