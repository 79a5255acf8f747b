"""The audit log as the API serves it: checkpoints on demand, proofs, with the API's errors."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select

from audit import Actor, AuditAction, Target, record_event
from audit.checkpoints import checkpoint_view, create_checkpoint, latest_checkpoint
from audit.models import AuditCheckpoint, AuditEvent, AuditHead
from audit.queries import EventFilter, export_lines, get_event, window_seqs
from core.clock import rfc3339
from core.db import transaction
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
    return sign_if_new(runtime)[0]


def sign_if_new(runtime: Runtime) -> tuple[dict[str, Any], bool]:
    """:func:`sign_now`, and whether the checkpoint is new."""
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
        size = _tree_size(runtime)
        if not seq < tree_size <= size:
            raise Invalid(
                "tree_size must be above the event's seq and at most the log's size",
                details=[{"field": "tree_size", "message": f"between {seq + 1} and {size}"}],
            )
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
        field = "first" if first > second else "second"
        raise Invalid(
            f"need first <= second <= {size} (the log's size)",
            details=[{"field": field, "message": f"first <= second <= {size}"}],
        )
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


def export(
    runtime: Runtime,
    *,
    actor: Actor,
    request_id: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[str]:
    """The log as NDJSON, recorded as an event before any line is read.

    Without a time window, every event from seq 0: the verifier rebuilds the whole tree. With
    one, the contiguous seqs that hold the window's events and one event more on each side (a
    fence, outside the range), after a first line ``{"window": {since, until, start, end,
    tree_size, left, right, checkpoint}}``: the roots of the subtrees left and right of them in
    the tree of a checkpoint of every event so far, and its signed note. So the window alone
    proves its events are the log's, at their places, and none of its range was cut off its ends
    (see :func:`audit.verify.verify_window`).
    """
    with transaction(runtime.sessions) as session:
        record_event(
            session,
            action=AuditAction.AUDIT_EXPORT,
            actor=actor,
            target=Target("audit_log"),
            request_id=request_id,
            details={"since": str(since) if since else None, "until": str(until) if until else None},
            clock=runtime.clock,
        )
    if since is None and until is None:
        return export_lines(runtime.sessions, EventFilter())
    view = sign_now(runtime)  # a checkpoint of every event so far (this export's own included)
    size = int(view["tree_size"])
    with runtime.sessions() as session:
        start, end = window_seqs(session, since, until, size)
        start, end = max(start - 1, 0), min(end + 1, size)  # with the fence on each side
        left, right = runtime.audit_tree.range_proof(session, start, end, size)
    window = {
        "since": rfc3339(since) if since else None,
        "until": rfc3339(until) if until else None,
        "start": start,
        "end": end,
        "tree_size": size,
        "left": [h.hex() for h in left],
        "right": [h.hex() for h in right],
        "checkpoint": view["note"],
    }
    header = json.dumps({"window": window}) + "\n"
    return itertools.chain([header], export_lines(runtime.sessions, EventFilter(), start=start, end=end))
