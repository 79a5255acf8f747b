"""The audit log: one append-only sequence of events, each written in its action's transaction.

The lowest domain layer. Every package records what it does through :func:`record_event`, with a
typed :class:`AuditAction`; nothing else writes to the log. Each event is stored with its
canonical serialization and its RFC 6962 leaf hash, so the Merkle tree, signed checkpoints and
proofs can be built over the same rows without rewriting history.
"""

from audit.actions import ActorKind, AuditAction, Outcome
from audit.models import MAX_SEQ, AuditCheckpoint, AuditEvent, AuditHead
from audit.services import Actor, RecordedEvent, Target, canonical_entry, leaf_hash, record_event

__all__ = [
    "MAX_SEQ",
    "Actor",
    "ActorKind",
    "AuditAction",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditHead",
    "Outcome",
    "RecordedEvent",
    "Target",
    "canonical_entry",
    "leaf_hash",
    "record_event",
]
