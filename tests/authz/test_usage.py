"""Atomic spending of daily calls and ε: exact limits, nothing charged on refusal, race-free."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from authz import usage
from authz.contract_models import Authorization, AuthorizationStatus
from authz.errors import AuthorizationInactive, BudgetExhausted, QuotaExceeded
from core.db import transaction
from core.errors import Invalid
from sandbox.runtime import Runtime
from tests.factories import NOW, make_contract, make_operator

RACERS = 50


def _contract(runtime: Runtime, **limits: Any) -> Authorization:
    with transaction(runtime.sessions) as session:
        return make_contract(session, operator_id=make_operator(session).id, **limits)


def _spend_call(runtime: Runtime, contract_id: str, at: datetime = NOW) -> int:
    with transaction(runtime.sessions) as session:
        return usage.spend_call(session, contract_id, now=at)


def _spend_epsilon(runtime: Runtime, contract_id: str, epsilon: float) -> float:
    with transaction(runtime.sessions) as session:
        return usage.spend_epsilon(session, contract_id, epsilon)


def _usage(runtime: Runtime, contract_id: str, at: datetime = NOW) -> usage.Usage:
    with runtime.sessions() as session:
        contract = session.get(Authorization, contract_id)
        assert contract is not None
        return usage.usage(session, contract, at)


def test_calls_count_up_to_the_quota_then_are_refused(runtime: Runtime) -> None:
    contract = _contract(runtime, daily_quota=3)
    assert [_spend_call(runtime, contract.id) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(QuotaExceeded) as error:
        _spend_call(runtime, contract.id)
    assert (error.value.status, error.value.code) == (429, "quota_exceeded")
    assert _usage(runtime, contract.id)["calls_today"] == 3


def test_a_full_quota_says_when_it_renews_at_the_bureaus_midnight() -> None:
    """Asia/Shanghai midnight is 16:00 UTC: whole seconds to it, rounded up, never 0."""
    at = datetime(2026, 12, 5, 15, 59, 59, 200_000, tzinfo=UTC)
    assert usage.quota_exceeded(3, at).retry_after == 1
    assert (
        usage.quota_exceeded(3, at.replace(hour=16, minute=0, second=0, microsecond=0)).retry_after
        == 24 * 3600
    )
    assert (
        usage.quota_exceeded(3, at.replace(hour=4, minute=0, second=0, microsecond=0)).retry_after
        == 12 * 3600
    )


def test_a_call_is_not_counted_once_the_contract_stopped_being_active(runtime: Runtime) -> None:
    """The spend re-requires an active contract, so a check made in an earlier transaction (a
    verification reads outside its write) cannot outlive a revocation or the end of validity."""
    contract = _contract(runtime, daily_quota=5, valid_days=30)
    assert _spend_call(runtime, contract.id) == 1
    with pytest.raises(AuthorizationInactive):
        _spend_call(runtime, contract.id, NOW + timedelta(days=31))  # expired by then
    with transaction(runtime.sessions) as session:
        stored = session.get(Authorization, contract.id)
        assert stored is not None
        stored.status = AuthorizationStatus.REVOKED.value
    with pytest.raises(AuthorizationInactive) as error:
        _spend_call(runtime, contract.id)
    assert (error.value.status, error.value.code) == (403, "authorization_inactive")
    assert _usage(runtime, contract.id)["calls_today"] == 1  # neither refusal counted


def test_a_call_made_while_a_revocation_is_in_flight_waits_for_it_and_is_refused(runtime: Runtime) -> None:
    """The revocation has changed the contract but not committed when the call is counted: the
    call waits (PostgreSQL: the contract row's lock; SQLite: the writer lock) and then sees it.
    Counted from the snapshot instead, it would pass, and its audit event follow the revocation's."""
    contract = _contract(runtime, daily_quota=5)
    assert _spend_call(runtime, contract.id) == 1  # the day's counter exists: the UPDATE path

    def call() -> str:
        try:
            _spend_call(runtime, contract.id)
        except AuthorizationInactive as error:
            return error.code
        return "counted"

    revoking = runtime.sessions()
    try:
        revoking.begin()
        revoking.execute(
            update(Authorization)
            .where(Authorization.id == contract.id)
            .values(status=AuthorizationStatus.REVOKED.value)
        )
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(call)
            time.sleep(0.5)  # the call reaches the lock (were it not to wait, it is done by now)
            revoking.commit()
            assert pending.result(timeout=60) == "authorization_inactive"
    finally:
        revoking.close()
    assert _usage(runtime, contract.id)["calls_today"] == 1


def test_quota_renews_at_midnight_in_shanghai(runtime: Runtime) -> None:
    contract = _contract(runtime, daily_quota=1)
    last_minute = datetime(2026, 11, 23, 15, 59, tzinfo=UTC)  # 23:59 in Jinan
    _spend_call(runtime, contract.id, last_minute)
    with pytest.raises(QuotaExceeded):
        _spend_call(runtime, contract.id, last_minute)
    assert _spend_call(runtime, contract.id, last_minute + timedelta(minutes=1)) == 1
    assert usage.bureau_day(last_minute + timedelta(minutes=1)).isoformat() == "2026-11-24"


def test_epsilon_is_spent_up_to_the_budget_then_refused(runtime: Runtime) -> None:
    contract = _contract(runtime, epsilon_total=1.0, epsilon_per_query=0.5)
    for epsilon in (float("nan"), float("inf"), 0.0, -0.1, 0.51, True):
        with pytest.raises(Invalid):  # out of range: refused, and nothing charged
            _spend_epsilon(runtime, contract.id, epsilon)
    assert _usage(runtime, contract.id)["epsilon_spent"] == 0.0
    assert _spend_epsilon(runtime, contract.id, 0.5) == pytest.approx(0.5)
    assert _spend_epsilon(runtime, contract.id, 0.4) == pytest.approx(0.1)
    with pytest.raises(BudgetExhausted) as error:
        _spend_epsilon(runtime, contract.id, 0.2)
    assert (error.value.status, error.value.code) == (429, "budget_exhausted")
    assert _usage(runtime, contract.id)["epsilon_spent"] == pytest.approx(0.9)
    assert _spend_epsilon(runtime, contract.id, 0.1) == pytest.approx(
        0.0
    )  # spent exactly, despite float sums


def test_epsilon_figures_read_as_the_decimals_spent(runtime: Runtime) -> None:
    """Float sums drift by ulps: what was left of 2.0 after 1.872 read 0.1280000000000001."""
    contract = _contract(runtime, epsilon_total=2.0, epsilon_per_query=0.5)
    for epsilon in (0.5, 0.5, 0.5, 0.372):
        left = _spend_epsilon(runtime, contract.id, epsilon)
    assert 2.0 - (0.5 + 0.5 + 0.5 + 0.372) != 0.128  # the drift the figures hide
    assert left == 0.128
    assert _usage(runtime, contract.id)["epsilon_spent"] == 1.872
    assert _usage(runtime, contract.id)["epsilon_remaining"] == 0.128


def test_a_refund_gives_epsilon_back_never_below_zero_and_only_a_real_amount(runtime: Runtime) -> None:
    contract = _contract(runtime, epsilon_total=1.0, epsilon_per_query=0.5)
    _spend_epsilon(runtime, contract.id, 0.1)
    _spend_epsilon(runtime, contract.id, 0.2)
    with transaction(runtime.sessions) as session:
        assert usage.refund_epsilon(session, contract.id, 0.2) == 0.9
    for amount in (float("nan"), float("inf"), 0.0, -0.1):
        with (
            pytest.raises(ValueError, match="a refund is a positive, finite ε"),
            transaction(runtime.sessions) as session,
        ):
            usage.refund_epsilon(session, contract.id, amount)
    assert _usage(runtime, contract.id)["epsilon_spent"] == 0.1
    # 0.1 + 0.2 - 0.2 may hold a few ulps less than 0.1: the last refund still ends at zero.
    with transaction(runtime.sessions) as session:
        assert usage.refund_epsilon(session, contract.id, 0.1 + 1e-15) == 1.0
    assert _usage(runtime, contract.id)["epsilon_spent"] == 0.0


def test_usage_reports_calls_and_budget(runtime: Runtime) -> None:
    contract = _contract(runtime, daily_quota=5, epsilon_total=2.0, epsilon_per_query=0.5)
    _spend_call(runtime, contract.id)
    _spend_call(runtime, contract.id)
    _spend_epsilon(runtime, contract.id, 0.5)
    assert _usage(runtime, contract.id) == {
        "calls_today": 2,
        "daily_quota": 5,
        "epsilon_spent": 0.5,
        "epsilon_remaining": 1.5,
        "epsilon_total": 2.0,
    }
    assert _usage(runtime, contract.id, NOW + timedelta(days=1))["calls_today"] == 0


def _race(runtime: Runtime, spend: Callable[[Session], object]) -> Counter[str]:
    """Run ``spend`` in RACERS threads released together, each in its own transaction."""
    barrier = threading.Barrier(RACERS)

    def one() -> str:
        barrier.wait(timeout=30)
        try:
            with transaction(runtime.sessions) as session:
                spend(session)
        except (QuotaExceeded, BudgetExhausted) as error:
            return error.code
        except Exception as error:  # reported, so a lock timeout shows as itself
            return f"{type(error).__name__}: {error}"
        return "ok"

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        futures = [pool.submit(one) for _ in range(RACERS)]
        return Counter(future.result(timeout=120) for future in futures)


def test_concurrent_calls_never_pass_the_quota(runtime: Runtime) -> None:
    contract = _contract(runtime, daily_quota=10)
    outcomes = _race(runtime, lambda session: usage.spend_call(session, contract.id, now=NOW))
    assert outcomes == Counter({"ok": 10, "quota_exceeded": 40})
    assert _usage(runtime, contract.id)["calls_today"] == 10


def test_concurrent_spends_never_pass_the_budget(runtime: Runtime) -> None:
    contract = _contract(runtime, epsilon_total=1.0, epsilon_per_query=0.1)
    outcomes = _race(runtime, lambda session: usage.spend_epsilon(session, contract.id, 0.1))
    assert outcomes == Counter({"ok": 10, "budget_exhausted": 40})
    assert _usage(runtime, contract.id)["epsilon_spent"] == pytest.approx(1.0)
