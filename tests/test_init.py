"""`sandbox init`: home, schema, signing key, audit events; safe to repeat; policy changes recorded."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from audit import Actor, ActorKind, AuditEvent
from core.config import Settings
from core.db import transaction
from sandbox.models import PolicyVersion
from sandbox.runtime import init_home, open_runtime, sync_policy
from tests.conftest import POLICIES

ACTOR = Actor(ActorKind.SYSTEM, "test")


def _actions(settings: Settings) -> list[str]:
    runtime = open_runtime(settings)
    try:
        with runtime.sessions() as session:
            return list(session.execute(select(AuditEvent.action).order_by(AuditEvent.seq)).scalars())
    finally:
        runtime.close()


def test_init_creates_home_key_and_events(settings: Settings) -> None:
    report = init_home(settings, actor=ACTOR)
    assert report.migrated_from is None and report.key_created == report.active_kid
    assert stat.S_IMODE(settings.home.stat().st_mode) == 0o700
    key_file = settings.keys_dir / f"{report.active_kid}.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert _actions(settings) == ["system.init", "key.create", "policy.load"]


def test_init_twice_changes_nothing(settings: Settings) -> None:
    first = init_home(settings, actor=ACTOR)
    second = init_home(settings, actor=ACTOR)
    assert second.key_created is None and second.active_kid == first.active_kid
    assert second.migrated_from is not None
    assert _actions(settings) == ["system.init", "key.create", "policy.load"]
    assert len(list(settings.keys_dir.iterdir())) == 1


def test_changed_policy_is_a_new_audited_version(settings: Settings, tmp_path: Path) -> None:
    init_home(settings, actor=ACTOR)
    changed = tmp_path / "changed-policies"
    shutil.copytree(POLICIES, changed)
    (changed / "disclosure.yaml").write_text("min_cell_size: 20\n", encoding="utf-8")
    runtime = open_runtime(settings.with_overrides(policy_dir=changed))
    try:
        with transaction(runtime.sessions) as session:
            assert sync_policy(session, runtime.catalog, actor=ACTOR) is not None
        with transaction(runtime.sessions) as session:
            assert sync_policy(session, runtime.catalog, actor=ACTOR) is None  # unchanged: no new version
        with runtime.sessions() as session:
            versions = session.execute(select(PolicyVersion).order_by(PolicyVersion.id)).scalars().all()
            events = (
                session.execute(select(AuditEvent).where(AuditEvent.action == "policy.load")).scalars().all()
            )
    finally:
        runtime.close()
    assert len(versions) == 2 and versions[1].sha256 == runtime.catalog.sha256
    assert events[-1].details["previous"] == versions[0].sha256
    assert events[-1].target_id == runtime.catalog.sha256


def test_open_refuses_an_uninitialized_home(settings: Settings) -> None:
    from core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="sandbox init"):
        open_runtime(settings)


@pytest.mark.parametrize("backend", ["embedded"])  # a SQLite lock; PostgreSQL has no such wait
def test_open_names_a_control_database_another_process_keeps_locked(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock held past the busy timeout is named as such, not taken for an uninitialized home."""
    import sqlite3
    from contextlib import closing

    from core import db
    from core.errors import ConfigurationError

    init_home(settings, actor=ACTOR)
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 200)
    database = settings.database_url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(database, isolation_level=None)) as holder:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("INSERT INTO alembic_version SELECT 'x' WHERE 0")
        with pytest.raises(ConfigurationError) as refused:
            open_runtime(settings)
        holder.execute("ROLLBACK")
    message = str(refused.value)
    assert "database is locked" in message and "kept it locked for 0.2 s" in message
    assert "sandbox init" not in message


@pytest.mark.parametrize("backend", ["embedded"])  # the home's own database is not the one opened
def test_open_gives_the_drivers_reason_for_an_unreachable_database(settings: Settings) -> None:
    from core.errors import ConfigurationError

    unreachable = settings.with_overrides(database_url="postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(ConfigurationError) as refused:
        open_runtime(unreachable)
    message = str(refused.value)
    assert message.startswith("cannot open the control database at postgresql://postgres@127.0.0.1:1/test: ")
    assert "refused" in message.lower() and "sandbox init" in message and "\n" not in message
