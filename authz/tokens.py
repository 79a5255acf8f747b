"""Access tokens: short-lived JWTs signed with the bureau's Ed25519 key (EdDSA).

Verification accepts exactly one algorithm, EdDSA, and only keys from the published key set,
looked up by ``kid``: a token with ``alg: none``, an HS256 token "signed" with the public key, an
expired token, a token of another issuer or with a changed byte are all refused. PyJWT does the
cryptography and the claim checks; this module pins the choices.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from authz.permissions import Role
from core.clock import Clock, utcnow
from core.errors import SandboxError
from core.keys import SigningKey
from core.text import is_utf8_text

ALGORITHM = "EdDSA"
ISSUER = "public-data-sandbox"
REQUIRED_CLAIMS = ("iss", "sub", "role", "iat", "exp", "jti")


class Unauthenticated(SandboxError):
    """No valid credentials: missing, malformed, expired, forged or revoked."""

    code = "unauthenticated"
    status = 401


class UnknownKey(Unauthenticated):
    """The token names a key this process does not know (yet: a key rotated in another process)."""


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    subject: str
    role: Role
    jti: str
    issued_at: datetime
    expires_at: datetime
    not_before: datetime | None = None  # nbf, when the token has one (ours: equal to iat)


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
        raise UnknownKey("token signed by an unknown key")
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
    not_before = payload.get("nbf")  # optional; ours equal iat
    times = (payload["exp"], payload["iat"], 0 if not_before is None else not_before)
    if not all(isinstance(t, int) for t in times):
        raise Unauthenticated("invalid access token")
    try:
        role = Role(payload["role"])
    except ValueError as exc:
        raise Unauthenticated("token names an unknown role") from exc
    if not (_claim_text(payload["sub"]) and _claim_text(payload["jti"])):
        raise Unauthenticated("invalid access token")
    try:
        claims = Claims(
            subject=payload["sub"],
            role=role,
            jti=payload["jti"],
            issued_at=datetime.fromtimestamp(payload["iat"], UTC),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            not_before=None if not_before is None else datetime.fromtimestamp(not_before, UTC),
        )
    except (OverflowError, OSError, ValueError) as exc:  # a time no datetime can hold
        raise Unauthenticated("invalid access token") from exc
    check_times(claims, clock=clock, leeway_seconds=leeway_seconds)
    return claims


def _claim_text(value: object) -> bool:
    """An id claim fit to look up and store: 1-128 characters of UTF-8 text without NUL (a lone
    surrogate, which JSON's ``\\ud800`` allows, failed in the database driver as a 500)."""
    return isinstance(value, str) and 1 <= len(value) <= 128 and "\x00" not in value and is_utf8_text(value)


def check_times(claims: Claims, *, clock: Clock = utcnow, leeway_seconds: int = 5) -> None:
    """Refuse a token expired, issued in the future or not valid yet (nbf), by the injected clock
    (tests can hold it)."""
    now = clock()
    leeway = timedelta(seconds=leeway_seconds)
    if claims.expires_at + leeway < now:
        raise Unauthenticated("access token expired")
    if claims.issued_at - leeway > now:
        raise Unauthenticated("access token issued in the future")
    if claims.not_before is not None and claims.not_before - leeway > now:
        raise Unauthenticated("access token not valid yet")


class VerifiedTokens:
    """Tokens whose signature this process has already checked, so a client's next request with
    the same token costs a dictionary lookup instead of an Ed25519 verification (a third of a
    millisecond here, more than the rest of a verification's checks).

    A signature check is a pure function of the token's bytes and the key: the memo keeps the
    key it verified with and is used only while the published key set still holds that very key
    object, so a retired or rotated key sends the token back through :func:`verify`. Times are
    checked on every use, and everything that can change about the caller (an operator
    suspended, an account disabled) is read fresh by the caller, as before. Least recently used
    tokens are dropped beyond ``size``. Written by hand: no maintained library memoizes JWT checks
    keyed on the verifying key.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[str, Ed25519PublicKey, Claims]] = OrderedDict()

    def verify(
        self, token: str, public_keys: dict[str, Ed25519PublicKey], *, clock: Clock = utcnow
    ) -> Claims:
        """What :func:`verify` would return for ``token`` against ``public_keys`` at ``clock()``."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is not None:
                self._entries.move_to_end(token)
        if entry is not None and public_keys.get(entry[0]) is entry[1]:
            check_times(entry[2], clock=clock)
            return entry[2]
        claims = verify(token, public_keys, clock=clock)
        kid = str(jwt.get_unverified_header(token).get("kid", ""))
        with self._lock:
            self._entries[token] = (kid, public_keys[kid], claims)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return claims
