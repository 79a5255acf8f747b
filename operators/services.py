"""The operator registry: register, issue credentials, suspend, reinstate, authenticate."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import Actor, AuditAction, Target, record_event
from core.accepted_codes import operator_code_problem
from core.clock import Clock, utcnow
from core.errors import Conflict, Invalid, NotFound
from core.passwords import hash_secret, verify_secret
from core.text import line_problem, required_note
from operators.errors import OperatorSuspended
from operators.models import Operator, OperatorCredential, OperatorStatus

MAX_QUALIFICATIONS = 20


def register_operator(
    session: Session,
    *,
    name: str,
    credit_code: str,
    license_no: str,
    qualifications: Sequence[str],
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> Operator:
    """Register a licensed operator, active from now."""
    problems = []
    if (found := line_problem(name, 200)) is not None:
        problems.append({"field": "name", "message": found})
    if (found := operator_code_problem(session, credit_code)) is not None:
        problems.append({"field": "credit_code", "message": found})
    if (found := line_problem(license_no, 64)) is not None:
        problems.append({"field": "license_no", "message": found})
    if len(qualifications) > MAX_QUALIFICATIONS:
        problems.append({"field": "qualifications", "message": f"at most {MAX_QUALIFICATIONS} items"})
    for index, qualification in enumerate(qualifications[:MAX_QUALIFICATIONS]):
        if (found := line_problem(qualification, 200)) is not None:
            problems.append({"field": f"qualifications.{index}", "message": found})
    if problems:
        raise Invalid(f"{len(problems)} problem(s) with the operator", details=problems)
    if session.execute(select(Operator.id).where(Operator.credit_code == credit_code)).first():
        raise Conflict(f"an operator with credit code {credit_code} is already registered")
    operator = Operator(
        id=str(uuid.uuid4()),
        name=name.strip(),
        credit_code=credit_code,
        license_no=license_no.strip(),
        qualifications=[qualification.strip() for qualification in qualifications],
        status=OperatorStatus.ACTIVE.value,
        created_at=clock(),
    )
    session.add(operator)
    session.flush()
    record_event(
        session,
        action=AuditAction.OPERATOR_REGISTER,
        actor=actor,
        target=Target("operator", operator.id),
        request_id=request_id,
        details={"name": operator.name, "credit_code": credit_code},
        clock=clock,
    )
    return operator


def get_operator(session: Session, operator_id: str) -> Operator:
    """The operator, or :class:`NotFound`."""
    operator = session.get(Operator, operator_id)
    if operator is None:
        raise NotFound("no such operator")
    return operator


def list_operators(session: Session) -> list[Operator]:
    """Every operator, oldest first."""
    return list(session.execute(select(Operator).order_by(Operator.created_at, Operator.id)).scalars())


def issue_credentials(
    session: Session, operator_id: str, *, actor: Actor, request_id: str | None, clock: Clock = utcnow
) -> tuple[OperatorCredential, str]:
    """A new client id and secret; the secret is returned once and stored only as an argon2 hash."""
    operator = get_operator(session, operator_id)
    secret = secrets.token_urlsafe(32)
    credential = OperatorCredential(
        client_id=f"op_{secrets.token_hex(12)}",
        operator_id=operator.id,
        secret_hash=hash_secret(secret),
        created_at=clock(),
    )
    session.add(credential)
    session.flush()
    record_event(
        session,
        action=AuditAction.OPERATOR_CREDENTIALS,
        actor=actor,
        target=Target("operator", operator.id),
        request_id=request_id,
        details={"client_id": credential.client_id},
        clock=clock,
    )
    return credential, secret


def list_credentials(session: Session, operator_id: str) -> list[OperatorCredential]:
    """The operator's client ids, oldest first, revoked ones too (never a secret or its hash)."""
    operator = get_operator(session, operator_id)
    query = (
        select(OperatorCredential)
        .where(OperatorCredential.operator_id == operator.id)
        .order_by(OperatorCredential.created_at, OperatorCredential.client_id)
    )
    return list(session.execute(query).scalars())


def credentials_by_operator(session: Session) -> dict[str, list[OperatorCredential]]:
    """Every client id, by operator, oldest first (the admin's page lists them all at once)."""
    query = select(OperatorCredential).order_by(OperatorCredential.created_at, OperatorCredential.client_id)
    found: dict[str, list[OperatorCredential]] = {}
    for credential in session.execute(query).scalars():
        found.setdefault(credential.operator_id, []).append(credential)
    return found


def revoke_credentials(
    session: Session,
    operator_id: str,
    client_id: str,
    *,
    reason: str,
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> OperatorCredential:
    """Stop ``client_id`` from getting tokens: a leaked or retired secret, the operator unaffected.

    Tokens it already got stay valid until they expire (15 minutes at most): they are checked
    against the operator on each request, not against the credential. Suspending the operator
    stops those at once.
    """
    operator = get_operator(session, operator_id)
    query = (
        select(OperatorCredential)
        .where(OperatorCredential.client_id == client_id, OperatorCredential.operator_id == operator.id)
        .with_for_update()
    )
    credential = session.execute(query).scalar_one_or_none()
    if credential is None:
        raise NotFound("the operator has no such client id")
    if credential.revoked_at is not None:
        raise Conflict(f"client id {client_id} is already revoked")
    reason = _reason(reason)
    credential.revoked_at = clock()
    session.flush()
    record_event(
        session,
        action=AuditAction.OPERATOR_CREDENTIALS_REVOKE,
        actor=actor,
        target=Target("operator", operator.id),
        request_id=request_id,
        details={"client_id": client_id, "reason": reason},
        clock=clock,
    )
    return credential


MAX_REASON = 500


def _reason(reason: str) -> str:
    """The reason an admin gives for a change to an operator or its credentials, required (and
    refused, not cut, when longer than ``MAX_REASON``)."""
    return required_note(reason, MAX_REASON)


def set_status(
    session: Session,
    operator_id: str,
    status: OperatorStatus,
    *,
    reason: str,
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> Operator:
    """Suspend or reinstate; the change takes effect at the operator's next request."""
    operator = get_operator(session, operator_id)
    if operator.status == status.value:
        raise Conflict(f"the operator is already {status.value}")
    operator.status = status.value
    operator.status_reason = _reason(reason)
    operator.status_changed_at = clock()
    action = (
        AuditAction.OPERATOR_SUSPEND if status is OperatorStatus.SUSPENDED else AuditAction.OPERATOR_REINSTATE
    )
    record_event(
        session,
        action=action,
        actor=actor,
        target=Target("operator", operator.id),
        request_id=request_id,
        details={"reason": operator.status_reason},
        clock=clock,
    )
    return operator


def authenticate_client(session: Session, *, client_id: str, client_secret: str) -> Operator | None:
    """The operator behind valid client credentials, or ``None`` (same work either way)."""
    credential = session.get(OperatorCredential, client_id) if len(client_id) <= 64 else None
    valid = verify_secret(credential.secret_hash if credential else None, client_secret)
    if credential is None or not valid or credential.revoked_at is not None:
        return None
    return credential.operator


def require_active(operator: Operator) -> None:
    """Refuse a suspended operator (checked on every request, not baked into tokens)."""
    require_status_active(operator.status)


def require_status_active(status: str) -> None:
    """Refuse an operator whose stored status is not active."""
    if status != OperatorStatus.ACTIVE.value:
        raise OperatorSuspended("the operator is suspended")
