"""Checkpoints as C2SP signed notes (https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint).

A checkpoint is the text::

    <origin>
    <tree size>
    <base64 root hash>
    time <RFC 3339 UTC>

followed by a blank line and one signature line per key: ``— <key name> <base64(key hash ||
signature)>``. The key hash is the first four bytes of SHA-256(name || 0x0A || 0x01 || public
key), 0x01 being the Ed25519 signature type. The signature is Ed25519 over the text, final
newline included. The ``time`` line is an extension line, so it is signed too.

Written by hand: the format is a few lines, and there is no maintained Python implementation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.clock import rfc3339
from core.keys import public_raw

EM_DASH = "\u2014"
ED25519_TYPE = b"\x01"


class NoteError(ValueError):
    """A note that is malformed or does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    """The signed statement: this log had ``tree_size`` leaves with this root at this time."""

    origin: str
    tree_size: int
    root_hash: bytes
    timestamp: str  # RFC 3339 as signed; kept as text so re-serialization is exact

    def body(self) -> str:
        """The exact text that is signed."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        return f"{self.origin}\n{self.tree_size}\n{root}\ntime {self.timestamp}\n"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line."""

    name: str
    key_hash: bytes
    signature: bytes


def key_hash(name: str, public: Ed25519PublicKey) -> bytes:
    """The four-byte key id of signed-note."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ED25519_TYPE + public_raw(public)).digest()[:4]


def sign_checkpoint(
    origin: str, tree_size: int, root_hash: bytes, moment: datetime, private: Ed25519PrivateKey
) -> tuple[Checkpoint, str]:
    """The checkpoint and its signed note, signed by ``private`` under the name ``origin``."""
    _check_name(origin)
    checkpoint = Checkpoint(origin, tree_size, root_hash, rfc3339(moment))
    body = checkpoint.body()
    signature = private.sign(body.encode("utf-8"))
    blob = base64.b64encode(key_hash(origin, private.public_key()) + signature).decode("ascii")
    return checkpoint, f"{body}\n{EM_DASH} {origin} {blob}\n"


def parse_note(note: str) -> tuple[Checkpoint, list[NoteSignature]]:
    """Split a signed note into its checkpoint and signatures; ``NoteError`` when malformed."""
    if "\n\n" not in note or not note.endswith("\n"):
        raise NoteError("not a signed note: no blank line before the signatures")
    body, _, sigs = note.partition("\n\n")
    body += "\n"
    return _parse_body(body), [_parse_signature(line) for line in sigs.rstrip("\n").split("\n")]


def verify_note(note: str, keys: list[Ed25519PublicKey]) -> Checkpoint:
    """The checkpoint of ``note`` when a signature by one of ``keys`` verifies; else ``NoteError``."""
    checkpoint, signatures = parse_note(note)
    message = checkpoint.body().encode("utf-8")
    if not note.startswith(checkpoint.body()):
        raise NoteError("the note's text is not in canonical form")
    known = False
    for sig in signatures:
        for key in keys:
            if key_hash(sig.name, key) != sig.key_hash:
                continue
            known = True
            try:
                key.verify(sig.signature, message)
            except InvalidSignature:
                continue
            return checkpoint
    raise NoteError("the signature does not verify" if known else "not signed by a trusted key")


def _parse_body(body: str) -> Checkpoint:
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise NoteError("a checkpoint has an origin, a size and a root hash")
    origin, size_text, root_text, *extensions = lines
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise NoteError(f"tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError("root hash is not base64") from exc
    if len(root) != 32:
        raise NoteError("root hash is not 32 bytes")
    times = [line[5:] for line in extensions if line.startswith("time ")]
    if len(times) != 1 or len(extensions) != 1:
        raise NoteError("expected exactly one extension line, 'time <RFC 3339>'")
    return Checkpoint(origin, int(size_text), root, times[0])


def _parse_signature(line: str) -> NoteSignature:
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != EM_DASH:
        raise NoteError("malformed signature line")
    try:
        blob = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError("signature is not base64") from exc
    if len(blob) != 4 + 64:
        raise NoteError("not an Ed25519 signature")
    return NoteSignature(parts[1], blob[:4], blob[4:])


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError("a key name is non-empty, without spaces or '+'")
