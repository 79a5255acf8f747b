"""Time, injected: services take a ``Clock`` so tests can hold time still."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """Format a moment as RFC 3339 UTC with a ``Z`` suffix, as the API promises."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def as_utc(moment: datetime) -> datetime:
    """An aware ``moment`` in UTC; ``ValueError`` when UTC has no such time.

    ``0001-01-01T00:00+01:00`` is in year 0 once in UTC, and ``9999-12-31T23:59-01:00`` in year
    10000: Python raises ``OverflowError`` there, which a caller would otherwise meet deep in a
    query as a 500.
    """
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None
