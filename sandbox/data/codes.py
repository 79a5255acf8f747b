"""Unified social credit codes and resident ID numbers, generated with their check characters
(vectorized, for synthetic and mock data). The check characters and the checks themselves are in
:mod:`core.identifiers`, re-exported here.

Written by hand: no maintained library generates either standard's codes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.identifiers import (
    ID_CHECK,
    ID_WEIGHTS,
    ORG_VALUE,
    ORG_WEIGHTS,
    USCC_CHARSET,
    USCC_VALUE,
    USCC_WEIGHTS,
    is_valid_resident_id,
    is_valid_uscc,
    resident_id_check_char,
    uscc_check_char,
)

__all__ = [
    "JINAN_DIVISIONS",
    "USCC_CHARSET",
    "generate_resident_ids",
    "generate_uscc",
    "is_valid_resident_id",
    "is_valid_uscc",
    "resident_id_check_char",
    "uscc_check_char",
]

JINAN_DIVISIONS: dict[str, str] = {
    "历下区": "370102", "市中区": "370103", "槐荫区": "370104", "天桥区": "370105",
    "历城区": "370112", "长清区": "370113", "章丘区": "370114", "济阳区": "370115",
    "莱芜区": "370116", "钢城区": "370117", "平阴县": "370124", "商河县": "370126",
}  # fmt: skip

_SCRAMBLE = 387_420_489  # 3^18: coprime with 31^6, so serial -> serial * _SCRAMBLE is a bijection


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
    org_values = np.array([ORG_VALUE[c] for c in USCC_CHARSET], dtype=np.int64)
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
    values[:, 16] = np.where(org_check == 11, 0, np.where(org_check == 10, USCC_VALUE["X"], org_check))
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
