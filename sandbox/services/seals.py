"""Checking a sealed result offline: the seal against a key set, and the answer against its seal.

The input is what an operator hands a third party: the API's JSON response (with its ``seal``) or
the compact JWS alone. With the response, every field it shows beside the seal must equal the
sealed one, so a response edited after the fact (``false`` turned ``true``) is caught even though
its seal is intact.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import keyring
from core.errors import ConfigurationError
from core.seals import SealInvalid, verify_seal

MAX_INPUT_BYTES = 16 * 1024 * 1024


class SealUnreadable(SealInvalid):
    """The input holds no seal to check: neither a compact JWS nor JSON with one."""


@dataclass(frozen=True)
class SealCheck:
    """A seal that verified, and its payload."""

    payload: dict[str, Any]
    kid: str
    compared: list[str]  # response fields found equal to the sealed ones
    unsealed: list[str]  # response fields the seal does not hold: nothing vouches for them


def read_jwks(source: str) -> dict[str, Any]:
    """A key set from a file or an ``http(s)://`` URL; :class:`SealInvalid` if unusable."""
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=10) as response:  # noqa: S310 - http(s) only
                raw = response.read(MAX_INPUT_BYTES)
        # A malformed URL is a ValueError (http.client.InvalidURL among them), an answer that is no
        # HTTP an http.client.HTTPException: neither is an OSError.
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            raise SealInvalid(f"cannot fetch the key set from {source}: {exc}") from exc
    else:
        try:
            raw = Path(source).read_bytes()[:MAX_INPUT_BYTES]
        except OSError as exc:
            raise SealInvalid(f"cannot read the key set {source}: {exc.strerror}") from exc
    try:
        jwks = json.loads(raw)
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of over 4,300 digits
        raise SealInvalid("the key set is not JSON") from exc
    except RecursionError as exc:
        raise SealInvalid("the key set is not JSON a key set could be: nested too deeply") from exc
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise SealInvalid("the key set is not a JSON object with a 'keys' list")
    return jwks


def local_jwks(database_url: str) -> dict[str, Any]:
    """The key set published by the control database at ``database_url`` (the bureau's own view)."""
    from sqlalchemy.exc import SQLAlchemyError

    from core.db import create_control_engine, require_existing, session_factory

    require_existing(database_url)
    engine = create_control_engine(database_url)
    try:
        with session_factory(engine)() as session:
            return keyring.published_jwks(session)
    except SQLAlchemyError as exc:
        raise ConfigurationError("cannot read the published keys from the control database") from exc
    finally:
        engine.dispose()


def check_sealed(text: str, jwks: dict[str, Any]) -> SealCheck:
    """Verify a response (JSON with ``seal``) or a bare compact JWS; :class:`SealInvalid` if not."""
    text = text.removeprefix("\ufeff").strip()  # a byte order mark, as some editors save
    response: dict[str, Any] = {}
    if text.startswith("{"):
        try:
            response = json.loads(text)
        except (ValueError, RecursionError) as exc:  # ValueError: a JSONDecodeError, or over 4,300 digits
            raise SealUnreadable("the input is neither a compact JWS nor JSON") from exc
        if not isinstance(response, dict) or not isinstance(response.get("seal"), str):
            raise SealUnreadable("the JSON holds no 'seal'")
        token = response["seal"]
    else:
        token = text
    if token.count(".") != 2:
        raise SealUnreadable("not a compact JWS (three base64url parts separated by dots)")
    payload = verify_seal(token, jwks)
    compared, unsealed = [], []
    for name, shown in response.items():
        if name == "seal":
            continue
        if name not in payload:
            unsealed.append(name)
            continue
        if not _same(payload[name], shown):
            raise SealInvalid(f"the response's {name!r} differs from the sealed one: it was changed")
        compared.append(name)
    return SealCheck(payload=payload, kid=str(payload["kid"]), compared=compared, unsealed=unsealed)


def _same(sealed: Any, shown: Any) -> bool:
    """Equal as JSON values: ``true``/``false`` and ``null`` are no numbers (Python's ``0 == False``
    had passed a sealed ``false`` shown as ``0``, found in a sweep), while numbers compare by value,
    as JSON has one number type (``1`` and ``1.0`` are one value, which tools print either way).
    Key order does not matter."""
    if isinstance(sealed, bool) or isinstance(shown, bool) or sealed is None or shown is None:
        return type(sealed) is type(shown) and sealed == shown
    if isinstance(sealed, int | float) and isinstance(shown, int | float):
        return sealed == shown
    if isinstance(sealed, dict) and isinstance(shown, dict):
        return sealed.keys() == shown.keys() and all(_same(sealed[k], shown[k]) for k in sealed)
    if isinstance(sealed, list) and isinstance(shown, list):
        return len(sealed) == len(shown) and all(_same(a, b) for a, b in zip(sealed, shown, strict=True))
    return type(sealed) is type(shown) and sealed == shown


def check_seal_names_event(payload: dict[str, Any], seq: int, leaf_hash: str) -> None:
    """:class:`SealInvalid` unless a verified seal's payload names audit event ``seq`` with
    ``leaf_hash``: then an inclusion proof of that event is a proof that the answer was logged."""
    if "audit_seq" not in payload or "audit_leaf_hash" not in payload:
        raise SealUnreadable("the seal names no audit event (no audit_seq and audit_leaf_hash)")
    sealed_seq, sealed_leaf = payload["audit_seq"], payload["audit_leaf_hash"]
    if not _same(sealed_seq, seq):
        raise SealInvalid(f"the seal names audit event {sealed_seq!r}, the proof is of event {seq}")
    if sealed_leaf != leaf_hash:
        raise SealInvalid(
            f"the seal's audit_leaf_hash is not the proof's leaf_hash (event {seq}): "
            "the proof is of another event than the sealed one, or one of them was changed"
        )
