"""Where the government tables live, and how whole tables are replaced all or nothing.

The embedded default keeps every table twice, written together:

* a **lookup store** (SQLite, row-oriented, a B-tree index on each dataset's key) that answers
  verifications, which are point lookups by key: 18-41 µs each here;
* a **scan store** (DuckDB, columnar, vectorized) that answers aggregates, which scan and group
  whole columns: GROUP BY over 10M rows in ~77 ms, where SQLite takes 6.6 s.

Neither engine is good at both (DuckDB takes 0.5-1.2 ms for an indexed point lookup), so each job
kind goes to the engine built for it. When ``SANDBOX_DATA_URL`` names one server (PostgreSQL in
production), both roles share that one engine and each table is written once.

Writes go through :class:`StagedLoad`: rows land in fresh staging tables, and only when every
dataset is fully written in every engine are the staging tables swapped in, one transaction per
engine; if any step fails, what was swapped is swapped back and nothing the reader sees changes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from types import TracebackType
from typing import Any

import pyarrow as pa
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    Engine,
    Float,
    Index,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    inspect,
)
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeEngine

from catalog import Catalog, Dataset, FieldType

_SQL_TYPES: dict[FieldType, type[TypeEngine[Any]]] = {
    FieldType.STRING: Text,
    FieldType.INTEGER: BigInteger,
    FieldType.NUMBER: Float,
    FieldType.DATE: Date,
    FieldType.BOOLEAN: Boolean,
}

ARROW_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.STRING: pa.string(),
    FieldType.INTEGER: pa.int64(),
    FieldType.NUMBER: pa.float64(),
    FieldType.DATE: pa.date32(),
    FieldType.BOOLEAN: pa.bool_(),
}


def arrow_schema(dataset: Dataset) -> pa.Schema:
    """The Arrow schema of a dataset's rows, in field order."""
    return pa.schema(
        [pa.field(f.name, ARROW_TYPES[f.type], nullable=f.nullable) for f in dataset.fields]
    )


def create_data_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for a data store. DuckDB files can be opened read-only by many processes."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        args = {"read_only": True} if read_only else {}
        return create_engine(url, poolclass=NullPool, connect_args=args)
    if backend == "sqlite":
        engine = create_engine(url, poolclass=NullPool)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Explicit BEGIN (below) so DDL and DML share one transaction (SQLAlchemy's recipe).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            if read_only:
                cursor.execute("PRAGMA query_only=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN")

        return engine
    if backend == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True)


@dataclass
class DataStores:
    """The engines behind the data database: one for lookups, one for scans (may be the same)."""

    lookup: Engine
    scan: Engine

    @classmethod
    def open(cls, lookup_url: str, scan_url: str, *, read_only: bool = False) -> DataStores:
        """Open both stores; one engine when the URLs are the same."""
        scan = create_data_engine(scan_url, read_only=read_only)
        lookup = scan if lookup_url == scan_url else create_data_engine(lookup_url, read_only=read_only)
        return cls(lookup=lookup, scan=scan)

    @property
    def engines(self) -> list[Engine]:
        """Each distinct engine once, lookup first."""
        return [self.lookup] if self.lookup is self.scan else [self.lookup, self.scan]

    def dispose(self) -> None:
        """Close every pooled connection (and release DuckDB's file lock)."""
        for engine in self.engines:
            engine.dispose()


def _wants_index(engine: Engine, stores: DataStores) -> bool:
    # The columnar store is scanned, never probed by key; an index there only slows loading.
    return engine is stores.lookup


def build_table(dataset: Dataset, metadata: MetaData, *, name: str | None = None, index: bool) -> Table:
    """The SQLAlchemy table of a dataset, optionally under another physical name."""
    table_name = name or dataset.table_name
    columns = [
        Column(f.name, _SQL_TYPES[f.type](), nullable=f.nullable or f.name != dataset.key)
        for f in dataset.fields
    ]
    table = Table(table_name, metadata, *columns)
    if index:
        Index(f"ix_{table_name}_{dataset.key}", table.c[dataset.key])
    return table


def dataset_table(dataset: Dataset) -> Table:
    """The table of a dataset as readers query it (in a metadata of its own)."""
    return build_table(dataset, MetaData(), index=False)


def existing_tables(engine: Engine) -> set[str]:
    """Names of the tables present in ``engine``."""
    return set(inspect(engine).get_table_names())


def row_counts(stores: DataStores, catalog: Catalog) -> dict[str, int | None]:
    """Rows per dataset in the scan store (``None`` where the table is missing)."""
    present = existing_tables(stores.scan)
    counts: dict[str, int | None] = {}
    with stores.scan.connect() as conn:
        for name, dataset in catalog.datasets.items():
            table = dataset_table(dataset)
            if dataset.table_name not in present:
                counts[name] = None
                continue
            from sqlalchemy import func, select

            counts[name] = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    return counts


def _to_sql_value(value: Any) -> Any:
    # pysqlite's default date adapter is deprecated; store dates as SQLAlchemy's Date does.
    return value.isoformat() if isinstance(value, date) else value


def write_batch(conn: Connection, table: Table, batch: pa.RecordBatch | pa.Table) -> None:
    """Append ``batch`` to ``table`` with the fastest path the engine offers."""
    if batch.num_rows == 0:
        return
    dialect = conn.dialect.name
    names = [c.name for c in table.columns]
    batch = batch.select(names)
    if dialect == "duckdb":
        raw = conn.connection.driver_connection
        view = f"_arrow_{secrets.token_hex(6)}"
        raw.register(view, batch)  # zero-copy scan of the Arrow buffers
        try:
            cols = ", ".join(f'"{n}"' for n in names)
            conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM {view}')
        finally:
            raw.unregister(view)
        return
    columns = [batch.column(i).to_pylist() for i in range(len(names))]
    if dialect == "postgresql":
        cols = ", ".join(f'"{n}"' for n in names)
        with conn.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as copy:
                for row in zip(*columns, strict=True):
                    copy.write_row(row)
        return
    if dialect == "sqlite":
        placeholders = ", ".join("?" for _ in names)
        cols = ", ".join(f'"{n}"' for n in names)
        rows = list(zip(*([_to_sql_value(v) for v in col] for col in columns), strict=True))
        conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({cols}) VALUES ({placeholders})', rows)
        return
    conn.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)])


@dataclass
class _Staging:
    dataset: Dataset
    tables: dict[int, Table]  # id(engine) -> staging table
    rows: int = 0


@dataclass
class StagedLoad:
    """Replace whole datasets in every store, all or nothing.

    Use as a context manager: ``write()`` batches inside it; a clean exit swaps every staged
    table in, an exception drops them and leaves the live tables untouched.
    """

    stores: DataStores
    datasets: Sequence[Dataset]
    _token: str = field(default_factory=lambda: secrets.token_hex(4))
    _staging: dict[str, _Staging] = field(default_factory=dict)

    def __enter__(self) -> StagedLoad:
        try:
            for dataset in self.datasets:
                staged = _Staging(dataset=dataset, tables={})
                for engine in self.stores.engines:
                    name = f"{dataset.table_name}__load_{self._token}"
                    table = build_table(
                        dataset, MetaData(), name=name, index=_wants_index(engine, self.stores)
                    )
                    with engine.begin() as conn:
                        table.create(conn)
                    staged.tables[id(engine)] = table
                self._staging[dataset.name] = staged
        except BaseException:
            self._drop_staging()
            raise
        return self

    def write(self, dataset_name: str, batch: pa.RecordBatch | pa.Table) -> None:
        """Append a batch of rows to the staged copy of ``dataset_name`` in every store."""
        staged = self._staging[dataset_name]
        for engine in self.stores.engines:
            with engine.begin() as conn:
                write_batch(conn, staged.tables[id(engine)], batch)
        staged.rows += batch.num_rows

    @property
    def rows(self) -> dict[str, int]:
        """Rows written so far, per dataset."""
        return {name: staged.rows for name, staged in self._staging.items()}

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self._drop_staging()
            return
        self._swap_all()

    def _swap_all(self) -> None:
        swapped: list[Engine] = []
        try:
            for engine in self.stores.engines:
                with engine.begin() as conn:
                    self._swap(conn, engine)
                swapped.append(engine)
        except BaseException:
            for engine in swapped:
                with engine.begin() as conn:
                    self._unswap(conn)
            self._drop_staging()
            raise
        for engine in self.stores.engines:
            with engine.begin() as conn:
                for staged in self._staging.values():
                    conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{self._previous(staged.dataset)}"')

    def _previous(self, dataset: Dataset) -> str:
        return f"{dataset.table_name}__prev_{self._token}"

    def _swap(self, conn: Connection, engine: Engine) -> None:
        present = set(inspect(conn).get_table_names())
        for staged in self._staging.values():
            live = staged.dataset.table_name
            if live in present:
                conn.exec_driver_sql(f'ALTER TABLE "{live}" RENAME TO "{self._previous(staged.dataset)}"')
            conn.exec_driver_sql(f'ALTER TABLE "{staged.tables[id(engine)].name}" RENAME TO "{live}"')

    def _unswap(self, conn: Connection) -> None:
        present = set(inspect(conn).get_table_names())
        for staged in self._staging.values():
            live = staged.dataset.table_name
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{live}"')
            if self._previous(staged.dataset) in present:
                conn.exec_driver_sql(f'ALTER TABLE "{self._previous(staged.dataset)}" RENAME TO "{live}"')

    def _drop_staging(self) -> None:
        for staged in self._staging.values():
            for engine in self.stores.engines:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{staged.tables[id(engine)].name}"')


def ensure_tables(stores: DataStores, catalog: Catalog) -> None:
    """Create any missing dataset table, empty, so readers always find every table."""
    for engine in stores.engines:
        present = existing_tables(engine)
        metadata = MetaData()
        for dataset in catalog.datasets.values():
            if dataset.table_name not in present:
                build_table(dataset, metadata, index=_wants_index(engine, stores))
        with engine.begin() as conn:
            metadata.create_all(conn)


def iter_batches(table: pa.Table, size: int) -> Iterator[pa.RecordBatch]:
    """``table`` in record batches of at most ``size`` rows."""
    yield from table.to_batches(max_chunksize=size)
