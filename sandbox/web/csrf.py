"""CSRF protection: one random token per session, in a hidden field of every form, checked on
every POST. The session cookie is also ``SameSite=Lax``; the token is what a forged cross-site
form cannot know."""

from __future__ import annotations

import hmac
import secrets

from flask import request, session

from core.errors import SandboxError

FIELD = "csrf_token"


class CsrfRefused(SandboxError):
    """A form without the session's token (or without a session at all)."""

    code = "csrf_invalid"
    status = 400


def token() -> str:
    """The session's token, made on first use."""
    value = session.get("csrf")
    if not isinstance(value, str):
        value = secrets.token_urlsafe(32)
        session["csrf"] = value
    return value


def rotate() -> None:
    """A fresh token (at sign-in, so a token seen before it is worthless after)."""
    session["csrf"] = secrets.token_urlsafe(32)


def check() -> None:
    """Refuse a state-changing request whose form does not carry the session's token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = session.get("csrf")
    given = request.form.get(FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(), given.encode()):
        raise CsrfRefused("the form's security token is missing or stale; reload the page and try again")
