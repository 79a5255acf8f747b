"""Control-database tables of compute: submitted programs and the jobs that run them.

A program row is immutable once submitted: approval pins its sha256 (``approved_sha256``), and a
changed source is a new program. A job row is the queue entry and the job's record at once:
workers claim it by a conditional update (``queued`` → ``running`` with a fresh ``claim_token``),
keep its lease alive while they run it, and may finish it only while the token is still theirs.
A released result's seal lives in ``sealed_results`` (kind ``compute``), keyed by the job id.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime


class ProgramStatus(StrEnum):
    """Where a program is in review."""

    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"


class JobStatus(StrEnum):
    """A job's lifecycle: queued → running → succeeded | failed | denied.

    ``denied``: a check made when the job started refused it (contract, scope, quota, budget,
    consent, operator status); nothing ran. ``failed``: the program ran and did not yield a
    releasable result, or its worker was lost too often.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DENIED = "denied"

    @property
    def finished(self) -> bool:
        """Whether the job has ended (no worker will touch it again)."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.DENIED)


def _known(column: str, values: type[StrEnum]) -> str:
    return "{} IN ({})".format(column, ", ".join(f"'{v.value}'" for v in values))


class Program(Base):
    """An operator's RestrictedPython program, its analysis, and the reviewer's decision."""

    __tablename__ = "programs"
    __table_args__ = (
        CheckConstraint(_known("status", ProgramStatus), name="status_known"),
        CheckConstraint("status != 'approved' OR approved_sha256 IS NOT NULL", name="approval_pins_hash"),
        Index("ix_programs_operator_submitted", "operator_id", "submitted_at"),
        Index("ix_programs_status_submitted", "status", "submitted_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    authorization_id: Mapped[str] = mapped_column(ForeignKey("authorizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    analysis: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    exact_release_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    approved_sha256: Mapped[str | None] = mapped_column(String(64))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decision_comment: Mapped[str | None] = mapped_column(String(1000))


class ComputeJob(Base):
    """One run of an approved program under a contract: queue entry, lease, outcome and record."""

    __tablename__ = "compute_jobs"
    __table_args__ = (
        CheckConstraint(_known("status", JobStatus), name="status_known"),
        CheckConstraint("release IN ('private', 'exact', 'mock')", name="release_known"),
        CheckConstraint(
            "release != 'private' OR (epsilon > 0 AND partitions >= 2)", name="private_has_epsilon"
        ),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_fraction"),
        CheckConstraint("status != 'running' OR claim_token IS NOT NULL", name="running_is_claimed"),
        # The queue's scan: the oldest queued job first; and a worker's scan for expired leases.
        Index("ix_compute_jobs_status_queued", "status", "queued_at"),
        Index("ix_compute_jobs_operator_queued", "operator_id", "queued_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"))
    program_id: Mapped[str] = mapped_column(ForeignKey("programs.id"), index=True)
    authorization_id: Mapped[str] = mapped_column(ForeignKey("authorizations.id"), index=True)
    program_sha256: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    release: Mapped[str] = mapped_column(String(8))
    epsilon: Mapped[float | None] = mapped_column(Float)
    partitions: Mapped[int | None] = mapped_column(Integer)
    subject: Mapped[str | None] = mapped_column(String(18))
    consent_id: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The call and the ε were spent at the first start; a re-queued job is not charged again.
    charged: Mapped[bool] = mapped_column(Boolean, default=False)
    epsilon_spent: Mapped[float] = mapped_column(Float, default=0.0)
    claim_token: Mapped[str | None] = mapped_column(String(36))
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    request_id: Mapped[str | None] = mapped_column(String(128))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    record: Mapped[dict[str, Any] | None] = mapped_column(JSON)
