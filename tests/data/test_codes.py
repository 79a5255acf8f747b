"""Check characters of unified social credit codes (GB 32100) and resident IDs (GB 11643)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from core.identifiers import RESIDENT_ID, USCC
from sandbox.data.codes import (
    JINAN_DIVISIONS,
    USCC_CHARSET,
    generate_resident_ids,
    generate_uscc,
    is_valid_resident_id,
    is_valid_uscc,
    resident_id_check_char,
    uscc_check_char,
    valid_mask,
)

# Published, real-world examples.
KNOWN_USCC = ["91350100M000100Y43", "91110000600037341L"]
KNOWN_IDS = ["11010519491231002X"]  # the example in GB 11643-1999


@pytest.mark.parametrize("code", KNOWN_USCC)
def test_known_credit_codes_are_valid(code: str) -> None:
    assert is_valid_uscc(code)
    assert uscc_check_char(code[:17]) == code[17]


@pytest.mark.parametrize("number", KNOWN_IDS)
def test_known_resident_ids_are_valid(number: str) -> None:
    assert is_valid_resident_id(number)
    assert resident_id_check_char(number[:17]) == number[17]


def test_generated_credit_codes_are_valid_unique_and_located() -> None:
    rng = np.random.default_rng(5)
    divisions = rng.choice([int(v) for v in JINAN_DIVISIONS.values()], 20_000)
    kinds = rng.integers(0, 2, 20_000)
    codes = generate_uscc(rng, divisions, kinds, np.arange(20_000))
    assert len(set(codes)) == len(codes)
    for code, division, kind in zip(codes, divisions, kinds, strict=True):
        assert is_valid_uscc(code), code
        assert code[:2] == ("92" if kind else "91")
        assert code[2:8] == str(division)
        assert set(code) <= set(USCC_CHARSET)


def test_any_changed_character_breaks_a_credit_code() -> None:
    code = generate_uscc(np.random.default_rng(1), np.array([370102]), np.array([0]), np.array([42]))[0]
    for position in range(18):
        for replacement in "0AX":
            changed = code[:position] + replacement + code[position + 1 :]
            if changed != code:
                assert not is_valid_uscc(changed), (position, changed)


def test_generated_resident_ids_are_valid_with_sex_and_birth() -> None:
    ids = generate_resident_ids(np.array([370102, 370112]), np.array([19800229, 20001231]), np.array([1, 2]))
    assert all(is_valid_resident_id(number) for number in ids)
    assert ids[0].startswith("37010219800229001") and int(ids[0][16]) % 2 == 1  # odd: male
    assert ids[1].startswith("37011220001231002") and int(ids[1][16]) % 2 == 0  # even: female


@pytest.mark.parametrize(
    "number",
    [
        "11010519491231002Y",
        "11010519491231003X",
        "110105194902300021",
        "1101051949123100",
        "11010519491231002x",
    ],
)
def test_bad_resident_ids_are_refused(number: str) -> None:
    assert not is_valid_resident_id(number)


def test_bad_credit_codes_are_refused() -> None:
    assert not is_valid_uscc("91350100M000100Y44")  # last check changed
    assert not is_valid_uscc("91350100M000100Y4")  # short
    assert not is_valid_uscc("91350100I000100Y43")  # I is not in the charset


def _mutated(value: str, rng: random.Random) -> str:
    """One typo: a character replaced (from the alphabet, or one outside it), swapped, lost or added."""
    alphabet = USCC_CHARSET + "IOSVZxa0123456789Xé\udcff"
    chars, at = list(value), rng.randrange(len(value))
    match rng.randrange(4):
        case 0:
            chars[at] = rng.choice(alphabet)
        case 1 if at < len(chars) - 1:
            chars[at], chars[at + 1] = chars[at + 1], chars[at]
        case 2:
            del chars[at]
        case _:
            chars.insert(at, rng.choice(alphabet))
    return "".join(chars)


def test_the_bulk_check_agrees_with_the_one_at_a_time_checks() -> None:
    """valid_mask is what a load counts with: it must say what is_valid_* say, value for value."""
    rng, typos = np.random.default_rng(7), random.Random(7)
    n = 5_000
    divisions = rng.choice([int(v) for v in JINAN_DIVISIONS.values()], n)
    codes = generate_uscc(rng, divisions, rng.integers(0, 2, n), np.arange(n))
    years, months, days = rng.integers(1900, 2024, n), rng.integers(1, 13, n), rng.integers(1, 29, n)
    births = [int(f"{y}{m:02d}{d:02d}") for y, m, d in zip(years, months, days, strict=True)]
    ids = generate_resident_ids(divisions, np.array(births), rng.integers(0, 1000, n))
    odd = ["", "x" * 18, "é" * 9, "\udcff" * 18, "\ud800" * 18, "\udc30" * 6]  # é * 9: 18 bytes
    odd += ["110105200002290021", "110105200002300023", "110105000001010028"]  # a leap day; no date; year 0
    values = codes + ids + [_mutated(v, typos) for v in codes + ids] + odd
    for kind, check in ((USCC, is_valid_uscc), (RESIDENT_ID, is_valid_resident_id)):
        bulk = valid_mask(values, kind)
        assert bulk.tolist() == [check(v) for v in values]
        assert 0 < bulk.sum() < len(values)  # both answers occur: the comparison means something
    assert valid_mask([], USCC).tolist() == []
    with pytest.raises(ValueError, match="no check for ids of kind"):
        valid_mask(codes[:1], "person_name")
