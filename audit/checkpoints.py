"""Signing checkpoints: on demand, and every N events or T seconds; each copied to a file.

The file (``Settings.checkpoints_file``) lives outside the database, so truncating the audit
table together with its checkpoints still leaves evidence that the log was once longer.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audit.models import AuditCheckpoint, AuditHead
from audit.notes import sign_checkpoint
from audit.services import lock_head
from audit.tree import LogTree
from core.clock import Clock, rfc3339, utcnow
from core.config import Settings
from core.db import transaction
from core.errors import SandboxError
from core.keyring import active_key

log = logging.getLogger("sandbox.audit")


class CheckpointCopyFailed(SandboxError):
    """The checkpoint is signed and stored, but its copy to the checkpoint file could not be made."""

    code = "checkpoint_copy_failed"
    status = 503


@dataclass(frozen=True)
class CheckpointSigner:
    """What signing a checkpoint needs: the key folder, the log's name, the file copy, a clock."""

    keys_dir: Path
    origin: str
    log_file: Path | None
    clock: Clock = utcnow

    @classmethod
    def for_settings(cls, settings: Settings, clock: Clock = utcnow) -> CheckpointSigner:
        """The service's signer: its key folder, its log's name, its checkpoint file."""
        return cls(
            keys_dir=settings.keys_dir,
            origin=settings.audit_origin,
            log_file=settings.checkpoints_file,
            clock=clock,
        )


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    """The checkpoint of the largest tree."""
    stmt = select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1)
    return session.execute(stmt).scalar_one_or_none()


def checkpoint_view(row: AuditCheckpoint) -> dict[str, Any]:
    """The API's and the file's shape of a checkpoint."""
    note = row.note
    signature_line = note.rstrip("\n").rsplit("\n", 1)[-1]
    return {
        "tree_size": row.tree_size,
        "root_hash": row.root_hash,
        "timestamp": rfc3339(row.issued_at),
        "key_id": row.key_id,
        "signature": signature_line.rsplit(" ", 1)[-1],
        "note": note,
    }


def sign_in(session: Session, tree: LogTree, signer: CheckpointSigner) -> tuple[AuditCheckpoint, bool]:
    """Sign the log's current size in the caller's transaction (the head stays locked meanwhile);
    the checkpoint, and whether it is new (the one of that size if it was signed before)."""
    if session.get_bind().dialect.name == "postgresql":
        # Warm the subtree cache before taking the lock, so writers wait for a few hashes, not for
        # a first read of millions of leaves. (SQLite's transaction holds its write lock already.)
        unlocked = session.execute(select(AuditHead.tree_size).where(AuditHead.id == 1)).scalar_one_or_none()
        tree.root(session, int(unlocked or 0))
    size = lock_head(session).tree_size
    existing = session.get(AuditCheckpoint, size)
    if existing is not None:
        return existing, False
    key = active_key(session, signer.keys_dir)
    moment = signer.clock()
    root = tree.root(session, size)
    checkpoint, note = sign_checkpoint(signer.origin, size, root, moment, key.private)
    row = AuditCheckpoint(
        tree_size=size,
        root_hash=root.hex(),
        issued_at=datetime.fromisoformat(checkpoint.timestamp.replace("Z", "+00:00")),
        key_id=key.kid,
        note=note,
    )
    session.add(row)
    session.flush()
    return row, True


def create_checkpoint(
    sessions: sessionmaker[Session], tree: LogTree, signer: CheckpointSigner
) -> tuple[dict[str, Any], bool]:
    """Sign one now, and copy it to the file; or, if nothing was added since, the one of the
    current size, copied again only if the file does not end with it (its copy failed after the
    commit: a full disk, a folder it could not write). The checkpoint, and whether it is new."""
    with transaction(sessions) as session:
        row, created = sign_in(session, tree, signer)
        view = checkpoint_view(row)
    if signer.log_file is not None and (created or _file_ends_before(signer.log_file, row.tree_size)):
        try:
            append_to_file(signer.log_file, view)
        except OSError as exc:
            log.error("checkpoint %s signed, not copied to %s: %s", row.tree_size, signer.log_file, exc)
            raise CheckpointCopyFailed(
                f"the checkpoint of size {row.tree_size} is signed, but its copy to the checkpoint file "
                f"failed ({exc.strerror or exc.__class__.__name__}); asking again copies it"
            ) from exc
    return view, created


_TAIL_BYTES = 16 * 1024  # a checkpoint line is about 400 bytes


def _file_ends_before(path: Path, tree_size: int) -> bool:
    """Whether the file's last checkpoint is of a smaller size than ``tree_size`` (or it has none).

    Reads the file's last few KiB only: it grows by a line per checkpoint, for the log's life."""
    try:
        with path.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - _TAIL_BYTES))
            lines = [line for line in file.read().splitlines() if line.strip()]
    except FileNotFoundError:
        return True
    last = _checkpoint_line(lines[-1]) if lines else None
    try:
        size = int(last["tree_size"]) if last is not None and "tree_size" in last else -1
    except (ValueError, TypeError):  # an edited last line: append, so the file ends well
        size = -1
    return size < tree_size


def checkpoint_due(session: Session, *, every_events: int, every_seconds: int, now: datetime) -> bool:
    """Whether N events or T seconds have passed since the last checkpoint (cheap, no lock)."""
    size = session.execute(select(AuditHead.tree_size).where(AuditHead.id == 1)).scalar_one_or_none()
    if not size:
        return False
    last = latest_checkpoint(session)
    if last is None:
        return True
    pending = size - last.tree_size
    return pending >= every_events or (
        pending > 0 and (now - last.issued_at).total_seconds() >= every_seconds
    )


def append_to_file(path: Path, view: dict[str, Any]) -> None:
    """Append one checkpoint as a JSON line; one write with O_APPEND, so processes never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(view, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint_file(path: Path) -> list[dict[str, Any]]:
    """Every checkpoint in the file, in order; a malformed line is kept as ``{"malformed": line}``."""
    found: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        value = _checkpoint_line(line)
        found.append(value if value is not None else {"malformed": f"line {number}"})
    return found


def _checkpoint_line(line: str | bytes) -> dict[str, Any] | None:
    """One line of the checkpoint file as its JSON object, or ``None`` if it is not one."""
    try:
        value = json.loads(line)
    except ValueError:  # not JSON, or (a line torn mid-character) not UTF-8
        return None
    return value if isinstance(value, dict) else None
