"""Replacing government data, recorded: synthesis and file loads, each an audit event.

The data database and the control database are separate, so a load cannot share a transaction
with its event. The order makes the record honest: the data is swapped in first (all or
nothing), then its record and event are committed; a refused file is recorded as denied.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from audit import Actor, AuditAction, Outcome, Target, record_event
from core.accepted_codes import AcceptedCode
from core.db import transaction
from core.identifiers import USCC
from sandbox.data.load import LoadRefused, LoadResult, file_label, load_file
from sandbox.data.synth import synthesize
from sandbox.models import DataLoad
from sandbox.runtime import Runtime


def synthesize_recorded(
    runtime: Runtime,
    *,
    enterprises: int,
    persons: int,
    seed: int,
    actor: Actor,
    progress: Callable[[str, int], None] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Replace every dataset with deterministic synthetic rows; returns rows per dataset.

    Setting ``stop`` ends it at its next batch with :class:`LoadStopped`: no data changed, no event.
    """
    rows = synthesize(
        runtime.stores,
        runtime.catalog,
        enterprises=enterprises,
        persons=persons,
        seed=seed,
        progress=progress,
        stop=stop,
    )
    with transaction(runtime.sessions) as session:
        session.add(
            DataLoad(
                kind="synth",
                datasets=rows,
                source=f"synth seed={seed}",
                sha256=None,
                rows=sum(rows.values()),
                finished_at=runtime.clock(),
            )
        )
        record_event(
            session,
            action=AuditAction.DATA_SYNTHESIZE,
            actor=actor,
            target=Target("data"),
            details={
                "enterprises": enterprises,
                "persons": persons,
                "seed": seed,
                "rows": rows,
                "policy_sha256": runtime.catalog.sha256,
            },
            clock=runtime.clock,
        )
    return rows


def load_recorded(
    runtime: Runtime, dataset: str, path: Path, *, actor: Actor, stop: threading.Event | None = None
) -> LoadResult:
    """Load ``path`` into ``dataset`` (replacing it) or refuse it; either way, an audit event.

    The result's ``failing_keys`` leave out the credit codes the bureau accepts (of a dataset keyed
    by credit codes: one keyed by ID numbers takes no credit code, accepted or not); the event counts
    them (the keys themselves stay out of the permanent log). Setting ``stop`` ends it at its next
    batch with :class:`LoadStopped`: no data changed, no event.
    """
    try:
        result = load_file(runtime.stores, runtime.catalog, dataset, path, stop=stop)
    except LoadRefused as refused:
        with transaction(runtime.sessions) as session:
            record_event(
                session,
                action=AuditAction.DATA_LOAD,
                actor=actor,
                outcome=Outcome.DENIED,
                error_code=refused.code,
                target=Target("dataset", dataset),
                details={"file": file_label(path), "problems": len(refused.problems)},
                clock=runtime.clock,
            )
        raise
    with transaction(runtime.sessions) as session:
        if result.failing_keys and result.key_kind == USCC:
            current = select(AcceptedCode.code).where(AcceptedCode.withdrawn_at.is_(None))
            accepted = set(session.execute(current).scalars())
            result = dataclasses.replace(result, failing_keys=result.failing_keys - accepted)
        session.add(
            DataLoad(
                kind="file",
                datasets={dataset: result.rows},
                source=file_label(path),
                sha256=result.sha256,
                rows=result.rows,
                finished_at=runtime.clock(),
            )
        )
        record_event(
            session,
            action=AuditAction.DATA_LOAD,
            actor=actor,
            target=Target("dataset", dataset),
            details={
                "file": file_label(path),
                "sha256": result.sha256,
                "rows": result.rows,
                "format": result.format,
                "keys_failing_check": len(result.failing_keys),
                **({"keys_failing_check_more": True} if result.failing_keys_more else {}),
            },
            clock=runtime.clock,
        )
    return result
