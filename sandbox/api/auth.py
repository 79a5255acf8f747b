"""Who is calling, and may they: bearer tokens checked on every request, permissions by role.

The token proves identity; everything that can change is read fresh on each request: an
operator suspended a second ago is refused now, whatever its token says.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask, current_app, g, request
from sqlalchemy import select

from audit import Actor, ActorKind
from authz.models import Account
from authz.permissions import Permission, Role, allows
from authz.tokens import Unauthenticated, verify
from core.db import reading
from core.errors import SandboxError
from core.keyring import SigningKeyRecord
from operators.models import Operator
from operators.services import require_active
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


class _KeyCache:
    """Published public keys, re-read at most every 30 s so a rotation reaches every worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._loaded = 0.0

    def get(self, runtime: Runtime) -> dict[str, Ed25519PublicKey]:
        with self._lock:
            if time.monotonic() - self._loaded > _KEY_CACHE_SECONDS:
                self._keys = self._read(runtime)
                self._loaded = time.monotonic()
            return self._keys

    @staticmethod
    def _read(runtime: Runtime) -> dict[str, Ed25519PublicKey]:
        import base64

        keys: dict[str, Ed25519PublicKey] = {}
        with runtime.sessions() as session:
            stmt = select(SigningKeyRecord).where(SigningKeyRecord.retired_at.is_(None))
            for record in session.execute(stmt).scalars():
                raw = base64.urlsafe_b64decode(record.public_jwk["x"] + "==")
                keys[record.kid] = Ed25519PublicKey.from_public_bytes(raw)
        return keys

    def clear(self) -> None:
        with self._lock:
            self._loaded = 0.0


def key_cache() -> _KeyCache:
    """This app's cache of published keys (one per app: each app may serve another database)."""
    cache: _KeyCache = current_app.extensions["sandbox.keys"]
    return cache


def init_app(app: Flask) -> None:
    """Give ``app`` its own key cache."""
    app.extensions["sandbox.keys"] = _KeyCache()


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send an access token: Authorization: Bearer <token>")
    return token.strip()


def authenticate(runtime: Runtime) -> Principal:
    """The principal behind the request's token, checked against the database now."""
    claims = verify(_bearer(), key_cache().get(runtime), clock=runtime.clock)
    with reading(runtime.sessions) as session:
        if claims.role is Role.OPERATOR:
            operator = session.get(Operator, claims.subject)
            if operator is None:
                raise Unauthenticated("the token's operator does not exist")
            found = Principal(role=Role.OPERATOR, id=operator.id, name=operator.name)
            g.principal = found  # so a refusal of a suspended operator is logged under its name
            require_active(operator)
            return found
        account = session.get(Account, claims.subject)
        if account is None or account.disabled_at is not None or account.role != claims.role.value:
            raise Unauthenticated("the token's account is not active")
        return Principal(
            role=claims.role, id=account.id, name=account.username, subject_id=account.subject_id
        )


def guard(permission: Permission) -> Callable[[F], F]:
    """Authenticate the caller and require ``permission`` before the view runs."""

    def decorator(view: F) -> F:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            runtime: Runtime = current_app.extensions["sandbox"]
            principal = authenticate(runtime)
            g.principal = principal
            if not allows(principal.role, permission):
                raise Forbidden(f"role {principal.role.value} may not {permission.value}")
            return view(*args, **kwargs)

        wrapped.__name__ = view.__name__
        wrapped.__doc__ = view.__doc__
        return wrapped  # type: ignore[return-value]

    return decorator


def principal() -> Principal:
    """The authenticated caller of this request (inside a guarded view)."""
    found: Principal = g.principal
    return found
