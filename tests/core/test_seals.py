"""Seals: a compact EdDSA JWS over canonical JSON, verified against a key set and nothing else."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from core import keys, seals

ANSWER = {
    "kind": "verification",
    "result": True,
    "template": "tax_paid_at_least",
    "subject": "齐鲁",
    "n": 1.5,
}


def _flip(part: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_a_seal_verifies_against_the_key_set_and_names_its_key() -> None:
    key = keys.generate()
    token = seals.seal(ANSWER, key)
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["kid"]) == ("EdDSA", key.kid)
    payload = seals.verify_seal(token, {"keys": [keys.generate().jwk(), key.jwk()]})
    assert payload == {**ANSWER, "iss": seals.ISSUER, "kid": key.kid}


@pytest.mark.parametrize("part", [0, 1, 2])
def test_one_changed_byte_anywhere_fails(part: int) -> None:
    key = keys.generate()
    token = seals.seal(ANSWER, key)
    pieces = token.split(".")
    for index in range(0, len(base64.urlsafe_b64decode(pieces[part] + "==")), 7):
        changed = list(pieces)
        changed[part] = _flip(pieces[part], index)
        with pytest.raises(seals.SealInvalid):
            seals.verify_seal(".".join(changed), {"keys": [key.jwk()]})


def test_a_seal_by_an_unknown_key_or_another_algorithm_is_refused() -> None:
    key, stranger = keys.generate(), keys.generate()
    with pytest.raises(seals.SealInvalid, match="does not hold"):
        seals.verify_seal(seals.seal(ANSWER, stranger), {"keys": [key.jwk()]})
    # The same key id, but "signed" with HS256 using the public key as the secret.
    body = seals.canonical_json({**ANSWER, "iss": seals.ISSUER, "kid": key.kid})
    forged = jwt.api_jws.encode(body, key.jwk()["x"], algorithm="HS256", headers={"kid": key.kid})
    with pytest.raises(seals.SealInvalid, match="algorithm"):
        seals.verify_seal(forged, {"keys": [key.jwk()]})
    unsigned = ".".join(
        [
            base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": key.kid}).encode())
            .rstrip(b"=")
            .decode(),
            base64.urlsafe_b64encode(body).rstrip(b"=").decode(),
            "",
        ]
    )
    with pytest.raises(seals.SealInvalid):
        seals.verify_seal(unsigned, {"keys": [key.jwk()]})


def test_a_payload_relabelled_with_another_key_id_is_refused() -> None:
    key = keys.generate()
    body = seals.canonical_json({**ANSWER, "iss": seals.ISSUER, "kid": "someone-else"})
    token = jwt.api_jws.encode(body, key.private, algorithm="EdDSA", headers={"kid": key.kid})
    with pytest.raises(seals.SealInvalid, match="does not name"):
        seals.verify_seal(token, {"keys": [key.jwk()]})


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c", "x" * 1000, "..", "eyJ.eyJ.eyJ"])
def test_garbage_is_refused_cleanly(garbage: str) -> None:
    with pytest.raises(seals.SealInvalid):
        seals.verify_seal(garbage, {"keys": [keys.generate().jwk()]})


def test_nan_is_never_sealed() -> None:
    with pytest.raises(ValueError, match="JSON"):
        seals.seal({"value": float("nan")}, keys.generate())
