"""The base of every error the product raises on purpose.

Each error carries a stable snake_case ``code`` and an HTTP ``status`` so the web layer can map
any of them to the API's error shape in one place, without knowing the package it came from.
"""

from __future__ import annotations

from typing import Any


class SandboxError(Exception):
    """Base of all deliberate errors. Subclasses set ``code`` and ``status``."""

    code: str = "error"
    status: int = 400

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(SandboxError):
    """The request could not be understood (malformed JSON, wrong content type)."""

    code = "bad_request"
    status = 400


class Invalid(SandboxError):
    """The request was understood but fails validation; ``details`` lists every problem."""

    code = "invalid"
    status = 422


class NotFound(SandboxError):
    """No such object, or not one the caller may see (the two are never told apart)."""

    code = "not_found"
    status = 404


class Conflict(SandboxError):
    """The object is not in a state that allows this change."""

    code = "conflict"
    status = 409


class TooLarge(SandboxError):
    """The request body or a requested size is over its limit."""

    code = "too_large"
    status = 413


class ConfigurationError(SandboxError):
    """The service's own configuration is unusable (bad URL, missing home, bad policy file)."""

    code = "configuration_error"
    status = 500
