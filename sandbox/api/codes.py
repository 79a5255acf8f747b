"""Credit codes the bureau accepts though they do not conform to GB 32100 (see core.accepted_codes)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify
from pydantic import BaseModel, ConfigDict, Field

from authz import accepted_codes as services
from authz.permissions import Permission
from core.accepted_codes import MAX_REASON, AcceptedCode
from core.clock import rfc3339
from core.db import transaction
from sandbox.api.auth import principal
from sandbox.api.operators import NoQuery, Reason
from sandbox.api.parsing import parse_body, parse_query
from sandbox.api.registry import route

bp = Blueprint("codes", __name__, url_prefix="/v1")


class AcceptedCodeIn(BaseModel):
    """A code to accept: 18 characters, shaped as a credit code, a check character wrong."""

    model_config = ConfigDict(extra="forbid", strict=True)
    code: str = Field(max_length=64)  # the service says what is wrong with a code, in its words
    reason: str = Field(min_length=1, max_length=MAX_REASON)


class AcceptedCodeOut(BaseModel):
    """An accepted code; ``withdrawn_at`` is set once the acceptance is withdrawn."""

    id: str
    code: str
    reason: str
    accepted_by: str
    accepted_at: str
    withdrawn_at: str | None
    withdrawn_by: str | None
    withdraw_reason: str | None


class AcceptedCodeList(BaseModel):
    """Every accepted code, withdrawn ones too, the newest acceptance first."""

    codes: list[AcceptedCodeOut]


def _out(row: AcceptedCode) -> dict[str, str | None]:
    return {
        "id": row.id,
        "code": row.code,
        "reason": row.reason,
        "accepted_by": row.accepted_by,
        "accepted_at": rfc3339(row.accepted_at),
        "withdrawn_at": rfc3339(row.withdrawn_at) if row.withdrawn_at else None,
        "withdrawn_by": row.withdrawn_by,
        "withdraw_reason": row.withdraw_reason,
    }


@route(
    bp,
    "/accepted-codes",
    methods=("POST",),
    permission=Permission.CODES_MANAGE,
    body=AcceptedCodeIn,
    response=AcceptedCodeOut,
    status=201,
    summary="Accept a real credit code whose check characters do not conform to GB 32100",
)
def accept() -> tuple[Response, int]:
    """201; 422 when the code conforms already or is no credit code, 409 when accepted already."""
    body = parse_body(AcceptedCodeIn)
    runtime = current_app.extensions["sandbox"]
    with transaction(runtime.sessions) as session:
        row = services.accept_code(
            session,
            code=body.code,
            reason=body.reason,
            actor=principal().actor,
            request_id=g.request_id,
            clock=runtime.clock,
        )
        return jsonify(_out(row)), 201


@route(
    bp,
    "/accepted-codes",
    permission=Permission.CODES_READ,
    query=NoQuery,
    response=AcceptedCodeList,
    summary="The credit codes accepted though they do not conform, withdrawn ones too",
)
def list_all() -> Response:
    """The newest acceptance first."""
    parse_query(NoQuery)
    with current_app.extensions["sandbox"].sessions() as session:
        return jsonify({"codes": [_out(row) for row in services.list_codes(session)]})


@route(
    bp,
    "/accepted-codes/<code_id>/withdraw",
    methods=("POST",),
    permission=Permission.CODES_MANAGE,
    body=Reason,
    response=AcceptedCodeOut,
    summary="Withdraw an acceptance: the code is refused as mistyped again",
)
def withdraw(code_id: str) -> Response:
    """404 when there is no such accepted code, 409 when it is withdrawn already."""
    body = parse_body(Reason)
    runtime = current_app.extensions["sandbox"]
    with transaction(runtime.sessions) as session:
        row = services.withdraw_code(
            session,
            code_id,
            reason=body.reason,
            actor=principal().actor,
            request_id=g.request_id,
            clock=runtime.clock,
        )
        return jsonify(_out(row))
