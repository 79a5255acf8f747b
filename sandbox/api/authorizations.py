"""Authorization contracts: operators request, reviewers decide, everyone reads what they may."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from authz import contracts
from authz.contract_models import Authorization
from authz.permissions import Permission, allows
from authz.usage import usage
from core.clock import rfc3339
from core.db import transaction
from sandbox.api.auth import principal
from sandbox.api.parsing import parse_body, parse_query
from sandbox.api.registry import route
from sandbox.runtime import Runtime

bp = Blueprint("authorizations", __name__, url_prefix="/v1")


class ContractIn(BaseModel):
    """A request; the service checks the contents against policy and lists every problem."""

    model_config = ConfigDict(extra="forbid")
    purpose: Any
    datasets: Any
    operations: Any
    limits: Any
    consent_required: Any = None


class Decision(BaseModel):
    """A reviewer's approval, optionally tightening limits."""

    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(default=None, max_length=1000)
    limits: dict[str, Any] | None = None


class Reason(BaseModel):
    """Why a contract is rejected or revoked."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


class ContractOut(BaseModel):
    """A contract with its usage."""

    id: str
    operator_id: str
    purpose: str
    datasets: dict[str, list[str]]
    operations: list[str]
    limits: dict[str, Any]
    consent_required: bool
    status: str
    usage: dict[str, Any]


class ContractList(BaseModel):
    """Contracts, newest first."""

    authorizations: list[ContractOut]


class ListQuery(BaseModel):
    """Filter by effective status."""

    model_config = ConfigDict(extra="forbid")
    status: str | None = Field(default=None, pattern="^(pending|approved|rejected|revoked|expired)$")


def _time(value: Any) -> str | None:
    return rfc3339(value) if value is not None else None


def _out(runtime: Runtime, session: Any, contract: Authorization) -> dict[str, Any]:
    now = runtime.clock()
    return {
        "id": contract.id,
        "operator_id": contract.operator_id,
        "purpose": contract.purpose,
        "datasets": contract.datasets,
        "operations": contract.operations,
        "limits": contract.limits(),
        "consent_required": contract.consent_required,
        "status": contract.effective_status(now).value,
        "requested_at": _time(contract.requested_at),
        "decided_at": _time(contract.decided_at),
        "decision_comment": contract.decision_comment,
        "valid_from": _time(contract.valid_from),
        "valid_until": _time(contract.valid_until),
        "revoked_at": _time(contract.revoked_at),
        "revoke_reason": contract.revoke_reason,
        "usage": dict(usage(session, contract, now)),
    }


def _scope() -> str | None:
    """The operator whose contracts the caller may see; ``None`` for staff who see all."""
    caller = principal()
    return None if allows(caller.role, Permission.AUTHORIZATIONS_READ_ALL) else caller.id


@route(
    bp,
    "/authorizations",
    methods=("POST",),
    permission=Permission.AUTHORIZATIONS_REQUEST,
    body=ContractIn,
    response=ContractOut,
    status=201,
    summary="Request an authorization contract",
)
def request_contract() -> tuple[Response, int]:
    """201 pending; 422 listing every problem against policy."""
    body = parse_body(ContractIn)
    runtime: Runtime = current_app.extensions["sandbox"]
    with transaction(runtime.sessions) as session:
        contract = contracts.request_authorization(
            session,
            runtime.catalog,
            operator_id=principal().id,
            purpose=body.purpose,
            datasets=body.datasets,
            operations=body.operations,
            limits=body.limits,
            consent_required=body.consent_required,
            actor=principal().actor,
            request_id=g.request_id,
            clock=runtime.clock,
        )
        return jsonify(_out(runtime, session, contract)), 201


@route(
    bp,
    "/authorizations",
    permission=Permission.AUTHORIZATIONS_READ,
    query=ListQuery,
    response=ContractList,
    summary="Contracts: an operator's own, or all for staff",
)
def list_contracts() -> Response:
    """Newest first, optionally by effective status."""
    query = parse_query(ListQuery)
    runtime: Runtime = current_app.extensions["sandbox"]
    with runtime.sessions() as session:
        found = contracts.list_contracts(
            session, operator_id=_scope(), status=query.status, now=runtime.clock()
        )
        return jsonify({"authorizations": [_out(runtime, session, c) for c in found]})


@route(
    bp,
    "/authorizations/<contract_id>",
    permission=Permission.AUTHORIZATIONS_READ,
    response=ContractOut,
    summary="One contract with its usage (another operator's reads as missing)",
)
def get_contract(contract_id: str) -> Response:
    """404 for a missing contract and for another operator's, alike."""
    runtime: Runtime = current_app.extensions["sandbox"]
    with runtime.sessions() as session:
        contract = contracts.get_contract(session, contract_id, operator_id=_scope())
        return jsonify(_out(runtime, session, contract))


@route(
    bp,
    "/authorizations/<contract_id>/approve",
    methods=("POST",),
    permission=Permission.AUTHORIZATIONS_REVIEW,
    body=Decision,
    response=ContractOut,
    summary="Approve, optionally tightening limits",
)
def approve(contract_id: str) -> Response:
    """409 unless pending; 422 when the limits would loosen."""
    body = parse_body(Decision)
    return _decide(
        lambda session, runtime, common: contracts.approve(
            session,
            runtime.catalog,
            contract_id,
            reviewer_id=principal().id,
            comment=body.comment,
            limits=body.limits,
            **common,
        )
    )


@route(
    bp,
    "/authorizations/<contract_id>/reject",
    methods=("POST",),
    permission=Permission.AUTHORIZATIONS_REVIEW,
    body=Reason,
    response=ContractOut,
    summary="Reject a pending contract",
)
def reject(contract_id: str) -> Response:
    """409 unless pending."""
    body = parse_body(Reason)
    return _decide(
        lambda session, _runtime, common: contracts.reject(
            session, contract_id, reviewer_id=principal().id, reason=body.reason, **common
        )
    )


@route(
    bp,
    "/authorizations/<contract_id>/revoke",
    methods=("POST",),
    permission=Permission.AUTHORIZATIONS_REVIEW,
    body=Reason,
    response=ContractOut,
    summary="Revoke an approved contract; its next job is refused",
)
def revoke(contract_id: str) -> Response:
    """409 unless approved."""
    body = parse_body(Reason)
    return _decide(
        lambda session, _runtime, common: contracts.revoke(session, contract_id, reason=body.reason, **common)
    )


Decide = Callable[[Session, Runtime, dict[str, Any]], Authorization]


def _decide(decision: Decide) -> Response:
    """Run a reviewer's decision in one transaction (with its audit event) and show the result."""
    runtime: Runtime = current_app.extensions["sandbox"]
    common = {"actor": principal().actor, "request_id": g.request_id, "clock": runtime.clock}
    with transaction(runtime.sessions) as session:
        contract = decision(session, runtime, common)
        return jsonify(_out(runtime, session, contract))
