"""Checking a verification's parameters: the policy's step (from review)."""

from __future__ import annotations

import pytest

from catalog import Parameter
from sandbox.engine.params import _number


@pytest.mark.parametrize(
    ("kind", "step", "value", "wanted"),
    [
        ("number", 10_000, 10**40, None),  # a Decimal remainder raised DivisionImpossible: a 500
        ("number", 10_000, 1e300, None),
        ("number", 10_000, 1e300 + 1e284, None),  # still a whole multiple as written
        ("integer", 5, 5 * 10**30 + 1, "a multiple of 5 (the policy's step for it)"),
        ("number", 1_000_000, 1_500_000, "a multiple of 1000000 (the policy's step for it)"),
        ("number", 1_234_567, 1, "a multiple of 1234567 (the policy's step for it)"),
        ("number", 0.1, 0.3, None),
        ("number", 0.1, 0.30000000000000004, "a multiple of 0.1 (the policy's step for it)"),
        ("number", 10_000, -0.0, None),
        ("number", 10_000, 610_000.0000000001, "a multiple of 10000 (the policy's step for it)"),
    ],
)
def test_a_step_is_checked_exactly_at_any_magnitude_and_said_plainly(
    kind: str, step: float, value: float, wanted: str | None
) -> None:
    param = Parameter.model_validate({"name": "t", "type": kind, "step": step})
    checked, why = _number(param, value)
    assert why == wanted
    if wanted is None:
        assert checked == value
