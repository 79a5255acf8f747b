"""Password and secret hashing with argon2id (argon2-cffi's defaults, RFC 9106 profile)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()
# Verified against when the account does not exist, so a missing user costs the same time.
_DUMMY_HASH = _HASHER.hash("no such account")


def hash_secret(secret: str) -> str:
    """An argon2id hash of ``secret``."""
    return _HASHER.hash(secret)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """Whether ``secret`` matches; ``stored_hash=None`` still spends the time of a real check."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, secret) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
