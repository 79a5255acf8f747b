"""What the web console needs beyond the API's services: sign-in for a browser session, the
re-check of a signed-in party on each request, and a few read models (sealed results, key list).

Sign-in checks the same credentials as the token endpoints and records the same audit event
(``auth.login`` for people, ``auth.token`` for operators); a session is not a bearer token, but
it is the same proof of identity and the log should not tell the two apart. Signing out, which a
token has no counterpart of, records ``auth.logout``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from audit import Actor, ActorKind, AuditAction, Target, record_event
from authz import accounts
from authz.contract_models import LIMIT_NAMES, Authorization
from authz.models import Account
from authz.permissions import Role
from authz.tokens import Unauthenticated
from catalog import Catalog
from core import keyring
from core.db import transaction
from operators import services as operators
from operators.models import Operator, OperatorCredential
from sandbox.engine.models import SealedResult
from sandbox.models import ConsoleSession
from sandbox.runtime import Runtime

SESSION_HOURS = 8
SESSION_LIFE = timedelta(hours=SESSION_HOURS)


@dataclass(frozen=True)
class SignedIn:
    """Who a console session belongs to."""

    role: Role
    id: str
    name: str
    subject_id: str | None = None
    client_id: str | None = None  # an operator's: the credentials it signed in with
    session_id: str | None = None  # the console session it holds (see ConsoleSession)

    @property
    def actor(self) -> Actor:
        """The party as the audit log names it."""
        return Actor(ActorKind(self.role.value), self.id)


def _record_login(runtime: Runtime, who: SignedIn, action: AuditAction, request_id: str | None) -> SignedIn:
    """The sign-in's event and its console session (sessions past their life are dropped here)."""
    now = runtime.clock()
    with transaction(runtime.sessions) as session:
        session.execute(delete(ConsoleSession).where(ConsoleSession.started_at < now - SESSION_LIFE))
        row = ConsoleSession(
            id=str(uuid.uuid4()),
            role=who.role.value,
            party_id=who.id,
            client_id=who.client_id,
            started_at=now,
        )
        session.add(row)
        record_event(
            session,
            action=action,
            actor=who.actor,
            target=Target(who.role.value, who.id),
            request_id=request_id,
            details={"via": "console"},
            clock=runtime.clock,
        )
    return replace(who, session_id=row.id)


def sign_out(runtime: Runtime, session_id: object, *, request_id: str | None) -> None:
    """End the console session ``session_id`` on the server, and record it (``auth.logout``): its
    cookie, wherever a copy of it is, no longer signs anyone in. An unknown or ended one is left as
    it is, and records nothing."""
    if not isinstance(session_id, str):
        return
    now = runtime.clock()
    with transaction(runtime.sessions) as session:
        ended = session.execute(
            update(ConsoleSession)
            .where(ConsoleSession.id == session_id, ConsoleSession.ended_at.is_(None))
            .values(ended_at=now)
            .returning(ConsoleSession.role, ConsoleSession.party_id)
        ).first()
        if ended is None:
            return
        role, party_id = ended
        record_event(
            session,
            action=AuditAction.AUTH_LOGOUT,
            actor=Actor(ActorKind(role), party_id),
            target=Target(role, party_id),
            request_id=request_id,
            details={"via": "console"},
            clock=runtime.clock,
        )


def sign_in_person(runtime: Runtime, *, username: str, password: str, request_id: str | None) -> SignedIn:
    """A staff member or subject by password; :class:`Unauthenticated` otherwise (same message)."""
    with runtime.sessions() as session:
        account = accounts.authenticate(session, username=username[:64], password=password[:256])
        if account is None:
            raise Unauthenticated("invalid username or password")
        who = SignedIn(Role(account.role), account.id, account.username, account.subject_id)
    return _record_login(runtime, who, AuditAction.AUTH_LOGIN, request_id)


def sign_in_operator(
    runtime: Runtime, *, client_id: str, client_secret: str, request_id: str | None
) -> SignedIn:
    """An operator by its client credentials; a suspended operator is refused."""
    with runtime.sessions() as session:
        operator = operators.authenticate_client(
            session, client_id=client_id[:64], client_secret=client_secret[:256]
        )
        if operator is None:
            raise Unauthenticated("invalid client credentials")
        operators.require_active(operator)
        who = SignedIn(Role.OPERATOR, operator.id, operator.name, client_id=client_id)
    return _record_login(runtime, who, AuditAction.AUTH_TOKEN, request_id)


def recheck(runtime: Runtime, session_id: object) -> SignedIn:
    """The party of console session ``session_id`` as it is now: a session signed out, past its
    life or unknown is refused, and so is a disabled account, a suspended operator or the revoked
    client id an operator signed in with.

    Like a bearer token, a session proves identity only; what can change is read fresh.
    """
    with runtime.sessions() as session:
        held = session.get(ConsoleSession, session_id) if isinstance(session_id, str) else None
        if held is None or held.ended_at is not None or held.started_at < runtime.clock() - SESSION_LIFE:
            raise Unauthenticated("the session has ended: sign in again")
        if held.role == Role.OPERATOR.value:
            operator = session.get(Operator, held.party_id)
            if operator is None:
                raise Unauthenticated("the operator does not exist")
            credential = session.get(OperatorCredential, held.client_id) if held.client_id else None
            if (
                credential is None
                or credential.operator_id != operator.id
                or credential.revoked_at is not None
            ):
                raise Unauthenticated("the client id this session signed in with is revoked")
            operators.require_active(operator)
            return SignedIn(
                Role.OPERATOR, operator.id, operator.name, client_id=held.client_id, session_id=held.id
            )
        account = session.get(Account, held.party_id)
        if account is None or account.disabled_at is not None or account.role != held.role:
            raise Unauthenticated("the account is not active")
        return SignedIn(
            Role(account.role), account.id, account.username, account.subject_id, session_id=held.id
        )


def list_accounts(session: Session) -> list[Account]:
    """Every staff and subject account, oldest first."""
    return list(session.execute(select(Account).order_by(Account.created_at, Account.id)).scalars())


def sealed_results(session: Session, operator_id: str, *, limit: int = 50) -> list[SealedResult]:
    """The operator's sealed results, newest first."""
    query = (
        select(SealedResult)
        .where(SealedResult.operator_id == operator_id)
        .order_by(SealedResult.issued_at.desc(), SealedResult.job_id)
        .limit(limit)
    )
    return list(session.execute(query).scalars())


def operator_names(session: Session) -> dict[str, str]:
    """Operator id → name, for labels."""
    return {o.id: o.name for o in operators.list_operators(session)}


@dataclass(frozen=True)
class KeyRow:
    """A signing key as the admin page lists it."""

    kid: str
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    active: bool


def signing_keys(session: Session) -> list[KeyRow]:
    """Every signing key, newest first, marking the active one."""
    active = keyring.active_record(session)
    rows = session.execute(
        select(keyring.SigningKeyRecord).order_by(keyring.SigningKeyRecord.created_at.desc())
    ).scalars()
    return [
        KeyRow(r.kid, r.created_at, r.activated_at, r.retired_at, active is not None and r.kid == active.kid)
        for r in rows
    ]


def rotate_key(runtime: Runtime, *, actor: Actor, request_id: str | None) -> dict[str, Any]:
    """A new active signing key, as ``sandbox keys rotate`` makes it, with its audit event."""
    with transaction(runtime.sessions) as session:
        record, previous = keyring.rotate(session, runtime.settings.keys_dir, clock=runtime.clock)
        record_event(
            session,
            action=AuditAction.KEY_ROTATE,
            actor=actor,
            target=Target("signing_key", record.kid),
            request_id=request_id,
            details={"previous": previous},
            clock=runtime.clock,
        )
        return {"kid": record.kid, "previous": previous}


@dataclass(frozen=True)
class LimitRow:
    """One limit of a contract beside policy's bound for it."""

    name: str
    value: int | float
    policy: int | float
    bound: str  # "max" or "min": which side policy's figure bounds


def limits_beside_policy(catalog: Catalog, contract: Authorization) -> list[LimitRow]:
    """The contract's limits next to the catalog's ceilings (and its cell-size floor)."""
    ceiling = catalog.disclosure
    floors = [catalog.min_cell_size(name) for name in contract.datasets if name in catalog.datasets]
    policy: dict[str, tuple[int | float, str]] = {
        "valid_days": (ceiling.valid_days_max, "max"),
        "daily_quota": (ceiling.daily_quota_max, "max"),
        "epsilon_total": (ceiling.epsilon_total_max, "max"),
        "epsilon_per_query": (ceiling.epsilon_per_query_max, "max"),
        "min_cell_size": (max(floors, default=ceiling.min_cell_size), "min"),
    }
    limits = contract.limits()
    return [LimitRow(name, limits[name], *policy[name]) for name in LIMIT_NAMES]


@dataclass(frozen=True)
class FieldRow:
    """A field a contract names, with policy's classification and uses (or unknown)."""

    dataset: str
    name: str
    classification: str
    uses: list[str]


def contract_fields(catalog: Catalog, contract: Authorization) -> list[FieldRow]:
    """Every field of the contract's datasets with its classification in the catalog now."""
    rows = []
    for dataset, names in contract.datasets.items():
        known = {f.name: f for f in catalog.datasets[dataset].fields} if dataset in catalog.datasets else {}
        for name in names:
            item = known.get(name)
            rows.append(
                FieldRow(
                    dataset,
                    name,
                    item.classification.value if item else "unknown",
                    [u.value for u in item.uses] if item else [],
                )
            )
    return rows
