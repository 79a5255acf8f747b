"""Releasing a result: its audit event, then its seal naming that event, then its stored copy.

All three happen in the caller's transaction, in that order, so a seal always names the event that
records it (``audit_seq`` and the event's leaf hash, for an inclusion proof) and neither exists
without the other.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from audit import Actor, AuditAction, Target, record_event
from core import keyring, seals
from core.clock import Clock, rfc3339
from core.db import Database, orm_session, table_of, writing_connection
from core.keys import SigningKey
from core.prepared import Prepared
from sandbox.engine.models import ResultKind, SealedResult

_KEY_CACHE_SECONDS = 30.0
_SEALED = table_of(SealedResult)
# A release is on every job's hot path: a prepared statement (see core.prepared).
_INSERT_SEALED = Prepared(insert(_SEALED), column_keys=[column.name for column in _SEALED.columns])


class _ActiveKeyCache:
    """The active private key, re-resolved at most every 30 s so a rotation reaches every worker.

    Reading and parsing the PEM file on every seal would cost more than the signature itself; a
    seal made with the previous key for a few seconds after a rotation still verifies, since
    rotated keys stay published.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[float, SigningKey]] = {}

    def get(self, session: Database, keys_dir: Path) -> SigningKey:
        with self._lock:
            entry = self._entries.get(keys_dir)
            if entry is not None and time.monotonic() - entry[0] < _KEY_CACHE_SECONDS:
                return entry[1]
            with orm_session(session) as orm:
                key = keyring.active_key(orm, keys_dir)
            self._entries[keys_dir] = (time.monotonic(), key)
            return key


ACTIVE_KEYS = _ActiveKeyCache()


@dataclass(frozen=True)
class Released:
    """A released, sealed result."""

    job_id: str
    issued_at: datetime
    audit_seq: int
    seal: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Release:
    """What is released, for whom, and how it is recorded."""

    kind: ResultKind
    job_id: str
    operator_id: str
    authorization_id: str
    answer: dict[str, Any]  # the sealed fields proper to the kind of job
    action: AuditAction
    details: dict[str, Any]  # what the audit event records


def release(
    session: Database,
    item: Release,
    *,
    keys_dir: Path,
    actor: Actor,
    request_id: str | None,
    clock: Clock,
) -> Released:
    """Record the event, seal the answer with the event's seq, and store the sealed result."""
    event = record_event(
        session,
        action=item.action,
        actor=actor,
        target=Target(item.kind.value, item.job_id),
        request_id=request_id,
        details={"authorization_id": item.authorization_id, **item.details},
        clock=clock,
    )
    issued_at = event.occurred_at
    payload = {
        **item.answer,
        "kind": item.kind.value,
        "job_id": item.job_id,
        "operator_id": item.operator_id,
        "authorization_id": item.authorization_id,
        "issued_at": rfc3339(issued_at),
        "audit_seq": event.seq,
        "audit_leaf_hash": event.leaf_hash,
    }
    token = seals.seal(payload, ACTIVE_KEYS.get(session, keys_dir))
    _INSERT_SEALED.execute(
        writing_connection(session),
        {
            "job_id": item.job_id,
            "kind": item.kind.value,
            "operator_id": item.operator_id,
            "authorization_id": item.authorization_id,
            "issued_at": issued_at,
            "audit_seq": event.seq,
            "seal": token,
        },
    )
    return Released(job_id=item.job_id, issued_at=issued_at, audit_seq=event.seq, seal=token, payload=payload)
