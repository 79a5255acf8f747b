"""Tables of accounts (staff and subjects)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime


class Account(Base):
    """A person who signs in with a password: staff (admin, reviewer, auditor) or a subject."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'reviewer', 'auditor', 'subject')", name="role_known"),
        CheckConstraint("role <> 'subject' OR subject_id IS NOT NULL", name="subject_has_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # The username in lower case, unique: "REV2" beside "rev2" would be two reviewers no one can
    # tell apart, and a check in Python alone lets two such requests race past each other.
    # (Usernames are ASCII, so lower case is the same in Python, SQLite and PostgreSQL.)
    username_key: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str | None] = mapped_column(String(18), index=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
