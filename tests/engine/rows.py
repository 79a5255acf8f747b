"""Crafted government rows for engine tests, written through the real load path (StagedLoad).

Each helper returns plain dicts: a test states exactly the rows it reasons about.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import pyarrow as pa

from catalog import Catalog
from sandbox.data.stores import ARROW_TYPES, DataStores, StagedLoad

FIRM = "913701023C5XXXX13C"  # the subject the API tests' consents are about
OTHER = "913701023C5YYYY271"
UNKNOWN = "913701023C5YYYY35U"  # never written anywhere


def write(stores: DataStores, catalog: Catalog, tables: dict[str, Iterable[dict[str, Any]]]) -> None:
    """Replace each named dataset with exactly ``rows`` (missing fields filled with defaults)."""
    datasets = [catalog.dataset(name) for name in tables]
    with StagedLoad(stores, datasets) as load:
        for dataset in datasets:
            rows = list(tables[dataset.name])
            arrays = [
                pa.array([row.get(f.name, _default(f.type.value)) for row in rows], type=ARROW_TYPES[f.type])
                for f in dataset.fields
            ]
            load.write(dataset.name, pa.Table.from_arrays(arrays, names=[f.name for f in dataset.fields]))


def _default(kind: str) -> Any:
    return {"string": "x", "integer": 0, "number": 0.0, "date": date(2020, 1, 1), "boolean": False}[kind]


def tax(code: str, year: int, annual_tax: float, **extra: Any) -> dict[str, Any]:
    """An enterprise_tax row."""
    return {
        "credit_code": code,
        "year": year,
        "district": "历下区",
        "industry": "制造业",
        "taxpayer_type": "一般纳税人",
        "revenue": annual_tax * 10,
        "annual_tax": annual_tax,
        "tax_credit_grade": "A",
        **extra,
    }


def enterprise(code: str, **extra: Any) -> dict[str, Any]:
    """An enterprises row."""
    return {
        "credit_code": code,
        "name": "测试企业",
        "district": "历下区",
        "industry": "制造业",
        "registered_capital": 1_000_000.0,
        "established_date": date(2015, 6, 1),
        "status": "存续",
        "legal_rep_id": "370102198001011237",
        **extra,
    }


def utilities(code: str, year: int, kwh_per_month: float) -> list[dict[str, Any]]:
    """Twelve monthly utilities rows."""
    return [
        {
            "credit_code": code,
            "year": year,
            "month": month,
            "district": "历下区",
            "electricity_kwh": kwh_per_month,
            "water_m3": 10.0,
        }
        for month in range(1, 13)
    ]
