"""Shared fixtures: the catalog, and real databases (embedded always, PostgreSQL when configured).

Database-facing tests take the ``backend`` parameter: ``embedded`` (SQLite control database,
SQLite + DuckDB data stores in a temporary folder) and ``postgres`` when
``SANDBOX_TEST_POSTGRES_URL`` is set. Each PostgreSQL test gets a schema of its own, dropped after.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from catalog import Catalog, load_catalog
from sandbox.data.stores import DataStores

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
POSTGRES_URL = os.environ.get("SANDBOX_TEST_POSTGRES_URL", "")

BACKENDS = [
    "embedded",
    pytest.param(
        "postgres",
        marks=pytest.mark.skipif(not POSTGRES_URL, reason="SANDBOX_TEST_POSTGRES_URL is not set"),
    ),
]


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The catalog shipped in ``policies/``."""
    return load_catalog(POLICIES)


def _psycopg_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    if not POSTGRES_URL:
        pytest.skip("SANDBOX_TEST_POSTGRES_URL is not set")
    base = _psycopg_url(POSTGRES_URL)
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``embedded`` or ``postgres``."""
    return str(request.param)


@pytest.fixture
def data_stores(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DataStores]:
    """Empty data stores on the backend under test."""
    if backend == "postgres":
        url = request.getfixturevalue("pg_schema_url")
        stores = DataStores.open(url, url)
    else:
        stores = DataStores.open(f"sqlite:///{tmp_path}/lookup.sqlite", f"duckdb:///{tmp_path}/scan.duckdb")
    try:
        yield stores
    finally:
        stores.dispose()
