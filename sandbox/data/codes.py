"""Chinese identifier codes with their check characters, checked and generated (vectorized).

* Unified social credit code (统一社会信用代码, GB 32100-2015): registration authority, entity
  type, 6-digit division code, the 9-character organization code (GB 11714, with its own check
  character), and a final check character over the first 17 (weights 3^(i) mod 31).
* Resident identity number (公民身份号码, GB 11643-1999): division code, birth date, a 3-digit
  sequence (odd for men, even for women) and an ISO 7064 MOD 11-2 check character.

Written by hand: no maintained library implements both standards' check characters.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import numpy.typing as npt

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z
USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]
ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]
ID_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]  # 7, 9, 10, 5, 8, 4, 2, 1, 6, 3, ...
ID_CHECK = "10X98765432"

JINAN_DIVISIONS: dict[str, str] = {
    "历下区": "370102", "市中区": "370103", "槐荫区": "370104", "天桥区": "370105",
    "历城区": "370112", "长清区": "370113", "章丘区": "370114", "济阳区": "370115",
    "莱芜区": "370116", "钢城区": "370117", "平阴县": "370124", "商河县": "370126",
}  # fmt: skip

_SCRAMBLE = 387_420_489  # 3^18: coprime with 31^6, so serial -> serial * _SCRAMBLE is a bijection
_USCC_VALUE = {c: i for i, c in enumerate(USCC_CHARSET)}
# GB 11714 values: digits 0-9, letters A=10 ... Z=35 (contiguous, unlike the USCC charset).
_ORG_VALUE = {c: (int(c) if c.isdigit() else ord(c) - 55) for c in USCC_CHARSET}


def _org_check(body: str) -> str:
    remainder = 11 - sum(_ORG_VALUE[c] * w for c, w in zip(body, ORG_WEIGHTS, strict=True)) % 11
    return "0" if remainder == 11 else "X" if remainder == 10 else str(remainder)


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character of the first 17 characters."""
    total = sum(_USCC_VALUE[c] * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def is_valid_uscc(code: str) -> bool:
    """Whether ``code`` is a well-formed USCC with both check characters right."""
    if len(code) != 18 or any(c not in _USCC_VALUE for c in code) or not code[2:8].isdigit():
        return False
    return _org_check(code[8:16]) == code[16] and uscc_check_char(code[:17]) == code[17]


def resident_id_check_char(first17: str) -> str:
    """The GB 11643-1999 (ISO 7064 MOD 11-2) check character."""
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def is_valid_resident_id(number: str) -> bool:
    """Whether ``number`` is an 18-character resident ID with a real birth date and the right check."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return resident_id_check_char(number[:17]) == number[17]


def _to_strings(codes: npt.NDArray[np.uint8]) -> list[str]:
    width = codes.shape[1]
    return np.ascontiguousarray(codes).view(f"S{width}").ravel().astype(f"U{width}").tolist()


def _digits(values: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.int64]:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers) % 10


def generate_uscc(
    rng: np.random.Generator,
    divisions: npt.NDArray[np.int64],
    kinds: npt.NDArray[np.int64],
    serials: npt.NDArray[np.int64],
) -> list[str]:
    """Valid codes, unique per serial: ``kinds`` 0 for companies ('91'), 1 for individual businesses ('92').

    The last six organization-code characters encode a scrambled ``serial`` (below 31^6) in base 31,
    so distinct serials never collide while codes do not look sequential.
    """
    n = len(divisions)
    charset = np.frombuffer(USCC_CHARSET.encode(), dtype=np.uint8)
    org_values = np.array([_ORG_VALUE[c] for c in USCC_CHARSET], dtype=np.int64)
    values = np.empty((n, 17), dtype=np.int64)  # indexes into USCC_CHARSET
    values[:, 0] = 9
    values[:, 1] = np.where(kinds == 1, 2, 1)
    values[:, 2:8] = _digits(divisions, 6)
    # Organization code body: mostly digits, with letters as real codes have.
    body = np.empty((n, 8), dtype=np.int64)
    body[:, :2] = rng.integers(0, 10, (n, 2))
    scrambled = (serials * _SCRAMBLE) % 31**6
    body[:, 2:] = (scrambled[:, None] // 31 ** np.arange(5, -1, -1, dtype=np.int64)) % 31
    values[:, 8:16] = body
    org_sum = (org_values[body] * np.array(ORG_WEIGHTS)).sum(axis=1) % 11
    org_check = 11 - org_sum
    values[:, 16] = np.where(org_check == 11, 0, np.where(org_check == 10, _USCC_VALUE["X"], org_check))
    check = (31 - (values * np.array(USCC_WEIGHTS)).sum(axis=1) % 31) % 31
    ascii_codes = np.concatenate([charset[values], charset[check][:, None]], axis=1)
    return _to_strings(ascii_codes)


def generate_resident_ids(
    divisions: npt.NDArray[np.int64], births: npt.NDArray[np.int64], sequences: npt.NDArray[np.int64]
) -> list[str]:
    """Valid ID numbers from divisions, birth dates as YYYYMMDD integers and 3-digit sequences.

    The sequence's parity carries the sex: odd for men, even for women.
    """
    digits = np.concatenate([_digits(divisions, 6), _digits(births, 8), _digits(sequences, 3)], axis=1)
    check = (digits * np.array(ID_WEIGHTS)).sum(axis=1) % 11
    check_ascii = np.frombuffer(ID_CHECK.encode(), dtype=np.uint8)[check]
    ascii_codes = np.concatenate([(digits + 48).astype(np.uint8), check_ascii[:, None]], axis=1)
    return _to_strings(ascii_codes)
