"""The job queue in the control database: claim, lease, and what happens when a worker is lost.

**Claim.** The oldest queued job is selected ``FOR UPDATE SKIP LOCKED`` (PostgreSQL: concurrent
workers on any number of hosts each skip the rows the others are claiming instead of waiting on
them), then moved to ``running`` by a conditional ``UPDATE … WHERE status = 'queued'`` with a
fresh claim token. On SQLite the ``FOR UPDATE`` is not rendered; there every transaction takes the
write lock at ``BEGIN IMMEDIATE`` (``core.db``), so claims run one at a time, and the conditional
update is what guarantees one winner on either backend.

**Lease.** A running job carries ``lease_expires_at``; its worker extends it while it runs
(:func:`touch`, every few seconds and on every bit of progress). Every write a worker makes to its
job is conditional on its claim token, so a worker whose lease was taken over can no longer change
the job, and its result is thrown away, never released.

**A lost worker** (the lease expired: the process or its host died) is decided by
:func:`reap_expired`, which every worker runs before it claims. The job goes back to the queue
(``job.requeue``), up to ``MAX_ATTEMPTS`` starts in all, and is then failed with ``WorkerLost``:
re-queueing keeps a job alive across a restart or a lost host, and the cap keeps a job that
brings its worker down every time from doing so for ever. A worker asked to stop in the middle of a
private release gives its job back the same way at once (:func:`give_back`). A re-queued job is
not charged again: its call and ε were spent at its first start and nothing of it was released.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from audit import Actor, ActorKind, AuditAction, Outcome, Target, record_event
from core.clock import Clock
from core.db import transaction
from sandbox.compute.models import ComputeJob, JobStatus
from sandbox.runtime import Runtime

LEASE_SECONDS = 60.0
MAX_ATTEMPTS = 3
REAP_BATCH = 50
TARGET = "compute"  # the audit target type of a job (the seal's event uses the same)


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one running job."""

    job_id: str
    token: str
    worker: str
    attempt: int


def job_actor(job: ComputeJob) -> Actor:
    """A job's events are the operator's, as its verifications are (so it may prove them)."""
    return Actor(ActorKind.OPERATOR, job.operator_id)


def record_job_event(
    session: Session,
    job: ComputeJob,
    action: AuditAction,
    *,
    details: dict[str, Any],
    clock: Clock,
    outcome: Outcome = Outcome.SUCCESS,
    error_code: str | None = None,
) -> None:
    """One of a job's own events after it was queued: the operator's, about the job, under the
    request that queued it."""
    record_event(
        session,
        action=action,
        actor=job_actor(job),
        outcome=outcome,
        target=Target(TARGET, job.id),
        request_id=job.request_id,
        error_code=error_code,
        details=details,
        clock=clock,
    )


def claim_next(runtime: Runtime, *, worker: str, lease_seconds: float = LEASE_SECONDS) -> Claim | None:
    """Move the oldest queued job to ``running`` for ``worker``; ``None`` when the queue is empty."""
    with transaction(runtime.sessions) as session:
        now = runtime.clock()
        found = session.execute(
            select(ComputeJob.id, ComputeJob.attempts)
            .where(ComputeJob.status == JobStatus.QUEUED.value)
            .order_by(ComputeJob.queued_at, ComputeJob.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if found is None:
            return None
        token = str(uuid.uuid4())
        result = session.execute(
            update(ComputeJob)
            .where(ComputeJob.id == found.id, ComputeJob.status == JobStatus.QUEUED.value)
            .values(
                status=JobStatus.RUNNING.value,
                claim_token=token,
                worker=worker[:200],
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                started_at=now,
                attempts=ComputeJob.attempts + 1,
                progress=0.0,
            )
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], result).rowcount != 1:
            return None  # another worker's claim committed first
        return Claim(job_id=found.id, token=token, worker=worker, attempt=found.attempts + 1)


def owned(session: Session, claim: Claim) -> ComputeJob | None:
    """The job, locked, if ``claim`` still holds it; ``None`` once the lease was taken over."""
    return session.execute(
        select(ComputeJob)
        .where(
            ComputeJob.id == claim.job_id,
            ComputeJob.claim_token == claim.token,
            ComputeJob.status == JobStatus.RUNNING.value,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def touch(
    runtime: Runtime, claim: Claim, *, progress: float | None = None, lease_seconds: float = LEASE_SECONDS
) -> bool:
    """Extend the lease (and record progress); ``False`` if the claim no longer holds the job."""
    values: dict[str, Any] = {"lease_expires_at": runtime.clock() + timedelta(seconds=lease_seconds)}
    if progress is not None:
        values["progress"] = min(max(progress, 0.0), 1.0)
    with transaction(runtime.sessions) as session:
        result = session.execute(
            update(ComputeJob)
            .where(
                ComputeJob.id == claim.job_id,
                ComputeJob.claim_token == claim.token,
                ComputeJob.status == JobStatus.RUNNING.value,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount == 1


def reap_expired(runtime: Runtime, *, now: datetime | None = None) -> list[str]:
    """Re-queue (or, past ``MAX_ATTEMPTS``, fail) running jobs whose lease has expired."""
    with transaction(runtime.sessions) as session:
        moment = now or runtime.clock()
        expired = session.execute(
            select(ComputeJob)
            .where(ComputeJob.status == JobStatus.RUNNING.value, ComputeJob.lease_expires_at < moment)
            .order_by(ComputeJob.lease_expires_at)
            .limit(REAP_BATCH)
            .with_for_update(skip_locked=True)
        ).scalars()
        reaped = []
        for job in expired:
            _reap(session, job, moment, runtime)
            reaped.append(job.id)
        return reaped


def give_back(runtime: Runtime, claim: Claim) -> bool:
    """Re-queue a job its worker is stopping in the middle of (nothing of it released), as a lost
    lease would but at once; ``False`` if the claim no longer held it."""
    with transaction(runtime.sessions) as session:
        job = owned(session, claim)
        if job is None:
            return False
        _reap(session, job, runtime.clock(), runtime, reason="worker stopped")
        return True


def _reap(
    session: Session, job: ComputeJob, now: datetime, runtime: Runtime, *, reason: str = "lease expired"
) -> None:
    lost = {"worker": job.worker, "attempt": job.attempts}
    job.claim_token = job.worker = job.lease_expires_at = None
    if job.attempts < MAX_ATTEMPTS:
        job.status = JobStatus.QUEUED.value
        job.progress = 0.0
        action, outcome, code = AuditAction.JOB_REQUEUE, Outcome.SUCCESS, None
    else:
        job.status = JobStatus.FAILED.value
        job.finished_at = now
        job.error = {"code": "worker_lost", "class": "WorkerLost", "line": None, "problem": None}
        action, outcome, code = AuditAction.JOB_FINISH, Outcome.FAILED, "worker_lost"
    session.flush()
    record_job_event(
        session,
        job,
        action,
        outcome=outcome,
        error_code=code,
        details={"authorization_id": job.authorization_id, "reason": reason, **lost},
        clock=runtime.clock,
    )
