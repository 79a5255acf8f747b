"""Compute: operators submit programs and queue jobs, reviewers decide, everyone reads what they may."""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response, current_app, g, jsonify
from pydantic import BaseModel, ConfigDict, Field

from authz.permissions import Permission, allows
from core.db import transaction
from sandbox.api.auth import principal
from sandbox.api.parsing import parse_body, parse_query
from sandbox.api.registry import route
from sandbox.compute import jobs, programs
from sandbox.compute.checks import JobRequest
from sandbox.runtime import Runtime

bp = Blueprint("compute", __name__, url_prefix="/v1")

Ident = Field(min_length=1, max_length=64)


class ProgramIn(BaseModel):
    """A RestrictedPython program, submitted under a contract that grants ``compute``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    authorization_id: str = Ident
    name: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=programs.MAX_SOURCE_BYTES)


class ProgramApproval(BaseModel):
    """A reviewer's approval; ``allow_exact_release`` lets jobs of this program release exactly."""

    model_config = ConfigDict(extra="forbid", strict=True)
    comment: str | None = Field(default=None, max_length=1000)
    allow_exact_release: bool = False


class ProgramRejection(BaseModel):
    """Why a program is rejected."""

    model_config = ConfigDict(extra="forbid", strict=True)
    comment: str = Field(min_length=1, max_length=1000)


class ProgramOut(BaseModel):
    """A program, its analysis for the reviewer, and the decision."""

    id: str
    authorization_id: str
    name: str
    sha256: str
    status: str
    exact_release_allowed: bool
    analysis: dict[str, Any]
    source: str


class ProgramList(BaseModel):
    """Programs, newest first (without their source)."""

    programs: list[dict[str, Any]]


class ProgramQuery(BaseModel):
    """Filter by status."""

    model_config = ConfigDict(extra="forbid")
    status: str | None = Field(default=None, pattern="^(pending_review|approved|rejected)$")


class JobIn(BaseModel):
    """A job: an approved program, its contract, parameters, and how its result is released.

    ``release`` is ``private`` (the default: differentially private, ε charged), ``exact`` (only
    for programs a reviewer allowed) or ``mock`` (exact, over mock rows: to see the program's
    output and failures, which a private release hides; a call, no ε); with ``subject``, the
    program sees only that subject's rows and the subject's consent (``compute:<program id>``) is
    required.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    program_id: str = Ident
    authorization_id: str = Ident
    params: dict[str, Any] = Field(default_factory=dict, max_length=32)
    release: Literal["private", "exact", "mock"] | None = None
    epsilon: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    partitions: int | None = Field(default=None, ge=2, le=100)
    subject: str | None = Field(default=None, min_length=1, max_length=64)
    consent_id: str | None = Field(default=None, min_length=1, max_length=64)


class JobOut(BaseModel):
    """A job: status, progress, and once it ended its sealed result or its error (class and line)."""

    job_id: str
    status: str
    progress: float
    release: str
    result: Any | None = None
    seal: str | None = None
    audit_seq: int | None = None
    error: dict[str, Any] | None = None


class JobList(BaseModel):
    """Jobs, newest first."""

    jobs: list[JobOut]


class JobQuery(BaseModel):
    """Filter by status or program."""

    model_config = ConfigDict(extra="forbid")
    status: str | None = Field(default=None, pattern="^(queued|running|succeeded|failed|denied)$")
    program_id: str | None = Field(default=None, max_length=64)


def _runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["sandbox"]
    return runtime


def _scope(read_all: Permission) -> str | None:
    """The operator whose objects the caller may see; ``None`` for staff who see all."""
    caller = principal()
    return None if allows(caller.role, read_all) else caller.id


def _common() -> dict[str, Any]:
    return {"actor": principal().actor, "request_id": g.request_id, "clock": _runtime().clock}


@route(
    bp,
    "/programs",
    methods=("POST",),
    permission=Permission.PROGRAMS_SUBMIT,
    body=ProgramIn,
    response=ProgramOut,
    status=201,
    summary="Submit a program: compiled at once (422 with line numbers), hashed, analysed for review",
)
def submit_program() -> tuple[Response, int]:
    """201 pending_review; 422 listing every problem with its line."""
    body = parse_body(ProgramIn)
    runtime = _runtime()
    with transaction(runtime.sessions) as session:
        program = programs.submit_program(
            session,
            runtime.catalog,
            operator_id=principal().id,
            authorization_id=body.authorization_id,
            name=body.name,
            source=body.source,
            **_common(),
        )
        return jsonify(programs.program_view(program)), 201


@route(
    bp,
    "/programs",
    permission=Permission.PROGRAMS_READ,
    query=ProgramQuery,
    response=ProgramList,
    summary="Programs: an operator's own, or all for staff (?status=pending_review: the review queue)",
)
def list_programs() -> Response:
    """Newest first, optionally by status."""
    query = parse_query(ProgramQuery)
    with _runtime().sessions() as session:
        found = programs.list_programs(
            session, operator_id=_scope(Permission.PROGRAMS_READ_ALL), status=query.status
        )
        return jsonify({"programs": [programs.program_view(p, with_source=False) for p in found]})


@route(
    bp,
    "/programs/<program_id>",
    permission=Permission.PROGRAMS_READ,
    response=ProgramOut,
    summary="One program with its source and analysis (another operator's reads as missing)",
)
def get_program(program_id: str) -> Response:
    """404 for a missing program and for another operator's, alike."""
    with _runtime().sessions() as session:
        program = programs.get_program(session, program_id, operator_id=_scope(Permission.PROGRAMS_READ_ALL))
        return jsonify(programs.program_view(program))


@route(
    bp,
    "/programs/<program_id>/approve",
    methods=("POST",),
    permission=Permission.PROGRAMS_REVIEW,
    body=ProgramApproval,
    response=ProgramOut,
    summary="Approve a program, pinning its sha256; optionally allow exact release",
)
def approve_program(program_id: str) -> Response:
    """409 unless pending review."""
    body = parse_body(ProgramApproval)
    runtime = _runtime()
    with transaction(runtime.sessions) as session:
        program = programs.approve_program(
            session,
            program_id,
            reviewer_id=principal().id,
            comment=body.comment,
            allow_exact_release=body.allow_exact_release,
            **_common(),
        )
        return jsonify(programs.program_view(program))


@route(
    bp,
    "/programs/<program_id>/reject",
    methods=("POST",),
    permission=Permission.PROGRAMS_REVIEW,
    body=ProgramRejection,
    response=ProgramOut,
    summary="Reject a program, with a comment",
)
def reject_program(program_id: str) -> Response:
    """409 unless pending review."""
    body = parse_body(ProgramRejection)
    runtime = _runtime()
    with transaction(runtime.sessions) as session:
        program = programs.reject_program(
            session, program_id, reviewer_id=principal().id, comment=body.comment, **_common()
        )
        return jsonify(programs.program_view(program))


@route(
    bp,
    "/jobs",
    methods=("POST",),
    permission=Permission.JOBS_RUN,
    body=JobIn,
    response=JobOut,
    status=202,
    summary="Queue a job of an approved program; every check is made again when a worker starts it",
)
def queue_job() -> tuple[Response, int]:
    """202 queued; 403/404/409/422/429 when a check refuses it now."""
    body = parse_body(JobIn)
    runtime = _runtime()
    job = jobs.queue_job(
        runtime,
        JobRequest(
            program_id=body.program_id,
            authorization_id=body.authorization_id,
            params=body.params,
            release=body.release,
            epsilon=body.epsilon,
            partitions=body.partitions,
            subject=body.subject,
            consent_id=body.consent_id,
        ),
        operator_id=principal().id,
        actor=principal().actor,
        request_id=g.request_id,
    )
    with runtime.sessions() as session:
        return jsonify(jobs.job_view(session, job, staff=False)), 202


@route(
    bp,
    "/jobs",
    permission=Permission.JOBS_READ,
    query=JobQuery,
    response=JobList,
    summary="Compute jobs: an operator's own, or all for staff",
)
def list_jobs() -> Response:
    """Newest first, optionally by status and program."""
    query = parse_query(JobQuery)
    operator_id = _scope(Permission.JOBS_READ_ALL)
    with _runtime().sessions() as session:
        found = jobs.list_jobs(
            session, operator_id=operator_id, status=query.status, program_id=query.program_id
        )
        return jsonify({"jobs": [jobs.job_view(session, job, staff=operator_id is None) for job in found]})


@route(
    bp,
    "/jobs/<job_id>",
    permission=Permission.JOBS_READ,
    response=JobOut,
    summary="One compute job: status, progress, sealed result or error (another operator's reads as missing)",
)
def get_job(job_id: str) -> Response:
    """404 for a missing job and for another operator's, alike; staff also see the job's record."""
    operator_id = _scope(Permission.JOBS_READ_ALL)
    with _runtime().sessions() as session:
        job = jobs.get_job(session, job_id, operator_id=operator_id)
        return jsonify(jobs.job_view(session, job, staff=operator_id is None))
