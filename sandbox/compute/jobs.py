"""Compute jobs as operators see them: queued after every check, then read back as they progress.

``queue_job`` makes every check a job's start will make again (:mod:`sandbox.compute.checks`),
looking at the quota and budget without spending them, so a job that could not run is refused at
once with the right code instead of queued to be denied later. Workers run what is queued
(:mod:`sandbox.compute.worker`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import Actor, AuditAction, Outcome, Target, record_event
from authz import consent
from authz.errors import ConsentRequired
from core.clock import rfc3339
from core.db import transaction
from core.errors import NotFound
from core.ids import time_ordered_id
from sandbox.compute.checks import Charge, JobRequest, consent_entry, plan_job
from sandbox.compute.models import ComputeJob, JobStatus
from sandbox.compute.queue import TARGET
from sandbox.engine.models import SealedResult
from sandbox.runtime import Runtime

NOT_FOUND_MESSAGE = "no such job"
MAX_LISTED = 200


def queue_job(
    runtime: Runtime, request: JobRequest, *, operator_id: str, actor: Actor, request_id: str | None
) -> ComputeJob:
    """Check and queue a job; the first refusal is raised (a consent refusal is shown to the subject)."""
    job_id = time_ordered_id()
    try:
        with transaction(runtime.sessions) as session:
            return _queue(session, runtime, request, job_id, operator_id, actor, request_id)
    except ConsentRequired:
        _record_refused_access(runtime, request, job_id, operator_id)
        raise


def _queue(
    session: Session,
    runtime: Runtime,
    request: JobRequest,
    job_id: str,
    operator_id: str,
    actor: Actor,
    request_id: str | None,
) -> ComputeJob:
    now = runtime.clock()
    plan = plan_job(session, runtime.catalog, request, operator_id=operator_id, now=now, charge=Charge.LOOK)
    job = ComputeJob(
        id=job_id,
        operator_id=operator_id,
        program_id=plan.program.id,
        authorization_id=plan.contract.id,
        program_sha256=plan.compiled.sha256,
        params=plan.params,
        release=plan.release.value,
        epsilon=plan.epsilon,
        partitions=plan.partitions,
        subject=plan.subject,
        consent_id=request.consent_id,
        status=JobStatus.QUEUED.value,
        progress=0.0,
        attempts=0,
        charged=False,
        epsilon_spent=0.0,
        request_id=request_id,
        queued_at=now,
    )
    session.add(job)
    session.flush()
    record_event(
        session,
        action=AuditAction.JOB_QUEUE,
        actor=actor,
        target=Target(TARGET, job.id),
        request_id=request_id,
        # As for verifications, the subject's id stays out of the permanent log; the job id links
        # this event to the subject's access record.
        details={
            "authorization_id": job.authorization_id,
            "program_id": job.program_id,
            "program_sha256": job.program_sha256,
            "release": job.release,
            "epsilon": job.epsilon,
            "partitions": job.partitions,
            "subject_scoped": job.subject is not None,
            "params": job.params,
        },
        clock=runtime.clock,
    )
    return job


def _record_refused_access(runtime: Runtime, request: JobRequest, job_id: str, operator_id: str) -> None:
    """Show the subject a job refused for lack of its consent (the checks before consent passed)."""
    if request.subject is None:
        return
    with transaction(runtime.sessions) as session:
        consent.record_access(
            session,
            subject_id=request.subject,
            operator_id=operator_id,
            template=consent_entry(request.program_id),
            authorization_id=request.authorization_id,
            job_id=job_id,
            outcome=Outcome.DENIED,
            clock=runtime.clock,
        )


def get_job(session: Session, job_id: str, *, operator_id: str | None) -> ComputeJob:
    """The job; with ``operator_id``, only that operator's (another's reads as missing)."""
    job = session.get(ComputeJob, job_id)
    if job is None or (operator_id is not None and job.operator_id != operator_id):
        raise NotFound(NOT_FOUND_MESSAGE)
    return job


def list_jobs(
    session: Session, *, operator_id: str | None, status: str | None, program_id: str | None
) -> list[ComputeJob]:
    """Jobs, newest first, of one operator or all, optionally by status and program."""
    query = select(ComputeJob).order_by(ComputeJob.queued_at.desc(), ComputeJob.id).limit(MAX_LISTED)
    if operator_id is not None:
        query = query.where(ComputeJob.operator_id == operator_id)
    if status is not None:
        query = query.where(ComputeJob.status == JobStatus(status).value)
    if program_id is not None:
        query = query.where(ComputeJob.program_id == program_id)
    return list(session.execute(query).scalars())


def _time(value: Any) -> str | None:
    return rfc3339(value) if value is not None else None


# How a run that failed is told in words, by its code: from the class, line and problem the job
# records (none of them the program's own text), so the error reads like the API's other errors.
_ENDINGS = {
    "program_failed": "the program failed",
    "program_timed_out": "the program ran past its time limit",
    "program_killed": "the program was stopped at a resource limit",
    "worker_lost": "the worker running the job was lost",
}


def error_view(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """A job's error with a ``message``, as every error of the API has (a denial has one already;
    a failed run is told from its class, line and problem)."""
    if error is None or "message" in error:
        return error
    words = _ENDINGS.get(str(error.get("code")), "the job failed")
    where = [str(error["class"])] if error.get("class") else []
    if error.get("line") is not None:
        where.append(f"line {error['line']}")
    if where:
        words += f" ({', '.join(where)})"
    if error.get("problem"):
        words += f": {error['problem']}"
    return {**error, "message": words}


def job_view(session: Session, job: ComputeJob, *, staff: bool) -> dict[str, Any]:
    """The job as the API shows it; staff also see its record (every run and its isolation)."""
    sealed = session.get(SealedResult, job.id) if job.status == JobStatus.SUCCEEDED.value else None
    record = job.record or {}
    view: dict[str, Any] = {
        "id": job.id,
        "job_id": job.id,
        "program_id": job.program_id,
        "program_sha256": job.program_sha256,
        "authorization_id": job.authorization_id,
        "status": job.status,
        "progress": round(job.progress, 4),
        "release": job.release,
        "epsilon": job.epsilon,
        "epsilon_spent": job.epsilon_spent,
        "partitions": job.partitions,
        "params": job.params,
        "subject": job.subject,
        "attempts": job.attempts,
        "queued_at": _time(job.queued_at),
        "started_at": _time(job.started_at),
        "finished_at": _time(job.finished_at),
        "result": job.result if job.status == JobStatus.SUCCEEDED.value else None,
        "error": error_view(job.error),
        "network_isolation": record.get("network_isolation"),
        "issued_at": _time(sealed.issued_at) if sealed else None,
        "audit_seq": sealed.audit_seq if sealed else None,
        "seal": sealed.seal if sealed else None,
    }
    if staff:
        view["record"] = job.record
        view["worker"] = job.worker
    return view
