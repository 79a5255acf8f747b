"""The bureau's signing keys of record: public halves in the control database, private in files.

One key is *active* (signs new tokens, seals and checkpoints); older keys stay published in the
JWKS until retired so everything they signed still verifies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from core import keys
from core.clock import Clock, utcnow
from core.db import Base, UTCDateTime
from core.errors import ConfigurationError


class SigningKeyRecord(Base):
    """A signing key's public half and lifecycle."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16), default="EdDSA")
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


def create_key(session: Session, keys_dir: Any, *, clock: Clock = utcnow) -> SigningKeyRecord:
    """Make a new key, write its private half to ``keys_dir`` and make it the active one."""
    key = keys.generate()
    keys.save(key, keys_dir)
    now = clock()
    record = SigningKeyRecord(kid=key.kid, public_jwk=key.jwk(), created_at=now, activated_at=now)
    session.add(record)
    session.flush()
    return record


def active_record(session: Session) -> SigningKeyRecord | None:
    """The key that signs now: the most recently activated one not retired."""
    stmt = (
        select(SigningKeyRecord)
        .where(SigningKeyRecord.retired_at.is_(None), SigningKeyRecord.activated_at.is_not(None))
        .order_by(SigningKeyRecord.activated_at.desc())
        .limit(1)
    )
    return session.execute(stmt).scalar_one_or_none()


def active_key(session: Session, keys_dir: Any) -> keys.SigningKey:
    """The active private key, loaded from its file."""
    record = active_record(session)
    if record is None:
        raise ConfigurationError("no active signing key: run `sandbox init`")
    return keys.load(keys_dir, record.kid)


def published_jwks(session: Session) -> dict[str, list[dict[str, Any]]]:
    """The JWKS: every key not retired, newest first."""
    stmt = (
        select(SigningKeyRecord)
        .where(SigningKeyRecord.retired_at.is_(None))
        .order_by(SigningKeyRecord.created_at.desc())
    )
    return {"keys": [dict(r.public_jwk) for r in session.execute(stmt).scalars()]}


def rotate(session: Session, keys_dir: Any, *, clock: Clock = utcnow) -> tuple[SigningKeyRecord, str | None]:
    """Make a new active key; the previous one stays published, so what it signed still verifies."""
    previous = active_record(session)
    record = create_key(session, keys_dir, clock=clock)
    return record, previous.kid if previous else None
