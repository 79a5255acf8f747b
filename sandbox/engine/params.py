"""Checking a verification's parameters against its template: types, ranges, choices, every problem.

Deny by default: an undeclared parameter is refused, a declared one is required, and a value is
accepted only in its declared type (a year given as ``"2024"`` or ``2024.0`` is refused, not
guessed at). The checked values are bound into the compiled SQL, never formatted into it.
"""

from __future__ import annotations

import math
from datetime import date
from fractions import Fraction
from typing import Any

from catalog import FieldType, Parameter, Template
from sandbox.engine.errors import JobInvalid, label, problem

MAX_LIST = 100  # values of a "many" parameter


def _scalar(param: Parameter, value: object) -> tuple[Any, str | None]:
    """The value checked against the parameter's type, range and choices, or why not."""
    kind = param.type
    if kind is FieldType.BOOLEAN:
        return (value, None) if isinstance(value, bool) else (None, "true or false")
    if kind.numeric:
        return _number(param, value)
    if not isinstance(value, str):
        return None, "a string" if kind is FieldType.STRING else "a date as YYYY-MM-DD"
    if kind is FieldType.DATE:
        try:
            return date.fromisoformat(value), None
        except ValueError:
            return None, "a date as YYYY-MM-DD"
    if not 1 <= len(value) <= param.max_length:
        return None, f"1-{param.max_length} characters"
    if param.choices is not None and value not in param.choices:
        return None, f"one of {', '.join(map(str, param.choices))}"
    return value, None


def _number(param: Parameter, value: object) -> tuple[Any, str | None]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, "an integer" if param.type is FieldType.INTEGER else "a number"
    if param.type is FieldType.INTEGER and not isinstance(value, int):
        return None, "an integer"
    if isinstance(value, float) and not math.isfinite(value):
        return None, "a finite number"
    low = -math.inf if param.min is None else param.min
    high = math.inf if param.max is None else param.max
    if not low <= value <= high:
        return None, f"from {param.min} to {param.max}"
    if param.step is not None and _off_step(value, param.step):
        return None, f"a multiple of {_plain(param.step)} (the policy's step for it)"
    if param.choices is not None and value not in param.choices:
        return None, f"one of {', '.join(map(str, param.choices))}"
    return value, None


def _off_step(value: int | float, step: float) -> bool:
    """Whether ``value`` is not a whole multiple of ``step``, both read as written (``repr``:
    0.3 is a multiple of 0.1), exactly at any magnitude (a ``Decimal`` remainder had raised
    ``DivisionImpossible``, a 500, past 28 digits of quotient)."""
    return Fraction(repr(value)) % Fraction(repr(step)) != 0


def _plain(step: float) -> str:
    """The step as a client would write it: 1000000, not ``1e+06``; 1234567, not ``1.23457e+06``."""
    return str(int(step)) if float(step).is_integer() else repr(step)


def _value(param: Parameter, value: object) -> tuple[Any, list[str]]:
    if not param.many:
        checked, why = _scalar(param, value)
        return checked, [why] if why else []
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST:
        return None, [f"a list of 1-{MAX_LIST} values"]
    out, problems = [], []
    for index, item in enumerate(value):
        checked, why = _scalar(param, item)
        if why:
            problems.append(f"[{index}]: {why}")
        elif checked not in out:
            out.append(checked)
    return out, problems


def check_params(template: Template, given: object) -> dict[str, Any]:
    """The template's parameters, checked; :class:`JobInvalid` lists every problem."""
    if not isinstance(given, dict):
        raise JobInvalid("1 problem(s) with the parameters", details=[problem("params", "an object")])
    problems = [
        problem(f"params.{label(name)}", f"template {template.name} has no such parameter")
        for name in given
        if template.parameter(str(name)) is None
    ]
    checked: dict[str, Any] = {}
    for param in template.parameters:
        if param.name not in given:
            problems.append(problem(f"params.{param.name}", "required"))
            continue
        value, whys = _value(param, given[param.name])
        problems.extend(problem(f"params.{param.name}", why) for why in whys)
        checked[param.name] = value
    if problems:
        raise JobInvalid(f"{len(problems)} problem(s) with the parameters", details=problems)
    return checked


def json_ready(params: dict[str, Any]) -> dict[str, Any]:
    """The checked parameters as JSON values (dates as ISO text), for the seal and the log."""

    def one(value: Any) -> Any:
        if isinstance(value, list):
            return [one(item) for item in value]
        return value.isoformat() if isinstance(value, date) else value

    return {name: one(value) for name, value in params.items()}
