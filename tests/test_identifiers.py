"""Identifiers match the whole text: a final newline ("$" lets one through) or another script's
digits ("\\d" and ``str.isdigit`` take them) are refused, not stored or looked up as something else;
a credit code or ID number whose check characters are wrong is refused as mistyped."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from authz.accounts import USERNAME
from core.identifiers import RESIDENT_ID, USCC, credit_code_problem, subject_id_problem
from sandbox.app import _REQUEST_ID

CREDIT_CODE = "91350100M000100Y43"  # a published, real code
ID_NUMBER = "11010519491231002X"  # the example in GB 11643-1999

CASES: list[tuple[Callable[[str], bool], str]] = [
    (lambda value: subject_id_problem(value) is None, CREDIT_CODE),
    (lambda value: subject_id_problem(value) is None, ID_NUMBER),
    (lambda value: credit_code_problem(value) is None, CREDIT_CODE),
    (lambda value: USERNAME.match(value) is not None, "reviewer.li"),
    (lambda value: _REQUEST_ID.match(value) is not None, "req-2026.11:23"),
]


@pytest.mark.parametrize(("accepts", "good"), CASES)
def test_the_whole_text_must_match(accepts: Callable[[str], bool], good: str) -> None:
    assert accepts(good)
    for bad in (good + "\n", "\n" + good, good + " ", good[:-1] + "\n"):
        assert not accepts(bad), repr(bad)


@pytest.mark.parametrize("code", [CREDIT_CODE, ID_NUMBER])
def test_identifiers_take_ascii_digits_only(code: str) -> None:
    for digit in ("３", "٣"):  # a full-width digit, an Arabic-Indic digit
        changed = code[:3] + digit + code[4:]
        assert subject_id_problem(changed) is not None, changed
        assert credit_code_problem(changed) is not None, changed


@pytest.mark.parametrize("code", [CREDIT_CODE, ID_NUMBER])
def test_one_mistyped_character_is_named_as_such(code: str) -> None:
    """Any one character changed, or two neighbours swapped, fails a check: the answer says so
    (a mistyped code must not read as an unknown firm, whose verification answers false)."""
    changes = [code[:i] + c + code[i + 1 :] for i in range(18) for c in "0137AX" if c != code[i]]
    changes += [code[:i] + code[i + 1] + code[i] + code[i + 2 :] for i in range(17) if code[i] != code[i + 1]]
    for changed in changes:
        found = subject_id_problem(changed)
        assert found is not None, changed
        shape = found in ("an 18-character unified social credit code or resident ID number",)
        assert shape or "a character is mistyped" in found or "no date" in found, (changed, found)


def test_the_shape_and_the_check_are_told_apart() -> None:
    assert subject_id_problem("91370102MA3C5ZZZZ3") == (
        "an 18-character unified social credit code or resident ID number"
    )  # Z is not in the credit code's alphabet
    assert subject_id_problem(None) is not None and credit_code_problem(17) is not None
    wrong = subject_id_problem(CREDIT_CODE[:-1] + "4")
    assert wrong is not None and wrong.endswith("a character is mistyped")
    born = subject_id_problem("110105194902300021")  # 30 February
    assert born is not None and "no date" in born
    assert credit_code_problem(ID_NUMBER[:-1] + "3") is not None  # an ID number is no credit code
    assert credit_code_problem(CREDIT_CODE[:-1] + "4") == (
        "a unified social credit code; its check character does not match the rest: a character is mistyped"
    )


def test_where_the_kind_is_known_only_that_kind_is_taken() -> None:
    """An ID number with one digit mistyped passes both of a credit code's checks about once in
    341 typos (this one does): keyed by ID number, it is refused, not answered false."""
    typo = "370102199210040067"  # 370102199210040047 with its 17th digit mistyped
    assert subject_id_problem(typo) is None  # as "either kind", it passes as a credit code
    assert subject_id_problem(typo, RESIDENT_ID) == (
        "a resident ID number; its check character does not match the rest: a character is mistyped"
    )
    assert subject_id_problem(ID_NUMBER, RESIDENT_ID) is None
    assert subject_id_problem(CREDIT_CODE, USCC) is None
    assert subject_id_problem(CREDIT_CODE, RESIDENT_ID) == "an 18-character resident ID number"
    assert subject_id_problem(ID_NUMBER, USCC) is not None  # an ID number is no credit code
    assert subject_id_problem("110105194902300021", RESIDENT_ID) == (
        "a resident ID number; its digits 7-14 are no date: a character is mistyped"
    )
    lower = ID_NUMBER.lower()
    for kind in (None, RESIDENT_ID):
        found = subject_id_problem(lower, kind)
        assert found is not None and found.endswith("(an ID number's final X is upper case)"), kind
