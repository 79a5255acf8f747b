"""Reading the log: searches with cursor paging, single events, and the streamed export.

What a reader sees comes from the hashed ``entry``, not from the indexed columns: the columns
only find rows, so an edited column cannot change what an auditor reads (the verifier reports it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from audit.actions import ActorKind
from audit.models import MAX_SEQ, AuditEvent

EXPORT_BATCH = 5_000
S = TypeVar("S", bound=Select[*tuple[Any, ...]])


@dataclass(frozen=True, kw_only=True)
class EventFilter:
    """Search terms; every one given must match."""

    actor_kind: str | None = None
    actor_id: str | None = None
    action: str | None = None
    outcome: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @staticmethod
    def actor_terms(actor: str | None) -> dict[str, str]:
        """``kind:id``, a bare kind (``operator``), or a bare id."""
        if not actor:
            return {}
        kind, sep, ident = actor.partition(":")
        if sep:
            return {"actor_kind": kind, "actor_id": ident}
        if actor in {k.value for k in ActorKind}:
            return {"actor_kind": actor}
        return {"actor_id": actor}

    def apply(self, stmt: S) -> S:
        """``stmt`` narrowed to the matching events."""
        for column, value in (
            (AuditEvent.actor_kind, self.actor_kind),
            (AuditEvent.actor_id, self.actor_id),
            (AuditEvent.action, self.action),
            (AuditEvent.outcome, self.outcome),
            (AuditEvent.target_type, self.target_type),
            (AuditEvent.target_id, self.target_id),
            (AuditEvent.request_id, self.request_id),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        if self.since is not None:
            stmt = stmt.where(AuditEvent.occurred_at >= self.since)
        if self.until is not None:
            stmt = stmt.where(AuditEvent.occurred_at < self.until)
        return stmt


def event_view(row: AuditEvent) -> dict[str, Any]:
    """An event as the API shows it: the hashed entry, with its seq and leaf hash."""
    fields: dict[str, Any] = json.loads(row.entry)
    return {**fields, "seq": row.seq, "leaf_hash": row.leaf_hash}


def search_events(
    session: Session, terms: EventFilter, *, limit: int, after: int | None
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of matching events in log order, and the cursor of the next page (or ``None``)."""
    stmt = terms.apply(select(AuditEvent)).order_by(AuditEvent.seq).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(AuditEvent.seq > after)
    rows = list(session.execute(stmt).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return [event_view(r) for r in rows], (rows[-1].seq if more and rows else None)


def get_event(session: Session, seq: int) -> AuditEvent | None:
    """The event at ``seq``; ``None`` too for a seq no database integer holds (the driver would fail)."""
    return session.get(AuditEvent, seq) if 0 <= seq <= MAX_SEQ else None


def export_lines(
    sessions: sessionmaker[Session], terms: EventFilter, *, start: int = 0, end: int | None = None
) -> Iterator[str]:
    """NDJSON lines ``{"seq", "leaf_hash", "entry"}`` in log order, from seq ``start`` to before
    ``end``, read in batches of short transactions so a long export never holds the database."""
    after = start - 1
    while True:
        with sessions() as session:
            stmt = (
                terms.apply(select(AuditEvent.seq, AuditEvent.leaf_hash, AuditEvent.entry))
                .where(AuditEvent.seq > after)
                .order_by(AuditEvent.seq)
                .limit(EXPORT_BATCH)
            )
            if end is not None:
                stmt = stmt.where(AuditEvent.seq < end)
            rows = session.execute(stmt).all()
        if not rows:
            return
        for seq, leaf, entry in rows:
            yield json.dumps({"seq": seq, "leaf_hash": leaf, "entry": entry}, ensure_ascii=False) + "\n"
        after = rows[-1][0]


def window_seqs(
    session: Session, since: datetime | None, until: datetime | None, size: int
) -> tuple[int, int]:
    """The seqs ``[start, end)`` that hold every event of the time window among the first
    ``size``, and whatever lies between them (a clock set back can leave an event of another
    time there): a contiguous range, so a proof can place it in the tree. A window with no event
    is the empty range where its events would be: before the first event at or after ``since``."""
    timed = EventFilter(since=since, until=until)
    first, last = session.execute(
        timed.apply(select(func.min(AuditEvent.seq), func.max(AuditEvent.seq))).where(AuditEvent.seq < size)
    ).one()
    if first is not None:
        return int(first), int(last) + 1
    if since is None:
        return 0, 0
    after = session.execute(
        select(func.min(AuditEvent.seq)).where(AuditEvent.occurred_at >= since, AuditEvent.seq < size)
    ).scalar()
    place = size if after is None else int(after)
    return place, place
