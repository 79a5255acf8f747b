"""What may leave a program: a number, or a small mapping of short keys to numbers.

Checked twice: in the child before its answer is written to the pipe, and in the parent on the
JSON it read back (a child is never trusted). Every check is on the exact type, never through a
method of the value, so nothing the program built can answer for itself. A refusal names a
fixed code, never the value.

This module is imported by the child: standard library only.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import TypeAlias

MAX_DEPTH = 2
MAX_LEAVES = 64
MAX_KEY_LENGTH = 64
# Integers beyond 2**53 are refused: a bignum is an unbounded channel for smuggling bytes out.
MAX_ABS_INT = 2**53
# The largest magnitude an OUTPUT_BOUNDS end may have. A private release averages k clamped
# outputs and adds noise scaled to the range: ends near the float maximum made that sum overflow
# to inf when ONE partition moved to its bound (inf + noise is inf, clamped to exactly ``hi``), and
# a range wider than the float maximum gave infinite noise and NaN; either way whether a release
# came out at its bound, as NaN or not at all said what one subject's rows held, at any ε (found
# by a privacy sweep). 1e15 holds any money figure to the fen; k * 2e15 is far from overflow.
MAX_ABS_BOUND = 1e15

Number: TypeAlias = int | float
ResultValue: TypeAlias = "int | float | bool | dict[str, ResultValue]"
Bounds: TypeAlias = tuple[float, float]
OutputBounds: TypeAlias = "Bounds | dict[str, OutputBounds]"
Path: TypeAlias = tuple[str, ...]


class ShapeProblem(StrEnum):
    """Why an output or a bounds declaration was refused; safe to show, it carries no value."""

    NO_RESULT = "no_result"
    NOT_NUMBER_OR_MAPPING = "not_number_or_mapping"
    NOT_FINITE = "not_finite"
    NUMBER_TOO_LARGE = "number_too_large"
    BAD_KEY = "bad_key"
    TOO_DEEP = "too_deep"
    TOO_MANY_KEYS = "too_many_keys"
    EMPTY_MAPPING = "empty_mapping"
    UNDECLARED_KEY = "undeclared_key"
    BAD_BOUNDS = "bad_bounds"


class ShapeError(ValueError):
    """An output (or OUTPUT_BOUNDS) that may not leave; ``problem`` says which rule."""

    def __init__(self, problem: ShapeProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


def _check_key(key: object) -> str:
    if type(key) is not str or not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise ShapeError(ShapeProblem.BAD_KEY)
    return key


def _check_number(value: object) -> int | float | bool:
    kind = type(value)
    if kind is bool:
        return bool(value)
    if kind is int:
        number: int = value  # type: ignore[assignment]
        if abs(number) > MAX_ABS_INT:
            raise ShapeError(ShapeProblem.NUMBER_TOO_LARGE)
        return number
    if kind is float:
        real: float = value  # type: ignore[assignment]
        if not math.isfinite(real):
            raise ShapeError(ShapeProblem.NOT_FINITE)
        return real
    raise ShapeError(ShapeProblem.NOT_NUMBER_OR_MAPPING)


def check_result(value: object) -> ResultValue:
    """A fresh, plain copy of ``value`` if it may leave; ``ShapeError`` otherwise."""
    leaves = [0]
    return _check_node(value, 0, leaves)


def _check_node(value: object, depth: int, leaves: list[int]) -> ResultValue:
    if type(value) is not dict:
        leaves[0] += 1
        if leaves[0] > MAX_LEAVES:
            raise ShapeError(ShapeProblem.TOO_MANY_KEYS)
        return _check_number(value)
    if depth >= MAX_DEPTH:
        raise ShapeError(ShapeProblem.TOO_DEEP)
    # dict.items of an exact dict is the C implementation; no program code runs here.
    items = list(dict.items(value))
    if not items:
        raise ShapeError(ShapeProblem.EMPTY_MAPPING)
    if len(items) > MAX_LEAVES:
        raise ShapeError(ShapeProblem.TOO_MANY_KEYS)
    return {_check_key(key): _check_node(item, depth + 1, leaves) for key, item in items}


def flatten(value: ResultValue) -> dict[Path, float]:
    """Each leaf of a checked result by its key path; a bare number has the empty path."""
    if isinstance(value, dict):
        flat: dict[Path, float] = {}
        for key, item in value.items():
            for path, leaf in flatten(item).items():
                flat[(key, *path)] = leaf
        return flat
    return {(): float(value)}


def unflatten(flat: dict[Path, float]) -> ResultValue:
    """The inverse of ``flatten`` (paths of one length per branch, as bounds declare them)."""
    if () in flat:
        return flat[()]
    tree: dict[str, ResultValue] = {}
    branches: dict[str, dict[Path, float]] = {}
    for path, leaf in flat.items():
        branches.setdefault(path[0], {})[path[1:]] = leaf
    for key, branch in branches.items():
        tree[key] = unflatten(branch)
    return tree


def parse_bounds(value: object) -> OutputBounds:
    """OUTPUT_BOUNDS as declared (``[lo, hi]`` or a mapping of them), checked; ``ShapeError``."""
    leaves = [0]
    return _parse_bounds_node(value, 0, leaves)


def _parse_bounds_node(value: object, depth: int, leaves: list[int]) -> OutputBounds:
    if isinstance(value, list | tuple):
        # OUTPUT_BOUNDS comes from ast.literal_eval: plain literals, no subclasses to fear.
        try:
            ends = [float(end) for end in value if isinstance(end, int | float) and not isinstance(end, bool)]
        except OverflowError:  # an int beyond any float (a 400-digit bound had been a 500)
            raise ShapeError(ShapeProblem.BAD_BOUNDS) from None
        if len(value) != 2 or len(ends) != 2:
            raise ShapeError(ShapeProblem.BAD_BOUNDS)
        low, high = ends
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ShapeError(ShapeProblem.BAD_BOUNDS)
        if max(abs(low), abs(high)) > MAX_ABS_BOUND:
            raise ShapeError(ShapeProblem.BAD_BOUNDS)
        leaves[0] += 1
        if leaves[0] > MAX_LEAVES:
            raise ShapeError(ShapeProblem.TOO_MANY_KEYS)
        return (low, high)
    if type(value) is not dict or depth >= MAX_DEPTH or not value:
        raise ShapeError(ShapeProblem.BAD_BOUNDS)
    return {_check_key(key): _parse_bounds_node(item, depth + 1, leaves) for key, item in value.items()}


def flatten_bounds(bounds: OutputBounds) -> dict[Path, Bounds]:
    """Each declared range by its key path, in declaration order."""
    if isinstance(bounds, tuple):
        return {(): bounds}
    flat: dict[Path, Bounds] = {}
    for key, item in bounds.items():
        for path, pair in flatten_bounds(item).items():
            flat[(key, *path)] = pair
    return flat


def bounds_to_json(bounds: OutputBounds) -> object:
    """OUTPUT_BOUNDS as JSON: ``[lo, hi]`` leaves."""
    if isinstance(bounds, tuple):
        return [bounds[0], bounds[1]]
    return {key: bounds_to_json(item) for key, item in bounds.items()}
