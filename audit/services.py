"""Recording events: the one function every package calls."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, insert, or_, select, update
from sqlalchemy.orm import Session

from audit.actions import ActorKind, AuditAction, Outcome
from audit.models import AuditEvent, AuditHead
from core.clock import Clock, rfc3339, utcnow
from core.db import Database, UTCDateTime, table_of, writing_connection
from core.ids import time_ordered_id
from core.prepared import Prepared

MAX_DETAILS_BYTES = 16_384
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who acted: a kind and, for accounts and operators, an id."""

    kind: ActorKind
    id: str | None = None


SYSTEM = Actor(ActorKind.SYSTEM, "cli")


@dataclass(frozen=True)
class Target:
    """What was acted on."""

    type: str
    id: str | None = None


def canonical_entry(fields: dict[str, Any]) -> bytes:
    """The bytes that are hashed: JSON with sorted keys, no spaces, UTF-8 (Chinese kept as is).

    Written by hand on purpose: the format is part of the evidence and must not move with a
    library's defaults. Floats use Python's shortest round-trip repr; NaN and infinity are refused.
    """
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def leaf_hash(entry: bytes) -> str:
    """RFC 6962 leaf hash: SHA-256(0x00 || entry), hex."""
    return hashlib.sha256(b"\x00" + entry).hexdigest()


@dataclass(frozen=True)
class RecordedEvent:
    """An appended event: its place in the tree and the exact bytes that were hashed."""

    seq: int
    event_id: str
    occurred_at: datetime
    entry: str
    leaf_hash: str


_EVENTS = table_of(AuditEvent)
_HEAD = table_of(AuditHead)
# One statement both locks the head row until the transaction ends (one log writer at a time:
# a row lock on PostgreSQL; on SQLite the transaction already began IMMEDIATE, see core.db),
# allocates the next seq and stamps the event: the clock's time, or the last event's if the
# clock is behind it (set back, or another host's a little slow), so times never decrease along
# the log. An auditor's time window is then a run of seqs whose neighbours outside the range
# prove nothing of the range was left out (see audit.verify.verify_window).
_NOW = bindparam("now", type_=UTCDateTime())
_ADVANCE_HEAD = Prepared(
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(
        tree_size=_HEAD.c.tree_size + 1,
        last_at=case((or_(_HEAD.c.last_at.is_(None), _HEAD.c.last_at < _NOW), _NOW), else_=_HEAD.c.last_at),
    )
    .returning(_HEAD.c.tree_size, _HEAD.c.last_at)
)
_EVENT_COLUMNS = [column.name for column in _EVENTS.columns]
# A clock this far behind the log's latest time is said in the server's log (once a minute at most):
# until it catches up, every event is stamped with that time. A clock once set far ahead, here or
# on another host writing the log, leaves such a time behind it.
CLOCK_BEHIND_WARNING = timedelta(minutes=1)
_warned_at = [float("-inf")]


def _warn_clock_behind(now: datetime, latest: datetime) -> None:
    if time.monotonic() - _warned_at[0] >= 60:
        _warned_at[0] = time.monotonic()
        _log.warning(
            "this host's clock (%s) is %s behind the audit log's latest time (%s): events are stamped "
            "with that time until the clock catches up; check the clocks of every host writing the log",
            rfc3339(now),
            latest - now,
            rfc3339(latest),
        )


_INSERT_EVENT = Prepared(insert(_EVENTS), column_keys=_EVENT_COLUMNS)


def lock_head(session: Session) -> AuditHead:
    """The head row, locked until the transaction ends: one log writer at a time."""
    # FOR UPDATE on PostgreSQL; on SQLite the transaction already began IMMEDIATE (core.db).
    # populate_existing: record_event moves the row with a Core UPDATE, past the identity map.
    query = (
        select(AuditHead).where(AuditHead.id == 1).with_for_update().execution_options(populate_existing=True)
    )
    head = session.execute(query).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, tree_size=0)
        session.add(head)
        session.flush()
    return head


def record_event(
    session: Database,
    *,
    action: AuditAction,
    actor: Actor,
    outcome: Outcome = Outcome.SUCCESS,
    target: Target | None = None,
    request_id: str | None = None,
    error_code: str | None = None,
    details: dict[str, Any] | None = None,
    clock: Clock = utcnow,
) -> RecordedEvent:
    """Append an event inside the caller's transaction; it commits or rolls back with the action.

    Core statements on the session's connection, not ORM objects: this runs in every request
    that changes anything, and the unit of work would cost more than the rest of the append.
    """
    details = dict(details or {})
    if len(json.dumps(details, ensure_ascii=False, default=str)) > MAX_DETAILS_BYTES:
        raise ValueError("audit details are too large; record a digest instead")
    conn = writing_connection(session)  # the rows this event describes are written before it
    now = clock()
    head = _ADVANCE_HEAD.first(conn, {"now": now})
    if head is None:  # a log that has never been written: its head row starts here
        conn.execute(insert(_HEAD).values(id=1, tree_size=1, last_at=now))
        head = (1, now)
    size, moment = head
    if moment - now > CLOCK_BEHIND_WARNING:
        _warn_clock_behind(now, moment)
    seq = int(size) - 1
    event_id = time_ordered_id()
    fields: dict[str, Any] = {
        "seq": seq,
        "event_id": event_id,
        "time": rfc3339(moment),
        "actor": {"kind": actor.kind.value, "id": actor.id},
        "action": action.value,
        "target": {"type": target.type, "id": target.id} if target else None,
        "outcome": outcome.value,
        "error_code": error_code,
        "request_id": request_id,
        "details": details,
    }
    hashed = canonical_entry(fields)
    entry = hashed.decode("utf-8")
    recorded = RecordedEvent(
        seq=seq, event_id=event_id, occurred_at=moment, entry=entry, leaf_hash=leaf_hash(hashed)
    )
    _INSERT_EVENT.execute(
        conn,
        {
            "seq": seq,
            "event_id": event_id,
            "occurred_at": moment,
            "actor_kind": actor.kind.value,
            "actor_id": actor.id,
            "action": action.value,
            "target_type": target.type if target else None,
            "target_id": target.id if target else None,
            "outcome": outcome.value,
            "error_code": error_code,
            "request_id": request_id,
            "details": details,  # as hashed: canonical_entry took it as is (JSON-native, no default)
            "entry": entry,
            "leaf_hash": recorded.leaf_hash,
        },
    )
    return recorded
