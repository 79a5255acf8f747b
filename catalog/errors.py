"""Errors of the policy catalog."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigurationError


@dataclass(frozen=True)
class PolicyProblem:
    """One problem in one policy file: the file, the dotted key path, and what is wrong."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


class PolicyError(ConfigurationError):
    """The policy catalog is invalid; ``problems`` lists every problem found."""

    code = "policy_invalid"

    def __init__(self, problems: list[PolicyProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"invalid policy catalog ({len(problems)} problem(s)):\n{lines}",
            details=[p.__dict__ for p in problems],
        )
