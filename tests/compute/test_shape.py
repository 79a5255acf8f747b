"""Output shape checks on exact types, and OUTPUT_BOUNDS declarations."""

from __future__ import annotations

import pytest

from sandbox.compute.shape import (
    MAX_LEAVES,
    ShapeError,
    ShapeProblem,
    check_result,
    flatten,
    flatten_bounds,
    parse_bounds,
    unflatten,
)


@pytest.mark.parametrize("value", [0, -3, 2.5, True, {"a": 1}, {"a": {"b": 1.5, "c": 2}}, {"历下区": 1}])
def test_numbers_and_small_mappings_pass_as_fresh_plain_values(value: object) -> None:
    checked = check_result(value)
    assert checked == value
    if isinstance(value, dict):
        assert checked is not value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, ShapeProblem.NOT_NUMBER_OR_MAPPING),
        ("42", ShapeProblem.NOT_NUMBER_OR_MAPPING),
        ([1], ShapeProblem.NOT_NUMBER_OR_MAPPING),
        ((1,), ShapeProblem.NOT_NUMBER_OR_MAPPING),
        ({"a": [1]}, ShapeProblem.NOT_NUMBER_OR_MAPPING),
        ({"a": None}, ShapeProblem.NOT_NUMBER_OR_MAPPING),
        (float("inf"), ShapeProblem.NOT_FINITE),
        (2**53 + 1, ShapeProblem.NUMBER_TOO_LARGE),
        ({"a": {"b": {"c": 1}}}, ShapeProblem.TOO_DEEP),
        ({str(i): i for i in range(MAX_LEAVES + 1)}, ShapeProblem.TOO_MANY_KEYS),
        ({str(i): {str(j): j for j in range(9)} for i in range(8)}, ShapeProblem.TOO_MANY_KEYS),
        ({"a\n": 1}, ShapeProblem.BAD_KEY),
        ({("a",): 1}, ShapeProblem.BAD_KEY),
        ({}, ShapeProblem.EMPTY_MAPPING),
    ],
)
def test_anything_else_is_refused_by_rule(value: object, problem: ShapeProblem) -> None:
    with pytest.raises(ShapeError) as refused:
        check_result(value)
    assert refused.value.problem is problem


def test_subclasses_are_refused_whatever_they_claim() -> None:
    class Agg(dict):  # type: ignore[type-arg]
        def values(self):  # type: ignore[no-untyped-def]
            return [42.0]

    class Num(float):
        pass

    for sneaky in (Agg(mean=42.0, rows=[{"x": 1}]), Num(1.0), {"a": Num(1.0)}):
        with pytest.raises(ShapeError):
            check_result(sneaky)


def test_bounds_parse_flatten_and_round_trip() -> None:
    bounds = parse_bounds({"a": [0, 1], "b": {"c": [-1.5, 2]}})
    assert flatten_bounds(bounds) == {("a",): (0.0, 1.0), ("b", "c"): (-1.5, 2.0)}
    assert parse_bounds([0, 10]) == (0.0, 10.0)
    assert unflatten(flatten({"a": 1, "b": {"c": 2}})) == {"a": 1.0, "b": {"c": 2.0}}
    huge = 10**400  # beyond any float: it had escaped as OverflowError, a 500 at submission
    for bad in (
        [1, 1], [0], [0, "1"], [0, True], {"a": {"b": {"c": [0, 1]}}}, {}, {"": [0, 1]}, 5,
        [0, huge], {"a": [-huge, 0]}, [0, 1e400],
    ):  # fmt: skip
        with pytest.raises(ShapeError):
            parse_bounds(bad)


def test_bounds_near_the_float_maximum_are_refused() -> None:
    """Ends near the float maximum let a private release's average overflow to inf when one
    partition moves to its bound, and a range wider than it gives infinite noise (NaN): either
    released one subject's bit at any ε (attacks/test_a1_compute_overflow.py)."""
    assert parse_bounds([-1e15, 1e15]) == (-1e15, 1e15)
    for bad in ([0, 1e308], [-1e308, 1e308], {"a": [0, 1.5e15]}, [-2e15, 0]):
        with pytest.raises(ShapeError):
            parse_bounds(bad)
