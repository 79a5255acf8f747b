"""Configuration, read from the environment in one place.

| variable               | default                                   |
|------------------------|-------------------------------------------|
| ``SANDBOX_HOME``       | ``./.sandbox``                            |
| ``SANDBOX_DATABASE_URL`` | SQLite file ``$SANDBOX_HOME/control.sqlite`` |
| ``SANDBOX_DATA_URL``   | DuckDB file ``$SANDBOX_HOME/data.duckdb`` (column store, for scans) |
| ``SANDBOX_DATA_LOOKUP_URL`` | SQLite file ``$SANDBOX_HOME/data-lookup.sqlite`` when the data URL is
  the default; otherwise the data URL itself (one engine serves both) |
| ``SANDBOX_POLICIES``   | the catalog shipped with the package      |
| ``SANDBOX_AUDIT_ORIGIN`` | ``public-data-sandbox.local/audit``: the log's name in its checkpoints |
| ``SANDBOX_CHECKPOINT_EVERY_EVENTS`` / ``_SECONDS`` | 1000 / 60: how often the server signs one |
| ``SANDBOX_CONSOLE_SECURE_COOKIE`` | ``1``: console cookies are ``Secure`` (set ``0`` for plain http) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import policies as _default_policies
from core.errors import ConfigurationError


def _default_policy_dir() -> Path:
    return Path(_default_policies.__file__).resolve().parent


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the service needs to know about where things are."""

    home: Path
    database_url: str
    data_url: str
    data_lookup_url: str
    policy_dir: Path
    token_ttl_seconds: int = 900
    audit_origin: str = "public-data-sandbox.local/audit"
    checkpoint_every_events: int = 1000
    checkpoint_every_seconds: int = 60
    # The console's cookies carry ``Secure`` unless turned off for plain-http local use and tests.
    console_secure_cookie: bool = True
    extra: Mapping[str, str] = field(default_factory=dict)

    @cached_property  # on every seal's path: a Path join costs more than the lookup
    def keys_dir(self) -> Path:
        """Folder of the private signing keys (mode 0700)."""
        return self.home / "keys"

    @property
    def checkpoints_file(self) -> Path:
        """Append-only copy of signed audit checkpoints, kept outside the database."""
        return self.home / "checkpoints.log"

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some values changed (tests, the demo)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def sqlite_url(path: Path) -> str:
    """A SQLAlchemy URL for a SQLite file."""
    return f"sqlite:///{path.resolve()}"


def duckdb_url(path: Path) -> str:
    """A SQLAlchemy URL for a DuckDB file."""
    return f"duckdb:///{path.resolve()}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    home = Path(env.get("SANDBOX_HOME") or ".sandbox").expanduser().resolve()
    if any(c in str(home) for c in "?#%"):
        # They would be read as a URL's query, fragment or escapes: the embedded databases would
        # be made elsewhere (a home "a?1" wrote to "a", beside every other "a?…").
        raise ConfigurationError(f"SANDBOX_HOME may not contain '?', '#' or '%': {home}")
    database_url = env.get("SANDBOX_DATABASE_URL") or sqlite_url(home / "control.sqlite")
    explicit_data = env.get("SANDBOX_DATA_URL")
    data_url = explicit_data or duckdb_url(home / "data.duckdb")
    lookup_default = explicit_data if explicit_data else sqlite_url(home / "data-lookup.sqlite")
    data_lookup_url = env.get("SANDBOX_DATA_LOOKUP_URL") or lookup_default
    policy_dir = Path(env.get("SANDBOX_POLICIES") or _default_policy_dir()).expanduser().resolve()
    ttl = env.get("SANDBOX_TOKEN_TTL_SECONDS")
    every_events = env.get("SANDBOX_CHECKPOINT_EVERY_EVENTS")
    every_seconds = env.get("SANDBOX_CHECKPOINT_EVERY_SECONDS")
    return Settings(
        home=home,
        database_url=database_url,
        data_url=data_url,
        data_lookup_url=data_lookup_url,
        policy_dir=policy_dir,
        token_ttl_seconds=_whole(ttl, "SANDBOX_TOKEN_TTL_SECONDS", 900),
        audit_origin=env.get("SANDBOX_AUDIT_ORIGIN") or "public-data-sandbox.local/audit",
        checkpoint_every_events=_whole(every_events, "SANDBOX_CHECKPOINT_EVERY_EVENTS", 1000),
        checkpoint_every_seconds=_whole(every_seconds, "SANDBOX_CHECKPOINT_EVERY_SECONDS", 60),
        console_secure_cookie=env.get("SANDBOX_CONSOLE_SECURE_COOKIE", "1").strip().lower()
        not in ("0", "false", "no", "off"),
    )


def _whole(value: str | None, name: str, default: int) -> int:
    """A setting that is a whole number from 1, as ASCII digits; ``default`` when unset."""
    if not value:
        return default
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ConfigurationError(f"{name} must be a whole number from 1, not {value!r}")
    return int(text)
