"""The embedded control database's writers: WAL checkpoints made by the process, outside the lock."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table, Text, insert, text

from core.db import CHECKPOINT_EVERY, create_control_engine

METADATA = MetaData()
NOTES = Table("notes", METADATA, Column("id", Integer, primary_key=True), Column("body", Text))


def test_sqlites_own_checkpoint_is_off_and_the_wal_stays_bounded(tmp_path: Path) -> None:
    """SQLite's automatic checkpoint would run under the writer lock, so it is off; the process
    checkpoints instead. Without either, 2,000 commits of a 3 kB row leave a WAL of 16 MB or more."""
    database = tmp_path / "control.sqlite"
    engine = create_control_engine(f"sqlite:///{database}")
    try:
        with engine.begin() as conn:
            METADATA.create_all(conn)
            assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        for index in range(2000):
            with engine.begin() as conn:
                conn.execute(insert(NOTES).values(id=index, body="记" * 1000))
        wal = Path(f"{database}-wal")
        # Each checkpoint lets the next writer restart the WAL from its start: it never holds much
        # more than CHECKPOINT_EVERY commits (two pages each, here).
        assert wal.stat().st_size < 4 * CHECKPOINT_EVERY * 4096 * 4
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM notes")).scalar() == 2000
    finally:
        engine.dispose()
