"""Errors of the job engine; each maps to the API's error shape through ``core.errors``."""

from __future__ import annotations

from core.errors import Invalid, SandboxError


class EngineError(SandboxError):
    """Base of this package's errors."""


class OutOfScope(EngineError):
    """The contract does not grant this operation, dataset or field; ``details`` lists each."""

    code = "out_of_scope"
    status = 403


class JobInvalid(EngineError, Invalid):
    """A job's request fails validation against policy; ``details`` lists every problem."""


def problem(field: str, message: str) -> dict[str, str]:
    """One problem in the API's ``details`` shape."""
    return {"field": field, "message": message}


def label(name: object) -> str:
    """A client-given name, shortened before it is echoed in a problem or the log."""
    return str(name)[:64]
