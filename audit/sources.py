"""Where the offline verifier reads from: a database, an export, checkpoint files, pinned keys."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, select

from audit.checkpoints import read_checkpoint_file
from audit.models import MAX_SEQ, AuditCheckpoint
from audit.notes import NoteError, parse_note
from audit.verify import COLUMNS, LogRecord, SourcedCheckpoint

# Fixed column names only; the bounds are bound parameters.
_SELECT = "SELECT seq, entry, leaf_hash, " + ", ".join(COLUMNS) + " FROM audit_events WHERE seq >= "  # noqa: S608


class SourceError(ValueError):
    """A key, checkpoint or export file that cannot be read (a usage error, exit 2)."""


def records_from_database(
    conn: Connection, start: int = 0, end: int = MAX_SEQ, *, batch: int = 10_000
) -> Iterator[LogRecord]:
    """The events ``start <= seq < end`` in order, with the columns that must agree with the entry.

    Rows come straight from the driver's cursor (a server-side one on PostgreSQL), without
    SQLAlchemy's row and type processing: this loop is the cost of verifying millions of events.
    """
    raw = conn.connection.driver_connection
    postgres = conn.dialect.name == "postgresql"
    cursor = raw.cursor(name="audit_verify") if postgres else raw.cursor()  # type: ignore[union-attr]
    marker = "%(start)s AND seq < %(end)s" if postgres else ":start AND seq < :end"
    try:
        cursor.execute(_SELECT + marker + " ORDER BY seq", {"start": start, "end": end})
        while rows := cursor.fetchmany(batch):
            for seq, entry, leaf, event_id, at, *middle, details in rows:
                if isinstance(details, str):  # SQLite gives JSON text; psycopg parses it
                    try:
                        details = orjson.loads(details)
                    except orjson.JSONDecodeError:
                        details = UNREADABLE
                yield LogRecord(seq, entry, leaf, (event_id, _utc(at), *middle, details))
    finally:
        cursor.close()  # a verifier that stops at the first problem must not leave a server cursor


# A stored column that cannot be read (edited to "yesterday", or to JSON that is none): it agrees
# with no entry, so the verifier reports the row as an entry mismatch at its seq.
UNREADABLE = object()


def _utc(value: Any) -> Any:
    # SQLite returns naive UTC text; PostgreSQL an aware datetime (aware ones compare across zones).
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:
            return UNREADABLE
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def checkpoints_from_database(conn: Connection) -> list[SourcedCheckpoint]:
    """The checkpoints stored beside the log."""
    rows = conn.execute(
        select(AuditCheckpoint.tree_size, AuditCheckpoint.root_hash, AuditCheckpoint.note).order_by(
            AuditCheckpoint.tree_size
        )
    ).all()
    return [
        SourcedCheckpoint("database", note, {"tree_size": size, "root_hash": root})
        for size, root, note in rows
    ]


def checkpoints_from_file(path: Path) -> list[SourcedCheckpoint]:
    """The append-only checkpoint file (JSON lines with a ``note`` each)."""
    try:
        values = read_checkpoint_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read checkpoint file {path}: {exc}") from exc
    return [
        SourcedCheckpoint(
            "file",
            str(v.get("note", "")),
            {k: v[k] for k in ("tree_size", "root_hash") if k in v},
        )
        for v in values
    ]


def trusted_checkpoint(path: Path) -> SourcedCheckpoint:
    """An auditor's saved checkpoint: the signed note itself, or the API's JSON holding it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read trusted checkpoint {path}: {exc}") from exc
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:  # ValueError: a JSONDecodeError, or over 4,300 digits
            raise SourceError(f"{path} is neither a signed note nor checkpoint JSON") from exc
        if not isinstance(value, dict) or not isinstance(value.get("note"), str):
            raise SourceError(f"{path} holds JSON without a 'note'")
        text = value["note"]
    try:
        parse_note(text)  # its form only: a signature that fails is a finding, not a usage error
    except NoteError as exc:
        raise SourceError(f"{path} is not a signed checkpoint: {exc}") from exc
    return SourcedCheckpoint("trusted", text)


def load_public_keys(path: Path) -> list[Ed25519PublicKey]:
    """Ed25519 public keys from a PEM file or a JWKS (``/.well-known/jwks.json``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read key file {path}: {exc}") from exc
    if data.lstrip().startswith(b"{"):
        return _jwks_keys(data, path)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SourceError(f"{path} is not a PEM public key or a JWKS") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SourceError(f"{path} is not an Ed25519 public key")
    return [key]


def _jwks_keys(data: bytes, path: Path) -> list[Ed25519PublicKey]:
    try:
        found = keys_from_jwks(json.loads(data))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error) as exc:
        raise SourceError(f"{path} is not a JWKS of Ed25519 keys") from exc
    if not found:
        raise SourceError(f"{path} holds no Ed25519 key")
    return found


def keys_from_jwks(jwks: Any) -> list[Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS document (``{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": …}]}``)."""
    return [
        Ed25519PublicKey.from_public_bytes(_b64url(jwk["x"]))
        for jwk in jwks["keys"]
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519"
    ]


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
