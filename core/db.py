"""Control-database plumbing: the declarative base, engines and sessions.

Every typed model of every package derives from :class:`Base`, so one Alembic environment sees
the whole schema. SQLite is the embedded default and PostgreSQL the production engine; the
differences that matter (write locking, foreign keys, time zones) are handled here, once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import Connection, DateTime, Engine, MetaData, Table, create_engine, event, exc
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from core.errors import ConfigurationError

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The one declarative base of the control database."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def table_of(model: type[Base]) -> Table:
    """The table of a mapped class, for Core statements on hot paths (typed as a :class:`Table`)."""
    return cast(Table, model.__table__)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware.

    SQLite has no time zones; without this, values written aware come back naive there and
    aware on PostgreSQL, and comparisons between the two raise.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The largest integer key (an audit seq, an access id) a query is given: SQLite's and
# PostgreSQL's 64-bit integers end at 2**63 - 1, and a number past that makes either driver fail
# (a 500) instead of finding nothing. Request models bound their integer keys by it.
MAX_INTEGER_KEY = 2**62


class _WriterLock:
    """Writers queue on ``flock`` of a file beside the database, and wake the moment it is free.

    SQLite lets one writer in at a time and makes the others poll: its busy handler sleeps in
    growing steps of up to 100 ms, so under load most of a writer's wait is sleep. A blocking
    ``flock`` is a kernel queue instead. Each connection holds its own descriptor, so threads and
    processes queue alike; a thread that already holds the lock through another connection does
    not take it again (it would wait on itself), and SQLite's busy timeout still bounds that case.
    Written by hand: no maintained library wraps SQLite's write lock this way.
    """

    _held = threading.local()  # how many of this thread's connections are inside a transaction

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.entered = False  # this connection is inside a transaction
        self.locked = False  # ... and holds the flock for it

    def acquire(self) -> None:
        if self.entered:
            return
        if getattr(self._held, "count", 0) == 0:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            self.locked = True
        self._held.count = getattr(self._held, "count", 0) + 1
        self.entered = True

    def release(self) -> None:
        # Also called by the pool's rollback on return, after a commit: only the first counts.
        if not self.entered:
            return
        self.entered = False
        self._held.count -= 1
        if self.locked:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.locked = False

    def close(self) -> None:
        self.release()
        os.close(self.fd)


def holds_writer_lock() -> bool:
    """Whether this thread has an SQLite control-database transaction open (and so its lock)."""
    return bool(getattr(_WriterLock._held, "count", 0))


# When a process checkpoints a database's WAL (see _LockingConnection): after this many of its
# commits, or as soon as the WAL file is larger than this (SQLite's own trigger is ~1,000 pages;
# a verification adds some 8); the WAL is cut back to that size when it restarts.
CHECKPOINT_EVERY = 128
WAL_LIMIT_BYTES = 4 * 1024 * 1024


def wal_reset_race_fixed(version: tuple[int, int, int]) -> bool:
    """Whether this SQLite has the fix for its WAL-reset race (https://sqlite.org/wal.html#walresetbug).

    From 3.7.0 to 3.51.2, a checkpoint that starts just after another one completed can miss a
    concurrent commit that restarts the WAL, and a later checkpoint then skips committed pages:
    lost writes, a corrupt database. Fixed in 3.51.3, and in the 3.44.6 and 3.50.7 backports.
    """
    return version >= (3, 51, 3) or (3, 50, 7) <= version < (3, 51, 0) or (3, 44, 6) <= version < (3, 45, 0)


# Without the fix, a checkpoint runs while its connection still holds the writer lock, so no
# commit can run beside it (every writer of a control database takes that lock first). With it,
# the checkpoint runs after the lock is dropped, and its fsyncs no longer hold up the next writer.
CHECKPOINT_HOLDS_WRITER_LOCK = not wal_reset_race_fixed(sqlite3.sqlite_version_info)

_log = logging.getLogger(__name__)


class _LockingConnection(sqlite3.Connection):
    """A sqlite3 connection that takes the writer lock at BEGIN and drops it after COMMIT/ROLLBACK.

    It also checkpoints the WAL itself (SQLite's automatic checkpoint is off on these
    connections): a PASSIVE checkpoint (it waits for no reader or writer) after every
    ``CHECKPOINT_EVERY``-th commit to a database, or one that left the WAL over
    ``WAL_LIMIT_BYTES``, on the connection that made it, in autocommit. The connection is this
    process's own (no pooled connection crosses fork, see create_control_engine). On an SQLite
    with the WAL-reset race (see ``CHECKPOINT_HOLDS_WRITER_LOCK``) the checkpoint runs before the
    writer lock is dropped, so no other commit runs beside it; on a fixed SQLite it runs after,
    and the others write meanwhile.
    """

    writer_lock: _WriterLock | None = None
    wal_path = ""
    _unchecked: ClassVar[dict[str, int]] = {}  # commits since this process's last checkpoint, by WAL

    def commit(self) -> None:
        try:
            super().commit()
            # Only the connection that took the flock checkpoints under it, not one nested in the
            # same thread inside another's transaction.
            if self.writer_lock is not None and CHECKPOINT_HOLDS_WRITER_LOCK and self.writer_lock.locked:
                self._checkpoint_now_and_then()
        finally:
            if self.writer_lock is not None:
                self.writer_lock.release()
        if self.writer_lock is not None and not CHECKPOINT_HOLDS_WRITER_LOCK:
            self._checkpoint_now_and_then()

    def _checkpoint_now_and_then(self) -> None:
        path = self.wal_path
        count = self._unchecked.get(path, 0) + 1
        try:
            due = count >= CHECKPOINT_EVERY or os.stat(path).st_size > WAL_LIMIT_BYTES
        except OSError:  # no WAL file (yet): nothing to checkpoint
            due = False
        self._unchecked[path] = 0 if due else count
        if not due:
            return
        try:
            self.execute("PRAGMA wal_checkpoint(PASSIVE)").close()
        except sqlite3.Error as error:
            # The transaction is committed already: a checkpoint that could not run (a result
            # still open on this connection, a full disk) is retried at the next one, and must
            # not make a durable commit look failed to its caller.
            _log.warning("WAL checkpoint of %s deferred: %s", path, error)

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            if self.writer_lock is not None:
                self.writer_lock.release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.writer_lock is not None:
                self.writer_lock.close()
                self.writer_lock = None


# How long a SQLite statement waits for another process's lock before "database is locked".
BUSY_TIMEOUT_MS = 30_000


def driver_reason(error: exc.SQLAlchemyError) -> str:
    """The database driver's own words for ``error``, one line, without SQLAlchemy's decoration."""
    original = getattr(error, "orig", None)
    text = str(original if original is not None else error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _configure_sqlite(engine: Engine, database: str | None) -> None:
    """WAL, foreign keys, a busy timeout, and ``BEGIN IMMEDIATE`` for every transaction.

    pysqlite's default deferred transactions take the write lock only at the first write; two
    such transactions that both read first deadlock and one fails with "database is locked".
    Taking the lock at BEGIN makes writers queue instead (SQLAlchemy's documented recipe), and
    the ``_WriterLock`` makes them queue without polling.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if database and isinstance(dbapi_connection, _LockingConnection):
            cursor.execute("PRAGMA wal_autocheckpoint=0")  # the process checkpoints itself
            cursor.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            dbapi_connection.writer_lock = _WriterLock(database + "-writer.lock")
            dbapi_connection.wal_path = database + "-wal"
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        raw = connection.connection.driver_connection
        lock = raw.writer_lock if isinstance(raw, _LockingConnection) else None
        if lock is not None:
            lock.acquire()
        # On the driver's connection, not through exec_driver_sql: SQLAlchemy's execution
        # machinery around one fixed statement cost ~20 µs of every write transaction. Its errors
        # are still raised as SQLAlchemy's, and a BEGIN that fails gives the lock back.
        try:
            raw.execute("BEGIN IMMEDIATE").close()
        except sqlite3.Error as error:
            if lock is not None:
                lock.release()
            raise exc.DBAPIError.instance(
                "BEGIN IMMEDIATE", (), error, sqlite3.Error, dialect=connection.dialect
            ) from error


def with_driver(url: str) -> str:
    """``url`` with PostgreSQL mapped to psycopg 3 (SQLAlchemy's default would be psycopg2)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def display_url(url: str) -> str:
    """``url`` for people to read: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def usable_url(url: str) -> Iterator[None]:
    """Refusals of a database URL that names no usable database (malformed, an unknown
    dialect, a driver that is not installed), as a :class:`ConfigurationError`, not a traceback."""
    try:
        yield
    except (exc.ArgumentError, ValueError, ImportError) as error:
        try:
            shown = display_url(url)
        except (exc.ArgumentError, ValueError):
            shown = "(unreadable)"
        raise ConfigurationError(f"cannot use the database URL {shown}: {error}") from None


def require_existing(url: str) -> None:
    """A SQLite URL must name a file that exists (connecting would make an empty one): a
    :class:`ConfigurationError` naming the path, as a command run outside its home meets it."""
    parsed = make_url(url)
    database = parsed.database or ""
    if (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not os.path.exists(database)
    ):
        raise ConfigurationError(
            f"no control database at {database}: set SANDBOX_HOME to the home folder, or run where it is"
        )


def create_control_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the control database at ``url`` (SQLite or PostgreSQL)."""
    with usable_url(url):
        return _control_engine(url, **kwargs)


def _control_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # Pooled: closing the last connection to a WAL database checkpoints it (2 ms here), and
        # each new connection re-runs the pragmas, which together cost more than a verification.
        # No pooled connection crosses fork(): `serve` disposes its engine before gunicorn forks,
        # and each worker opens its own runtime.
        database = parsed.database if parsed.database not in (None, "", ":memory:") else None
        if database is not None:
            # One lock file per database, however its path is spelled (relative, a symlink).
            database = os.path.realpath(database)
        connect_args = {**kwargs.pop("connect_args", {}), "factory": _LockingConnection}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine, database)
        return engine
    return create_engine(with_driver(url), pool_pre_ping=True, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any exception."""
    with factory() as session, session.begin():
        yield session


# A unit of work as the services take it: an ORM session, or a Core connection inside a
# transaction. Hot paths (a verification, a token check) use connections: a session costs about
# 0.2 ms per transaction here before it runs any statement, more than the statements themselves.
Database = Session | Connection


def connection_of(db: Database) -> Connection:
    """The Core connection of ``db``; a session first flushes what it holds pending, so rows written
    through the connection come after (and may refer to) the objects the session added."""
    if isinstance(db, Connection):
        return db
    db.flush()
    return db.connection()


def writing_connection(db: Database) -> Connection:
    """:func:`connection_of` for writes, which must be inside a transaction: on a bare connection
    SQLite would commit each statement alone (an audit seq allocated, its event not yet written)."""
    conn = connection_of(db)
    if not conn.in_transaction():
        raise RuntimeError("a write on a connection outside any transaction")
    return conn


@contextmanager
def orm_session(db: Database) -> Iterator[Session]:
    """An ORM session inside ``db``'s transaction, for the rare ORM read on a connection path."""
    if isinstance(db, Session):
        yield db
        return
    with Session(bind=db) as session:
        yield session
