"""Alembic environment: the URL comes from ``config.attributes`` (see ``sandbox.migrate``)."""

from __future__ import annotations

from alembic import context

import sandbox.schema
from core.db import create_control_engine

config = context.config
target_metadata = sandbox.schema.metadata


def run_migrations_online() -> None:
    """Run migrations in one transaction on a connection of our own engine."""
    engine = create_control_engine(config.attributes["url"])
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run_migrations_online()
