"""Control-database tables owned by the sandbox layer: policy versions, data loads and console
sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime


class PolicyVersion(Base):
    """A catalog the service ran with, by hash; a new row (and an audit event) when it changes."""

    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    files: Mapped[list[str]] = mapped_column(JSON)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DataLoad(Base):
    """A replacement of datasets in the data database: synthesized or loaded from a file."""

    __tablename__ = "data_loads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # "synth" or "file"
    datasets: Mapped[dict[str, int]] = mapped_column(JSON)  # dataset -> rows
    source: Mapped[str | None] = mapped_column(String(512))
    sha256: Mapped[str | None] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsoleSession(Base):
    """A console sign-in, so that signing out ends it on the server too.

    The browser holds a signed cookie naming the row; the row holds whether the session still
    stands. Without it, a copy of the cookie taken before signing out kept working for its 8 hours.
    Rows older than a session's life are dropped at the next sign-in.
    """

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    party_id: Mapped[str] = mapped_column(String(128))
    client_id: Mapped[str | None] = mapped_column(String(64))  # an operator's, that it signed in with
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
