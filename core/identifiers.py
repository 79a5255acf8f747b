"""The check characters of the two identifiers a subject goes by, and the checks built on them.

* Unified social credit code (统一社会信用代码, GB 32100-2015): registration authority, entity
  type, 6-digit division code, the 9-character organization code (GB 11714, with its own check
  character), and a final check character over the first 17 (weights 3^(i) mod 31).
* Resident identity number (公民身份号码, GB 11643-1999): division code, birth date, a 3-digit
  sequence (odd for men, even for women) and an ISO 7064 MOD 11-2 check character.

A code whose check characters are wrong is almost always a mistyped one. A verification of it is
refused, so a slip of the keyboard never reads as "this firm paid no tax"; and nothing leaks by
it, since the check is arithmetic anyone can do. Known exception: a few codes issued before 2016
(some in Xiamen, reported against other validators) do not conform to GB 32100; the bureau
accepts such a code by name (:mod:`core.accepted_codes`), and the checks that read the database
use that module's functions, which wrap these.

Written by hand: no maintained library implements both standards' check characters.
"""

from __future__ import annotations

from datetime import date

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z
USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]
ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]
ID_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]  # 7, 9, 10, 5, 8, 4, 2, 1, 6, 3, ...
ID_CHECK = "10X98765432"

USCC_VALUE = {c: i for i, c in enumerate(USCC_CHARSET)}
# GB 11714 values: digits 0-9, letters A=10 ... Z=35 (contiguous, unlike the USCC charset).
ORG_VALUE = {c: (int(c) if c.isdigit() else ord(c) - 55) for c in USCC_CHARSET}
_DIGITS = frozenset("0123456789")  # ASCII only: str.isdigit() also takes other scripts' digits

SUBJECT_ID_SHAPE = "an 18-character unified social credit code or resident ID number"
CHECK_MISMATCH = "its check character does not match the rest: a character is mistyped"


def org_check_char(body: str) -> str:
    """The GB 11714 check character of an organization code's 8-character body."""
    remainder = 11 - sum(ORG_VALUE[c] * w for c, w in zip(body, ORG_WEIGHTS, strict=True)) % 11
    return "0" if remainder == 11 else "X" if remainder == 10 else str(remainder)


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character of the first 17 characters."""
    total = sum(USCC_VALUE[c] * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def uscc_shaped(code: str) -> bool:
    """18 characters of the code's alphabet with a 6-digit division code: a code, right or mistyped."""
    return len(code) == 18 and all(c in USCC_VALUE for c in code) and _DIGITS.issuperset(code[2:8])


def is_valid_uscc(code: str) -> bool:
    """Whether ``code`` is a well-formed USCC with both check characters right."""
    if not uscc_shaped(code):
        return False
    return org_check_char(code[8:16]) == code[16] and uscc_check_char(code[:17]) == code[17]


def resident_id_check_char(first17: str) -> str:
    """The GB 11643-1999 (ISO 7064 MOD 11-2) check character."""
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def resident_id_shaped(number: str) -> bool:
    """17 ASCII digits and a digit or ``X``: an ID number, right or mistyped."""
    return (
        len(number) == 18 and _DIGITS.issuperset(number[:17]) and (number[17] in _DIGITS or number[17] == "X")
    )


def _born_on_a_date(number: str) -> bool:
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return True


def is_valid_resident_id(number: str) -> bool:
    """Whether ``number`` is an 18-character resident ID with a real birth date and the right check."""
    if not resident_id_shaped(number) or not _born_on_a_date(number):
        return False
    return resident_id_check_char(number[:17]) == number[17]


USCC = "uscc"  # the kinds of subject id, as a dataset's key field names its format
RESIDENT_ID = "resident_id"


def subject_id_problem(value: object, kind: str | None = None) -> str | None:
    """Why ``value`` is not a subject's id with its check characters right, or ``None``.

    ``kind`` is the id a dataset is keyed by (``USCC`` or ``RESIDENT_ID``); where it is known it
    is the only one accepted. Either one would let a mistyped ID number through as a credit
    code about once in 341 typos (an all-digit string passes both of a code's checks that often),
    to be answered ``false`` about a person.
    """
    if kind == USCC:
        return credit_code_problem(value)
    if kind == RESIDENT_ID:
        return _resident_id_problem(value)
    if not isinstance(value, str) or not (uscc_shaped(value) or resident_id_shaped(value)):
        return SUBJECT_ID_SHAPE + _lower_case_x(value)
    if is_valid_uscc(value) or is_valid_resident_id(value):
        return None
    if resident_id_shaped(value) and not _born_on_a_date(value):
        return f"{SUBJECT_ID_SHAPE}; as an ID number its digits 7-14 are no date, as a code {CHECK_MISMATCH}"
    return f"{SUBJECT_ID_SHAPE}; {CHECK_MISMATCH}"


def _lower_case_x(value: object) -> str:
    if isinstance(value, str) and len(value) == 18 and value.endswith("x") and _DIGITS.issuperset(value[:17]):
        return " (an ID number's final X is upper case)"
    return ""


def _resident_id_problem(value: object) -> str | None:
    if not isinstance(value, str) or not resident_id_shaped(value):
        return "an 18-character resident ID number" + _lower_case_x(value)
    if not _born_on_a_date(value):
        return "a resident ID number; its digits 7-14 are no date: a character is mistyped"
    if resident_id_check_char(value[:17]) != value[17]:
        return f"a resident ID number; {CHECK_MISMATCH}"
    return None


def credit_code_problem(value: object) -> str | None:
    """Why ``value`` is not a unified social credit code with its check characters right, or ``None``."""
    if not isinstance(value, str) or not uscc_shaped(value):
        return "an 18-character unified social credit code"
    if is_valid_uscc(value):
        return None
    return f"a unified social credit code; {CHECK_MISMATCH}"
