"""Aggregates: checked against policy and contract, one pushed-down query, noised, charged, sealed.

1. Check (control database): the contract is the operator's own, active, grants ``aggregate`` and
   the dataset; the spec passes :mod:`sandbox.engine.spec`; ε is finite, above 0 and within the
   per-query cap. The same canonical query answered before under this contract is served from the
   cache: same noisy rows, same seal, nothing charged.
2. Compute (data database, no control lock held): one SQL query, then suppression and noise.
3. Release (one control transaction): the contract is checked again (it may have been revoked
   meanwhile), a call is spent, the ε of record is charged by a conditional update (refused with
   ``budget_exhausted``, charging nothing, if it would overspend), then the event, the seal and the
   cache entry are written. Two identical queries racing both compute, but the cache's primary key
   lets one commit; the other rolls back its charge and returns the winner's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit import Actor, AuditAction, Target, record_event
from authz import contracts, usage
from authz.contract_models import Authorization, epsilon_problem
from core.clock import rfc3339
from core.db import transaction
from core.ids import time_ordered_id
from sandbox.engine.aggregate_sql import run_aggregate_sql
from sandbox.engine.errors import JobInvalid, OutOfScope, label, problem
from sandbox.engine.models import AggregateAnswer, ResultKind
from sandbox.engine.privacy import NoisyAnswer, answer_delta, noisy_answer
from sandbox.engine.sealing import Release, release
from sandbox.engine.spec import AggregateQuery, parse_query
from sandbox.models import DataLoad
from sandbox.runtime import Runtime

MAX_LOGGED_QUERY = 8_000  # characters of canonical query kept in the audit event


@dataclass(frozen=True)
class AggregateRequest:
    """What an operator asks: a spec and its ε, under a contract."""

    authorization_id: str
    spec: dict[str, Any]
    epsilon: float | None


@dataclass(frozen=True)
class _Checked:
    query: AggregateQuery
    min_cell_size: int
    contract_id: str
    delta: float  # the answer's δ, its share of the policy's delta_total (see privacy.answer_delta)


def _epsilon(contract: Authorization, given: float | None) -> float:
    """The ε of record: the client's, if finite, at least ``EPSILON_MIN`` and within the cap; else
    the cap itself."""
    epsilon = contract.epsilon_per_query if given is None else given
    found = epsilon_problem(epsilon, contract.epsilon_per_query)
    if found is not None:
        raise JobInvalid("epsilon is out of range", details=[found])
    return float(epsilon)


def _check(runtime: Runtime, session: Session, request: AggregateRequest, operator_id: str) -> _Checked:
    now = runtime.clock()
    contract = contracts.get_contract(session, request.authorization_id, operator_id=operator_id)
    contracts.check_active(contract, now)
    if not contract.allows_operation("aggregate"):
        raise OutOfScope(
            "the authorization does not grant aggregate", details=[problem("operations", "aggregate")]
        )
    name = request.spec.get("dataset")
    if not isinstance(name, str) or name not in runtime.catalog.datasets:
        raise JobInvalid("no such dataset", details=[problem("dataset", f"{label(name)} is not a dataset")])
    granted = set(contract.allowed_fields(name))
    if not granted:
        raise OutOfScope(
            f"the authorization does not cover dataset {name}", details=[problem("dataset", name)]
        )
    query = parse_query(
        runtime.catalog.dataset(name), granted, request.spec, _epsilon(contract, request.epsilon)
    )
    cell = max(runtime.catalog.min_cell_size(name), contract.min_cell_size)
    # ε is within the per-query cap here, so the contract's total is above 0.
    delta = answer_delta(runtime.catalog.disclosure.delta_total, query.epsilon, contract.epsilon_total)
    return _Checked(query=query, min_cell_size=cell, contract_id=contract.id, delta=delta)


def run_aggregate(
    runtime: Runtime, request: AggregateRequest, *, operator_id: str, actor: Actor, request_id: str | None
) -> dict[str, Any]:
    """Check, compute, charge, seal and return one aggregate (or its cached answer)."""
    with transaction(runtime.sessions) as session:
        checked = _check(runtime, session, request, operator_id)
        cached = session.get(AggregateAnswer, (checked.contract_id, checked.query.sha256))
        # The last load, for a query that reads the data: one checked against another policy
        # (edited, the server not restarted since) must be checked again against this one.
        loaded = session.scalar(select(func.max(DataLoad.id))) if cached is None else None
    noisy = None
    if cached is None:
        stores = runtime.stores
        with stores.reading(stores.scan, [(checked.query.dataset, checked.query.fields)]) as conn:
            # The noise is scaled by the policy's bound on rows per subject: it must hold in the data.
            stores.require_row_bound(conn, stores.scan, checked.query.dataset, loaded=loaded)
            totals = run_aggregate_sql(conn, checked.query)
        noisy = noisy_answer(checked.query, totals, checked.min_cell_size, checked.delta)
    for attempt in (1, 2):
        try:
            with transaction(runtime.sessions) as session:
                return _release(runtime, session, request, checked, noisy, operator_id, actor, request_id)
        except IntegrityError:
            if attempt == 2:
                raise
            noisy = None  # another request released this query first: serve its answer
    raise AssertionError("unreachable")


def _release(
    runtime: Runtime,
    session: Session,
    request: AggregateRequest,
    checked: _Checked,
    noisy: NoisyAnswer | None,
    operator_id: str,
    actor: Actor,
    request_id: str | None,
) -> dict[str, Any]:
    now = runtime.clock()
    contract = contracts.get_contract(session, request.authorization_id, operator_id=operator_id)
    contracts.check_active(contract, now)
    usage.spend_call(session, contract.id, now=now)
    cached = session.get(AggregateAnswer, (contract.id, checked.query.sha256))
    if cached is not None:
        return _serve_cached(session, runtime, contract, cached, actor, request_id)
    if noisy is None:  # the cached answer vanished: nothing to serve, nothing charged
        raise JobInvalid("the cached answer is gone; ask again", details=[problem("query", "retry")])
    remaining = usage.spend_epsilon(session, contract.id, checked.query.epsilon)
    return _release_new(session, runtime, contract, checked, noisy, remaining, now, actor, request_id)


def _release_new(
    session: Session,
    runtime: Runtime,
    contract: Authorization,
    checked: _Checked,
    noisy: NoisyAnswer,
    remaining: float,
    now: datetime,
    actor: Actor,
    request_id: str | None,
) -> dict[str, Any]:
    query = checked.query
    canonical = query.canonical()
    answer = {
        "dataset": query.dataset.name,
        "query": canonical,
        "query_sha256": query.sha256,
        "rows": noisy.rows,
        "suppressed_groups": noisy.suppressed_groups,
        "min_cell_size": checked.min_cell_size,
        "noisy_count_margin": noisy.margin,
        "rows_per_subject": query.rows_per_subject,
        "epsilon_spent": query.epsilon,
        "delta": checked.delta,
    }
    logged = canonical if len(str(canonical)) <= MAX_LOGGED_QUERY else None
    released = release(
        session,
        Release(
            kind=ResultKind.AGGREGATE,
            job_id=time_ordered_id(),
            operator_id=contract.operator_id,
            authorization_id=contract.id,
            answer=answer,
            action=AuditAction.AGGREGATE_RUN,
            details={
                "query_sha256": query.sha256,
                "query": logged,
                "epsilon": query.epsilon,
                "groups_released": len(noisy.rows),
                "suppressed_groups": noisy.suppressed_groups,
                "cached": False,
            },
        ),
        keys_dir=runtime.settings.keys_dir,
        actor=actor,
        request_id=request_id,
        clock=runtime.clock,
    )
    body = {**released.payload, "seal": released.seal}
    session.add(
        AggregateAnswer(
            authorization_id=contract.id,
            query_sha256=query.sha256,
            job_id=released.job_id,
            epsilon=query.epsilon,
            answer=body,
            created_at=now,
        )
    )
    session.flush()  # a concurrent twin's commit shows here as an IntegrityError
    return {**body, "epsilon_remaining": remaining, "charged": query.epsilon, "cached": False}


def _serve_cached(
    session: Session,
    runtime: Runtime,
    contract: Authorization,
    cached: AggregateAnswer,
    actor: Actor,
    request_id: str | None,
) -> dict[str, Any]:
    """The answer released before, as sealed then; the repeat is logged and charged nothing."""
    record_event(
        session,
        action=AuditAction.AGGREGATE_RUN,
        actor=actor,
        target=Target(ResultKind.AGGREGATE.value, cached.job_id),
        request_id=request_id,
        details={
            "authorization_id": contract.id,
            "query_sha256": cached.query_sha256,
            "epsilon": 0.0,
            "cached": True,
            "issued_at": rfc3339(cached.created_at),
        },
        clock=runtime.clock,
    )
    remaining = usage.epsilon_left(contract)
    return {**cached.answer, "epsilon_remaining": remaining, "charged": 0.0, "cached": True}
