"""The ``stats`` and ``math`` helpers programs get instead of real modules."""

from __future__ import annotations

import math

import pytest

from sandbox.compute.stats import (
    MathHelpers,
    StatsHelpers,
    column,
    count,
    group_by,
    mean,
    median,
    quantile,
    stdev,
    total,
    variance,
)


def test_summaries() -> None:
    values = [1, 2, 3, 4]
    assert count(values) == 4 and count(x for x in values) == 4
    assert total(values) == 10 and isinstance(total(values), int) and total([0.1] * 10) == 1.0
    assert mean(values) == 2.5 and median(values) == 2.5 and median([3, 1, 2]) == 2
    assert quantile(values, 0) == 1 and quantile(values, 1) == 4 and quantile(values, 0.25) == 1.75
    assert variance(values) == 1.25 and stdev(values) == math.sqrt(1.25)
    assert total([]) == 0


def test_bad_input_is_an_error_not_a_guess() -> None:
    for call in (lambda: mean([]), lambda: median([])):
        with pytest.raises(ValueError, match="no values"):
            call()
    with pytest.raises(ValueError, match="between 0 and 1"):
        quantile([1], 1.5)
    for call in (lambda: total([1, None]), lambda: mean(["1"]), lambda: total([True])):
        with pytest.raises(TypeError):
            call()


def test_rows_helpers() -> None:
    rows = [{"d": "a", "v": 1}, {"d": "b", "v": None}, {"d": "a", "v": 3}]
    assert column(rows, "v") == (1, 3)
    assert group_by(rows, "d") == {"a": (rows[0], rows[2]), "b": (rows[1],)}
    with pytest.raises(TypeError):
        column(rows, 1)  # type: ignore[arg-type]


def test_helpers_are_slot_less_namespaces() -> None:
    assert StatsHelpers().sum([1, 2]) == 3 and MathHelpers().log(math.e) == 1.0
    with pytest.raises(AttributeError):
        StatsHelpers().extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        MathHelpers().sqrt("4")  # type: ignore[arg-type]
