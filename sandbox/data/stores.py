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
One load at a time writes a store (a second is refused with :class:`LoadInProgress`), and a load
first drops the staging tables of any earlier load that died without cleaning up (SIGKILL, power
loss): holding the store's load lock, no such table can belong to a live load.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pyarrow as pa
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    Double,
    Engine,
    Index,
    MetaData,
    Select,
    Table,
    Text,
    column,
    create_engine,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
)
from sqlalchemy import (
    table as table_clause,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeEngine

from catalog import Catalog, Dataset, FieldType
from core.db import usable_url, with_driver
from core.errors import Conflict, Invalid, SandboxError

_log = logging.getLogger(__name__)

_SQL_TYPES: dict[FieldType, type[TypeEngine[Any]]] = {
    FieldType.STRING: Text,
    FieldType.INTEGER: BigInteger,
    FieldType.NUMBER: Double,  # SQLAlchemy's Float is a 4-byte FLOAT on DuckDB
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
    return pa.schema([pa.field(f.name, ARROW_TYPES[f.type], nullable=f.nullable) for f in dataset.fields])


def create_data_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for a data store. DuckDB files can be opened read-only by many processes."""
    with usable_url(url):
        return _data_engine(url, read_only=read_only)


def _data_engine(url: str, *, read_only: bool) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        args = {"read_only": True} if read_only else {}
        return create_engine(url, poolclass=NullPool, connect_args=args)
    if backend == "sqlite":
        # Pooled, unlike DuckDB (whose file lock a held connection would keep from a loader):
        # a verification is one indexed lookup, cheaper than opening and closing a connection.
        engine = create_engine(url)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Explicit BEGIN (below) so DDL and DML share one transaction (SQLAlchemy's recipe).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
            if read_only:
                cursor.execute("PRAGMA query_only=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN")

        return engine
    return create_engine(with_driver(url), pool_pre_ping=True)


class DatasetStale(SandboxError):
    """A dataset's stored table is not the shape its policy now gives it (a field added, renamed or
    retyped since it was loaded): nothing is read from it until the bureau loads it again."""

    code = "dataset_unavailable"
    status = 503

    def __init__(self, dataset: str, problems: Sequence[str]) -> None:
        super().__init__(
            f"the data of {dataset} does not match the current policy, so it cannot be used until "
            "the bureau loads it again; ask the bureau, then try again"
        )
        self.dataset = dataset
        self.problems = list(problems)


# Which field type a column stores, by the first word of its declared type as the engines spell
# it (SQLite's declared types, DuckDB's and PostgreSQL's information_schema names). Written by
# hand: SQLAlchemy's inspector cannot list a DuckDB table's columns (duckdb-engine 0.17 sends it
# to pg_catalog.pg_collation, which DuckDB does not have).
_TYPE_NAMES: dict[str, FieldType] = {
    **dict.fromkeys(
        ["bigint", "integer", "int", "smallint", "tinyint", "hugeint", "int2", "int4", "int8"],
        FieldType.INTEGER,
    ),
    **dict.fromkeys(["double", "real", "float", "float4", "float8", "numeric", "decimal"], FieldType.NUMBER),
    **dict.fromkeys(["text", "varchar", "character", "char", "string"], FieldType.STRING),
    **dict.fromkeys(["boolean", "bool"], FieldType.BOOLEAN),
    "date": FieldType.DATE,
}
# The field types a column of each stored type serves (an integer column reads as a number).
_SERVES: dict[FieldType, set[FieldType]] = {
    FieldType.INTEGER: {FieldType.INTEGER, FieldType.NUMBER},
}


def _stored_type(declared: str) -> FieldType | None:
    """The field type a declared column type stores; ``None`` for one this cannot tell."""
    word = re.match(r"[a-z0-9]*", declared.strip().lower())
    return _TYPE_NAMES.get(word.group() if word else "")


def _stored_columns(engine: Engine, table: str) -> dict[str, str]:
    """The columns of ``table`` in ``engine`` with their declared types (none: no such table)."""
    if engine.dialect.name == "sqlite":
        query = text("SELECT name, type FROM pragma_table_info(:table)")
    else:
        query = text(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = :table AND table_schema = current_schema()"
        )
    with engine.connect() as conn:
        return {str(name): str(declared or "") for name, declared in conn.execute(query, {"table": table})}


def table_problems(engine: Engine, dataset: Dataset) -> dict[str, str]:
    """Each field of ``dataset`` whose column in ``engine`` is not as the policy says, with why:
    the table or the column missing, or a column of another type (columns the policy no longer
    names are harmless)."""
    found = _stored_columns(engine, dataset.table_name)
    if not found:
        return {f.name: f"no table {dataset.table_name}" for f in dataset.fields}
    problems = {}
    for f in dataset.fields:
        if f.name not in found:
            problems[f.name] = f"no column {f.name}"
        elif (stored := _stored_type(found[f.name])) is not None and f.type not in _SERVES.get(
            stored, {stored}
        ):
            problems[f.name] = f"column {f.name} is {found[f.name]}, the policy says {f.type}"
    return problems


@dataclass
class DataStores:
    """The engines behind the data database: one for lookups, one for scans (may be the same).

    Jobs read through :meth:`reading`, which first makes sure that each field a job reads has the
    column the policy gives it (:class:`DatasetStale` otherwise, not a database error that would be
    a 500). Each table is read once per process and engine; a field found wrong is read again
    before a job is refused, since a load can replace a table while the service runs, and so is
    every table of a read that fails.
    """

    lookup: Engine
    scan: Engine
    # Per engine and dataset: each field not as the policy says, with why (empty: all are right).
    _problems: dict[tuple[int, str], dict[str, str]] = field(default_factory=dict, repr=False, compare=False)
    # Per engine and dataset, with its bound and row key: stored rows found within the bound.
    _bounded: set[tuple[Any, ...]] = field(default_factory=set, repr=False, compare=False)

    @classmethod
    def open(cls, lookup_url: str, scan_url: str, *, read_only: bool = False) -> DataStores:
        """Open both stores; one engine when the URLs are the same."""
        scan = create_data_engine(scan_url, read_only=read_only)
        lookup = scan if lookup_url == scan_url else create_data_engine(lookup_url, read_only=read_only)
        return cls(lookup=lookup, scan=scan)

    def require_current(self, engine: Engine, dataset: Dataset, fields: Iterable[str]) -> None:
        """Raise :class:`DatasetStale` unless ``engine`` stores each of ``fields`` as the policy says."""
        key = (id(engine), dataset.name)
        problems = self._problems.get(key)
        if problems is None:
            problems = self._problems[key] = table_problems(engine, dataset)
        if problems and any(f in problems for f in fields):
            problems = self._problems[key] = table_problems(engine, dataset)  # reloaded since?
            wrong = list(dict.fromkeys(problems[f] for f in fields if f in problems))
            if wrong:
                _log.error("%s is not as the policy says (%s): load it again", dataset.name, "; ".join(wrong))
                raise DatasetStale(dataset.name, wrong)

    def require_row_bound(
        self, conn: Connection, engine: Engine, dataset: Dataset, *, loaded: object = None
    ) -> None:
        """Raise :class:`DatasetStale` unless ``dataset``'s stored rows keep its policy's bound on
        rows per subject and its row key (:func:`subject_row_findings`), read through ``conn``.

        A load checks them before its swap, but a table stored before the policy set them (a home
        upgraded, a bound lowered or a row key added since) was never checked, and an aggregate's
        noise and its minimum cell size rely on them. Checked once per process, engine, bound and
        ``loaded`` (the control database's last recorded load) while it holds: a loader checks
        against its own policy, which may be newer than this process's (edited, the server not
        restarted), so a new load is checked again here. Between a load's swap and its record a
        read may still trust the last check. A table found over the bound is checked again on each
        read, so a load that fixes it serves without a restart."""
        key_sets = tuple(tuple(dataset.field(name).key_set or ()) for name in dataset.row_key)
        key = (
            id(engine),
            dataset.name,
            dataset.max_rows_per_subject,
            tuple(dataset.row_key),
            key_sets,
            loaded,
        )
        if key in self._bounded:
            return
        findings = subject_row_findings(conn, dataset, dataset_table(dataset))
        if conn.in_transaction():
            conn.rollback()  # the check's autobegun transaction; the caller reads afresh
        if findings:
            # Not the findings themselves: they name subjects (a load shows them to the bureau).
            why = row_bound_breach(dataset)
            _log.error(
                "%s holds %s: load it again (or, if the policy was edited and the data loaded under it, "
                "restart the server)",
                dataset.name,
                why,
            )
            raise DatasetStale(dataset.name, [why])
        self._bounded.add(key)

    def require_all(self, engine: Engine, needs: Sequence[tuple[Dataset, Iterable[str]]]) -> None:
        """:meth:`require_current` for the given fields of each dataset."""
        for dataset, fields in needs:
            self.require_current(engine, dataset, fields)

    @contextmanager
    def reading(self, engine: Engine, needs: Sequence[tuple[Dataset, Iterable[str]]]) -> Iterator[Connection]:
        """A connection to ``engine`` for reading the given fields of each dataset, each checked
        first; a read that fails checks them again, and raises :class:`DatasetStale` where that
        explains it."""
        self.require_all(engine, needs)
        try:
            with engine.connect() as conn:
                yield conn
        except DBAPIError:
            for dataset, fields in needs:
                self._problems.pop((id(engine), dataset.name), None)
                self.require_current(engine, dataset, fields)
            raise

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
        Column(f.name, _SQL_TYPES[f.type](), nullable=f.nullable and f.name != dataset.key)
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
            counts[name] = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    return counts


def _python_columns(batch: pa.RecordBatch | pa.Table, *, dates_as_text: bool) -> list[list[Any]]:
    out = []
    for array in batch.columns:
        if dates_as_text and pa.types.is_date(array.type):
            # pysqlite's date adapter is deprecated; SQLAlchemy's SQLite Date is ISO text.
            array = array.cast(pa.string())
        out.append(array.to_pylist())
    return out


def write_batch(conn: Connection, table: Table, batch: pa.RecordBatch | pa.Table) -> None:
    """Append ``batch`` to ``table`` with the fastest path the engine offers."""
    if batch.num_rows == 0:
        return
    dialect = conn.dialect.name
    names = [c.name for c in table.columns]
    batch = batch.select(names)
    raw: Any = conn.connection.driver_connection
    if dialect == "duckdb":
        view = f"_arrow_{secrets.token_hex(6)}"
        raw.register(view, batch)  # zero-copy scan of the Arrow buffers
        try:
            columns_of_view: list[Any] = [column(n) for n in names]
            conn.execute(
                insert(table).from_select(names, select(*columns_of_view).select_from(table_clause(view)))
            )
        finally:
            raw.unregister(view)
        return
    columns = _python_columns(batch, dates_as_text=dialect == "sqlite")
    if dialect == "postgresql":
        quote = conn.dialect.identifier_preparer
        cols = ", ".join(quote.quote(n) for n in names)
        cursor = raw.cursor()
        with cursor, cursor.copy(f"COPY {quote.format_table(table)} ({cols}) FROM STDIN") as copy:
            for row in zip(*columns, strict=True):
                copy.write_row(row)
        return
    if dialect == "sqlite":
        # Driver-level executemany on SQLAlchemy's own compiled INSERT: the per-row bind
        # processing of Core costs more than the insert itself at millions of rows.
        statement = str(insert(table).compile(dialect=conn.dialect))
        conn.exec_driver_sql(statement, list(zip(*columns, strict=True)))
        return
    conn.execute(insert(table), [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)])


class LoadInProgress(Conflict):
    """Another load is writing the same data store; nothing was changed."""

    code = "load_in_progress"


class LoadStopped(SandboxError):
    """The load was asked to stop (its ``stop`` event was set) before its swap; nothing changed."""

    code = "load_stopped"
    status = 503


MAX_LISTED_SUBJECTS = 10  # subjects over their dataset's row bound that a refusal names


class TooManyRowsPerSubject(Invalid):
    """A dataset's new rows break its policy's bound on rows per subject, or give one subject two
    rows with the same row key, or a row key a value outside its key set; nothing changed.
    ``findings`` holds each problem with its column, the first :data:`MAX_LISTED_SUBJECTS` of each
    kind."""

    code = "rows_per_subject"

    def __init__(self, dataset: Dataset, findings: list[tuple[str, str]]) -> None:
        self.findings = findings
        super().__init__(
            f"{dataset.name} holds more rows for a subject than its policy allows "
            f"(max_rows_per_subject {dataset.max_rows_per_subject}"
            + (f", one per {', '.join(dataset.row_key)})" if dataset.row_key else ")"),
            details=[{"field": column, "message": message} for column, message in findings],
        )


def subject_row_findings(conn: Connection, dataset: Dataset, table: Table) -> list[tuple[str, str]]:
    """Each subject of ``table`` with more rows than ``dataset`` allows, each value of a row-key
    field outside its key set or missing, and each subject with two rows the row key does not tell
    apart: the bound an aggregate's noise is scaled by must hold in the data. ``(column, problem)``
    pairs, the first :data:`MAX_LISTED_SUBJECTS` of each kind and a line saying there are more."""
    key = table.c[dataset.key]
    limit = dataset.max_rows_per_subject
    found: list[tuple[str, str]] = []

    def listed(column: str, query: Select[Any], say: Callable[[tuple[Any, ...]], str], more: str) -> None:
        rows = conn.execute(query.limit(MAX_LISTED_SUBJECTS + 1)).all()
        found.extend((column, say(tuple(row))) for row in rows[:MAX_LISTED_SUBJECTS])
        if len(rows) > MAX_LISTED_SUBJECTS:
            found.append((column, more))

    n = func.count().label("n")
    listed(
        dataset.key,
        select(key, n).group_by(key).having(func.count() > limit).order_by(n.desc(), key),
        lambda row: f"{row[0]}: {row[1]} rows, over the {limit} allowed",
        f"... and more subjects with over {limit} rows",
    )
    for name in dataset.row_key:
        keys = dataset.field(name).key_set
        held = table.c[name]
        # A subject has one row per key at most: the keys must be all its values. An empty one is
        # none of them (``NOT IN`` passes it by, being unknown), yet read by a query with no filter
        # on the field: a table stored while the policy let the field be empty may hold one.
        outside = held.is_(None) if keys is None else or_(held.is_(None), held.not_in(list(keys)))
        listed(
            name,
            select(held, n).where(outside).group_by(held).order_by(held),
            lambda row: (
                f"{'no value' if row[0] is None else row[0]}: {row[1]} row{'' if row[1] == 1 else 's'}, "
                + ("not in the policy's key set" if row[0] is not None else "where a row key needs one")
            ),
            "... and more values not in the policy's key set",
        )
    if dataset.row_key:
        parts = [table.c[name] for name in dataset.row_key]

        def twice(row: tuple[Any, ...]) -> str:
            at = ", ".join(f"{name} {value}" for name, value in zip(dataset.row_key, row[1:-1], strict=True))
            return f"{row[0]}: {row[-1]} rows for {at}, where one is allowed"

        listed(
            dataset.key,
            select(key, *parts, n).group_by(key, *parts).having(func.count() > 1).order_by(key, *parts),
            twice,
            f"... and more subjects with two rows for one {', '.join(dataset.row_key)}",
        )
    return found


# What StagedLoad names its tables: f"{live}__load_{token}" while staged, f"{live}__prev_{token}"
# between the swap and the drop of the old rows.
_LEFTOVER = re.compile(r"^.+__(?:load|prev)_[0-9a-f]{8}$")


def _lock_store(engine: Engine, conn: Connection) -> Callable[[], None]:
    """Take the store's load lock, or raise :class:`LoadInProgress`; returns its release.

    A file database is locked with ``flock`` on a file beside it (released by the kernel if the
    process dies, so a killed load never leaves it held); a server database with a session-level
    advisory lock on ``conn``, keyed by the schema, held until ``conn`` closes. An in-memory
    database is private to its process and needs none. Hand-written: no library covers both.
    """
    busy = f"another load is writing the data store {engine.url.render_as_string(hide_password=True)}"
    if engine.dialect.name == "postgresql":
        with conn.begin():
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(hashtext('sandbox-data-load:' || current_schema()))")
            ).scalar_one()
        if not got:
            raise LoadInProgress(busy + "; try again when it has finished")
        return lambda: None  # closing the connection releases it
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return lambda: None
    fd = os.open(f"{database}.load-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LoadInProgress(busy + "; try again when it has finished") from None
    return lambda: os.close(fd)


def drop_leftovers(conn: Connection) -> list[str]:
    """Drop the staging tables an earlier load left behind; the caller holds the load lock."""
    with conn.begin():
        leftovers = sorted(n for n in inspect(conn).get_table_names() if _LEFTOVER.match(n))
        for name in leftovers:
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}"')
    return leftovers


@dataclass
class _Staging:
    dataset: Dataset
    tables: dict[int, Table]  # id(engine) -> staging table
    rows: int = 0


@dataclass
class StagedLoad:
    """Replace whole datasets in every store, all or nothing.

    Use as a context manager: ``write()`` batches inside it; a clean exit swaps every staged
    table in, an exception drops them and leaves the live tables untouched. Setting ``stop``
    (from a signal handler, say) ends the load at its next batch, or before its swap, as an
    exception would: :class:`LoadStopped`. An exception raised from the handler itself would land
    anywhere, inside a driver call or a lock's bookkeeping, so the load checks instead. Each store keeps one
    connection for the whole load and is written by its own thread (both drivers release the
    GIL while they work); the lookup store's key index is built once, after the rows are in,
    which is much faster than maintaining a B-tree through millions of inserts.
    """

    stores: DataStores
    datasets: Sequence[Dataset]
    stop: threading.Event | None = None
    _token: str = field(default_factory=lambda: secrets.token_hex(4))
    _staging: dict[str, _Staging] = field(default_factory=dict)
    _conns: dict[int, Connection] = field(default_factory=dict)
    _writers: dict[int, ThreadPoolExecutor] = field(default_factory=dict)
    _pending: list[Future[None]] = field(default_factory=list)
    _unlocks: list[Callable[[], None]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    """Staging tables of earlier, dead loads that this load dropped before it began."""

    def __enter__(self) -> StagedLoad:
        try:
            for engine in self.stores.engines:
                conn = self._conns[id(engine)] = engine.connect()
                self._unlocks.append(_lock_store(engine, conn))
                self.dropped += drop_leftovers(conn)
            for dataset in self.datasets:
                staged = _Staging(dataset=dataset, tables={})
                for engine in self.stores.engines:
                    name = f"{dataset.table_name}__load_{self._token}"
                    table = build_table(dataset, MetaData(), name=name, index=False)
                    conn = self._conns[id(engine)]
                    with conn.begin():
                        table.create(conn)
                    staged.tables[id(engine)] = table
                self._staging[dataset.name] = staged
            # One single-thread writer per store: batches reach each store in order, while the
            # caller goes on producing the next batch.
            self._writers = {
                id(e): ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")
                for e in self.stores.engines
            }
        except BaseException:
            self._drop_staging()
            self._close()
            raise
        return self

    def write(self, dataset_name: str, batch: pa.RecordBatch | pa.Table) -> None:
        """Append a batch of rows to the staged copy of ``dataset_name`` in every store."""
        staged = self._staging[dataset_name]
        assert self._writers, "write() outside the with-block"
        self.check_stop()
        # Bound the batches in flight (memory), and surface a writer's failure promptly.
        while len(self._pending) >= 4 * len(self._writers):
            self._pending.pop(0).result()
        for engine in self.stores.engines:
            writer = self._writers[id(engine)]
            self._pending.append(
                writer.submit(self._write_one, self._conns[id(engine)], staged.tables[id(engine)], batch)
            )
        staged.rows += batch.num_rows

    def check_stop(self) -> None:
        """Raise :class:`LoadStopped` if the load was asked to stop."""
        if self.stop is not None and self.stop.is_set():
            raise LoadStopped("the load was stopped before it finished; the data is unchanged")

    @staticmethod
    def _write_one(conn: Connection, table: Table, batch: pa.RecordBatch | pa.Table) -> None:
        with conn.begin():
            write_batch(conn, table, batch)

    @property
    def rows(self) -> dict[str, int]:
        """Rows written so far, per dataset."""
        return {name: staged.rows for name, staged in self._staging.items()}

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            failure = self._drain()
            if exc_type is None and failure is None and self.stop is not None and self.stop.is_set():
                failure = LoadStopped("the load was stopped before it finished; the data is unchanged")
            if exc_type is None and failure is None:
                failure = self._subject_rows()
            if exc_type is not None or failure is not None:
                self._drop_staging()
                if failure is not None and exc_type is None:
                    raise failure
            else:
                self._swap_all()
        finally:
            self._close()

    def _drain(self) -> BaseException | None:
        """Wait for every pending write; the first failure, if any."""
        failure: BaseException | None = None
        for future in self._pending:
            error = future.exception()
            failure = failure or error
        self._pending.clear()
        return failure

    def _subject_rows(self) -> TooManyRowsPerSubject | None:
        """The first staged dataset whose rows break its bound on rows per subject, checked on
        the scan store (the rows are the same in every store, and it groups fastest)."""
        conn = self._conns[id(self.stores.scan)]
        for staged in self._staging.values():
            with conn.begin():
                findings = subject_row_findings(conn, staged.dataset, staged.tables[id(self.stores.scan)])
            if findings:
                return TooManyRowsPerSubject(staged.dataset, findings)
        return None

    def _close(self) -> None:
        for writer in self._writers.values():
            writer.shutdown(wait=True)
        for conn in self._conns.values():
            conn.close()
        for unlock in self._unlocks:
            unlock()
        self._unlocks.clear()

    def _swap_all(self) -> None:
        swapped: list[Engine] = []
        try:
            for engine in self.stores.engines:
                conn = self._conns[id(engine)]
                with conn.begin():
                    if _wants_index(engine, self.stores):
                        self._index(conn, engine)
                    self._swap(conn, engine)
                swapped.append(engine)
        except BaseException:
            for engine in swapped:
                conn = self._conns[id(engine)]
                with conn.begin():
                    self._unswap(conn)
            self._drop_staging()
            raise
        for engine in self.stores.engines:
            conn = self._conns[id(engine)]
            with conn.begin():
                for staged in self._staging.values():
                    conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{self._previous(staged.dataset)}"')

    def _index(self, conn: Connection, engine: Engine) -> None:
        for staged in self._staging.values():
            table = staged.tables[id(engine)]
            key = staged.dataset.key
            Index(f"ix_{staged.dataset.table_name}_{key}_{self._token}", table.c[key]).create(conn)

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
                conn = self._conns.get(id(engine))
                if conn is None:
                    continue
                if conn.in_transaction():
                    conn.rollback()
                with conn.begin():
                    conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{staged.tables[id(engine)].name}"')


def row_bound_breach(dataset: Dataset) -> str:
    """What a stored table over its policy's bound on rows per subject holds, naming no subject."""
    why = f"a subject with more rows than max_rows_per_subject {dataset.max_rows_per_subject}"
    if dataset.row_key:
        keys = ", ".join(dataset.row_key)
        why += f", two rows for one {keys} or a {' or '.join(dataset.row_key)} missing or outside its key set"
    return why


def datasets_over_row_bound(stores: DataStores, catalog: Catalog) -> dict[str, str]:
    """The datasets whose stored rows break their policy's bound on rows per subject, with what
    they hold (no subject named): aggregates on them are refused until they are loaded again. One
    GROUP BY per dataset on the scan store; a dataset not the policy's shape is left to
    :func:`stale_datasets`."""
    over: dict[str, str] = {}
    for dataset in catalog.datasets.values():
        if table_problems(stores.scan, dataset):
            continue
        with stores.scan.connect() as conn:
            if subject_row_findings(conn, dataset, dataset_table(dataset)):
                over[dataset.name] = row_bound_breach(dataset)
    return over


def stale_datasets(stores: DataStores, catalog: Catalog) -> dict[str, list[str]]:
    """The datasets whose stored tables are not the shape the policy gives them, with how."""
    stale: dict[str, list[str]] = {}
    for dataset in catalog.datasets.values():
        problems = [p for engine in stores.engines for p in table_problems(engine, dataset).values()]
        if problems:
            stale[dataset.name] = list(dict.fromkeys(problems))
    return stale


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
