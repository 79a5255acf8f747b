"""Submission: a program is checked, compiled, hashed and analysed at once.

``compile_program`` is what ``POST /v1/programs`` calls. A program that cannot run is refused
with every problem and its line (``ProgramInvalid``, a 422). One that can is a
``CompiledProgram``: its sha256 (what an approval pins), its declared OUTPUT_BOUNDS and the
analysis for the reviewer. The child compiles the source again, under the same policy, before
it runs it: the check is made twice, and the bytecode never crosses a process boundary.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sandbox.compute.analysis import ProgramAnalysis, analyse
from sandbox.compute.errors import ProgramInvalid
from sandbox.compute.guards import ATTRIBUTE_NAMES, SAFE_BUILTIN_NAMES
from sandbox.compute.policy import BOUNDS_NAME, Problem, bounds_literal, compile_restricted, parse
from sandbox.compute.shape import OutputBounds, ShapeError, bounds_to_json, parse_bounds


@dataclass(frozen=True)
class CompiledProgram:
    """A program that passed the policy: its source, sha256, bounds and analysis."""

    source: str
    sha256: str
    output_bounds: OutputBounds | None
    analysis: ProgramAnalysis

    def analysis_dict(self) -> dict[str, Any]:
        """The analysis as the API shows it."""
        return self.analysis.to_dict()


def source_sha256(source: str) -> str:
    """The hex SHA-256 of the program's UTF-8 source: what an approval pins."""
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


def _bounds(tree: Any) -> tuple[OutputBounds | None, list[Problem]]:
    try:
        literal = bounds_literal(tree)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None, []  # not a literal: the policy has said so with its line
    if literal is None:
        return None, []
    try:
        return parse_bounds(literal), []
    except ShapeError:
        line = next(
            stmt.lineno
            for stmt in tree.body
            if any(getattr(t, "id", None) == BOUNDS_NAME for t in getattr(stmt, "targets", ()))
        )
        message = (
            f"{BOUNDS_NAME} must be [low, high] with finite low < high, or a mapping (at most two "
            "levels) of short keys to such pairs."
        )
        return None, [Problem(line, message)]


def compile_program(source: str) -> CompiledProgram:
    """Check and analyse ``source``; ``ProgramInvalid`` lists every problem with its line."""
    if not isinstance(source, str):
        raise ProgramInvalid([Problem(None, "The program source must be text.")])
    # The same path the child takes (parse, restrict, compile), so the compiler's own refusals
    # (``return`` outside a function...) are found at submission too. The analysis and the
    # bounds read a second parse of the program as written: restrict() rewrites its tree.
    _, policy_problems = compile_restricted(source, SAFE_BUILTIN_NAMES, ATTRIBUTE_NAMES)
    tree, _ = parse(source)
    if tree is None:
        raise ProgramInvalid(policy_problems)
    bounds, bound_problems = _bounds(tree)
    if policy_problems or bound_problems:
        raise ProgramInvalid(policy_problems + bound_problems)
    try:
        analysis = analyse(tree, bounds_to_json(bounds) if bounds is not None else None)
    except RecursionError:
        raise ProgramInvalid([Problem(None, "The program is nested too deeply to analyse.")]) from None
    return CompiledProgram(
        source=source, sha256=source_sha256(source), output_bounds=bounds, analysis=analysis
    )
