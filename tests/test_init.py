"""`sandbox init`: home, schema, signing key, audit events; safe to repeat; policy changes recorded."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

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
    import pytest

    from core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="sandbox init"):
        open_runtime(settings)
