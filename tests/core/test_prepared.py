"""Prepared statements: compiled by SQLAlchemy, run on the driver, with SQLAlchemy's type handling.

Each value type on the hot paths (aware datetimes, dates, JSON, integers, text, booleans) must read
and write exactly as the ORM does, on SQLite and PostgreSQL, and driver errors must surface as
SQLAlchemy's exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    Engine,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    exc,
    func,
    insert,
    select,
    update,
)

from core.db import UTCDateTime, create_control_engine
from core.prepared import Prepared

METADATA = MetaData()
THINGS = Table(
    "prepared_things",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(40), unique=True),
    Column("at", UTCDateTime()),
    Column("day", Date),
    Column("doc", JSON),
    Column("flag", Boolean),
    Column("amount", Numeric(12, 2)),
)
COLUMNS = ["name", "at", "day", "doc", "flag", "amount"]
AT = datetime(2026, 11, 23, 8, 30, 1, 123456, tzinfo=timezone(timedelta(hours=8)))
ROW = {"name": "甲", "at": AT, "day": date(2026, 11, 23), "doc": {"模板": ["a", "b"], "n": 1}, "flag": True,
       "amount": 12}  # fmt: skip


@pytest.fixture
def engine(control_url: str) -> Iterator[Engine]:
    engine = create_control_engine(control_url)
    METADATA.create_all(engine)
    try:
        yield engine
    finally:
        METADATA.drop_all(engine)
        engine.dispose()


def test_values_round_trip_as_through_core(engine: Engine) -> None:
    with engine.begin() as conn:
        Prepared(insert(THINGS), column_keys=COLUMNS).execute(conn, ROW)
        conn.execute(insert(THINGS), {**ROW, "name": "乙"})
    query = select(*(THINGS.c[c] for c in COLUMNS))
    by_name = Prepared(query.where(THINGS.c.name == bindparam("name")))
    with engine.connect() as conn:
        prepared = {name: by_name.first(conn, {"name": name}) for name in ("甲", "乙")}
        core = {name: tuple(conn.execute(query.where(THINGS.c.name == name)).one()) for name in ("甲", "乙")}
    assert prepared == core
    found = prepared["甲"]
    assert found is not None
    assert found[1] == AT and found[1].tzinfo is not None and found[1].utcoffset() == timedelta(0)
    assert found[2:5] == (date(2026, 11, 23), {"模板": ["a", "b"], "n": 1}, True)


def test_aggregates_update_returning_and_fixed_values(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(THINGS), [{**ROW, "name": f"n{i}", "amount": i} for i in range(1, 4)])
        total = Prepared(select(func.count().label("n"), func.sum(THINGS.c.amount).label("s")))
        assert total.first(conn) == (3, 6)
        flagged = Prepared(select(func.count()).where(THINGS.c.flag.is_(True), THINGS.c.name != "n1"))
        assert flagged.scalar(conn) == 2  # ``"n1"`` is a value fixed in the statement
        bump = Prepared(
            update(THINGS).where(THINGS.c.name == bindparam("who")).values(amount=THINGS.c.amount + 10)
            .returning(THINGS.c.amount)
        )  # fmt: skip
        assert bump.scalar(conn, {"who": "n2"}) == 12
        assert bump.scalar(conn, {"who": "nobody"}) is None


def test_runs_inside_the_connections_transaction(engine: Engine) -> None:
    add = Prepared(insert(THINGS), column_keys=COLUMNS)

    def add_then_fail() -> None:
        with engine.begin() as conn:
            add.execute(conn, ROW)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        add_then_fail()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(THINGS)).scalar() == 0


def test_driver_errors_are_sqlalchemy_errors(engine: Engine) -> None:
    add = Prepared(insert(THINGS), column_keys=COLUMNS)
    with engine.begin() as conn:
        add.execute(conn, ROW)
    with pytest.raises(exc.IntegrityError), engine.begin() as conn:
        add.execute(conn, ROW)  # the name is unique


def test_a_missing_value_and_expanding_parameters_are_refused(engine: Engine) -> None:
    by_name = Prepared(select(THINGS.c.id).where(THINGS.c.name == bindparam("name")))
    many = Prepared(select(THINGS.c.id).where(THINGS.c.name.in_(bindparam("names", expanding=True))))
    with engine.connect() as conn:
        with pytest.raises(exc.ArgumentError, match="name"):
            by_name.rows(conn, {})
        with pytest.raises(NotImplementedError):
            many.rows(conn, {"names": ["a"]})


def test_compiled_once_per_dialect(engine: Engine) -> None:
    stmt = Prepared(select(THINGS.c.id).where(THINGS.c.name == bindparam("name")))
    with engine.connect() as conn:
        stmt.rows(conn, {"name": "x"})
        stmt.rows(conn, {"name": "y"})
        assert len(stmt._by_dialect) == 1
