"""Helpers for the audit tests: a log with events and checkpoints, tampering as an attacker would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, create_engine, text

from audit import Actor, ActorKind, AuditAction, Target, record_event
from audit.checkpoints import create_checkpoint
from audit.sources import checkpoints_from_database, checkpoints_from_file, records_from_database
from audit.verify import Report, SourcedCheckpoint, verify_log
from audit.verify_db import verify_database
from core import keyring
from core.db import transaction, with_driver
from sandbox.runtime import Runtime

WRITER = Actor(ActorKind.OPERATOR, "op-1")


def add_events(runtime: Runtime, count: int, *, tag: str = "e", actor: Actor = WRITER) -> None:
    """``count`` events, one transaction each, with Chinese text to prove UTF-8 round trips."""
    for i in range(count):
        with transaction(runtime.sessions) as session:
            record_event(
                session,
                action=AuditAction.AUTHORIZATION_REQUEST,
                actor=actor,
                target=Target("authorization", f"{tag}-{i}"),
                details={"purpose": "贷前核验", "n": i},
                clock=runtime.clock,
            )


def checkpoint(runtime: Runtime) -> dict[str, object]:
    """Sign the log as it is."""
    return create_checkpoint(runtime.sessions, runtime.audit_tree, runtime.checkpoint_signer)[0]


def public_keys(runtime: Runtime) -> list[Ed25519PublicKey]:
    """The bureau's keys, as an auditor pins them."""
    with runtime.sessions() as session:
        return [keyring.active_key(session, runtime.settings.keys_dir).public]


def verify(
    runtime: Runtime, *, trusted: list[str] | None = None, use_file: bool = True, chunk_size: int = 8
) -> Report:
    """What ``sandbox audit verify --db`` decides, on fresh connections. Chunks of 8 events, so
    every test also proves that chunks fold into the same verdict as one pass."""
    extra = [SourcedCheckpoint("trusted", note) for note in trusted or []]
    path: Path = runtime.settings.checkpoints_file
    if use_file and path.exists():
        extra += checkpoints_from_file(path)
    keys = public_keys(runtime)
    url = runtime.settings.database_url
    report = verify_database(url, extra, keys, chunk_size=chunk_size, workers=1)
    engine = create_engine(with_driver(url))
    try:
        with engine.connect() as conn:
            single = verify_log(records_from_database(conn), checkpoints_from_database(conn) + extra, keys)
    finally:
        engine.dispose()
    assert single.as_dict() == report.as_dict(), (single.as_dict(), report.as_dict())
    return report


@contextmanager
def attacker(runtime: Runtime) -> Iterator[Connection]:
    """A connection with the append-only triggers out of the way, as a database owner could."""
    engine = create_engine(with_driver(runtime.settings.database_url))
    postgres = engine.dialect.name == "postgresql"
    try:
        with engine.begin() as conn:
            for table in ("audit_events", "audit_checkpoints"):
                if postgres:
                    conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
                else:
                    for verb in ("update", "delete"):
                        conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{verb}"))
            yield conn
            if postgres:
                for table in ("audit_events", "audit_checkpoints"):
                    conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
    finally:
        engine.dispose()
