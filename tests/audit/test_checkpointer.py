"""The checkpointer signs every N events, and after T seconds when anything is pending."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sandbox.runtime import Runtime
from sandbox.services import checkpointer
from tests.audit.conftest import add_events, verify


def _sizes(runtime: Runtime) -> list[int]:
    from sqlalchemy import select

    from audit.models import AuditCheckpoint

    with runtime.sessions() as session:
        return list(
            session.execute(select(AuditCheckpoint.tree_size).order_by(AuditCheckpoint.tree_size)).scalars()
        )


def _wait_for(predicate: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.05)
    return False


@contextmanager
def running_checkpointer(runtime: Runtime, *, every_events: int, every_seconds: int) -> Iterator[None]:
    """The checkpointer's loop on a thread, stopped on exit."""
    settings = runtime.settings.with_overrides(
        checkpoint_every_events=every_events, checkpoint_every_seconds=every_seconds
    )
    stop = threading.Event()
    thread = threading.Thread(target=checkpointer.run, args=(settings, stop), kwargs={"poll_seconds": 0.02})
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_checkpointer_signs_after_n_events_and_copies_to_the_file(runtime: Runtime) -> None:
    with running_checkpointer(runtime, every_events=10, every_seconds=3600):
        # The first checkpoint of a non-empty log is due at once.
        assert _wait_for(lambda: len(_sizes(runtime)) == 1)
        first = _sizes(runtime)[0]
        add_events(runtime, 4)
        time.sleep(0.3)
        assert _sizes(runtime) == [first]  # 4 pending of 10: not yet
        add_events(runtime, 6)
        assert _wait_for(lambda: _sizes(runtime)[-1] == first + 10)
    report = verify(runtime)
    assert report.intact and not report.warnings, report.as_dict()
    assert report.checkpoints_verified == 4  # two in the database, the same two in the file


def test_checkpointer_signs_pending_events_after_t_seconds(runtime: Runtime) -> None:
    with running_checkpointer(runtime, every_events=10_000, every_seconds=1):
        assert _wait_for(lambda: len(_sizes(runtime)) == 1)
        first = _sizes(runtime)[0]
        add_events(runtime, 2)
        assert _wait_for(lambda: _sizes(runtime)[-1] == first + 2)
