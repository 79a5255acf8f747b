"""Migrations build the whole schema on SQLite and PostgreSQL and match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from core.db import create_control_engine
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
