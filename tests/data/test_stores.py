"""The dual data stores: staged, all-or-nothing replacement of whole datasets."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from catalog import Catalog
from sandbox.data.stores import DataStores, StagedLoad, arrow_schema, ensure_tables, row_counts


def _enterprise_rows(catalog: Catalog, n: int) -> pa.Table:
    dataset = catalog.dataset("enterprises")
    return pa.table(
        {
            "credit_code": [f"91370102MA3C{i:05d}X" for i in range(n)],
            "name": ["济南测试有限公司"] * n,
            "district": ["历下区"] * n,
            "industry": ["制造业"] * n,
            "registered_capital": [1e6] * n,
            "established_date": [dt.date(2020, 1, 1)] * n,
            "status": ["存续"] * n,
            "legal_rep_id": ["110101199003070000"] * n,
        },
        schema=arrow_schema(dataset),
    )


def test_staged_load_replaces_table_in_every_store(catalog: Catalog, data_stores: DataStores) -> None:
    ensure_tables(data_stores, catalog)
    dataset = catalog.dataset("enterprises")
    with StagedLoad(data_stores, [dataset]) as load:
        load.write("enterprises", _enterprise_rows(catalog, 3))
    with StagedLoad(data_stores, [dataset]) as load:
        load.write("enterprises", _enterprise_rows(catalog, 5))
    assert row_counts(data_stores, catalog)["enterprises"] == 5
    for engine in data_stores.engines:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM enterprises").scalar() == 5


def test_failed_staged_load_leaves_live_table_and_no_staging(
    catalog: Catalog, data_stores: DataStores
) -> None:
    ensure_tables(data_stores, catalog)
    dataset = catalog.dataset("enterprises")
    with StagedLoad(data_stores, [dataset]) as load:
        load.write("enterprises", _enterprise_rows(catalog, 2))

    def failing_load() -> None:
        with StagedLoad(data_stores, [dataset]) as load:
            load.write("enterprises", _enterprise_rows(catalog, 7))
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        failing_load()
    assert row_counts(data_stores, catalog)["enterprises"] == 2
    from sqlalchemy import inspect

    for engine in data_stores.engines:
        names = inspect(engine).get_table_names()
        assert not [n for n in names if "__" in n], names
