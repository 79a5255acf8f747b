"""One event's inclusion, checked offline: an inclusion proof against a signed checkpoint.

What whoever holds a sealed result can check with no database and no server: the checkpoint's
note is signed by a key of the bureau's published set, the event's entry hashes to the proof's
leaf, and the proof's audit path leads from that leaf to the root the checkpoint signs. The
hashing is :mod:`audit.merkle`'s and the signature check :mod:`audit.notes`'s.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import merkle
from audit.notes import Checkpoint, NoteError, key_hash, verify_note
from audit.sources import InclusionProof, SignedCheckpoint, SourceError

NamedKey = tuple[str | None, Ed25519PublicKey]


class ProofInvalid(ValueError):
    """The proof or the checkpoint does not verify, or they disagree: evidence that failed."""


@dataclass(frozen=True)
class Inclusion:
    """A proof that verified: event ``seq`` is in the log of ``checkpoint.tree_size`` events."""

    seq: int
    leaf_hash: bytes
    checkpoint: Checkpoint
    kid: str | None  # the key of the set that signed the checkpoint, when the set names it


def verify_checkpoint(signed: SignedCheckpoint, keys: Sequence[NamedKey]) -> tuple[Checkpoint, str | None]:
    """The checkpoint and the ``kid`` of the key that signed it; :class:`ProofInvalid` unless its
    note is signed by one of ``keys`` (the one its ``key_id`` names, if shown) and every field shown
    beside the note says what the note says."""
    key_id = signed.shown.get("key_id")
    if "key_id" in signed.shown:
        keys = [(kid, key) for kid, key in keys if kid == key_id]
        if not keys:
            named = str(key_id)[:64]
            raise ProofInvalid(f"the checkpoint names key {named!r}, which the key set does not hold")
    try:
        checkpoint = verify_note(signed.note, [key for _, key in keys])
    except NoteError as exc:
        raise ProofInvalid(f"the checkpoint does not verify: {exc}") from exc
    _shown_fields_agree(signed, checkpoint)
    return checkpoint, _signer(signed, keys)


def _shown_fields_agree(signed: SignedCheckpoint, checkpoint: Checkpoint) -> None:
    signed_values = {
        "tree_size": checkpoint.tree_size,
        "root_hash": checkpoint.root_hash.hex(),
        "timestamp": checkpoint.timestamp,
        "signature": [base64.b64encode(s.key_hash + s.signature).decode("ascii") for s in signed.signatures],
    }
    for name, shown in signed.shown.items():
        expected = signed_values.get(name)
        if expected is None:  # key_id: checked by choosing the key
            continue
        agrees = shown in expected if isinstance(expected, list) else _same(shown, expected)
        if not agrees:
            raise ProofInvalid(f"the checkpoint's {name!r} differs from its signed note: it was changed")


def _same(shown: object, signed: object) -> bool:
    return type(shown) is type(signed) and shown == signed  # a size shown as true or "37" is not 37


def _signer(signed: SignedCheckpoint, keys: Sequence[NamedKey]) -> str | None:
    for kid, key in keys:
        if any(key_hash(s.name, key) == s.key_hash for s in signed.signatures):
            return kid
    return None


def verify_inclusion_proof(
    proof: InclusionProof, signed: SignedCheckpoint, keys: Sequence[NamedKey]
) -> Inclusion:
    """Check ``proof`` against the checkpoint ``signed``, whose note must verify with ``keys``.

    :class:`ProofInvalid` when anything fails to verify; :class:`SourceError` (a usage error) when
    the proof is of another tree size than the checkpoint: that proves nothing either way.
    """
    checkpoint, kid = verify_checkpoint(signed, keys)
    if proof.tree_size != checkpoint.tree_size:
        raise SourceError(
            f"the proof is for a tree of {proof.tree_size} events, "
            f"the checkpoint signs {checkpoint.tree_size}: "
            f"ask for the proof at the checkpoint's size (…/proofs/inclusion?seq={proof.leaf_index}"
            f"&tree_size={checkpoint.tree_size})"
        )
    if proof.checkpoint is not None:
        if proof.checkpoint.note != signed.note:
            raise ProofInvalid("the checkpoint inside the proof is not the checkpoint given")
        _shown_fields_agree(proof.checkpoint, checkpoint)
    if merkle.hash_leaf(proof.entry.encode("utf-8")) != proof.leaf_hash:
        raise ProofInvalid("the proof's entry does not hash to its leaf_hash: one of them was changed")
    if proof.root_hash is not None and proof.root_hash != checkpoint.root_hash:
        raise ProofInvalid("the proof's root_hash is not the root the checkpoint signs")
    if not merkle.verify_inclusion(
        proof.leaf_index, proof.tree_size, proof.leaf_hash, proof.audit_path, checkpoint.root_hash
    ):
        raise ProofInvalid(
            f"the audit path does not lead from leaf {proof.leaf_index} to the root the checkpoint signs: "
            "the proof or the checkpoint was changed"
        )
    return Inclusion(seq=proof.leaf_index, leaf_hash=proof.leaf_hash, checkpoint=checkpoint, kid=kid)
