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
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from audit import Actor, ActorKind
from catalog import Catalog, load_catalog
from core.config import Settings, load_settings
from core.db import with_driver
from sandbox.app import create_app
from sandbox.data.stores import DataStores
from sandbox.runtime import Runtime, init_home, open_runtime

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


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    if not POSTGRES_URL:
        pytest.skip("SANDBOX_TEST_POSTGRES_URL is not set")
    base = with_driver(POSTGRES_URL)
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


@pytest.fixture
def control_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL for an empty control database on the backend under test."""
    if backend == "postgres":
        return str(request.getfixturevalue("pg_schema_url"))
    return f"sqlite:///{tmp_path}/control.sqlite"


@pytest.fixture
def settings(control_url: str, tmp_path: Path) -> Settings:
    """Settings for a fresh home in ``tmp_path`` with the backend's control database."""
    home = tmp_path / "home"
    return load_settings(
        {"SANDBOX_HOME": str(home), "SANDBOX_DATABASE_URL": control_url, "SANDBOX_POLICIES": str(POLICIES)}
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """An initialized home, opened with writable data stores."""
    init_home(settings, actor=Actor(ActorKind.SYSTEM, "test"))
    rt = open_runtime(settings, read_only_data=False)
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    """The Flask app on the test runtime."""
    return create_app(runtime=runtime)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Flask's test client."""
    return app.test_client()
