"""Errors of authorizations, consent and quotas, and how a denial reaches the audit log.

Every error here derives from :class:`AuthzError` and from the ``core.errors`` class whose HTTP
status it shares, so the web layer maps it in one place and callers may catch either.

Denials and transactions: a service raises inside the caller's transaction, which then rolls
back, taking with it anything the service wrote, so an event recorded there would vanish too.
The API layer therefore records the denial afterwards, in a fresh transaction of its own, with
:func:`record_denial`. One denied request, one ``denied`` event; no half-done change beside it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from audit import Actor, AuditAction, Outcome, RecordedEvent, Target, record_event
from core.clock import Clock, utcnow
from core.errors import Conflict, Invalid, SandboxError

# A denial's event lists at most this many problems: enough to explain it, never too large to log.
MAX_LOGGED_PROBLEMS = 20


class AuthzError(SandboxError):
    """Base of this package's errors."""


class ContractInvalid(AuthzError, Invalid):
    """An authorization request or a reviewer's limits fail validation; ``details`` lists each problem."""


class ConsentInvalid(AuthzError, Invalid):
    """A consent request fails validation; ``details`` lists each problem."""


class InvalidTransition(AuthzError, Conflict):
    """The authorization or consent is not in a state that allows this change (approve twice, ...)."""


class AuthorizationInactive(AuthzError):
    """The authorization is pending, rejected, revoked or expired: no job may run under it."""

    code = "authorization_inactive"
    status = 403


class QuotaExceeded(AuthzError):
    """The authorization's calls for today have reached its daily quota; ``retry_after`` is the
    number of seconds until the quota renews (the API's ``Retry-After``)."""

    code = "quota_exceeded"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BudgetExhausted(AuthzError):
    """Spending this ε would take the authorization past its total privacy budget."""

    code = "budget_exhausted"
    status = 429


class ConsentRequired(AuthzError):
    """No valid consent of the subject covers this check.

    The message is the same whatever the reason (missing, expired, revoked, another operator's,
    another template), so a caller cannot probe other subjects' consents; ``reason`` is for logs.
    """

    code = "consent_required"
    status = 403

    def __init__(self, reason: str) -> None:
        super().__init__("a valid consent of the subject covering this check is required")
        self.reason = reason


def _short(problem: Any) -> Any:
    # Problem paths echo client input (a dataset name may be any string); keep the event small.
    if isinstance(problem, dict):
        return {str(key)[:40]: str(value)[:300] for key, value in problem.items()}
    return str(problem)[:300]


def record_denial(
    session: Session,
    *,
    action: AuditAction,
    actor: Actor,
    target: Target | None,
    error: SandboxError,
    request_id: str | None,
    clock: Clock = utcnow,
) -> RecordedEvent:
    """Record that ``action`` was refused with ``error``; call it in a fresh transaction."""
    details: dict[str, Any] = {"message": error.message}
    if isinstance(error.details, list):
        details["problems"] = [_short(problem) for problem in error.details[:MAX_LOGGED_PROBLEMS]]
        details["problem_count"] = len(error.details)
    reason = getattr(error, "reason", None)
    if isinstance(reason, str):
        details["reason"] = reason
    return record_event(
        session,
        action=action,
        actor=actor,
        outcome=Outcome.DENIED,
        target=target,
        request_id=request_id,
        error_code=error.code,
        details=details,
        clock=clock,
    )
