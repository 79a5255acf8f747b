"""8 concurrent writers x 500 events, with a checkpointer signing meanwhile: no gap, no fork."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from audit import Actor, ActorKind, AuditAction, Target, record_event
from audit.models import AuditEvent
from core.db import transaction
from sandbox.runtime import Runtime
from sandbox.services import checkpointer
from tests.audit.conftest import checkpoint, verify

WRITERS = 8
EVENTS_EACH = 500


def _write(runtime: Runtime, writer: int) -> None:
    actor = Actor(ActorKind.OPERATOR, f"op-{writer}")
    for i in range(EVENTS_EACH):
        with transaction(runtime.sessions) as session:
            record_event(
                session,
                action=AuditAction.AUTHORIZATION_REQUEST,
                actor=actor,
                target=Target("authorization", f"{writer}-{i}"),
                details={"writer": writer, "i": i},
            )


def test_concurrent_writers_leave_a_dense_log_that_verifies(runtime: Runtime) -> None:
    with runtime.sessions() as session:
        before = int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())
    settings = runtime.settings.with_overrides(checkpoint_every_events=250, checkpoint_every_seconds=3600)
    stop = threading.Event()
    signer = threading.Thread(target=checkpointer.run, args=(settings, stop), kwargs={"poll_seconds": 0.01})
    signer.start()
    try:
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            for future in [pool.submit(_write, runtime, w) for w in range(WRITERS)]:
                future.result()
    finally:
        stop.set()
        signer.join()
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
