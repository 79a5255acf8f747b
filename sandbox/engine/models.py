"""Control-database tables of the engine: every sealed result, and the aggregate answer cache.

``sealed_results`` keeps each released answer's seal beside its audit event's sequence number, so
the operator console can list them and anyone can fetch the event's inclusion proof.
``aggregate_answers`` holds one noisy answer per (authorization, canonical query): asking again
returns it and charges nothing, so averaging repeated answers gains nothing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime


class ResultKind(StrEnum):
    """What kind of job a sealed result answers."""

    VERIFICATION = "verification"
    AGGREGATE = "aggregate"
    COMPUTE = "compute"


class SealedResult(Base):
    """A released answer: its seal, who it was for, under which contract, and its audit event."""

    __tablename__ = "sealed_results"
    __table_args__ = (
        CheckConstraint("kind IN ('verification', 'aggregate', 'compute')", name="kind_known"),
        Index("ix_sealed_results_operator_issued", "operator_id", "issued_at"),
    )

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    authorization_id: Mapped[str] = mapped_column(ForeignKey("authorizations.id"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    audit_seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    seal: Mapped[str] = mapped_column(Text)


class AggregateAnswer(Base):
    """The one noisy answer of a canonical query under a contract; its ε was charged once."""

    __tablename__ = "aggregate_answers"

    authorization_id: Mapped[str] = mapped_column(ForeignKey("authorizations.id"), primary_key=True)
    query_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("sealed_results.job_id"), unique=True)
    epsilon: Mapped[float] = mapped_column(Float)
    answer: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
