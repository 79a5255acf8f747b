"""The job queue on both backends: one claim per job under concurrency, leases, lost workers."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select

from audit import AuditEvent
from authz.contract_models import Authorization
from core.db import create_control_engine, session_factory, transaction
from sandbox.compute.execute import execute, start
from sandbox.compute.jobs import error_view
from sandbox.compute.models import ComputeJob, JobStatus
from sandbox.compute.queue import MAX_ATTEMPTS, Claim, claim_next, reap_expired, touch
from sandbox.runtime import Runtime
from tests.compute.factories import (
    OPTIONS,
    approved_program,
    compute_contract,
    firm,
    queued_job,
    write_tax,
)
from tests.factories import make_operator


def _operator(runtime: Runtime) -> str:
    with transaction(runtime.sessions) as session:
        return make_operator(session).id


def _setup(runtime: Runtime, jobs: int, **contract: object) -> tuple[str, str, list[str]]:
    operator = _operator(runtime)
    contract_id = compute_contract(runtime, operator, **contract)
    program = approved_program(runtime, operator, contract_id)
    return operator, contract_id, [queued_job(runtime, operator, contract_id, program) for _ in range(jobs)]


def _job(runtime: Runtime, job_id: str) -> ComputeJob:
    with runtime.sessions() as session:
        job = session.get(ComputeJob, job_id)
        assert job is not None
        return job


def _actions(runtime: Runtime, job_id: str) -> list[tuple[str, str]]:
    with runtime.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.target_id == job_id).order_by(AuditEvent.seq)
        return [(e.action, e.outcome) for e in session.execute(query).scalars()]


def test_two_workers_never_claim_the_same_job(runtime: Runtime) -> None:
    _, _, job_ids = _setup(runtime, 24)
    workers = 4
    barrier = threading.Barrier(workers)
    claimed: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        # Its own engine, as a worker process on another host would have.
        engine = create_control_engine(runtime.settings.database_url)
        mine = replace(runtime, engine=engine, sessions=session_factory(engine))
        try:
            barrier.wait()
            while (claim := claim_next(mine, worker=name)) is not None:
                claimed.setdefault(name, []).append(claim.job_id)
        except BaseException as error:
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    every = [job for jobs in claimed.values() for job in jobs]
    assert sorted(every) == sorted(job_ids)  # each job claimed exactly once
    assert len(set(every)) == len(every)
    for job_id in job_ids:
        job = _job(runtime, job_id)
        assert job.status == JobStatus.RUNNING.value and job.attempts == 1
        assert job.worker in claimed and job_id in claimed[job.worker]


def test_claims_take_the_oldest_queued_job_first(runtime: Runtime) -> None:
    _, _, job_ids = _setup(runtime, 3)
    order = [claim.job_id for claim in iter(lambda: claim_next(runtime, worker="w"), None)]
    assert order == job_ids
    assert claim_next(runtime, worker="w") is None


def test_an_expired_lease_is_requeued_then_failed_after_max_attempts(runtime: Runtime) -> None:
    _, _, (job_id,) = _setup(runtime, 1)
    later = runtime.clock() + timedelta(hours=1)
    claims: list[Claim] = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        claim = claim_next(runtime, worker=f"w{attempt}", lease_seconds=30)
        assert claim is not None and claim.attempt == attempt
        claims.append(claim)
        assert reap_expired(runtime) == []  # the lease is still good
        assert reap_expired(runtime, now=later) == [job_id]
    job = _job(runtime, job_id)
    assert job.status == JobStatus.FAILED.value
    assert job.error == {"code": "worker_lost", "class": "WorkerLost", "line": None, "problem": None}
    assert _actions(runtime, job_id) == [
        ("job.queue", "success"),
        ("job.requeue", "success"),
        ("job.requeue", "success"),
        ("job.finish", "failed"),
    ]
    # A worker whose lease was taken over can no longer touch the job.
    assert not any(touch(runtime, claim) for claim in claims)


def test_a_worker_that_lost_its_lease_cannot_finish_and_the_requeued_job_is_charged_once(
    runtime: Runtime,
) -> None:
    write_tax(runtime, [(firm(i), 1000.0 * i) for i in range(1, 40)])
    _, contract_id, (job_id,) = _setup(runtime, 1, epsilon_total=1.0, epsilon_per_query=1.0)
    first = claim_next(runtime, worker="lost")
    assert first is not None
    assert start(runtime, first) is not None  # charged the call and ε = 1.0, then "died"
    assert reap_expired(runtime, now=runtime.clock() + timedelta(hours=1)) == [job_id]
    second = claim_next(runtime, worker="healthy")
    assert second is not None and second.attempt == 2
    assert execute(runtime, first, OPTIONS) is None  # the lost worker comes back: refused
    assert _job(runtime, job_id).status == JobStatus.RUNNING.value
    assert execute(runtime, second, OPTIONS) is JobStatus.SUCCEEDED  # not denied for lack of budget
    with runtime.sessions() as session:
        contract = session.get(Authorization, contract_id)
        assert contract is not None and contract.epsilon_spent == 1.0
    job = _job(runtime, job_id)
    assert job.epsilon_spent == 1.0 and job.record is not None and job.record["worker"] == "healthy"
    starts = [a for a in _actions(runtime, job_id) if a[0] == "job.start"]
    assert starts == [("job.start", "success"), ("job.start", "success")]


def test_every_job_error_reads_like_the_apis_errors() -> None:
    """A failed run is told in words from what the job records (its class, line, problem);
    a denial keeps its own message; no error, none."""
    assert error_view(None) is None
    denied = {"code": "budget_exhausted", "message": "spending ε=1 would exceed the budget"}
    assert error_view(denied) == denied
    lost = {"code": "worker_lost", "class": "WorkerLost", "line": None, "problem": None}
    assert error_view(lost) == {**lost, "message": "the worker running the job was lost (WorkerLost)"}
    late = {"code": "program_timed_out", "class": "TimeoutError", "line": None, "problem": None}
    assert error_view(late)["message"] == "the program ran past its time limit (TimeoutError)"  # type: ignore[index]
    shape = {"code": "program_failed", "class": "ResultRefused", "line": None, "problem": "too_many_keys"}
    assert error_view(shape)["message"] == "the program failed (ResultRefused): too_many_keys"  # type: ignore[index]


def test_a_worker_stopping_during_a_private_release_gives_the_job_back_at_once(runtime: Runtime) -> None:
    """Review: a private release now waits out its timetable, which a graceful stop's grace did not
    cover: the worker was killed mid-job and the job sat until its lease ran out."""
    write_tax(runtime, [(firm(i), 1000.0 * i) for i in range(1, 40)])
    _, contract_id, (job_id,) = _setup(runtime, 1, epsilon_total=1.0, epsilon_per_query=1.0)
    stop = threading.Event()
    stop.set()  # asked to stop before the timetable's first slot ends
    stopping = replace(OPTIONS, pace=OPTIONS.pace.watching(stop))
    first = claim_next(runtime, worker="stopping")
    assert first is not None
    assert execute(runtime, first, stopping) is None
    job = _job(runtime, job_id)
    assert (job.status, job.result, job.claim_token, job.progress) == (
        JobStatus.QUEUED.value,
        None,
        None,
        0.0,
    )
    with runtime.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.target_id == job_id).order_by(AuditEvent.seq)
        requeued = [e for e in session.execute(query).scalars() if e.action == "job.requeue"]
    assert [(e.details["reason"], e.details["worker"]) for e in requeued] == [("worker stopped", "stopping")]
    second = claim_next(runtime, worker="next")
    assert second is not None and second.attempt == 2
    assert execute(runtime, second, OPTIONS) is JobStatus.SUCCEEDED
    with runtime.sessions() as session:
        contract = session.get(Authorization, contract_id)
        assert contract is not None and contract.epsilon_spent == 1.0  # charged once
