"""Access tokens: short-lived JWTs signed with the bureau's Ed25519 key (EdDSA).

Verification accepts exactly one algorithm, EdDSA, and only keys from the published key set,
looked up by ``kid``: a token with ``alg: none``, an HS256 token "signed" with the public key, an
expired token, a token of another issuer or with a changed byte are all refused. PyJWT does the
cryptography and the claim checks; this module pins the choices.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from authz.permissions import Role
from core.clock import Clock, utcnow
from core.errors import SandboxError
from core.keys import SigningKey

ALGORITHM = "EdDSA"
ISSUER = "public-data-sandbox"
REQUIRED_CLAIMS = ("iss", "sub", "role", "iat", "exp", "jti")


class Unauthenticated(SandboxError):
    """No valid credentials: missing, malformed, expired, forged or revoked."""

    code = "unauthenticated"
    status = 401


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    subject: str
    role: Role
    jti: str
    issued_at: datetime
    expires_at: datetime


def issue(
    key: SigningKey,
    *,
    subject: str,
    role: Role,
    ttl_seconds: int,
    clock: Clock = utcnow,
    issuer: str = ISSUER,
) -> tuple[str, int]:
    """A signed token for ``subject`` in ``role``, and its lifetime in seconds."""
    now = clock()
    claims = {
        "iss": issuer,
        "sub": subject,
        "role": role.value,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"})
    return token, ttl_seconds


def verify(
    token: str,
    public_keys: dict[str, Ed25519PublicKey],
    *,
    clock: Clock = utcnow,
    issuer: str = ISSUER,
    leeway_seconds: int = 5,
) -> Claims:
    """Check signature, algorithm, issuer, time and required claims; raise :class:`Unauthenticated`."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthenticated("malformed access token") from exc
    if header.get("alg") != ALGORITHM:
        raise Unauthenticated(f"token algorithm must be {ALGORITHM}")
    key = public_keys.get(str(header.get("kid", "")))
    if key is None:
        raise Unauthenticated("token signed by an unknown key")
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=issuer,
            leeway=leeway_seconds,
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_iat": False,
                "verify_exp": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidIssuerError as exc:
        raise Unauthenticated("token from another issuer") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("invalid access token") from exc
    now = clock().timestamp()
    # Time is checked against the injected clock, not PyJWT's wall clock, so tests can hold it.
    if not isinstance(payload["exp"], int) or payload["exp"] + leeway_seconds < now:
        raise Unauthenticated("access token expired")
    if not isinstance(payload["iat"], int) or payload["iat"] - leeway_seconds > now:
        raise Unauthenticated("access token issued in the future")
    try:
        role = Role(payload["role"])
    except ValueError as exc:
        raise Unauthenticated("token names an unknown role") from exc
    from datetime import UTC

    return Claims(
        subject=str(payload["sub"]),
        role=role,
        jti=str(payload["jti"]),
        issued_at=datetime.fromtimestamp(payload["iat"], UTC),
        expires_at=datetime.fromtimestamp(payload["exp"], UTC),
    )
