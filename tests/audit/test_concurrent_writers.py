"""8 concurrent writers x 500 events, with a checkpointer signing meanwhile: no gap, no fork.
Then writers in separate processes, as gunicorn's workers and the CLI write: each process
checkpoints the WAL itself (core.db), and none may read a head another has moved past."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context

from sqlalchemy import func, select

from audit import Actor, ActorKind
from audit.models import AuditEvent
from core.config import Settings
from sandbox.runtime import Runtime, open_runtime
from tests.audit.conftest import add_events, checkpoint, verify
from tests.audit.test_checkpointer import running_checkpointer

WRITERS = 8
EVENTS_EACH = 500
PROCESSES = 3
EVENTS_EACH_PROCESS = 300


def _write(runtime: Runtime, writer: int) -> None:
    add_events(runtime, EVENTS_EACH, actor=Actor(ActorKind.OPERATOR, f"op-{writer}"), tag=str(writer))


def test_concurrent_writers_leave_a_dense_log_that_verifies(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        before = int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())
    signing = running_checkpointer(runtime, every_events=250, every_seconds=3600)
    with signing, ThreadPoolExecutor(WRITERS) as pool:
        for future in [pool.submit(_write, runtime, w) for w in range(WRITERS)]:
            future.result()
    checkpoint(runtime)
    with runtime.sessions() as session:
        seqs = list(session.execute(select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars())
        per_writer = session.execute(
            select(AuditEvent.actor_id, func.count())
            .where(AuditEvent.actor_kind == "operator")
            .group_by(AuditEvent.actor_id)
        ).all()
    assert seqs == list(range(before + WRITERS * EVENTS_EACH))
    assert sorted(n for _, n in per_writer) == [EVENTS_EACH] * WRITERS
    report = verify(runtime)
    assert report.intact and not report.warnings, report.as_dict()
    assert report.verified_size == len(seqs)
    assert report.checkpoints_verified >= 4  # signed while writers ran (database and file copies), no fork


def _write_in_process(settings: Settings, writer: int) -> None:
    runtime = open_runtime(settings)
    try:
        add_events(
            runtime, EVENTS_EACH_PROCESS, actor=Actor(ActorKind.OPERATOR, f"proc-{writer}"), tag=str(writer)
        )
    finally:
        runtime.close()


def test_writers_in_separate_processes_leave_a_dense_log_that_verifies(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        before = int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())
    with ProcessPoolExecutor(PROCESSES, mp_context=get_context("spawn")) as pool:
        for future in [pool.submit(_write_in_process, runtime.settings, w) for w in range(PROCESSES)]:
            future.result(timeout=300)
    checkpoint(runtime)
    with runtime.sessions() as session:
        seqs = list(session.execute(select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars())
    assert seqs == list(range(before + PROCESSES * EVENTS_EACH_PROCESS))
    report = verify(runtime)
    assert report.intact, report.as_dict()
    assert report.verified_size == len(seqs)
