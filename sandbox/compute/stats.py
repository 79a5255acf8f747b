"""``stats`` and ``math`` as programs see them: small helpers written for the sandbox.

Real modules are never handed to a program: every module reaches others (``numpy.f2py.os``,
``pandas.compat.sys``, ``random``'s shared state), and a module is a shared object one job could
poison for the next. These are plain functions over plain values, exposed as attributes of two
slot-less namespace objects; the attribute guard lets a program read exactly the names listed in
``STATS_NAMES`` and ``MATH_NAMES`` and nothing on the functions themselves.

Standard library only: imported by the child.
"""

from __future__ import annotations

import math as _math
from collections.abc import Iterable, Mapping
from typing import Any

Number = int | float


def _numbers(values: Iterable[Any]) -> list[Number]:
    out: list[Number] = []
    for value in values:
        if type(value) not in (int, float):
            raise TypeError("stats functions take numbers only; use stats.column to drop missing values")
        out.append(value)
    return out


def _nonempty(values: Iterable[Any]) -> list[Number]:
    numbers = _numbers(values)
    if not numbers:
        raise ValueError("no values")
    return numbers


def count(values: Iterable[Any]) -> int:
    """How many values (of any kind) there are."""
    return sum(1 for _ in values)


def total(values: Iterable[Any]) -> Number:
    """The sum of numbers (exact for integers, ``math.fsum`` for floats); 0 when empty."""
    numbers = _numbers(values)
    if all(type(n) is int for n in numbers):
        return sum(numbers)
    return _math.fsum(numbers)


def mean(values: Iterable[Any]) -> float:
    """The arithmetic mean; ``ValueError`` when empty."""
    numbers = _nonempty(values)
    return _math.fsum(numbers) / len(numbers)


def quantile(values: Iterable[Any], q: Number) -> float:
    """The ``q``-quantile (0 ≤ q ≤ 1), interpolating linearly between order statistics."""
    if type(q) not in (int, float) or not 0 <= q <= 1:
        raise ValueError("q must be a number between 0 and 1")
    ordered = sorted(_nonempty(values))
    position = (len(ordered) - 1) * q
    low = _math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def median(values: Iterable[Any]) -> float:
    """The median (the 0.5-quantile)."""
    return quantile(values, 0.5)


def variance(values: Iterable[Any]) -> float:
    """The population variance; ``ValueError`` when empty."""
    numbers = _nonempty(values)
    centre = _math.fsum(numbers) / len(numbers)
    return _math.fsum((n - centre) ** 2 for n in numbers) / len(numbers)


def stdev(values: Iterable[Any]) -> float:
    """The population standard deviation."""
    return _math.sqrt(variance(values))


def column(rows: Iterable[Mapping[str, Any]], field: str) -> tuple[Any, ...]:
    """The values of ``field`` over ``rows``, missing (``None``) values left out."""
    if type(field) is not str:
        raise TypeError("field must be a string")
    return tuple(row[field] for row in rows if row[field] is not None)


def group_by(rows: Iterable[Mapping[str, Any]], field: str) -> dict[Any, tuple[Any, ...]]:
    """Rows grouped by the value of ``field``: a new dict of value → tuple of rows."""
    if type(field) is not str:
        raise TypeError("field must be a string")
    groups: dict[Any, list[Any]] = {}
    for row in rows:
        groups.setdefault(row[field], []).append(row)
    return {key: tuple(members) for key, members in groups.items()}


class StatsHelpers:
    """The ``stats`` object: attributes are the functions above, nothing else."""

    __slots__ = ()
    count = staticmethod(count)
    sum = staticmethod(total)
    mean = staticmethod(mean)
    median = staticmethod(median)
    quantile = staticmethod(quantile)
    variance = staticmethod(variance)
    stdev = staticmethod(stdev)
    column = staticmethod(column)
    group_by = staticmethod(group_by)


def _real(name: str) -> Any:
    function = getattr(_math, name)

    def wrapper(x: Number) -> Number:
        if type(x) not in (int, float):
            raise TypeError(f"math.{name} takes a number")
        return function(x)  # type: ignore[no-any-return]

    wrapper.__name__ = name
    wrapper.__doc__ = f"math.{name} for one number."
    return wrapper


class MathHelpers:
    """The ``math`` object: a few pure numeric functions and constants, not the real module."""

    __slots__ = ()
    pi = _math.pi
    e = _math.e
    inf = _math.inf
    sqrt = staticmethod(_real("sqrt"))
    exp = staticmethod(_real("exp"))
    log = staticmethod(_real("log"))
    log10 = staticmethod(_real("log10"))
    floor = staticmethod(_real("floor"))
    ceil = staticmethod(_real("ceil"))
    fabs = staticmethod(_real("fabs"))
    isfinite = staticmethod(_real("isfinite"))
    isnan = staticmethod(_real("isnan"))


STATS_NAMES = frozenset(
    {"count", "sum", "mean", "median", "quantile", "variance", "stdev", "column", "group_by"}
)
MATH_NAMES = frozenset(
    {"pi", "e", "inf", "sqrt", "exp", "log", "log10", "floor", "ceil", "fabs", "isfinite", "isnan"}
)
