"""Migrations build the whole schema on SQLite and PostgreSQL and match the models."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import JSON, column, insert, inspect, select, table, text
from sqlalchemy.exc import IntegrityError

from core.db import UTCDateTime, create_control_engine
from sandbox import migrate, schema


def test_migrations_create_every_table_and_match_models(control_url: str) -> None:
    migrate.upgrade(control_url)
    engine = create_control_engine(control_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert set(schema.metadata.tables) <= tables
        assert migrate.current_revision(engine) == migrate.head_revision()
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), schema.metadata
            )
            assert diff == [], f"models and migrations disagree: {diff}"
            assert conn.exec_driver_sql("SELECT tree_size FROM audit_head WHERE id = 1").scalar() == 0
    finally:
        engine.dispose()


def test_upgrade_twice_is_harmless(control_url: str) -> None:
    migrate.upgrade(control_url)
    migrate.upgrade(control_url)
    engine = create_control_engine(control_url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def _accounts_at_0006(control_url: str, usernames: list[str]) -> None:
    migrate.upgrade(control_url, "0006")
    engine = create_control_engine(control_url)
    try:
        with engine.begin() as conn:
            for n, username in enumerate(usernames):
                conn.execute(
                    text(
                        "INSERT INTO accounts (id, username, role, password_hash, created_at) "
                        "VALUES (:id, :username, 'reviewer', 'x', :now)"
                    ),
                    {"id": f"account-{n}", "username": username, "now": datetime(2026, 1, 1, tzinfo=UTC)},
                )
    finally:
        engine.dispose()


def test_existing_accounts_get_their_username_key(control_url: str) -> None:
    _accounts_at_0006(control_url, ["Rev2", "admin"])
    migrate.upgrade(control_url)
    engine = create_control_engine(control_url)
    try:
        with engine.connect() as conn:
            keys = conn.execute(text("SELECT username, username_key FROM accounts ORDER BY username")).all()
            assert [tuple(row) for row in keys] == [("Rev2", "rev2"), ("admin", "admin")]
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO accounts (id, username, username_key, role, password_hash, created_at) "
                    "VALUES ('x', 'REV2', 'rev2', 'reviewer', 'x', :now)"
                ),
                {"now": datetime(2026, 1, 1, tzinfo=UTC)},
            )
    finally:
        engine.dispose()


def test_accounts_that_differ_only_in_case_stop_the_upgrade_by_name(control_url: str) -> None:
    _accounts_at_0006(control_url, ["Rev2", "rev2"])
    with pytest.raises(RuntimeError, match="'Rev2' and 'rev2' differ only in case"):
        migrate.upgrade(control_url)
    engine = create_control_engine(control_url)
    try:
        assert migrate.current_revision(engine) == "0006"  # nothing half done
        with engine.begin() as conn:
            conn.execute(text("UPDATE accounts SET username = 'rev2-old' WHERE username = 'rev2'"))
        migrate.upgrade(control_url)  # once renamed, the same upgrade goes through
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_an_existing_log_gets_its_latest_time_in_the_head(control_url: str) -> None:
    """0009: the head's last time is the log's latest, not its last event's (a clock once set back)."""
    migrate.upgrade(control_url, "0008")
    events = table(
        "audit_events", *(column(c) for c in ("seq", "event_id", "actor_kind", "action", "outcome", "entry",
                                               "leaf_hash")),
        column("occurred_at", UTCDateTime()), column("details", JSON()),
    )  # fmt: skip
    times = [datetime(2026, 1, 1, 8, tzinfo=UTC), datetime(2026, 1, 1, 9, tzinfo=UTC)]
    times.append(times[0])  # the last event is stamped earlier than the one before it
    engine = create_control_engine(control_url)
    try:
        with engine.begin() as conn:
            for seq, at in enumerate(times):
                conn.execute(
                    insert(events).values(
                        seq=seq, event_id=f"e-{seq}", actor_kind="system", action="x", outcome="success",
                        entry="{}", leaf_hash="00", occurred_at=at, details={},
                    )
                )  # fmt: skip
            conn.execute(text("UPDATE audit_head SET tree_size = 3"))
        migrate.upgrade(control_url)
        head = table("audit_head", column("last_at", UTCDateTime()))
        with engine.connect() as conn:
            assert conn.execute(select(head.c.last_at)).scalar_one() == times[1]
    finally:
        engine.dispose()


def test_revisions_are_numbered_in_order_and_a_new_one_takes_the_next_number() -> None:
    """A walkthrough found `migrate revision` naming a file by Alembic's random hex id."""
    files = sorted(p.name for p in (migrate.MIGRATIONS / "versions").glob("*.py"))
    numbers = [int(name[:4]) for name in files]
    assert numbers == list(range(1, len(files) + 1))
    assert migrate.head_revision() == f"{len(files):04d}"
    assert migrate.next_revision_id() == f"{len(files) + 1:04d}"


def test_0011_widens_the_job_checks_for_a_mock_run_and_narrows_them_back(control_url: str) -> None:
    def checks() -> dict[str, str]:
        engine = create_control_engine(control_url)
        try:
            found = inspect(engine).get_check_constraints("compute_jobs")
        finally:
            engine.dispose()
        return {c["name"]: " ".join(c["sqltext"].split()) for c in found}

    migrate.upgrade(control_url, "0010")
    before = checks()
    assert "'mock'" not in before["ck_compute_jobs_release_known"]
    migrate.upgrade(control_url)
    after = checks()
    assert "'mock'" in after["ck_compute_jobs_release_known"]
    assert "'exact'" not in after["ck_compute_jobs_private_has_epsilon"]  # PostgreSQL writes != as <>
    assert set(after) == set(before)  # the other checks survive the table's rebuild on SQLite
    command.downgrade(migrate.alembic_config(control_url), "0010")
    assert checks() == before
