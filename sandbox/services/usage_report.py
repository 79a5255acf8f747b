"""Usage over time for the auditor's charts: calls, denials and ε spent per day.

Calls come from the quota counters (one row per contract and bureau day), ε from what spent it:
the aggregate answers (each charged once, when first released) and the compute jobs (charged when
they start, and kept unless a job gave its ε back), so a contract's ε over all days is its ε of
record. Denials come from the audit log (an operator's refused requests). Days are the bureau's
(Asia/Shanghai), as quotas are; a job's ε falls on the day it (last) started.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.actions import ActorKind, Outcome
from audit.models import AuditEvent
from authz.contract_models import Authorization, AuthorizationUsage
from authz.usage import BUREAU_ZONE, bureau_day
from sandbox.compute.models import ComputeJob
from sandbox.engine.models import AggregateAnswer

MAX_DAYS = 90


@dataclass(frozen=True)
class UsageSeries:
    """One value per day, oldest first, for each measure."""

    days: list[date]
    calls: list[int]
    denials: list[int]
    epsilon: list[float]

    @property
    def totals(self) -> dict[str, float]:
        """Sums over the period."""
        return {"calls": sum(self.calls), "denials": sum(self.denials), "epsilon": sum(self.epsilon)}


def usage_series(
    session: Session,
    *,
    now: datetime,
    days: int = 14,
    operator_id: str | None = None,
    authorization_id: str | None = None,
) -> UsageSeries:
    """Daily usage over the last ``days`` bureau days, of all operators or one, or one contract.

    Denials are an operator's: a refused request names its caller, not always a contract, so
    with a contract they are its operator's denials.
    """
    days = max(1, min(days, MAX_DAYS))
    last = bureau_day(now)
    axis = [last - timedelta(days=n) for n in range(days - 1, -1, -1)]
    index = {day: i for i, day in enumerate(axis)}
    contracts = select(Authorization.id)
    if operator_id is not None:
        contracts = contracts.where(Authorization.operator_id == operator_id)
    if authorization_id is not None:
        contracts = contracts.where(Authorization.id == authorization_id)
        owner = session.get(Authorization, authorization_id)
        operator_id = owner.operator_id if owner is not None else "-"
    calls = [0] * days
    for day, count in session.execute(
        select(AuthorizationUsage.day, AuthorizationUsage.calls).where(
            AuthorizationUsage.authorization_id.in_(contracts), AuthorizationUsage.day >= axis[0]
        )
    ):
        if day in index:
            calls[index[day]] += int(count)
    start = datetime.combine(axis[0], datetime.min.time(), BUREAU_ZONE)
    epsilon = [0.0] * days
    answers = select(AggregateAnswer.created_at, AggregateAnswer.epsilon).where(
        AggregateAnswer.authorization_id.in_(contracts), AggregateAnswer.created_at >= start
    )
    jobs = select(ComputeJob.started_at, ComputeJob.epsilon_spent).where(
        ComputeJob.authorization_id.in_(contracts),
        ComputeJob.started_at >= start,
        ComputeJob.epsilon_spent > 0,
    )
    for spends in (answers, jobs):
        for at, spent in session.execute(spends):
            slot = index.get(bureau_day(at)) if at is not None else None  # a started job has a time
            if slot is not None:
                epsilon[slot] += float(spent)
    denied = select(AuditEvent.occurred_at).where(
        AuditEvent.outcome == Outcome.DENIED.value,
        AuditEvent.actor_kind == ActorKind.OPERATOR.value,
        AuditEvent.occurred_at >= start,
    )
    if operator_id is not None:
        denied = denied.where(AuditEvent.actor_id == operator_id)
    denials = [0] * days
    for (at,) in session.execute(denied):
        slot = index.get(bureau_day(at))
        if slot is not None:
            denials[slot] += 1
    return UsageSeries(days=axis, calls=calls, denials=denials, epsilon=[round(e, 6) for e in epsilon])
