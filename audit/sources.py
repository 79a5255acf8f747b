"""Where the offline verifier reads from: a database, an export, checkpoint files, pinned keys."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, select

from audit.checkpoints import read_checkpoint_file
from audit.models import MAX_SEQ, AuditCheckpoint
from audit.notes import Checkpoint, NoteError, NoteSignature, parse_note
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
    # Its form only: a signature that fails is a finding, not a usage error.
    return SourcedCheckpoint("trusted", read_checkpoint(text, str(path)).note)


# The fields the API shows beside a checkpoint's signed note (``checkpoint_view``).
SHOWN_FIELDS = ("tree_size", "root_hash", "timestamp", "key_id", "signature")


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint as handed over: its signed note, parsed (checkpoint and signatures) but not yet
    verified, and the fields the API's JSON shows beside it (none for a bare note), which nothing
    signs."""

    note: str
    checkpoint: Checkpoint
    signatures: list[NoteSignature]
    shown: dict[str, Any] = field(default_factory=dict)


def read_checkpoint(text: str, where: str) -> SignedCheckpoint:
    """A checkpoint from its signed note or the API's JSON (``GET /v1/audit/checkpoint``)."""
    text = text.removeprefix("\ufeff")  # a byte order mark, as some editors save
    if not text.lstrip().startswith("{"):
        return _signed_checkpoint(text, {}, where)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # ValueError: a JSONDecodeError, or over 4,300 digits
        raise SourceError(f"{where} is neither a signed note nor checkpoint JSON") from exc
    return checkpoint_from_json(value, where)


def checkpoint_from_json(value: Any, where: str) -> SignedCheckpoint:
    """A checkpoint from the API's JSON, already parsed."""
    _refuse_api_error(value, where)
    if not isinstance(value, dict) or not isinstance(value.get("note"), str):
        raise SourceError(f"{where} holds JSON without a 'note'")
    return _signed_checkpoint(value["note"], {k: value[k] for k in SHOWN_FIELDS if k in value}, where)


def _signed_checkpoint(note: str, shown: dict[str, Any], where: str) -> SignedCheckpoint:
    try:
        checkpoint, signatures = parse_note(note)
    except NoteError as exc:
        raise SourceError(f"{where} is not a signed checkpoint: {exc}") from exc
    return SignedCheckpoint(note, checkpoint, signatures, shown)


def _refuse_api_error(value: Any, where: str) -> None:
    """What ``curl -s`` saves when the API refused: say so, rather than that a field is missing."""
    error = value.get("error") if isinstance(value, dict) else None
    if isinstance(error, dict) and "code" in error:
        said = f"{error.get('code')}: {error.get('message', '')}"
        raise SourceError(f"{where} holds an error of the API, not what was asked for ({said[:200]})")


HEX_HASH = re.compile(r"[0-9a-f]{64}")
MAX_PATH = 64  # an audit path has at most one hash per bit of the tree size


@dataclass(frozen=True)
class InclusionProof:
    """An inclusion proof as the API gives it (``GET /v1/audit/proofs/inclusion``), not yet checked."""

    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    entry: str
    audit_path: list[bytes]
    root_hash: bytes | None
    checkpoint: SignedCheckpoint | None


def read_inclusion_proof(text: str, where: str) -> InclusionProof:
    """The proof in ``text`` (JSON); :class:`SourceError` naming the first thing that is not as
    the API gives it."""
    try:
        value = json.loads(text.removeprefix("\ufeff"))
    except (ValueError, RecursionError) as exc:
        raise SourceError(f"{where} is not JSON") from exc
    _refuse_api_error(value, where)
    if not isinstance(value, dict):
        raise SourceError(f"{where} is not an inclusion proof (a JSON object)")

    def problem(message: str) -> SourceError:
        return SourceError(f"{where} is not an inclusion proof as the API gives it: {message}")

    index, size = value.get("leaf_index"), value.get("tree_size")
    if not _whole(size) or not 1 <= size <= MAX_SEQ:
        raise problem(f"'tree_size' must be a whole number from 1 to {MAX_SEQ}")
    if not _whole(index) or not 0 <= index < size:
        raise problem(f"'leaf_index' must be a whole number from 0 to the tree size less 1 ({size - 1})")
    if not isinstance(value.get("entry"), str):
        raise problem("'entry' (the event's canonical JSON) must be a string")
    path = value.get("audit_path")
    if not isinstance(path, list) or len(path) > MAX_PATH or not all(_is_hash(node) for node in path):
        raise problem(f"'audit_path' must be a list of at most {MAX_PATH} SHA-256 hashes in lowercase hex")
    for name in ("leaf_hash", "root_hash"):
        if (name in value or name == "leaf_hash") and not _is_hash(value.get(name)):
            raise problem(f"'{name}' must be a SHA-256 hash in lowercase hex (64 characters)")
    embedded = value.get("checkpoint")
    return InclusionProof(
        leaf_index=index,
        tree_size=size,
        leaf_hash=bytes.fromhex(value["leaf_hash"]),
        entry=value["entry"],
        audit_path=[bytes.fromhex(node) for node in path],
        root_hash=bytes.fromhex(value["root_hash"]) if "root_hash" in value else None,
        checkpoint=None if embedded is None else checkpoint_from_json(embedded, f"the checkpoint in {where}"),
    )


def _whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and HEX_HASH.fullmatch(value) is not None


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
    return [key for _, key in named_keys_from_jwks(jwks)]


def named_keys_from_jwks(jwks: Any) -> list[tuple[str | None, Ed25519PublicKey]]:
    """The Ed25519 keys of a JWKS document, each with its ``kid`` (``None`` if it has none)."""
    return [
        (
            jwk["kid"] if isinstance(jwk.get("kid"), str) else None,
            Ed25519PublicKey.from_public_bytes(_b64url(jwk["x"])),
        )
        for jwk in jwks["keys"]
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519"
    ]


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
