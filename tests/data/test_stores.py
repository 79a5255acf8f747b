"""The dual data stores: staged, all-or-nothing replacement of whole datasets."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from sqlalchemy import Engine, inspect, text

from catalog import Catalog, FieldType
from sandbox.data.stores import (
    DatasetStale,
    DataStores,
    LoadInProgress,
    LoadStopped,
    StagedLoad,
    _stored_type,
    arrow_schema,
    ensure_tables,
    row_counts,
    stale_datasets,
    table_problems,
)
from tests.factories import uscc


def _enterprise_rows(catalog: Catalog, n: int) -> pa.Table:
    dataset = catalog.dataset("enterprises")
    return pa.table(
        {
            "credit_code": [uscc(f"91370102MA3C{i:05d}X") for i in range(n)],
            "name": ["济南测试有限公司"] * n,
            "district": ["历下区"] * n,
            "industry": ["制造业"] * n,
            "registered_capital": [1e6] * n,
            "established_date": [dt.date(2020, 1, 1)] * n,
            "status": ["存续"] * n,
            "legal_rep_id": ["110101199003070003"] * n,
        },
        schema=arrow_schema(dataset),
    )


def _assert_no_staging(stores: DataStores) -> None:
    for engine in stores.engines:
        names = inspect(engine).get_table_names()
        assert not [n for n in names if "__" in n], names


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
    _assert_no_staging(data_stores)


def test_a_second_load_into_the_same_store_is_refused_while_the_first_runs(
    catalog: Catalog, data_stores: DataStores
) -> None:
    """Two loads at once would each stage and swap, and each would take the other's leftovers
    for a dead load's: one at a time per store, and the second is told why."""
    ensure_tables(data_stores, catalog)
    dataset = catalog.dataset("enterprises")
    with StagedLoad(data_stores, [dataset]) as first:
        first.write("enterprises", _enterprise_rows(catalog, 3))
        with (
            pytest.raises(LoadInProgress, match="another load is writing") as refused,
            StagedLoad(data_stores, [dataset]),
        ):
            pytest.fail("a second load began")  # pragma: no cover
        assert refused.value.status == 409 and refused.value.code == "load_in_progress"
    assert row_counts(data_stores, catalog)["enterprises"] == 3  # the first one landed, untouched
    with StagedLoad(data_stores, [dataset]) as after:  # and the lock was released with it
        after.write("enterprises", _enterprise_rows(catalog, 4))
    assert row_counts(data_stores, catalog)["enterprises"] == 4


def test_a_load_drops_the_staging_tables_a_dead_load_left_behind(
    catalog: Catalog, data_stores: DataStores
) -> None:
    """A load killed outright (SIGKILL, power loss) cannot clean up: the next one does, since
    under the store's load lock no staging table can belong to a live load."""
    ensure_tables(data_stores, catalog)
    dataset = catalog.dataset("enterprises")
    with StagedLoad(data_stores, [dataset]) as load:
        load.write("enterprises", _enterprise_rows(catalog, 2))
    dead = ["enterprises__load_deadbeef", "tax_records__prev_0123abcd"]
    for engine in data_stores.engines:
        with engine.begin() as conn:
            for name in dead:
                conn.exec_driver_sql(f'CREATE TABLE "{name}" (x INTEGER)')
            conn.exec_driver_sql('CREATE TABLE "enterprises__load_notatoken" (x INTEGER)')
    with StagedLoad(data_stores, [dataset]) as load:
        load.write("enterprises", _enterprise_rows(catalog, 6))
    assert sorted(load.dropped) == sorted(dead * len(data_stores.engines))
    for engine in data_stores.engines:
        names = set(inspect(engine).get_table_names())
        assert not names & set(dead), names
        assert "enterprises__load_notatoken" in names  # not a name StagedLoad gives: not touched
    assert row_counts(data_stores, catalog)["enterprises"] == 6


def test_a_stop_asked_for_ends_the_load_before_its_swap(catalog: Catalog, data_stores: DataStores) -> None:
    """The CLI sets ``stop`` on SIGTERM: at the next batch, or before the swap, the load ends as an
    exception would end it, every live table unchanged and no staging table left."""
    import threading

    ensure_tables(data_stores, catalog)
    dataset = catalog.dataset("enterprises")
    with StagedLoad(data_stores, [dataset]) as load:
        load.write("enterprises", _enterprise_rows(catalog, 2))
    for at_next_batch in (True, False):
        stop = threading.Event()

        def stopped_load(stop: threading.Event = stop, at_next_batch: bool = at_next_batch) -> None:
            with StagedLoad(data_stores, [dataset], stop=stop) as load:
                load.write("enterprises", _enterprise_rows(catalog, 9))
                stop.set()
                if at_next_batch:
                    load.write("enterprises", _enterprise_rows(catalog, 9))
                    pytest.fail("a batch was written after the stop")  # pragma: no cover

        with pytest.raises(LoadStopped, match="data is unchanged"):
            stopped_load()
        assert row_counts(data_stores, catalog)["enterprises"] == 2
        _assert_no_staging(data_stores)


def test_a_table_is_checked_against_the_policy_field_by_field(
    catalog: Catalog, data_stores: DataStores
) -> None:
    dataset = catalog.dataset("enterprises")
    for engine in data_stores.engines:
        assert set(table_problems(engine, dataset)) == {f.name for f in dataset.fields}  # no table yet
    ensure_tables(data_stores, catalog)
    every: list[str] = []
    for engine in data_stores.engines:
        assert table_problems(engine, dataset) == {}
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE enterprises RENAME COLUMN status TO state"))
            conn.execute(text("ALTER TABLE enterprises RENAME COLUMN registered_capital TO capital_old"))
            conn.execute(text("ALTER TABLE enterprises ADD COLUMN registered_capital TEXT"))
        found = table_problems(engine, dataset)
        assert found == {
            "status": "no column status",
            "registered_capital": f"column registered_capital is {_declared(engine)}, the policy says number",
        }
        every += [p for p in found.values() if p not in every]
    assert stale_datasets(data_stores, catalog) == {"enterprises": every}  # each engine's words once
    with pytest.raises(DatasetStale) as refused:
        data_stores.require_current(data_stores.lookup, dataset, ["credit_code", "status"])
    assert refused.value.problems == ["no column status"] and refused.value.status == 503
    data_stores.require_current(data_stores.lookup, dataset, ["credit_code", "district"])  # those are right


def _declared(engine: Engine) -> str:
    """How an engine reports a column declared TEXT."""
    return {"sqlite": "TEXT", "duckdb": "VARCHAR", "postgresql": "text"}[engine.dialect.name]


@pytest.mark.parametrize(
    ("declared", "kind"),
    [
        ("BIGINT", FieldType.INTEGER),
        ("integer", FieldType.INTEGER),
        ("HUGEINT", FieldType.INTEGER),
        ("DOUBLE", FieldType.NUMBER),
        ("double precision", FieldType.NUMBER),
        ("DECIMAL(18,3)", FieldType.NUMBER),
        ("numeric", FieldType.NUMBER),
        ("REAL", FieldType.NUMBER),
        ("TEXT", FieldType.STRING),
        ("VARCHAR(20)", FieldType.STRING),
        ("character varying", FieldType.STRING),
        ("BOOLEAN", FieldType.BOOLEAN),
        ("DATE", FieldType.DATE),
        ("interval", None),  # not an integer for its first letters
        ("timestamp without time zone", None),
        ("", None),
    ],
)
def test_a_declared_type_names_the_field_type_it_stores(declared: str, kind: FieldType | None) -> None:
    assert _stored_type(declared) is kind
