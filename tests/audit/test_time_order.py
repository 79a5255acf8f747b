"""Times never go back along the log: each event is stamped no earlier than the one before it, so
a time window's neighbours outside its range prove it complete; the verifier warns where a log
(written before that rule) has a time that went back."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from audit import AuditAction, AuditEvent, Target, record_event, services
from audit.models import AuditHead
from audit.services import SYSTEM, RecordedEvent
from audit.verify import Reason, read_export, verify_window
from core.clock import rfc3339
from core.db import transaction
from sandbox.runtime import Runtime
from sandbox.services import audit_log
from tests.audit.conftest import WRITER, public_keys, verify


def _event(runtime: Runtime, at: datetime) -> RecordedEvent:
    with transaction(runtime.sessions) as session:
        return record_event(
            session,
            action=AuditAction.AUTHORIZATION_REQUEST,
            actor=WRITER,
            target=Target("authorization", "t"),
            clock=lambda: at,
        )


def _last_at(runtime: Runtime) -> datetime:
    with runtime.sessions() as session:
        head = session.get(AuditHead, 1)
        assert head is not None and head.last_at is not None
        return head.last_at


def _times(runtime: Runtime) -> list[datetime]:
    with runtime.sessions() as session:
        return list(session.execute(select(AuditEvent.occurred_at).order_by(AuditEvent.seq)).scalars())


def _time_warnings(runtime: Runtime) -> list[tuple[Reason, int | None, str]]:
    report = verify(runtime)  # one pass and chunks of 8 alike
    assert report.intact, report.as_dict()
    return [(w.reason, w.seq, w.message) for w in report.warnings if w.reason is Reason.TIME_WENT_BACK]


def test_an_event_whose_clock_is_behind_the_log_is_stamped_with_the_logs_last_time(
    runtime: Runtime, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "_warned_at", [float("-inf")])
    ahead = _last_at(runtime) + timedelta(hours=1)
    assert _event(runtime, ahead).occurred_at == ahead
    assert _event(runtime, ahead - timedelta(seconds=30)).occurred_at == ahead  # a slower host's
    assert not caplog.records  # within a minute: no warning
    behind = _event(runtime, ahead - timedelta(minutes=5))  # the clock set back
    assert behind.occurred_at == ahead and json.loads(behind.entry)["time"] == rfc3339(ahead)
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "0:05:00 behind the audit log's latest time" in caplog.records[0].getMessage()
    later = ahead + timedelta(microseconds=1)
    assert _event(runtime, later).occurred_at == later
    times = _times(runtime)
    assert times == sorted(times) and times[-4:] == [ahead, ahead, ahead, later]
    assert _last_at(runtime) == later
    assert _time_warnings(runtime) == []


def _written_before_0009(runtime: Runtime, at: datetime) -> int:
    """An event as a log from before migration 0009 could hold: its head kept no last time, so
    nothing held the clock back."""
    with transaction(runtime.sessions) as session:
        session.execute(update(AuditHead).values(last_at=None))
    return _event(runtime, at).seq


def test_a_log_whose_time_went_back_verifies_intact_with_a_warning_at_the_first_place(
    runtime: Runtime,
) -> None:
    start = _last_at(runtime) + timedelta(hours=1)
    at = start
    while (seq := _event(runtime, at).seq) % 8 != 7:  # up to the end of a chunk of 8
        at += timedelta(seconds=1)
    # The first event of the next chunk goes back: found where two chunks join.
    first = _written_before_0009(runtime, at - timedelta(minutes=10))
    assert first == seq + 1
    for n in range(2):
        _event(runtime, at + timedelta(seconds=n + 1))
    second = _written_before_0009(runtime, at)  # and one inside a chunk
    assert second % 8 not in (0, 7)
    assert _time_warnings(runtime) == [
        (
            Reason.TIME_WENT_BACK,
            first,
            f"2 events are stamped earlier than the event before them (the first at seq {first}): "
            "a time window across such a place is not proven complete",
        )
    ]


def test_a_window_across_a_time_that_went_back_verifies_with_the_warning(runtime: Runtime) -> None:
    start = _last_at(runtime) + timedelta(hours=1)
    for n in range(3):
        _event(runtime, start + timedelta(seconds=n))
    back = _written_before_0009(runtime, start)
    _event(runtime, start + timedelta(seconds=5))
    lines = "".join(
        audit_log.export(
            runtime,
            actor=SYSTEM,
            request_id=None,
            since=start + timedelta(seconds=1),
            until=start + timedelta(seconds=3),
        )
    ).splitlines()
    window, records = read_export(lines)
    assert window is not None and window.start < back < window.end
    report = verify_window(window, records, [], public_keys(runtime))
    assert report.intact, report.as_dict()
    assert [(w.reason, w.seq) for w in report.warnings] == [(Reason.TIME_WENT_BACK, back)]
