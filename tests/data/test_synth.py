"""The synthetic generator: deterministic, complete, realistic, valid against the schema."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import select

from catalog import Catalog
from sandbox.data.codes import is_valid_resident_id, is_valid_uscc
from sandbox.data.stores import DataStores, dataset_table, ensure_tables, row_counts
from sandbox.data.synth import synthesize


def _rows(stores: DataStores, catalog: Catalog, name: str) -> list[tuple[Any, ...]]:
    table = dataset_table(catalog.dataset(name))
    with stores.scan.connect() as conn:
        return [tuple(r) for r in conn.execute(select(table).order_by(*table.c)).all()]


@pytest.fixture
def synthesized(data_stores: DataStores, catalog: Catalog) -> DataStores:
    ensure_tables(data_stores, catalog)
    synthesize(data_stores, catalog, enterprises=600, persons=400, seed=11, batch_size=250)
    return data_stores


def test_every_dataset_is_filled_in_every_store(synthesized: DataStores, catalog: Catalog) -> None:
    counts = row_counts(synthesized, catalog)
    assert counts["enterprises"] == 600 and counts["public_credit"] == 600
    assert counts["household_registration"] == 400
    assert all(counts[name] for name in catalog.datasets), counts
    for engine in synthesized.engines:
        with engine.connect() as conn:
            assert (
                conn.exec_driver_sql("SELECT count(*) FROM enterprise_tax").scalar()
                == counts["enterprise_tax"]
            )


def test_codes_are_valid_and_unique(synthesized: DataStores, catalog: Catalog) -> None:
    firms = _rows(synthesized, catalog, "enterprises")
    codes = [row[0] for row in firms]
    assert len(set(codes)) == len(codes)
    assert all(is_valid_uscc(code) for code in codes)
    assert all(is_valid_resident_id(row[7]) for row in firms)  # legal representative
    people = _rows(synthesized, catalog, "household_registration")
    ids = [row[0] for row in people]
    assert len(set(ids)) == len(ids) and all(is_valid_resident_id(n) for n in ids)
    for resident_id, _name, gender, birth_year, *_ in people:
        assert int(resident_id[6:10]) == birth_year
        assert gender == ("男" if int(resident_id[16]) % 2 else "女")


def test_yearly_rows_only_after_founding_and_linked_to_firms(
    synthesized: DataStores, catalog: Catalog
) -> None:
    founded = {row[0]: row[5].year for row in _rows(synthesized, catalog, "enterprises")}
    tax = _rows(synthesized, catalog, "enterprise_tax")
    assert {row[0] for row in tax} <= set(founded)
    assert all(row[1] >= max(founded[row[0]], 2020) for row in tax)
    assert len({(row[0], row[1]) for row in tax}) == len(tax)
    owners = {row[0] for row in _rows(synthesized, catalog, "real_estate")}
    people = {row[0] for row in _rows(synthesized, catalog, "household_registration")}
    assert owners <= people


def test_amounts_are_skewed_as_in_life(synthesized: DataStores, catalog: Catalog) -> None:
    capital = sorted(row[4] for row in _rows(synthesized, catalog, "enterprises"))
    median, p99 = capital[len(capital) // 2], capital[int(len(capital) * 0.99)]
    assert p99 > 10 * median  # a long tail, not a uniform spread
    employees = sorted(row[4] for row in _rows(synthesized, catalog, "social_insurance"))
    assert employees[len(employees) // 2] < 50 and employees[-1] > 100


def test_same_seed_same_rows_other_seed_other_rows(
    data_stores: DataStores, catalog: Catalog, tmp_path: Any
) -> None:
    ensure_tables(data_stores, catalog)
    synthesize(data_stores, catalog, enterprises=120, persons=80, seed=3, batch_size=50)
    first = {name: _rows(data_stores, catalog, name) for name in catalog.datasets}
    synthesize(data_stores, catalog, enterprises=120, persons=80, seed=3, batch_size=50)
    assert {name: _rows(data_stores, catalog, name) for name in catalog.datasets} == first
    synthesize(data_stores, catalog, enterprises=120, persons=80, seed=4, batch_size=50)
    assert _rows(data_stores, catalog, "enterprises") != first["enterprises"]


def test_rows_match_the_schema(synthesized: DataStores, catalog: Catalog) -> None:
    with synthesized.scan.connect() as conn:
        for dataset in catalog.datasets.values():
            result = conn.exec_driver_sql(f'SELECT * FROM "{dataset.table_name}" LIMIT 1')
            columns = list(result.keys())
            assert columns == [f.name for f in dataset.fields]
    for dataset in catalog.datasets.values():
        for field in dataset.fields:
            if field.key_set:
                index = [f.name for f in dataset.fields].index(field.name)
                values = {row[index] for row in _rows(synthesized, catalog, dataset.name)}
                assert values <= set(field.key_set), (dataset.name, field.name, values - set(field.key_set))


def test_a_failed_synthesis_keeps_the_previous_data(
    data_stores: DataStores, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_tables(data_stores, catalog)
    synthesize(data_stores, catalog, enterprises=50, persons=50, seed=1)
    before = row_counts(data_stores, catalog)
    import sandbox.data.synth as synth_module

    def broken(*args: Any, **kwargs: Any) -> pa.Table:
        raise OSError("disk full")

    monkeypatch.setattr(synth_module, "_persons", broken)
    with pytest.raises(OSError, match="disk full"):
        synthesize(data_stores, catalog, enterprises=70, persons=70, seed=2)
    assert row_counts(data_stores, catalog) == before
