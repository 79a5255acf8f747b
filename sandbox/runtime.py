"""The running service's shared parts, and the home folder they live in.

A :class:`Runtime` bundles the settings, the validated policy catalog, the control database and
the data stores. The web app, the worker and the CLI each open one; nothing else holds engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from audit import Actor, AuditAction, Target, record_event
from audit.checkpoints import CheckpointSigner
from audit.models import AuditHead
from audit.tree import LogTree
from catalog import Catalog, load_catalog
from core import db as core_db
from core import keyring
from core.clock import Clock, utcnow
from core.config import Settings
from core.db import (
    create_control_engine,
    display_url,
    driver_reason,
    session_factory,
    transaction,
)
from core.errors import ConfigurationError
from sandbox import migrate
from sandbox.data.stores import DataStores, datasets_over_row_bound, ensure_tables, stale_datasets
from sandbox.models import PolicyVersion


@dataclass
class Runtime:
    """Everything a process of the service needs, opened once."""

    settings: Settings
    catalog: Catalog
    engine: Engine
    sessions: sessionmaker[Session]
    stores: DataStores
    clock: Clock = field(default=utcnow)
    audit_tree: LogTree = field(default_factory=LogTree)

    @property
    def checkpoint_signer(self) -> CheckpointSigner:
        """How this process signs audit checkpoints."""
        return CheckpointSigner.for_settings(self.settings, self.clock)

    def close(self) -> None:
        """Release every connection (DuckDB's file lock included)."""
        self.stores.dispose()
        self.engine.dispose()


def open_runtime(settings: Settings, *, read_only_data: bool = True, clock: Clock = utcnow) -> Runtime:
    """Open the service on an initialized home; refuse a bad catalog or an unmigrated database."""
    catalog = load_catalog(settings.policy_dir)
    engine = create_control_engine(settings.database_url)
    try:
        revision = migrate.current_revision(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise ConfigurationError(_unopenable(settings.database_url, exc)) from exc
    if revision != migrate.head_revision():
        engine.dispose()
        raise ConfigurationError(
            f"the control database at {display_url(settings.database_url)} is not initialized or not "
            "migrated: run `sandbox init`"
        )
    stores = DataStores.open(settings.data_lookup_url, settings.data_url, read_only=read_only_data)
    return Runtime(
        settings=settings,
        catalog=catalog,
        engine=engine,
        sessions=session_factory(engine),
        stores=stores,
        clock=clock,
    )


def _unopenable(url: str, error: SQLAlchemyError) -> str:
    """Why the control database at ``url`` could not be read, with the driver's reason."""
    reason = driver_reason(error)
    where = f"cannot open the control database at {display_url(url)}: {reason}"
    if "database is locked" in reason:  # SQLite: another process held a lock past the busy timeout
        return (
            f"{where} (another process kept it locked for {core_db.BUSY_TIMEOUT_MS / 1000:g} s: a backup, "
            "a sqlite3 shell with an open transaction?); try again once it lets go"
        )
    return f"{where}; is the home initialized (`sandbox init`) and the database reachable?"


def catalog_summary(catalog: Catalog) -> dict[str, Any]:
    """A short description of a catalog for the audit log."""
    return {
        "sha256": catalog.sha256,
        "datasets": sorted(catalog.datasets),
        "templates": sorted(catalog.templates),
    }


def sync_policy(
    session: Session, catalog: Catalog, *, actor: Actor, clock: Clock = utcnow
) -> PolicyVersion | None:
    """Record the catalog as a new policy version if it differs from the last; ``None`` if unchanged.

    The audit head is locked first, so two processes starting together cannot both record it.
    """
    session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    latest = session.execute(
        select(PolicyVersion).order_by(PolicyVersion.id.desc()).limit(1)
    ).scalar_one_or_none()
    if latest is not None and latest.sha256 == catalog.sha256:
        return None
    version = PolicyVersion(
        sha256=catalog.sha256, files=list(catalog.files), summary=catalog_summary(catalog), loaded_at=clock()
    )
    session.add(version)
    session.flush()
    record_event(
        session,
        action=AuditAction.POLICY_LOAD,
        actor=actor,
        target=Target("policy", catalog.sha256),
        details={**catalog_summary(catalog), "previous": latest.sha256 if latest else None},
        clock=clock,
    )
    return version


@dataclass(frozen=True)
class InitReport:
    """What ``sandbox init`` did."""

    home_created: bool
    migrated_from: str | None
    key_created: str | None
    policy_recorded: bool
    active_kid: str
    stale_datasets: dict[str, list[str]]  # tables not the shape the policy gives them: load them again
    over_row_bound: dict[str, str] = field(default_factory=dict)  # rows past the bound: no aggregate


def init_home(settings: Settings, *, actor: Actor, clock: Clock = utcnow) -> InitReport:
    """Create the home, both databases, the schema and a signing key. Safe to run again."""
    catalog = load_catalog(settings.policy_dir)
    created = not settings.home.exists()
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.home.chmod(0o700)
    engine = create_control_engine(settings.database_url)
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade(settings.database_url)
        stores = DataStores.open(settings.data_lookup_url, settings.data_url)
        try:
            ensure_tables(stores, catalog)
            stale = stale_datasets(stores, catalog)
            over = datasets_over_row_bound(stores, catalog)
        finally:
            stores.dispose()
        with transaction(session_factory(engine)) as session:
            new_key = None
            if before is None:
                record_event(
                    session,
                    action=AuditAction.SYSTEM_INIT,
                    actor=actor,
                    target=Target("home"),
                    details={"schema": migrate.head_revision()},
                    clock=clock,
                )
            if keyring.active_record(session) is None:
                new_key = keyring.create_key(session, settings.keys_dir, clock=clock)
                record_event(
                    session,
                    action=AuditAction.KEY_CREATE,
                    actor=actor,
                    target=Target("signing_key", new_key.kid),
                    details={"algorithm": "EdDSA"},
                    clock=clock,
                )
            recorded = sync_policy(session, catalog, actor=actor, clock=clock) is not None
            active = keyring.active_record(session)
            assert active is not None
            return InitReport(
                home_created=created,
                migrated_from=before,
                policy_recorded=recorded,
                key_created=new_key.kid if new_key else None,
                active_kid=active.kid,
                stale_datasets=stale,
                over_row_bound=over,
            )
    finally:
        engine.dispose()
