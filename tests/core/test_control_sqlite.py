"""The embedded control database's writers: the writer lock, and WAL checkpoints made by the
process instead of by SQLite inside the COMMIT, under the writer lock where SQLite's WAL-reset race
is not fixed."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, Text, exc, func, insert, select, text

import core.db
from core.db import CHECKPOINT_EVERY, WAL_LIMIT_BYTES, create_control_engine, wal_reset_race_fixed

METADATA = MetaData()
NOTES = Table("notes", METADATA, Column("id", Integer, primary_key=True), Column("body", Text))


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "control.sqlite"


@pytest.fixture
def engine(database: Path) -> Iterator[Engine]:
    engine = create_control_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        METADATA.create_all(conn)
    yield engine
    engine.dispose()


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(NOTES)).scalar_one())


def test_sqlites_own_checkpoint_is_off_and_the_wal_stays_bounded(engine: Engine, database: Path) -> None:
    """Without any checkpoint, 2,000 commits of a 3 kB row leave a WAL of 16 MB or more."""
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    for index in range(2000):
        with engine.begin() as conn:
            conn.execute(insert(NOTES).values(id=index, body="记" * 1000))
    # Each checkpoint lets the next writer restart the WAL from its start: it never holds much
    # more than CHECKPOINT_EVERY commits (two pages each, here).
    assert Path(f"{database}-wal").stat().st_size < 4 * CHECKPOINT_EVERY * 4096 * 4
    assert _count(engine) == 2000


def test_large_transactions_are_checkpointed_by_size_too(engine: Engine, database: Path) -> None:
    """Forty commits of 1 MB each: counted alone, 32 of them would pile up in the WAL."""
    largest = 0
    for index in range(40):
        with engine.begin() as conn:
            conn.execute(insert(NOTES).values(id=index, body="x" * 1_000_000))
        largest = max(largest, Path(f"{database}-wal").stat().st_size)
    assert largest < WAL_LIMIT_BYTES + 3 * 1024 * 1024
    assert _count(engine) == 40


def test_a_checkpoint_that_cannot_run_does_not_fail_the_commit_before_it(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result still open on the connection makes SQLite refuse the checkpoint ("database table
    is locked"): the commit has happened by then, and the caller must not be told otherwise."""
    monkeypatch.setattr(core.db, "CHECKPOINT_EVERY", 1)
    with engine.begin() as conn:
        conn.execute(insert(NOTES), [{"id": i, "body": "a"} for i in range(3)])
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        open_result = raw.execute("SELECT id FROM notes")
        assert open_result.fetchone() is not None  # rows left unread: the statement stays open
        with conn.begin():
            conn.execute(insert(NOTES).values(id=99, body="committed"))
        open_result.close()
    assert _count(engine) == 4


def test_a_begin_that_fails_raises_sqlalchemys_error_and_frees_the_writer_lock(
    engine: Engine, database: Path
) -> None:
    foreign = sqlite3.connect(database, isolation_level=None)  # another program holding the write
    foreign.execute("BEGIN IMMEDIATE")
    try:
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert isinstance(raw, core.db._LockingConnection) and raw.writer_lock is not None
            raw.execute("PRAGMA busy_timeout=0")
            with pytest.raises(exc.OperationalError, match="locked"):
                conn.begin()
            assert not raw.writer_lock.locked and not raw.writer_lock.entered
            conn.rollback()
    finally:
        foreign.rollback()
        foreign.close()
    with engine.begin() as conn:  # and nothing is left waiting on it
        conn.execute(insert(NOTES).values(id=1, body="after"))
    assert _count(engine) == 1


def _writer_lock_during_checkpoints(engine: Engine, database: Path) -> list[str]:
    """Commit once with a checkpoint due, and tell whether the writer lock was held while it ran."""
    seen: list[str] = []

    def trace(sql: str) -> None:
        if "wal_checkpoint" not in sql:
            return
        probe = os.open(f"{database}-writer.lock", os.O_RDWR)  # its own open file: flock conflicts
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            seen.append("held")
        else:
            fcntl.flock(probe, fcntl.LOCK_UN)
            seen.append("free")
        finally:
            os.close(probe)

    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        raw.set_trace_callback(trace)
        with conn.begin():
            conn.execute(insert(NOTES).values(body="due"))
        raw.set_trace_callback(None)
    return seen


def test_where_sqlite_has_the_wal_reset_race_no_commit_runs_beside_a_checkpoint(
    engine: Engine, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.db, "CHECKPOINT_EVERY", 1)
    monkeypatch.setattr(core.db, "CHECKPOINT_HOLDS_WRITER_LOCK", True)
    assert _writer_lock_during_checkpoints(engine, database) == ["held"]
    monkeypatch.setattr(core.db, "CHECKPOINT_HOLDS_WRITER_LOCK", False)
    assert _writer_lock_during_checkpoints(engine, database) == ["free"]
    assert _count(engine) == 2


def test_which_sqlite_versions_have_the_wal_reset_fix() -> None:
    for version in [(3, 7, 0), (3, 40, 1), (3, 44, 5), (3, 45, 0), (3, 50, 6), (3, 51, 0), (3, 51, 2)]:
        assert not wal_reset_race_fixed(version), version
    for version in [(3, 44, 6), (3, 44, 9), (3, 50, 7), (3, 51, 3), (3, 52, 0), (4, 0, 0)]:
        assert wal_reset_race_fixed(version), version


def test_a_thread_knows_when_it_holds_the_writer_lock(engine: Engine) -> None:
    assert not core.db.holds_writer_lock()
    with engine.begin() as conn:
        conn.execute(insert(NOTES).values(body="inside"))
        assert core.db.holds_writer_lock()
    assert not core.db.holds_writer_lock()


def test_a_database_reached_through_a_symlink_shares_its_writer_lock(engine: Engine, database: Path) -> None:
    """The lock file is named from the database's real path: a writer through a link must still
    queue behind one through the real name (the lock is what keeps commits off checkpoints)."""
    link = database.with_name("link.sqlite")
    link.symlink_to(database)
    other = create_control_engine(f"sqlite:///{link}")
    try:
        with engine.connect() as a, other.connect() as b:
            locks = [c.connection.driver_connection.writer_lock for c in (a, b)]  # type: ignore[union-attr]
            assert os.fstat(locks[0].fd).st_ino == os.fstat(locks[1].fd).st_ino
        assert not Path(f"{link}-writer.lock").exists()
    finally:
        other.dispose()
