"""Verification and aggregate jobs: parse, call the engine, return the sealed answer."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify
from pydantic import BaseModel, ConfigDict, Field

from authz.permissions import Permission
from sandbox.api.auth import keeps_request_connection, principal, request_connection
from sandbox.api.parsing import parse_body
from sandbox.api.registry import route
from sandbox.engine.aggregate import AggregateRequest, run_aggregate
from sandbox.engine.verify import VerificationRequest, run_verification
from sandbox.runtime import Runtime

bp = Blueprint("jobs", __name__, url_prefix="/v1")

Ident = Field(min_length=1, max_length=64)


class VerifyIn(BaseModel):
    """A verification: a template about one subject, under an authorization."""

    model_config = ConfigDict(extra="forbid", strict=True)
    authorization_id: str = Ident
    template: str = Ident
    subject: str = Ident
    params: dict[str, Any] = Field(default_factory=dict, max_length=32)
    consent_id: str | None = Field(default=None, min_length=1, max_length=64)


class VerifyOut(BaseModel):
    """A sealed verification answer: a boolean or a band, never the value."""

    result: bool | str
    template: str
    subject: str
    params: dict[str, Any]
    authorization_id: str
    job_id: str
    issued_at: str
    audit_seq: int
    seal: str


@route(
    bp,
    "/verify",
    methods=("POST",),
    permission=Permission.VERIFY_RUN,
    body=VerifyIn,
    response=VerifyOut,
    summary="Run a verification template about one subject; the answer is sealed",
)
@keeps_request_connection
def verify() -> Response:
    """200 with the sealed answer; 403 out_of_scope / consent_required, 429 quota_exceeded."""
    body = parse_body(VerifyIn)
    runtime: Runtime = current_app.extensions["sandbox"]
    caller = principal()
    answer = run_verification(
        runtime,
        VerificationRequest(
            authorization_id=body.authorization_id,
            template=body.template,
            subject=body.subject,
            params=body.params,
            consent_id=body.consent_id,
        ),
        operator_id=caller.id,
        actor=caller.actor,
        request_id=g.request_id,
        operator_name=caller.name,
        conn=request_connection(runtime),
    )
    return jsonify(answer.as_json())


class AggregateIn(BaseModel):
    """An aggregate: metrics, optional group-by fields and filters, and the ε to spend.

    Bounds, seeds and noise parameters are not the client's to give: any key beyond these is refused.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    authorization_id: str = Ident
    dataset: str = Ident
    metrics: list[Any] = Field(min_length=1, max_length=10)
    group_by: list[Any] = Field(default_factory=list, max_length=3)
    filters: list[Any] = Field(default_factory=list, max_length=20)
    epsilon: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class AggregateOut(BaseModel):
    """A sealed aggregate answer: noisy rows of the released groups."""

    dataset: str
    query: dict[str, Any]
    query_sha256: str
    rows: list[dict[str, Any]]
    suppressed_groups: int
    min_cell_size: int
    # What a released cell's noisy count had to pass beyond the minimum cell size (τ).
    noisy_count_margin: int | None = None
    # The most rows of one subject the query reads: every noise is this many times one row's.
    rows_per_subject: int | None = None
    # The answer's δ: the policy's delta_total times its share of the contract's ε.
    delta: float | None = None
    epsilon_spent: float
    epsilon_remaining: float
    charged: float
    cached: bool
    job_id: str
    authorization_id: str
    issued_at: str
    audit_seq: int
    seal: str


@route(
    bp,
    "/aggregate",
    methods=("POST",),
    permission=Permission.AGGREGATE_RUN,
    body=AggregateIn,
    response=AggregateOut,
    summary="Run a differentially private aggregate; the same query again returns the same answer",
)
def aggregate() -> Response:
    """200 with the sealed answer; 422 listing every problem, 429 budget_exhausted or quota_exceeded."""
    body = parse_body(AggregateIn)
    runtime: Runtime = current_app.extensions["sandbox"]
    caller = principal()
    spec = {
        "dataset": body.dataset,
        "metrics": body.metrics,
        "group_by": body.group_by,
        "filters": body.filters,
    }
    answer = run_aggregate(
        runtime,
        AggregateRequest(authorization_id=body.authorization_id, spec=spec, epsilon=body.epsilon),
        operator_id=caller.id,
        actor=caller.actor,
        request_id=g.request_id,
    )
    return jsonify(answer)
