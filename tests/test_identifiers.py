"""Identifier patterns match the whole text: a final newline ("$" lets one through) or another
script's digits ("\\d" matches them) are refused, not stored or looked up as something else."""

from __future__ import annotations

import re

import pytest

from authz.accounts import USERNAME
from authz.consent import SUBJECT_ID
from operators.services import CREDIT_CODE
from sandbox.app import _REQUEST_ID

CASES = [
    (SUBJECT_ID, "91370102MA3C5XXXX1"),
    (CREDIT_CODE, "91370102MA3C5XXXX1"),
    (USERNAME, "reviewer.li"),
    (_REQUEST_ID, "req-2026.11:23"),
]


@pytest.mark.parametrize(("pattern", "good"), CASES)
def test_the_whole_text_must_match(pattern: re.Pattern[str], good: str) -> None:
    assert pattern.match(good)
    for bad in (good + "\n", "\n" + good, good + " ", good[:-1] + "\n"):
        assert not pattern.match(bad), repr(bad)


def test_credit_codes_take_ascii_digits_only() -> None:
    assert not CREDIT_CODE.match("91３70102MA3C5XXXX1")  # a full-width digit
    assert not CREDIT_CODE.match("91٣70102MA3C5XXXX1")  # an Arabic-Indic digit
