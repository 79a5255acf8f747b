"""Running one claimed job: start (every check again, then charge), read the data, run, finish.

1. **Start** (one control transaction): the job's checks are made again as of now
   (:func:`sandbox.compute.checks.plan_job`) and the call and ε are spent; a subject-scoped job
   is put on the subject's access list; ``job.start`` is logged. A refusal ends the job
   ``denied`` with the refusal's code (``job.start``, outcome denied) and nothing is read.
2. **Data** (data stores, no control lock held): the contract's fields, all rows or the subject's.
3. **Run**: private release (sample-and-aggregate, the ε charged in step 1, on a timetable fixed
   before any run, so its progress and its end are the same whatever the data) or exact release;
   every run is a fresh locked-down child process (:mod:`sandbox.compute.runner`).
4. **Finish** (one control transaction, only while the claim still holds the job): a released
   result gets its ``job.finish`` event, then its seal naming that event's seq, then its stored
   copy in ``sealed_results`` (:mod:`sandbox.engine.sealing`); a failure records the error class
   and line only, never a message or printed text, and one before the program saw a row gives
   the ε back. The job's record keeps every run's isolation report for staff.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from audit import AuditAction, Outcome
from authz import consent, usage
from authz.errors import ConsentRequired
from core.db import transaction
from core.errors import SandboxError
from core.seals import canonical_json
from sandbox.compute.checks import Charge, JobRequest, Plan, plan_job
from sandbox.compute.errors import InputTooLarge, ReleaseRefused
from sandbox.compute.inputs import MAX_ROWS, Inputs, input_needs, input_store, load_inputs, mock_inputs
from sandbox.compute.models import ComputeJob, JobStatus
from sandbox.compute.queue import LEASE_SECONDS, Claim, give_back, job_actor, owned, record_job_event, touch
from sandbox.compute.release import (
    Pace,
    Progress,
    Release,
    ReleaseMode,
    ReleaseStopped,
    release_exact,
    release_private,
)
from sandbox.compute.runner import Limits, RunStatus
from sandbox.data.stores import DatasetStale
from sandbox.engine import sealing
from sandbox.engine.models import ResultKind
from sandbox.runtime import Runtime

log = logging.getLogger("sandbox.worker")


@dataclass(frozen=True)
class RunOptions:
    """How a worker runs jobs: limits of each child, children at once, lease, row cap, and the
    clock a private release keeps its timetable by."""

    limits: Limits = field(default_factory=Limits)
    concurrency: int = 2
    lease_seconds: float = LEASE_SECONDS
    max_rows: int = MAX_ROWS
    pace: Pace = field(default_factory=Pace)


def request_of(job: ComputeJob) -> JobRequest:
    """The request a queued job stands for, to be checked again at its start."""
    return JobRequest(
        program_id=job.program_id,
        authorization_id=job.authorization_id,
        params=job.params,
        release=job.release,
        epsilon=job.epsilon,
        partitions=job.partitions,
        subject=job.subject,
        consent_id=job.consent_id,
    )


def execute(runtime: Runtime, claim: Claim, options: RunOptions) -> JobStatus | None:
    """Run the claimed job to its end; its final status, or ``None`` if the claim was lost (or the
    job given back: its worker was asked to stop in the middle of a private release)."""
    plan = start(runtime, claim)
    if plan is None:
        return _final_status(runtime, claim)
    with _Heartbeat(runtime, claim, options.lease_seconds) as beat:
        if plan.release is ReleaseMode.MOCK:
            inputs = mock_inputs(runtime.catalog, plan.scope)
            return _finish(runtime, claim, plan, _run(plan, inputs, options, beat.progress), inputs)
        try:
            inputs = load_inputs(
                runtime.stores, runtime.catalog, plan.scope, subject=plan.subject, max_rows=options.max_rows
            )
        except InputTooLarge:
            return _finish(runtime, claim, plan, _failure(plan, "InputTooLarge"), Inputs(), ran=False)
        except DatasetStale as stale:
            log.error(
                "job %s: %s is not as the policy says (%s)",
                claim.job_id,
                stale.dataset,
                "; ".join(stale.problems),
            )
            return _finish(runtime, claim, plan, _failure(plan, "DataUnavailable"), Inputs(), ran=False)
        except SQLAlchemyError:
            log.exception("job %s: the data stores could not be read", claim.job_id)
            return _finish(runtime, claim, plan, _failure(plan, "DataUnavailable"), Inputs(), ran=False)
        try:
            released = _run(plan, inputs, options, beat.progress)
        except ReleaseStopped:  # the worker is stopping: nothing released, the job back in the queue
            log.warning("job %s: stopped during its release; given back to the queue", claim.job_id)
            give_back(runtime, claim)
            return None
    return _finish(runtime, claim, plan, released, inputs)


def _final_status(runtime: Runtime, claim: Claim) -> JobStatus | None:
    with runtime.sessions() as session:
        job = session.get(ComputeJob, claim.job_id)
        return JobStatus(job.status) if job is not None and job.claim_token == claim.token else None


def start(runtime: Runtime, claim: Claim) -> Plan | None:
    """Check and charge as of now; on a refusal end the job ``denied``. ``None`` unless it may run."""
    try:
        with transaction(runtime.sessions) as session:
            job = owned(session, claim)
            if job is None:
                return None
            charge = Charge.ALREADY if job.charged else Charge.SPEND
            plan = plan_job(
                session,
                runtime.catalog,
                request_of(job),
                operator_id=job.operator_id,
                now=runtime.clock(),
                charge=charge,
            )
            # A dataset the policy changed under its stored table: denied before anything is spent.
            stores = runtime.stores
            if plan.release is not ReleaseMode.MOCK:  # a mock run reads no store
                needs = input_needs(runtime.catalog, plan.scope)
                stores.require_all(input_store(stores, plan.subject), needs)
            if plan.subject is not None:
                _record_access(session, runtime, job, plan.consent_entry, Outcome.SUCCESS)
            if charge is Charge.SPEND:
                job.charged = True
                job.epsilon_spent = plan.epsilon or 0.0
            record_job_event(
                session,
                job,
                AuditAction.JOB_START,
                details={
                    "authorization_id": job.authorization_id,
                    "program_id": job.program_id,
                    "worker": claim.worker,
                    "attempt": claim.attempt,
                    "charged_epsilon": plan.epsilon if charge is Charge.SPEND else 0.0,
                    "charged_call": charge is Charge.SPEND,
                    "rows_of": sorted(plan.scope),
                },
                clock=runtime.clock,
            )
            return plan
    except SandboxError as refused:
        _deny(runtime, claim, refused)
        return None


def _record_access(session: Session, runtime: Runtime, job: ComputeJob, entry: str, outcome: Outcome) -> None:
    assert job.subject is not None
    consent.record_access(
        session,
        subject_id=job.subject,
        operator_id=job.operator_id,
        template=entry,
        authorization_id=job.authorization_id,
        job_id=job.id,
        outcome=outcome,
        clock=runtime.clock,
    )


def _deny(runtime: Runtime, claim: Claim, refused: SandboxError) -> None:
    """End the job ``denied`` with the refusal's code; show a consent refusal to the subject."""
    with transaction(runtime.sessions) as session:
        job = owned(session, claim)
        if job is None:
            return
        job.status = JobStatus.DENIED.value
        job.finished_at = runtime.clock()
        job.error = {"code": refused.code, "message": refused.message}
        if isinstance(refused, ConsentRequired) and job.subject is not None:
            _record_access(session, runtime, job, consent.COMPUTE_PREFIX + job.program_id, Outcome.DENIED)
        session.flush()
        record_job_event(
            session,
            job,
            AuditAction.JOB_START,
            outcome=Outcome.DENIED,
            error_code=refused.code,
            details={
                "authorization_id": job.authorization_id,
                "program_id": job.program_id,
                "message": refused.message[:300],
                "reason": getattr(refused, "reason", None),
            },
            clock=runtime.clock,
        )


def _failure(plan: Plan, error_class: str) -> Release:
    return Release(mode=plan.release, status=RunStatus.FAILED, error_class=error_class)


def _run(plan: Plan, inputs: Inputs, options: RunOptions, progress: Progress) -> Release:
    if plan.release is not ReleaseMode.PRIVATE:  # exact, or mock: one run over every row
        progress(0, 1)
        released = release_exact(
            plan.compiled, inputs.rows, plan.params, limits=options.limits, mode=plan.release
        )
        progress(1, 1)
        return released
    assert plan.epsilon is not None and plan.partitions is not None
    try:
        return release_private(
            plan.compiled,
            inputs.rows,
            plan.params,
            epsilon=plan.epsilon,
            partitions=plan.partitions,
            groups=inputs.subjects,
            limits=options.limits,
            concurrency=options.concurrency,
            progress=progress,
            pace=options.pace,
        )
    except ReleaseRefused:  # checked at start; only a policy changed under the job reaches here
        return _failure(plan, "ReleaseRefused")


def _finish(
    runtime: Runtime, claim: Claim, plan: Plan, released: Release, inputs: Inputs, *, ran: bool = True
) -> JobStatus | None:
    """Record the outcome (and seal a released result) while the claim still holds the job.

    A job that fails before its program saw a row (``ran=False``: the data could not be read, or
    held too many rows) at its first attempt gives its ε back: no output was released that the ε
    paid for, and the failure's class, which the operator sees, is not noised by it either. The
    call stays spent.
    """
    with transaction(runtime.sessions) as session:
        job = owned(session, claim)
        if job is None:
            log.warning("job %s: lease lost before it finished; its result is discarded", claim.job_id)
            return None
        job.progress = 1.0
        job.finished_at = runtime.clock()
        job.record = {
            **released.to_record(),
            "rows": inputs.counts,
            "worker": claim.worker,
            "attempt": claim.attempt,
        }
        if released.status is RunStatus.SUCCEEDED:
            job.status = JobStatus.SUCCEEDED.value
            job.result = released.value
            session.flush()
            if plan.release is ReleaseMode.MOCK:
                _record_mock(session, runtime, job, released)
            else:
                _seal(session, runtime, job, plan, released)
        else:
            job.status = JobStatus.FAILED.value
            job.error = {
                "code": f"program_{released.status.value}",
                "class": released.error_class,
                "line": released.error_line,
                "problem": released.problem,
            }
            # Only a first attempt: an earlier one, whose lease was lost, may have run the program
            # (its progress showed meanwhile), and the ε paid for that.
            first = claim.attempt == 1
            refunded = job.epsilon_spent if not ran and first and job.epsilon_spent > 0 else 0.0
            if refunded:
                usage.refund_epsilon(session, job.authorization_id, refunded)
                job.epsilon_spent = 0.0
            session.flush()
            record_job_event(
                session,
                job,
                AuditAction.JOB_FINISH,
                outcome=Outcome.FAILED,
                error_code=job.error["code"],
                details={
                    "authorization_id": job.authorization_id,
                    **job.error,
                    "release": plan.release.value,
                    "refunded_epsilon": refunded,
                },
                clock=runtime.clock,
            )
        return JobStatus(job.status)


def _result_sha256(value: Any) -> str:
    """What a job's end event records of its result: the hash, never the result (it may be a
    score about a subject)."""
    return hashlib.sha256(canonical_json({"result": value})).hexdigest()


def _record_mock(session: Session, runtime: Runtime, job: ComputeJob, released: Release) -> None:
    """A mock run's end, recorded but not sealed: a bureau's signature over an output of made-up
    rows could be shown as a statement about real data (found in review)."""
    record_job_event(
        session,
        job,
        AuditAction.JOB_FINISH,
        details={
            "authorization_id": job.authorization_id,
            "program_id": job.program_id,
            "release": ReleaseMode.MOCK.value,
            "result_sha256": _result_sha256(released.value),
        },
        clock=runtime.clock,
    )


def _seal(session: Session, runtime: Runtime, job: ComputeJob, plan: Plan, released: Release) -> None:
    answer: dict[str, Any] = {
        "program_id": job.program_id,
        "program_sha256": job.program_sha256,
        "release": plan.release.value,
        "result": released.value,
        "params": plan.params,
        "epsilon_spent": job.epsilon_spent,
    }
    if plan.release is ReleaseMode.PRIVATE:
        answer["partitions"] = plan.partitions
    if plan.subject is not None:
        answer["subject"] = plan.subject
    sealing.release(
        session,
        sealing.Release(
            kind=ResultKind.COMPUTE,
            job_id=job.id,
            operator_id=job.operator_id,
            authorization_id=job.authorization_id,
            answer=answer,
            action=AuditAction.JOB_FINISH,
            # The result itself stays out of the permanent log (it may be a score about a subject);
            # its hash ties the event to the sealed copy.
            details={
                "program_id": job.program_id,
                "release": plan.release.value,
                "epsilon_spent": job.epsilon_spent,
                "result_sha256": _result_sha256(released.value),
                "subject_scoped": plan.subject is not None,
            },
        ),
        keys_dir=runtime.settings.keys_dir,
        actor=job_actor(job),
        request_id=job.request_id,
        clock=runtime.clock,
    )


class _Heartbeat:
    """Keeps the job's lease alive from a thread while it runs; ``progress`` reports a step."""

    def __init__(self, runtime: Runtime, claim: Claim, lease_seconds: float) -> None:
        self._runtime, self._claim, self._lease = runtime, claim, lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{claim.job_id[:8]}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._lease / 4):
            self._touch(None)

    def progress(self, done: int, total: int) -> None:
        """Record ``done`` of ``total`` steps (and extend the lease)."""
        # Short of 1.0: the job is finished only when its outcome is recorded.
        self._touch(min(done / max(total, 1), 0.99))

    def _touch(self, progress: float | None) -> None:
        try:
            touch(self._runtime, self._claim, progress=progress, lease_seconds=self._lease)
        except SQLAlchemyError as exc:  # a briefly locked or unreachable database: try next beat
            log.warning("job %s: lease not extended: %s", self._claim.job_id, exc.__class__.__name__)
