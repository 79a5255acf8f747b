"""Atomic spending of an authorization's daily calls and ε budget, and its usage summary.

Both spends are one conditional ``UPDATE`` whose ``WHERE`` holds the limit, so the check and the
charge cannot be separated by another writer: PostgreSQL re-evaluates the condition on the row
version it locked, and SQLite runs one writer at a time (``BEGIN IMMEDIATE``, see ``core.db``).
A refused spend changes nothing. Neither records an audit event: the job it pays for does (and so
does a compute job that gives its ε back, see :func:`refund_epsilon`).

"Today" is the calendar day in Asia/Shanghai, where the bureau works, so a quota renews at local
midnight (16:00 UTC), not at 08:00 in the middle of the working day.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, TypedDict, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, CursorResult, Executable, bindparam, case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from authz.contract_models import (
    EPSILON_SLACK,
    Authorization,
    AuthorizationStatus,
    AuthorizationUsage,
    epsilon_problem,
)
from authz.errors import AuthorizationInactive, BudgetExhausted, QuotaExceeded
from core.db import Database, table_of, writing_connection
from core.errors import Invalid, NotFound
from core.prepared import Prepared


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


def quota_exceeded(daily_quota: int, now: datetime) -> QuotaExceeded:
    """The refusal of a call past ``daily_quota``, telling when the quota renews (the bureau's
    next midnight), in whole seconds rounded up."""
    renews = datetime.combine(bureau_day(now) + timedelta(days=1), time.min, tzinfo=BUREAU_ZONE)
    wait = max(1, math.ceil((renews - now).total_seconds()))
    return QuotaExceeded(f"the daily quota of {daily_quota} calls is used up", retry_after=wait)


_USAGE = table_of(AuthorizationUsage)
_CONTRACTS = table_of(Authorization)
# Built once: constructing a statement costs several times what executing it does.
# The contract, if it is approved and valid at ``now``.
_ACTIVE = select(_CONTRACTS.c.id).where(
    _CONTRACTS.c.id == bindparam("contract_id"),
    _CONTRACTS.c.status == AuthorizationStatus.APPROVED.value,
    _CONTRACTS.c.valid_from <= bindparam("now", type_=_CONTRACTS.c.valid_from.type),
    _CONTRACTS.c.valid_until > bindparam("now", type_=_CONTRACTS.c.valid_until.type),
)
_STILL_ACTIVE = _ACTIVE.exists()
# PostgreSQL: the contract row locked while it is active, before its counter is touched. The
# UPDATE's EXISTS alone reads a snapshot: a revocation committing while the UPDATE waited on the
# counter's row would go unseen, and the call's audit event would follow the revocation's. Held
# to the end of the transaction, the lock makes a revocation wait for the calls in flight
# instead. FOR NO KEY UPDATE, not FOR SHARE: a caller that goes on to spend ε updates this row,
# and two share locks each waiting to become an update would deadlock. It serializes nothing
# new: the calls of one contract already queue on the day's counter row. Rows that refer to the
# contract (a sealed result) can still be written. SQLite needs none of it: its writers take
# turns (core.db).
_LOCK_ACTIVE = Prepared(_ACTIVE.with_for_update(key_share=True))
_QUOTA = select(_CONTRACTS.c.daily_quota).where(_CONTRACTS.c.id == bindparam("contract_id"))
_SPEND_CALL = Prepared(
    update(_USAGE)
    .where(
        _USAGE.c.authorization_id == bindparam("contract_id"),
        _USAGE.c.day == bindparam("on_day", type_=_USAGE.c.day.type),
        _USAGE.c.calls < bindparam("quota", type_=_USAGE.c.calls.type),
        _STILL_ACTIVE,
    )
    .values(calls=_USAGE.c.calls + 1)
    .returning(_USAGE.c.calls)
)


def spend_call(session: Database, contract_id: str, *, now: datetime, daily_quota: int | None = None) -> int:
    """Count one call against today's quota and return today's calls; :class:`QuotaExceeded` if full.

    The spend also requires the contract to be approved and valid at ``now`` (refused with
    :class:`AuthorizationInactive` otherwise), so a check made earlier, in another transaction,
    still holds when the call is counted: a revocation that commits in between wins, and one that
    comes later waits for this transaction (on PostgreSQL, a lock on the contract row, taken
    before the counter's; :func:`spend_epsilon` in the same transaction then needs no other).
    ``daily_quota`` spares the read of the contract when the caller has it at hand.
    """
    conn = writing_connection(session)
    if daily_quota is None:
        daily_quota = conn.execute(_QUOTA, {"contract_id": contract_id}).scalar()
        if daily_quota is None:
            raise NotFound("no such authorization")
    contract = {"contract_id": contract_id, "now": now}
    if conn.dialect.name == "postgresql" and _LOCK_ACTIVE.first(conn, contract) is None:
        raise AuthorizationInactive("the authorization is no longer active")
    day = bureau_day(now)
    binds = {"contract_id": contract_id, "on_day": day, "quota": daily_quota, "now": now}
    calls = _SPEND_CALL.scalar(conn, binds)
    if calls is None:  # the day's first call has no counter yet; or the quota or contract refuses
        conn.execute(_insert_day(conn, contract_id, day))
        calls = _SPEND_CALL.scalar(conn, binds)
    if calls is None:
        if not conn.execute(select(_STILL_ACTIVE), binds).scalar():
            raise AuthorizationInactive("the authorization is no longer active")
        raise quota_exceeded(daily_quota, now)
    return int(calls)


def _insert_day(conn: Connection, contract_id: str, day: date) -> Executable:
    """``INSERT`` today's counter at zero unless it exists; concurrent inserts wait, none fails."""
    row = {"authorization_id": contract_id, "day": day, "calls": 0}
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(AuthorizationUsage).values(row).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(AuthorizationUsage).values(row).on_conflict_do_nothing()
    raise NotImplementedError(f"no atomic insert-if-missing for {dialect}")


def spend_epsilon(session: Session, contract_id: str, epsilon: float) -> float:
    """Charge ``epsilon`` to the budget and return what remains; :class:`BudgetExhausted` if over."""
    contract = _contract(session, contract_id)
    found = epsilon_problem(epsilon, contract.epsilon_per_query)
    if found is not None:
        raise Invalid("epsilon is out of range", details=[found])
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
    return epsilon_left(contract)


def refund_epsilon(session: Session, contract_id: str, epsilon: float) -> float:
    """Give back ``epsilon`` that paid for nothing released (a job that ended before its program
    saw a row); return what remains. One ``UPDATE`` on the spent figure as it is now, never below
    zero (a float sum may hold a few ulps less than the parts it is given back)."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"a refund is a positive, finite ε, not {epsilon!r}")
    contract = _contract(session, contract_id)
    left = Authorization.epsilon_spent - epsilon
    session.execute(
        update(Authorization)
        .where(Authorization.id == contract_id)
        .values(epsilon_spent=case((left > 0, left), else_=0.0))
        .execution_options(synchronize_session=False)
    )
    session.refresh(contract, ["epsilon_spent"])
    return epsilon_left(contract)


def epsilon_figure(value: float) -> float:
    """ε as it is shown: float sums drift by ulps (0.1 spent ten times is 0.9999999999999999, and
    what is left of 2.0 after 1.872 is 0.1280000000000001), so figures are rounded to 12
    decimals, far finer than any ε a query may spend (see ``EPSILON_MIN``)."""
    return round(value, 12)


def epsilon_left(contract: Authorization) -> float:
    """What remains of ``contract``'s ε budget, as shown."""
    return epsilon_figure(max(contract.epsilon_total - contract.epsilon_spent, 0.0))


def usage(session: Session, contract: Authorization, now: datetime) -> Usage:
    """Today's calls (bureau day) and the ε budget of ``contract``."""
    return Usage(
        calls_today=_calls_on(session, contract.id, bureau_day(now)),
        daily_quota=contract.daily_quota,
        epsilon_spent=epsilon_figure(contract.epsilon_spent),
        epsilon_remaining=epsilon_left(contract),
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
