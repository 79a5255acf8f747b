"""The audit log as the API serves it: checkpoints on demand, proofs, with the API's errors."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from audit import Actor
from audit.checkpoints import checkpoint_view, create_checkpoint, latest_checkpoint
from audit.models import AuditCheckpoint, AuditEvent, AuditHead
from audit.queries import get_event
from core.errors import Invalid, NotFound
from sandbox.runtime import Runtime


def latest(runtime: Runtime) -> dict[str, Any]:
    """The latest checkpoint; ``NotFound`` before the first."""
    with runtime.sessions() as session:
        row = latest_checkpoint(session)
        if row is None:
            raise NotFound("no checkpoint has been signed yet")
        return checkpoint_view(row)


def checkpoints(runtime: Runtime, *, after: int | None, limit: int) -> list[dict[str, Any]]:
    """Checkpoints by size, after ``after``."""
    stmt = select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size).limit(limit)
    if after is not None:
        stmt = stmt.where(AuditCheckpoint.tree_size > after)
    with runtime.sessions() as session:
        return [checkpoint_view(r) for r in session.execute(stmt).scalars()]


def sign_now(runtime: Runtime) -> dict[str, Any]:
    """A checkpoint of the current size, signed now unless one exists."""
    return create_checkpoint(runtime.sessions, runtime.audit_tree, runtime.checkpoint_signer)


def _tree_size(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        size = session.execute(select(AuditHead.tree_size).where(AuditHead.id == 1)).scalar_one_or_none()
        return int(size or 0)


def inclusion(
    runtime: Runtime, seq: int, tree_size: int | None, *, only_actor: Actor | None
) -> dict[str, Any]:
    """Inclusion proof of event ``seq`` in the tree of ``tree_size`` (default: the latest
    checkpoint covering it, signed now if none does). ``only_actor`` limits it to their events."""
    with runtime.sessions() as session:
        event = get_event(session, seq)
        if event is None or (only_actor is not None and not _acted_by(event, only_actor)):
            raise NotFound(f"no audit event {seq}")
        entry, leaf = event.entry, event.leaf_hash
        covering = latest_checkpoint(session)
    if tree_size is None:
        view = checkpoint_view(covering) if covering and covering.tree_size > seq else sign_now(runtime)
        tree_size = int(view["tree_size"])
    else:
        if not seq < tree_size <= _tree_size(runtime):
            raise Invalid("tree_size must be above the event's seq and at most the log's size")
        view = None
    with runtime.sessions() as session:
        path = runtime.audit_tree.inclusion(session, seq, tree_size)
        root = runtime.audit_tree.root(session, tree_size)
        if view is None:
            at_size = session.get(AuditCheckpoint, tree_size)
            view = checkpoint_view(at_size) if at_size else None
    return {
        "leaf_index": seq,
        "tree_size": tree_size,
        "leaf_hash": leaf,
        "entry": entry,
        "audit_path": [p.hex() for p in path],
        "root_hash": root.hex(),
        "checkpoint": view,
    }


def _acted_by(event: AuditEvent, actor: Actor) -> bool:
    return event.actor_kind == actor.kind.value and event.actor_id == actor.id


def consistency(runtime: Runtime, first: int, second: int) -> dict[str, Any]:
    """RFC 9162 consistency proof from ``first`` to ``second`` events."""
    size = _tree_size(runtime)
    if not first <= second <= size:
        raise Invalid(f"need first <= second <= {size} (the log's size)")
    with runtime.sessions() as session:
        proof = runtime.audit_tree.consistency(session, first, second)
        first_root = runtime.audit_tree.root(session, first)
        second_root = runtime.audit_tree.root(session, second)
    return {
        "first": first,
        "second": second,
        "first_root": first_root.hex(),
        "second_root": second_root.hex(),
        "proof": [p.hex() for p in proof],
    }
