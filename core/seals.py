"""Sealed results: a released answer signed by the bureau's key as a compact JWS (EdDSA).

A seal is verifiable offline by anyone holding the published key set (``/.well-known/jwks.json``):
the header names the key (``kid``), the payload is the answer in canonical JSON. Verification
accepts exactly one algorithm, EdDSA, and only a key of the given set; the payload must name the
same key it was signed with, so a seal cannot be re-labelled.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt import api_jws

from core.errors import SandboxError
from core.keys import SigningKey

ALGORITHM = "EdDSA"
ISSUER = "public-data-sandbox"
SEAL_TYPE = "sandbox-seal+json"


class SealInvalid(SandboxError):
    """A seal does not verify: malformed, signed by an unknown key, or changed after signing."""

    code = "seal_invalid"
    status = 400


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8 as is; NaN and infinity are refused (they are not JSON)."""
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def seal(payload: Mapping[str, Any], key: SigningKey) -> str:
    """The compact JWS of ``payload`` (with ``iss`` and ``kid`` added) signed by ``key``."""
    body = {**payload, "iss": ISSUER, "kid": key.kid}
    headers = {"kid": key.kid, "typ": SEAL_TYPE}
    return api_jws.encode(canonical_json(body), key.private, algorithm=ALGORITHM, headers=headers)


def _public_key(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
        raise SealInvalid("the signing key is not an Ed25519 public key")
    try:
        raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error) as exc:
        raise SealInvalid("the signing key in the key set is malformed") from exc


def _find_key(jwks: Mapping[str, Any], kid: str) -> Ed25519PublicKey:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise SealInvalid("the key set has no 'keys' list")
    for jwk in keys:
        if isinstance(jwk, Mapping) and jwk.get("kid") == kid:
            return _public_key(jwk)
    raise SealInvalid(f"the seal was signed by key {kid[:64]!r}, which the key set does not hold")


def verify_seal(token: str, jwks: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of ``token`` if it verifies against ``jwks``; :class:`SealInvalid` otherwise."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise SealInvalid("not a compact JWS (three base64url parts separated by dots)")
    try:
        header = api_jws.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise SealInvalid("the seal's header is malformed") from exc
    if header.get("alg") != ALGORITHM:
        raise SealInvalid(f"the seal's algorithm must be {ALGORITHM}")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise SealInvalid("the seal's header names no key")
    key = _find_key(jwks, kid)
    try:
        raw = api_jws.decode(token, key, algorithms=[ALGORITHM])
    except jwt.PyJWTError as exc:
        raise SealInvalid("the signature does not match: the seal was changed or forged") from exc
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SealInvalid("the sealed payload is not JSON") from exc
    if not isinstance(payload, dict) or payload.get("kid") != kid or payload.get("iss") != ISSUER:
        raise SealInvalid("the sealed payload does not name the key and issuer that signed it")
    return payload
