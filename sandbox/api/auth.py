"""Who is calling, and may they: bearer tokens checked on every request, permissions by role.

The token proves identity; everything that can change is read fresh on each request: an
operator suspended a second ago is refused now, whatever its token says.
"""

from __future__ import annotations

import base64
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask, current_app, g, request
from sqlalchemy import Connection, bindparam, select

from audit import Actor, ActorKind
from authz.models import Account
from authz.permissions import Permission, Role, allows
from authz.tokens import Unauthenticated, UnknownKey, VerifiedTokens
from core.db import table_of
from core.errors import SandboxError
from core.keyring import SigningKeyRecord
from core.prepared import Prepared, end_reads
from operators.models import Operator
from operators.services import require_status_active
from sandbox.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])
_KEY_CACHE_SECONDS = 30.0


class Forbidden(SandboxError):
    """Authenticated, but the role does not hold the permission."""

    code = "forbidden"
    status = 403


@dataclass(frozen=True)
class Principal:
    """The caller of the current request."""

    role: Role
    id: str
    name: str
    subject_id: str | None = None

    @property
    def actor(self) -> Actor:
        """The caller as the audit log names it."""
        return Actor(ActorKind(self.role.value), self.id)


_KEYS = table_of(SigningKeyRecord)
# The published keys, read in autocommit on the driver's cursor (core.prepared): on SQLite a
# session's transaction would begin IMMEDIATE and queue behind every writer.
_PUBLISHED = Prepared(select(_KEYS.c.kid, _KEYS.c.public_jwk).where(_KEYS.c.retired_at.is_(None)))
_REFRESHES_PER_SECOND = 8  # reads an unknown kid may cause, per process: forged kids cost no more


class _KeyCache:
    """Published public keys, re-read at most every 30 s so a rotation reaches every worker.

    A token naming a key not among them makes :meth:`refresh` re-read them at once: a key rotated
    in another process signs tokens before this one's 30 s are up. Such reads are limited to
    ``_REFRESHES_PER_SECOND`` per process, so tokens with made-up kids cannot make every
    request a read.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._loaded = 0.0
        self._refreshes: collections.deque[float] = collections.deque(maxlen=_REFRESHES_PER_SECOND)

    def get(self, runtime: Runtime) -> dict[str, Ed25519PublicKey]:
        with self._lock:
            if time.monotonic() - self._loaded > _KEY_CACHE_SECONDS:
                self._load(runtime)
            return self._keys

    def refresh(self, runtime: Runtime) -> dict[str, Ed25519PublicKey]:
        """The keys read again now, unless unknown kids made this process read them too often."""
        with self._lock:
            now = time.monotonic()
            recent = self._refreshes
            if len(recent) < _REFRESHES_PER_SECOND or now - recent[0] > 1.0:
                recent.append(now)
                self._load(runtime)
            return self._keys

    def _load(self, runtime: Runtime) -> None:
        fresh = self._read(runtime)
        # The same key keeps its object, so tokens it verified stay remembered (VerifiedTokens).
        for kid, key in fresh.items():
            old = self._keys.get(kid)
            if old is not None and old.public_bytes_raw() == key.public_bytes_raw():
                fresh[kid] = old
        self._keys = fresh
        self._loaded = time.monotonic()

    @staticmethod
    def _read(runtime: Runtime) -> dict[str, Ed25519PublicKey]:
        with runtime.engine.connect() as conn:
            rows = _PUBLISHED.rows(conn)
            end_reads(conn)
        return {
            kid: Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="))
            for kid, jwk in rows
        }

    def clear(self) -> None:
        with self._lock:
            self._loaded = 0.0


def key_cache() -> _KeyCache:
    """This app's cache of published keys (one per app: each app may serve another database)."""
    cache: _KeyCache = current_app.extensions["sandbox.keys"]
    return cache


def token_memo() -> VerifiedTokens:
    """This app's memo of verified tokens (per app, like its key cache)."""
    memo: VerifiedTokens = current_app.extensions["sandbox.tokens"]
    return memo


def request_connection(runtime: Runtime) -> Connection:
    """This request's control-database connection, checked out once and returned at teardown.

    Kept outside any transaction: :class:`core.prepared.Prepared` reads on it run one statement
    at a time (the token's account, a verification's contract and consent), each followed by
    :func:`core.prepared.end_reads`, and a view marked :func:`keeps_request_connection` may then
    begin its one write transaction on it. One pool checkout per verification instead of one per
    step, which cost more than the reads themselves.
    """
    conn: Connection | None = g.get("control_connection")
    if conn is None:
        conn = g.control_connection = runtime.engine.connect()
    return conn


KEEPS_CONNECTION = "keeps_request_connection"


def keeps_request_connection(view: F) -> F:
    """Mark a view that goes on with :func:`request_connection` after the token check (a
    verification); other views get it returned at once, so no request holds two connections."""
    view.__dict__[KEEPS_CONNECTION] = True
    return view


def _return_connection(_error: BaseException | None) -> None:
    conn: Connection | None = g.pop("control_connection", None)
    if conn is not None:
        conn.close()  # rolls back whatever the view left open


def init_app(app: Flask) -> None:
    """Give ``app`` its own key cache and memo of verified tokens, and return request connections."""
    app.extensions["sandbox.keys"] = _KeyCache()
    app.extensions["sandbox.tokens"] = VerifiedTokens()
    app.teardown_request(_return_connection)


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send an access token: Authorization: Bearer <token>")
    return token.strip()


_OPERATORS = table_of(Operator)
_ACCOUNTS = table_of(Account)
# Built once: every request runs one of these (Core rows, not ORM objects: a hot path).
_OPERATOR = Prepared(
    select(_OPERATORS.c.id, _OPERATORS.c.name, _OPERATORS.c.status).where(_OPERATORS.c.id == bindparam("id"))
)
_ACCOUNT = Prepared(
    select(
        _ACCOUNTS.c.id,
        _ACCOUNTS.c.username,
        _ACCOUNTS.c.role,
        _ACCOUNTS.c.subject_id,
        _ACCOUNTS.c.disabled_at,
    ).where(_ACCOUNTS.c.id == bindparam("id"))
)


def authenticate(runtime: Runtime) -> Principal:
    """The principal behind the request's token, checked against the database now."""
    token = _bearer()
    try:
        claims = token_memo().verify(token, key_cache().get(runtime), clock=runtime.clock)
    except UnknownKey:
        claims = token_memo().verify(token, key_cache().refresh(runtime), clock=runtime.clock)
    conn = request_connection(runtime)
    if claims.role is Role.OPERATOR:
        operator = _OPERATOR.first(conn, {"id": claims.subject})
        end_reads(conn)
        if operator is None:
            raise Unauthenticated("the token's operator does not exist")
        operator_id, name, status = operator
        found = Principal(role=Role.OPERATOR, id=operator_id, name=name)
        g.principal = found  # so a refusal of a suspended operator is logged under its name
        require_status_active(status)
        return found
    account = _ACCOUNT.first(conn, {"id": claims.subject})
    end_reads(conn)
    if account is None:
        raise Unauthenticated("the token's account is not active")
    account_id, username, role, subject_id, disabled_at = account
    if disabled_at is not None or role != claims.role.value:
        raise Unauthenticated("the token's account is not active")
    return Principal(role=claims.role, id=account_id, name=username, subject_id=subject_id)


def guard(permission: Permission) -> Callable[[F], F]:
    """Authenticate the caller and require ``permission`` before the view runs."""

    def decorator(view: F) -> F:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            runtime: Runtime = current_app.extensions["sandbox"]
            principal = authenticate(runtime)
            g.principal = principal
            if not allows(principal.role, permission):
                raise Forbidden(f"role {principal.role.value} may not {permission.value}")
            if not view.__dict__.get(KEEPS_CONNECTION):
                _return_connection(None)  # the view works in sessions of its own
            return view(*args, **kwargs)

        wrapped.__name__ = view.__name__
        wrapped.__doc__ = view.__doc__
        return wrapped  # type: ignore[return-value]

    return decorator


def principal() -> Principal:
    """The authenticated caller of this request (inside a guarded view)."""
    found: Principal = g.principal
    return found
