"""Tables of the audit log.

``audit_events`` holds one row per event with a dense ``seq`` from 0: the leaf index of the
RFC 6962 Merkle tree. ``entry`` is the exact canonical serialization that was hashed, so the
leaf hash can be recomputed from the row alone and any edit of a column or of the entry shows.
``audit_head`` is a single row holding the tree size and the last event's time; it is locked by
every writer so sequence numbers are allocated one writer at a time, without gaps or forks, and
no event is stamped earlier than the one before it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import MAX_INTEGER_KEY, Base, UTCDateTime

MAX_SEQ = MAX_INTEGER_KEY  # the largest seq (or tree size) a query takes


class AuditEvent(Base):
    """One event: who did what to which object, how it ended, when, under which request."""

    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint("seq >= 0", name="seq_nonnegative"),
        CheckConstraint("outcome IN ('success', 'denied', 'failed')", name="outcome_known"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
        Index("ix_audit_events_actor", "actor_kind", "actor_id"),
        Index("ix_audit_events_action", "action"),
        Index("ix_audit_events_target", "target_type", "target_id"),
        Index("ix_audit_events_request_id", "request_id"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    entry: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The single row that serializes writers and records the log's size and its last time."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    # The time of the last event; ``None`` before the first (and in a log from before 0009 until
    # the migration sets it). An event is stamped no earlier than it (see ``record_event``).
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditCheckpoint(Base):
    """A signed checkpoint: the tree's size and root at a moment, as a C2SP signed note.

    ``note`` is the exact signed text; the other columns are an index into it. One row per size:
    two roots for one size would be a fork, which the primary key refuses here and the offline
    verifier reports wherever else it finds one (the checkpoint file, an auditor's copy).
    """

    __tablename__ = "audit_checkpoints"
    __table_args__ = (CheckConstraint("tree_size >= 0", name="size_nonnegative"),)

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    key_id: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
