"""Mock rows from a schema alone: same names and types, policy-shaped values, no forbidden fields."""

from __future__ import annotations

import datetime as dt

from catalog import Catalog, Classification, FieldFormat, FieldType
from sandbox.data.codes import is_valid_resident_id, is_valid_uscc
from sandbox.data.mock import mock_rows

PY_TYPES = {FieldType.STRING: str, FieldType.INTEGER: int, FieldType.NUMBER: float, FieldType.BOOLEAN: bool}


def test_mock_rows_follow_every_dataset_schema(catalog: Catalog) -> None:
    for dataset in catalog.datasets.values():
        rows = mock_rows(dataset, 40, seed=9)
        shown = [f for f in dataset.fields if f.classification is not Classification.FORBIDDEN]
        assert len(rows) == 40
        for row in rows:
            assert list(row) == [f.name for f in shown]
            for field in shown:
                value = row[field.name]
                if field.type is FieldType.DATE:
                    dt.date.fromisoformat(value)
                else:
                    assert isinstance(value, PY_TYPES[field.type]), (dataset.name, field.name, value)
                if field.key_set:
                    assert value in field.key_set
                if field.bounds:
                    assert field.bounds[0] <= value <= field.bounds[1]
                if field.format is FieldFormat.USCC:
                    assert is_valid_uscc(value)
                if field.format is FieldFormat.RESIDENT_ID:
                    assert is_valid_resident_id(value)


def test_mock_rows_never_carry_forbidden_fields(catalog: Catalog) -> None:
    dataset = catalog.dataset("enterprises")
    assert dataset.field("legal_rep_id").classification is Classification.FORBIDDEN
    assert all("legal_rep_id" not in row for row in mock_rows(dataset, 5, seed=1))


def test_mock_rows_are_deterministic_by_seed(catalog: Catalog) -> None:
    dataset = catalog.dataset("enterprise_tax")
    assert mock_rows(dataset, 5, seed=3) == mock_rows(dataset, 5, seed=3)
    assert mock_rows(dataset, 5, seed=3) != mock_rows(dataset, 5, seed=4)
