"""The compute package's errors, on the product's base errors so the API maps them in one place."""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import Invalid, SandboxError
from sandbox.compute.policy import Problem


class ComputeError(SandboxError):
    """Base of the errors raised on purpose by the compute runtime."""

    code = "compute_error"
    status = 400


class ProgramInvalid(Invalid):
    """The program cannot be accepted; ``details`` lists ``{line, message}`` for every problem."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(
            f"the program was refused ({len(problems)} problem(s))",
            details=[problem.to_dict() for problem in problems],
        )
        self.problems = tuple(problems)


class ReleaseRefused(ComputeError):
    """A result may not be released this way (e.g. private release without OUTPUT_BOUNDS)."""

    code = "release_refused"
    status = 422


class ProgramNotApproved(ComputeError):
    """The program is pending review or rejected, or its source no longer matches its approval."""

    code = "program_not_approved"
    status = 409


class ExactReleaseNotAllowed(ComputeError):
    """Exact release was asked of a program no reviewer allowed it for."""

    code = "exact_release_not_allowed"
    status = 403


class InputTooLarge(ComputeError):
    """The authorized data holds more rows than a job may take (the job fails, nothing runs)."""

    code = "input_too_large"
    status = 422
