"""Issuing access tokens: client credentials for operators, passwords for staff and subjects."""

from __future__ import annotations

import threading

from audit import Actor, ActorKind, AuditAction, Target, record_event
from authz import accounts, tokens
from authz.permissions import Role
from core import keyring
from core.db import transaction
from core.errors import ConfigurationError
from core.keys import SigningKey
from operators import services as operators
from sandbox.runtime import Runtime

_KEYS: dict[str, SigningKey] = {}
_LOCK = threading.Lock()


def signing_key(runtime: Runtime) -> SigningKey:
    """The active signing key, loaded from its file once per process and key."""
    with runtime.sessions() as session:
        record = keyring.active_record(session)
    if record is None:
        raise ConfigurationError("no active signing key: run `sandbox init`")
    with _LOCK:
        if record.kid not in _KEYS:
            from core import keys

            _KEYS[record.kid] = keys.load(runtime.settings.keys_dir, record.kid)
        return _KEYS[record.kid]


def _issue(
    runtime: Runtime, *, subject: str, role: Role, actor: Actor, request_id: str | None, action: AuditAction
) -> tuple[str, int]:
    token, ttl = tokens.issue(
        signing_key(runtime),
        subject=subject,
        role=role,
        ttl_seconds=runtime.settings.token_ttl_seconds,
        clock=runtime.clock,
    )
    with transaction(runtime.sessions) as session:
        record_event(
            session,
            action=action,
            actor=actor,
            target=Target(role.value, subject),
            request_id=request_id,
            clock=runtime.clock,
        )
    return token, ttl


def token_for_client(
    runtime: Runtime, *, client_id: str, client_secret: str, request_id: str | None
) -> tuple[str, int]:
    """An operator's access token for valid, unrevoked client credentials of an active operator."""
    with runtime.sessions() as session:
        operator = operators.authenticate_client(session, client_id=client_id, client_secret=client_secret)
        if operator is None:
            raise tokens.Unauthenticated("invalid client credentials")
        operators.require_active(operator)
        operator_id = operator.id
    return _issue(
        runtime,
        subject=operator_id,
        role=Role.OPERATOR,
        request_id=request_id,
        actor=Actor(ActorKind.OPERATOR, operator_id),
        action=AuditAction.AUTH_TOKEN,
    )


def token_for_password(
    runtime: Runtime, *, username: str, password: str, request_id: str | None
) -> tuple[str, int]:
    """A staff member's or subject's access token for a valid username and password."""
    with runtime.sessions() as session:
        account = accounts.authenticate(session, username=username, password=password)
        if account is None:
            raise tokens.Unauthenticated("invalid username or password")
        role, account_id = Role(account.role), account.id
    return _issue(
        runtime,
        subject=account_id,
        role=role,
        request_id=request_id,
        actor=Actor(ActorKind(role.value), account_id),
        action=AuditAction.AUTH_LOGIN,
    )
