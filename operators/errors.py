"""Errors of the operator registry."""

from __future__ import annotations

from core.errors import SandboxError


class OperatorSuspended(SandboxError):
    """The operator is suspended: every request of its systems is refused until reinstated."""

    code = "operator_suspended"
    status = 403
