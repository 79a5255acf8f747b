"""The web console: server-rendered pages for reviewers, auditors, operators, subjects and admins,
on the same services as the API (see ``console.py`` for the guard every page goes through)."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from authz.permissions import Role
from sandbox.api.errors import ROUTING_PAGES
from sandbox.runtime import Runtime

SECRET_FILE = "console-secret"  # noqa: S105 - a file name
PREFIX = "/console"  # every page, and the only path the session cookie is sent to


def is_console_path(path: str) -> bool:
    """Whether ``path`` is the console's (under ``PREFIX``)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def console_secret(home: Path) -> bytes:
    """The key that signs session cookies, kept in the home (mode 0600), made on first use.

    Shared by every worker process: the first to start writes it, atomically, and the rest read it.
    """
    path = home / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    staging = home / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(32))
    try:
        os.link(staging, path)  # fails if another process got there first; theirs wins
    except FileExistsError:
        pass
    finally:
        staging.unlink()
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


class ConsoleSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions for the console's pages only.

    The cookie's path is ``/console``, so a browser never sends it elsewhere: every other request
    (the API, health checks) gets an empty, read-only session without Flask building a signing
    serializer and looking for a cookie on each one.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if is_console_path(request.path):
            return super().open_session(app, request)
        return self.null_session_class()


def init_app(app: Flask, runtime: Runtime) -> None:
    """Mount the console under ``/console`` with its cookie settings."""
    # Importing a view module registers its pages on the blueprint.
    from sandbox.web import (  # noqa: F401
        admin,
        auditor,
        auth,
        charts,
        console,
        csrf,
        i18n,
        operator,
        programs,
        reviewer,
        subject,
    )

    if not app.secret_key:
        app.secret_key = console_secret(runtime.settings.home)
    app.config.update(
        SESSION_COOKIE_NAME="sandbox_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=runtime.settings.console_secure_cookie,
        SESSION_COOKIE_PATH=PREFIX,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=console.SESSION_HOURS),
    )
    # Globals, not a context processor: imported macros see globals only.
    app.jinja_env.globals.update(
        bar=charts.bar,
        chart=charts.series_chart,
        t=i18n.t,
        csrf_token=csrf.token,
        Role=Role,
        here=console.here,
    )
    app.session_interface = ConsoleSessions()
    app.register_blueprint(console.bp)
    app.extensions[ROUTING_PAGES] = console.routing_page
