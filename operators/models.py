"""Tables of the operator registry."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime


class OperatorStatus(StrEnum):
    """An operator is active or suspended; suspension takes effect at its next request."""

    ACTIVE = "active"
    SUSPENDED = "suspended"


class Operator(Base):
    """A licensed company whose systems call the API."""

    __tablename__ = "operators"
    __table_args__ = (CheckConstraint("status IN ('active', 'suspended')", name="status_known"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)
    license_no: Mapped[str] = mapped_column(String(64))
    qualifications: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=OperatorStatus.ACTIVE.value)
    status_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    credentials: Mapped[list[OperatorCredential]] = relationship(back_populates="operator")


class OperatorCredential(Base):
    """A client id and the argon2 hash of its secret (the secret itself is shown once, never stored)."""

    __tablename__ = "operator_credentials"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    operator: Mapped[Operator] = relationship(back_populates="credentials")
