"""Ed25519 signing keys of the bureau: made at init, kept as files, published as a JWKS.

The private key never enters the database: it lives in ``$SANDBOX_HOME/keys/<kid>.pem`` with
mode 0600. The key id is the RFC 7638 JWK thumbprint of the public key, so anyone can recompute
it from the published JWK.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.errors import ConfigurationError


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_raw(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """The public key as a JWK (without ``kid``)."""
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(public_raw(key))}


def thumbprint(key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint: SHA-256 over the JWK's required members, sorted, no spaces."""
    canonical = json.dumps(public_jwk(key), sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


@dataclass(frozen=True)
class SigningKey:
    """A private key with its id."""

    kid: str
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        """Its public half."""
        return self.private.public_key()

    def jwk(self) -> dict[str, str]:
        """Its public JWK, with ``kid``, ``alg`` and ``use``."""
        return {**public_jwk(self.public), "kid": self.kid, "alg": "EdDSA", "use": "sig"}


def generate() -> SigningKey:
    """A fresh Ed25519 key."""
    private = Ed25519PrivateKey.generate()
    return SigningKey(kid=thumbprint(private.public_key()), private=private)


def save(key: SigningKey, keys_dir: Path) -> Path:
    """Write the private key as PKCS#8 PEM, readable by the owner only."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    path = keys_dir / f"{key.kid}.pem"
    pem = key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return path


def load(keys_dir: Path, kid: str) -> SigningKey:
    """Read the private key ``kid`` from ``keys_dir``."""
    path = keys_dir / f"{kid}.pem"
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"signing key {kid} not found in {keys_dir}") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigurationError(f"{path} is not an Ed25519 key")
    if thumbprint(private.public_key()) != kid:
        raise ConfigurationError(f"{path} does not hold key {kid}")
    return SigningKey(kid=kid, private=private)
