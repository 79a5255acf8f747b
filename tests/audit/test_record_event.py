"""Audit events are written with their change, in its transaction, and rolled back with it."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from audit import Actor, ActorKind, AuditAction, AuditEvent, Outcome, Target, record_event
from audit.models import AuditHead
from core.db import transaction
from sandbox.models import DataLoad
from sandbox.runtime import Runtime

# Later than any event of the runtime's own (an event is never stamped before the one before it).
FIXED = datetime(2036, 11, 23, 8, 0, 0, 123456, tzinfo=UTC)
ACTOR = Actor(ActorKind.ADMIN, "admin-1")


def _count(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())


def _change_with_event(runtime: Runtime, *, fail: bool) -> None:
    with transaction(runtime.sessions) as session:
        session.add(
            DataLoad(
                kind="file",
                datasets={"enterprises": 1},
                source="x.csv",
                sha256=None,
                rows=1,
                finished_at=FIXED,
            )
        )
        record_event(
            session,
            action=AuditAction.DATA_LOAD,
            actor=ACTOR,
            target=Target("dataset", "enterprises"),
            request_id="req-1",
            clock=lambda: FIXED,
        )
        if fail:
            raise RuntimeError("the change failed after its event was written")


def test_event_is_committed_with_its_change(runtime: Runtime) -> None:
    before = _count(runtime)
    _change_with_event(runtime, fail=False)
    assert _count(runtime) == before + 1
    with runtime.sessions() as session:
        assert session.execute(select(func.count()).select_from(DataLoad)).scalar_one() == 1


def test_event_is_rolled_back_with_its_change(runtime: Runtime) -> None:
    before = _count(runtime)
    with pytest.raises(RuntimeError):
        _change_with_event(runtime, fail=True)
    assert _count(runtime) == before
    with runtime.sessions() as session:
        assert session.execute(select(func.count()).select_from(DataLoad)).scalar_one() == 0
        head = session.get(AuditHead, 1)
        assert head is not None and head.tree_size == before


def test_sequence_is_dense_from_zero_and_head_tracks_size(runtime: Runtime) -> None:
    for _ in range(3):
        _change_with_event(runtime, fail=False)
    with runtime.sessions() as session:
        seqs = session.execute(select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars().all()
        head = session.get(AuditHead, 1)
    assert seqs == list(range(len(seqs)))
    assert head is not None and head.tree_size == len(seqs)


def test_entry_is_canonical_and_leaf_hash_is_rfc6962(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as session:
        event = record_event(
            session,
            action=AuditAction.DATA_LOAD,
            actor=ACTOR,
            outcome=Outcome.DENIED,
            error_code="load_refused",
            target=Target("dataset", "户籍"),
            details={"文件": "户籍.csv", "problems": 3},
            request_id="r-9",
            clock=lambda: FIXED,
        )
    entry = event.entry.encode("utf-8")
    assert event.leaf_hash == hashlib.sha256(b"\x00" + entry).hexdigest()
    parsed = json.loads(entry)
    assert parsed["time"] == "2036-11-23T08:00:00.123456Z"
    assert parsed["target"] == {"type": "dataset", "id": "户籍"}
    assert parsed["outcome"] == "denied" and parsed["error_code"] == "load_refused"
    assert "户籍.csv" in event.entry  # Chinese kept as text, not escaped
    assert json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False) == event.entry
    with runtime.sessions() as session:
        stored = session.get(AuditEvent, event.seq)
        assert stored is not None
        assert stored.occurred_at == FIXED
        assert stored.details == {"文件": "户籍.csv", "problems": 3}


def test_details_refuse_nan(runtime: Runtime) -> None:
    with (
        pytest.raises(ValueError, match="Out of range float values"),
        transaction(runtime.sessions) as session,
    ):
        record_event(session, action=AuditAction.DATA_LOAD, actor=ACTOR, details={"epsilon": float("nan")})


def test_an_event_is_never_written_outside_a_transaction(runtime: Runtime) -> None:
    """On a bare connection SQLite would commit the seq and the event apart: refused outright."""
    with runtime.engine.connect() as conn, pytest.raises(RuntimeError, match="outside any transaction"):
        record_event(conn, action=AuditAction.DATA_LOAD, actor=ACTOR)
