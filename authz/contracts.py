"""Authorization contracts: request, review (approve, reject, revoke), read, and the validity check.

A request is checked against the policy catalog and its disclosure ceilings, and every problem is
listed at once. A reviewer may tighten the requested limits but never loosen them, and approval
re-checks the whole contract against the catalog in force at that moment, since policy may have
changed while the request waited. Transitions lock the row (``FOR UPDATE`` on PostgreSQL, the
``BEGIN IMMEDIATE`` write lock on SQLite), so two reviewers cannot both decide one request.

Every service records its audit event in the caller's transaction. A refusal raises instead, and
the caller records it with :func:`authz.errors.record_denial` in a fresh transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, column, select, table
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from audit import Actor, AuditAction, Target, record_event
from authz.contract_models import (
    LIMIT_NAMES,
    LOWER_IS_TIGHTER,
    Authorization,
    AuthorizationStatus,
    ContractRequest,
    ContractRules,
    ContractTerms,
    Problem,
    number,
    parse_request,
    problem,
    scope_problems,
)
from authz.errors import AuthorizationInactive, ContractInvalid, InvalidTransition
from catalog import Catalog
from core.clock import Clock, rfc3339, utcnow
from core.db import Database, connection_of, table_of
from core.errors import Invalid, NotFound
from core.prepared import Prepared
from core.text import note_text

# Missing and not-yours read the same, so an operator cannot learn which ids exist.
NOT_FOUND_MESSAGE = "no such authorization"
MAX_COMMENT = 1000
MAX_REASON = 500

# The operators table, by name only: authz sits beside operators and must not import it.
_operators = table("operators", column("id"))


def request_authorization(
    session: Session,
    catalog: Catalog,
    *,
    operator_id: str,
    purpose: object,
    datasets: object,
    operations: object,
    limits: object,
    consent_required: object = None,
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> Authorization:
    """File a pending authorization for ``operator_id``; :class:`ContractInvalid` lists every problem."""
    request = parse_request(
        catalog,
        purpose=purpose,
        datasets=datasets,
        operations=operations,
        limits=limits,
        consent_required=consent_required,
    )
    if session.execute(select(_operators.c.id).where(_operators.c.id == operator_id)).first() is None:
        raise NotFound("no such operator")
    contract = _new_contract(operator_id, request, clock())
    session.add(contract)
    session.flush()
    record_event(
        session,
        action=AuditAction.AUTHORIZATION_REQUEST,
        actor=actor,
        target=Target("authorization", contract.id),
        request_id=request_id,
        details={
            "operator_id": operator_id,
            "datasets": contract.datasets,
            "operations": contract.operations,
            "limits": contract.limits(),
            "consent_required": contract.consent_required,
        },
        clock=clock,
    )
    return contract


def _new_contract(operator_id: str, request: ContractRequest, now: datetime) -> Authorization:
    limits = request.limits
    return Authorization(
        id=str(uuid.uuid4()),
        operator_id=operator_id,
        purpose=request.purpose,
        datasets=request.datasets,
        operations=request.operations,
        valid_days=int(limits["valid_days"]),
        daily_quota=int(limits["daily_quota"]),
        epsilon_total=float(limits["epsilon_total"]),
        epsilon_per_query=float(limits["epsilon_per_query"]),
        min_cell_size=int(limits["min_cell_size"]),
        consent_required=request.consent_required,
        status=AuthorizationStatus.PENDING.value,
        epsilon_spent=0.0,
        requested_at=now,
        updated_at=now,
    )


def approve(
    session: Session,
    catalog: Catalog,
    contract_id: str,
    *,
    reviewer_id: str,
    comment: str | None,
    limits: Mapping[str, Any] | None = None,
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> Authorization:
    """Approve a pending contract, optionally tightening its limits; valid from now for ``valid_days``."""
    now = clock()
    contract = _locked(session, contract_id)
    _require(contract, AuthorizationStatus.PENDING, "approve", now)
    text = _text(comment, "comment", MAX_COMMENT, required=False)
    tightened = _tightened(catalog, contract, limits or {})
    changes = {name: [getattr(contract, name), value] for name, value in tightened.items()}
    changes = {name: pair for name, pair in changes.items() if pair[0] != pair[1]}
    for name, value in tightened.items():
        setattr(contract, name, value)
    contract.status = AuthorizationStatus.APPROVED.value
    contract.decided_at = contract.valid_from = contract.updated_at = now
    contract.decided_by = reviewer_id
    contract.decision_comment = text
    contract.valid_until = now + timedelta(days=contract.valid_days)
    session.flush()
    _record(
        session,
        AuditAction.AUTHORIZATION_APPROVE,
        contract,
        actor=actor,
        request_id=request_id,
        clock=clock,
        details={"limits_changed": changes, "valid_until": rfc3339(contract.valid_until)},
    )
    return contract


def _tightened(catalog: Catalog, contract: Authorization, limits: object) -> dict[str, int | float]:
    """The contract's limits with the reviewer's applied, or :class:`ContractInvalid`."""
    if not isinstance(limits, Mapping):
        raise ContractInvalid("1 problem(s) with the limits", details=[problem("limits", "an object")])
    requested = contract.limits()
    merged = {**requested, **limits}
    problems = scope_problems(
        catalog,
        datasets=contract.datasets,
        operations=contract.operations,
        limits=merged,
        consent_required=contract.consent_required,
    )
    problems.extend(_loosening(requested, limits))
    if problems:
        raise ContractInvalid(f"{len(problems)} problem(s) with the approval", details=problems)
    # Validated above; normalize so an ε given as 1 is stored and compared as 1.0.
    return {
        name: float(merged[name]) if name.startswith("epsilon") else int(merged[name]) for name in LIMIT_NAMES
    }


def _loosening(requested: Mapping[str, Any], given: Mapping[str, Any]) -> list[Problem]:
    out: list[Problem] = []
    for name in LIMIT_NAMES:
        value = number(given.get(name))
        if value is None:
            continue  # absent, or a type problem already listed by scope_problems
        if name in LOWER_IS_TIGHTER and value > requested[name]:
            out.append(problem(f"limits.{name}", f"above the requested {requested[name]}; only tightening"))
        if name not in LOWER_IS_TIGHTER and value < requested[name]:
            out.append(problem(f"limits.{name}", f"below the requested {requested[name]}; only tightening"))
    return out


def reject(
    session: Session,
    contract_id: str,
    *,
    reviewer_id: str,
    reason: str,
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> Authorization:
    """Reject a pending contract, with a reason the operator can read."""
    now = clock()
    contract = _locked(session, contract_id)
    _require(contract, AuthorizationStatus.PENDING, "reject", now)
    contract.decision_comment = _text(reason, "reason", MAX_REASON, required=True)
    contract.status = AuthorizationStatus.REJECTED.value
    contract.decided_at = contract.updated_at = now
    contract.decided_by = reviewer_id
    session.flush()
    _record(
        session,
        AuditAction.AUTHORIZATION_REJECT,
        contract,
        actor=actor,
        request_id=request_id,
        clock=clock,
        details={"reason": contract.decision_comment},
    )
    return contract


def revoke(
    session: Session,
    contract_id: str,
    *,
    reason: str,
    actor: Actor,
    request_id: str | None,
    clock: Clock = utcnow,
) -> Authorization:
    """Revoke an active contract; jobs check validity when they run, so it takes effect at once.

    An expired contract is refused (409) like any inactive one: there is nothing left to revoke.
    """
    now = clock()
    contract = _locked(session, contract_id)
    _require(contract, AuthorizationStatus.APPROVED, "revoke", now)
    contract.revoke_reason = _text(reason, "reason", MAX_REASON, required=True)
    contract.status = AuthorizationStatus.REVOKED.value
    contract.revoked_at = contract.updated_at = now
    session.flush()
    _record(
        session,
        AuditAction.AUTHORIZATION_REVOKE,
        contract,
        actor=actor,
        request_id=request_id,
        clock=clock,
        details={"reason": contract.revoke_reason},
    )
    return contract


def get_contract(session: Session, contract_id: str, *, operator_id: str | None) -> Authorization:
    """The contract; with ``operator_id``, only that operator's (another's reads as missing)."""
    contract = session.get(Authorization, contract_id)
    if contract is None or (operator_id is not None and contract.operator_id != operator_id):
        raise NotFound(NOT_FOUND_MESSAGE)
    return contract


_CONTRACTS = table_of(Authorization)
_TERMS_FIELDS = tuple(ContractTerms.__dataclass_fields__)
_TERMS = Prepared(
    select(*(_CONTRACTS.c[name] for name in _TERMS_FIELDS)).where(_CONTRACTS.c.id == bindparam("contract_id"))
)


def contract_terms(session: Database, contract_id: str, *, operator_id: str) -> ContractTerms:
    """What :func:`get_contract` finds, as the columns a job checks (a Core read: a hot path)."""
    row = _TERMS.first(connection_of(session), {"contract_id": contract_id})
    terms = None if row is None else ContractTerms(**dict(zip(_TERMS_FIELDS, row, strict=True)))
    if terms is None or terms.operator_id != operator_id:
        raise NotFound(NOT_FOUND_MESSAGE)
    return terms


def list_contracts(
    session: Session, *, operator_id: str | None, status: str | None, now: datetime
) -> list[Authorization]:
    """Contracts, newest first, of one operator or all, optionally in one effective status."""
    query = select(Authorization).order_by(Authorization.requested_at.desc(), Authorization.id)
    if operator_id is not None:
        query = query.where(Authorization.operator_id == operator_id)
    if status is not None:
        query = query.where(_status_filter(status, now))
    return list(session.execute(query).scalars())


def _status_filter(status: str, now: datetime) -> ColumnElement[bool]:
    try:
        wanted = AuthorizationStatus(status)
    except ValueError:
        choices = ", ".join(s.value for s in AuthorizationStatus)
        raise Invalid("unknown status", details=[problem("status", f"one of {choices}")]) from None
    approved = Authorization.status == AuthorizationStatus.APPROVED.value
    if wanted is AuthorizationStatus.APPROVED:
        return and_(approved, Authorization.valid_until > now)
    if wanted is AuthorizationStatus.EXPIRED:
        return and_(approved, Authorization.valid_until <= now)
    return Authorization.status == wanted.value


def check_active(contract: ContractRules, now: datetime) -> None:
    """Refuse unless the contract is approved and ``now`` is within its validity."""
    status = contract.effective_status(now)
    if status is not AuthorizationStatus.APPROVED:
        raise AuthorizationInactive(f"the authorization is {status.value}")
    if contract.valid_from is None or now < contract.valid_from:
        raise AuthorizationInactive("the authorization is not yet valid")


def _locked(session: Session, contract_id: str) -> Authorization:
    # FOR NO KEY UPDATE on PostgreSQL: it still waits for the calls being charged (authz.usage
    # locks the row the same way) but not for rows being written that refer to the contract. A
    # job's sealed result is inserted after its audit event; with FOR UPDATE, a revocation
    # holding the row and then waiting for the audit head would deadlock with it.
    query = (
        select(Authorization)
        .where(Authorization.id == contract_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    contract = session.execute(query).scalar_one_or_none()
    if contract is None:
        raise NotFound(NOT_FOUND_MESSAGE)
    return contract


def _require(contract: Authorization, expected: AuthorizationStatus, verb: str, now: datetime) -> None:
    status = contract.effective_status(now)
    if status is not expected:
        raise InvalidTransition(f"cannot {verb} an authorization that is {status.value}")


def _text(value: object, field: str, limit: int, *, required: bool) -> str | None:
    text, need = note_text(value, limit, required=required)
    if need is not None:
        raise ContractInvalid(f"1 problem(s) with the {field}", details=[problem(field, need)])
    return text


def _record(
    session: Session,
    action: AuditAction,
    contract: Authorization,
    *,
    actor: Actor,
    request_id: str | None,
    clock: Clock,
    details: dict[str, Any],
) -> None:
    record_event(
        session,
        action=action,
        actor=actor,
        target=Target("authorization", contract.id),
        request_id=request_id,
        details={"operator_id": contract.operator_id, **details},
        clock=clock,
    )
