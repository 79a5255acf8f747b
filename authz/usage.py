"""Atomic spending of an authorization's daily calls and ε budget, and its usage summary.

Both spends are one conditional ``UPDATE`` whose ``WHERE`` holds the limit, so the check and the
charge cannot be separated by another writer: PostgreSQL re-evaluates the condition on the row
version it locked, and SQLite runs one writer at a time (``BEGIN IMMEDIATE``, see ``core.db``).
A refused spend changes nothing. Neither records an audit event: the job it pays for does.

"Today" is the calendar day in Asia/Shanghai, where the bureau works, so a quota renews at local
midnight (16:00 UTC), not at 08:00 in the middle of the working day.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any, TypedDict, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import CursorResult, Executable, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from authz.contract_models import EPSILON_SLACK, Authorization, AuthorizationUsage
from authz.errors import BudgetExhausted, QuotaExceeded
from core.errors import Invalid, NotFound


def _bureau_zone() -> tzinfo:
    try:
        return ZoneInfo("Asia/Shanghai")
    except ZoneInfoNotFoundError:
        # A slim image without tz data: China has kept UTC+8 without daylight saving since 1991.
        return timezone(timedelta(hours=8), "CST")


BUREAU_ZONE = _bureau_zone()


class Usage(TypedDict):
    """What an authorization has used: today's calls and its ε budget."""

    calls_today: int
    daily_quota: int
    epsilon_spent: float
    epsilon_remaining: float
    epsilon_total: float


def bureau_day(now: datetime) -> date:
    """The bureau's calendar day at ``now`` (Asia/Shanghai)."""
    return now.astimezone(BUREAU_ZONE).date()


def spend_call(session: Session, contract_id: str, *, now: datetime) -> int:
    """Count one call against today's quota and return today's calls; :class:`QuotaExceeded` if full.

    Spending does not check validity: the caller runs :func:`authz.contracts.check_active` first.
    """
    contract = _contract(session, contract_id)
    day = bureau_day(now)
    session.execute(_insert_day(session, contract_id, day))
    result = session.execute(
        update(AuthorizationUsage)
        .where(
            AuthorizationUsage.authorization_id == contract_id,
            AuthorizationUsage.day == day,
            AuthorizationUsage.calls < contract.daily_quota,
        )
        .values(calls=AuthorizationUsage.calls + 1)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount != 1:
        raise QuotaExceeded(f"the daily quota of {contract.daily_quota} calls is used up")
    return _calls_on(session, contract_id, day)


def _insert_day(session: Session, contract_id: str, day: date) -> Executable:
    """``INSERT`` today's counter at zero unless it exists; concurrent inserts wait, none fails."""
    row = {"authorization_id": contract_id, "day": day, "calls": 0}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(AuthorizationUsage).values(row).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(AuthorizationUsage).values(row).on_conflict_do_nothing()
    raise NotImplementedError(f"no atomic insert-if-missing for {dialect}")


def spend_epsilon(session: Session, contract_id: str, epsilon: float) -> float:
    """Charge ``epsilon`` to the budget and return what remains; :class:`BudgetExhausted` if over."""
    contract = _contract(session, contract_id)
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not math.isfinite(epsilon):
        raise Invalid("epsilon must be a finite number", details=[_epsilon_problem(contract)])
    if not 0 < epsilon <= contract.epsilon_per_query:
        raise Invalid("epsilon is out of range", details=[_epsilon_problem(contract)])
    result = session.execute(
        update(Authorization)
        .where(
            Authorization.id == contract_id,
            Authorization.epsilon_spent + epsilon <= Authorization.epsilon_total + EPSILON_SLACK,
        )
        .values(epsilon_spent=Authorization.epsilon_spent + epsilon)
        .execution_options(synchronize_session=False)
    )
    # The UPDATE bypassed the loaded object; reload the figure rather than trust a stale one.
    session.refresh(contract, ["epsilon_spent"])
    if cast(CursorResult[Any], result).rowcount != 1:
        raise BudgetExhausted(f"spending ε={epsilon} would exceed the budget of ε={contract.epsilon_total}")
    return max(contract.epsilon_total - contract.epsilon_spent, 0.0)


def _epsilon_problem(contract: Authorization) -> dict[str, str]:
    return {"field": "epsilon", "message": f"a number above 0 and at most {contract.epsilon_per_query}"}


def usage(session: Session, contract: Authorization, now: datetime) -> Usage:
    """Today's calls (bureau day) and the ε budget of ``contract``."""
    return Usage(
        calls_today=_calls_on(session, contract.id, bureau_day(now)),
        daily_quota=contract.daily_quota,
        epsilon_spent=contract.epsilon_spent,
        epsilon_remaining=max(contract.epsilon_total - contract.epsilon_spent, 0.0),
        epsilon_total=contract.epsilon_total,
    )


def _calls_on(session: Session, contract_id: str, day: date) -> int:
    query = select(AuthorizationUsage.calls).where(
        AuthorizationUsage.authorization_id == contract_id, AuthorizationUsage.day == day
    )
    return int(session.execute(query).scalar_one_or_none() or 0)


def _contract(session: Session, contract_id: str) -> Authorization:
    contract = session.get(Authorization, contract_id)
    if contract is None:
        raise NotFound("no such authorization")
    return contract
