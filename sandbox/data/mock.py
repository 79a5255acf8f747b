"""Mock rows from a dataset's schema alone: the same names and types, never real values."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from catalog import Classification, Dataset, Field, FieldFormat, FieldType
from sandbox.data import codes, names
from sandbox.data.stores import ARROW_TYPES

_DIVISIONS = np.array([int(v) for v in codes.JINAN_DIVISIONS.values()], dtype=np.int64)
_EPOCH_2000 = np.datetime64("2000-01-01")
_DAYS_2000_2024 = int((np.datetime64("2025-01-01") - _EPOCH_2000).astype(int))


def random_dates(rng: np.random.Generator, n: int, start: str = "2000-01-01", end: str = "2024-12-31") -> Any:
    """``n`` dates (numpy ``datetime64[D]``) uniformly between ``start`` and ``end``."""
    first, last = np.datetime64(start), np.datetime64(end)
    return first + rng.integers(0, int((last - first).astype(int)) + 1, n).astype("timedelta64[D]")


def random_resident_ids(rng: np.random.Generator, n: int) -> list[str]:
    """Valid resident ID numbers for adults born 1950-2000 in Jinan (not unique)."""
    births = random_dates(rng, n, "1950-01-01", "2000-12-31")
    as_int = np.char.replace(np.datetime_as_string(births), "-", "").astype(np.int64)
    return codes.generate_resident_ids(rng.choice(_DIVISIONS, n), as_int, rng.integers(0, 1000, n))


def _string_column(field: Field, n: int, rng: np.random.Generator) -> list[str]:
    if field.format is FieldFormat.USCC:
        serials = rng.choice(31**6, size=n, replace=False) if n <= 31**6 else np.arange(n)
        return codes.generate_uscc(rng, rng.choice(_DIVISIONS, n), rng.integers(0, 2, n), serials)
    if field.format is FieldFormat.RESIDENT_ID:
        return random_resident_ids(rng, n)
    if field.format is FieldFormat.PERSON_NAME:
        return names.person_names(rng, n)
    if field.format is FieldFormat.FIRM_NAME:
        return names.firm_names(rng, names.pick(rng, list(names.INDUSTRY_WORDS), n))
    if field.format is FieldFormat.ADDRESS:
        return names.addresses(rng, names.pick(rng, list(codes.JINAN_DIVISIONS), n))
    return [f"{field.name}-{value:06d}" for value in rng.integers(0, 1_000_000, n)]


def _numeric_column(field: Field, n: int, rng: np.random.Generator) -> npt.NDArray[Any]:
    lo, hi = field.bounds or (0.0, 1000.0)
    if field.type is FieldType.INTEGER:
        return rng.integers(int(lo), int(hi) + 1, n)
    return np.round(rng.uniform(lo, hi, n), 2)


def mock_column(field: Field, n: int, rng: np.random.Generator) -> Any:
    """``n`` synthetic values for ``field``, drawn from its type, format, key set and bounds."""
    if field.key_set:
        return [field.key_set[i] for i in rng.integers(0, len(field.key_set), n)]
    if field.type is FieldType.STRING:
        return _string_column(field, n, rng)
    if field.type.numeric:
        return _numeric_column(field, n, rng)
    if field.type is FieldType.DATE:
        return random_dates(rng, n)
    return rng.random(n) < 0.5


def mock_table(dataset: Dataset, n: int, rng: np.random.Generator) -> pa.Table:
    """``n`` synthetic rows of every field of ``dataset`` as an Arrow table."""
    arrays = [pa.array(mock_column(f, n, rng), type=ARROW_TYPES[f.type]) for f in dataset.fields]
    return pa.Table.from_arrays(arrays, names=[f.name for f in dataset.fields])


def mock_rows(dataset: Dataset, n: int, *, seed: int | None = None) -> list[dict[str, Any]]:
    """JSON-ready mock rows, without forbidden fields (those are never shown in any form)."""
    rng = np.random.default_rng(seed)
    shown = [f for f in dataset.fields if f.classification is not Classification.FORBIDDEN]
    columns = {f.name: pa.array(mock_column(f, n, rng), type=ARROW_TYPES[f.type]).to_pylist() for f in shown}
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    for row in rows:
        for key, value in row.items():
            if hasattr(value, "isoformat"):
                row[key] = value.isoformat()
    return rows
