"""The console's blueprint and its one guard: every page declares the permission it needs.

A page is a view registered with :func:`page`, which records it in ``PAGES`` (as the API's
``route`` records endpoints), signs the visitor in from the session cookie, re-checks them against
the database, and refuses a role without the permission. Errors from the services become an HTML
page with the same status the API would give, and a refusal is an audit event as in the API.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from authz.permissions import Permission, Role, allows
from authz.tokens import Unauthenticated
from core.errors import SandboxError
from sandbox.api.auth import Forbidden, Principal
from sandbox.api.errors import record_denial, record_failure, with_allow
from sandbox.runtime import Runtime
from sandbox.services import console as console_service
from sandbox.services.console import SignedIn
from sandbox.web import PREFIX, csrf, i18n, is_console_path

F = TypeVar("F", bound=Callable[..., Any])
SESSION_HOURS = console_service.SESSION_HOURS

bp = Blueprint(
    "web",
    __name__,
    url_prefix=PREFIX,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


class _Public:
    def __repr__(self) -> str:
        return "PUBLIC"


PUBLIC: Final = _Public()


@dataclass(frozen=True)
class Page:
    """What a console view declared about itself."""

    endpoint: str
    rule: str
    methods: tuple[str, ...]
    permission: Permission | _Public


# The blueprint's static files are public; listed so every routed endpoint is declared.
PAGES: list[Page] = [Page("web.static", "/console/static/<path:filename>", ("GET",), PUBLIC)]


def runtime() -> Runtime:
    """The app's runtime."""
    found: Runtime = current_app.extensions["sandbox"]
    return found


def page(
    rule: str, *, permission: Permission | _Public, methods: tuple[str, ...] = ("GET",)
) -> Callable[[F], F]:
    """Register a console view on ``rule`` that requires ``permission`` (or ``PUBLIC``)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not isinstance(permission, _Public):
                user = signed_in()
                if user is None:
                    return redirect(url_for("web.login", next=_back_to()))
                if not allows(user.role, permission):
                    raise Forbidden(f"role {user.role.value} may not {permission.value}")
            return view(*args, **kwargs)

        # The console's root answers at /console and /console/ alike: no redirect between them,
        # which Werkzeug would address from the client's Host header.
        slashes = {"strict_slashes": False} if rule == "/" else {}
        bp.add_url_rule(rule, view.__name__, wrapped, methods=list(methods), **slashes)
        PAGES.append(Page(f"web.{view.__name__}", f"{bp.url_prefix}{rule}", methods, permission))
        return wrapped  # type: ignore[return-value]

    return decorator


def sign_in(who: SignedIn) -> None:
    """Start a fresh session for ``who`` (a new CSRF token too: nothing from before carries over)."""
    session.clear()
    session["user"] = {
        "role": who.role.value,
        "id": who.id,
        "at": int(time.time()),
        "sid": who.session_id,  # the server's record of the session: signing out ends it there
    }
    csrf.rotate()


def signed_in() -> Principal | None:
    """The session's party, re-checked now; ``None`` (and the session ended) when it no longer holds."""
    if "principal" in g:
        found: Principal | None = g.principal
        return found
    data = session.get("user")
    if not isinstance(data, dict):
        return None
    if int(time.time()) - int(data.get("at", 0)) > SESSION_HOURS * 3600:
        session.clear()
        flash(i18n.t("flash.session_expired"), "info")
        return None
    try:
        who = console_service.recheck(runtime(), data.get("sid"))
    except (Unauthenticated, SandboxError) as exc:
        g.principal = Principal(role=Role(data["role"]), id=str(data["id"]), name=str(data["id"]))
        record_denial(exc.code)
        session.clear()
        flash(i18n.error_text(exc.code, exc.message), "error")
        return None
    g.principal = Principal(role=who.role, id=who.id, name=who.name, subject_id=who.subject_id)
    return g.principal  # type: ignore[no-any-return]


def user() -> Principal:
    """The signed-in party of a guarded page."""
    found: Principal = g.principal
    return found


def safe_next(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirects)."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or not target.isprintable():
        return default  # a header may hold no CR or LF (Werkzeug refuses them: a 500 had followed)
    return target


def home_for(role: Role) -> str:
    """The first page of a role."""
    return url_for(
        {
            Role.REVIEWER: "web.review_queue",
            Role.AUDITOR: "web.audit_events",
            Role.OPERATOR: "web.operator_home",
            Role.SUBJECT: "web.subject_home",
            Role.ADMIN: "web.admin_home",
        }[role]
    )


def whole_number(raw: str, max_digits: int) -> int | None:
    """``raw`` as a number when it is 1 to ``max_digits`` ASCII digits, else ``None``.

    Not ``str.isdigit``: it is true of "²" and other scripts' digits, which ``int`` refuses or
    reads as numbers no form field means.
    """
    if 0 < len(raw) <= max_digits and raw.isascii() and raw.isdigit():
        return int(raw)
    return None


def done(message_key: str, endpoint: str, **values: Any) -> Response:
    """After a successful form: a message, then the page to see the result (POST/redirect/GET)."""
    flash(i18n.t(message_key), "success")
    return redirect(url_for(endpoint, **values))  # type: ignore[return-value]


def refused(exc: SandboxError, endpoint: str, **values: Any) -> Response:
    """After a form the services refused: the denial logged, the reason shown on the form's page."""
    record_denial(exc.code)
    text = i18n.error_text(exc.code, exc.message)
    details = getattr(exc, "details", None)
    if isinstance(details, list):
        text += " — " + "; ".join(f"{d.get('field')}: {d.get('message')}" for d in details[:8])
    flash(text, "error")
    return redirect(url_for(endpoint, **values))  # type: ignore[return-value]


@bp.before_request
def _before() -> None:
    csrf.check()


@bp.after_request
def _headers(response: Response) -> Response:
    # Own scripts and styles only; no inline script; nothing may frame the console.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Language"] = i18n.language()
    response.vary.add("Accept-Language")
    response.vary.add("Cookie")
    return response


@bp.errorhandler(SandboxError)
def _sandbox_error(exc: SandboxError) -> tuple[str, int]:
    if exc.status >= 500:
        current_app.logger.error("console request %s failed: %s", g.get("request_id"), exc.message)
        record_failure(exc.code)
        return render_template("error.html", status=500, code="internal_error", message=""), 500
    record_denial(exc.code)
    return render_template(
        "error.html", status=exc.status, code=exc.code, message=i18n.error_text(exc.code, exc.message)
    ), exc.status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(status, "bad_request")
    page = render_template(
        "error.html", status=status, code=code, message=i18n.error_text(code, exc.description or "")
    )
    return with_allow(make_response(page, status), exc)


def _back_to() -> str | None:
    """Where to go once signed in: this page, or for a form posted by a session that had ended,
    the page the form was on (the form's own address takes only a POST: it had been a 405)."""
    if request.method in ("GET", "HEAD"):
        return here()
    referer = urlsplit(request.headers.get("Referer", ""))
    if referer.netloc == request.host and referer.path.startswith(url_for("web.index")):
        return referer.path + (f"?{referer.query}" if referer.query else "")
    return None


def here() -> str:
    """This page's path and query, for a link back to it; without a query that is not UTF-8 (the
    request is refused for it, and its error page must still render)."""
    try:
        return request.full_path.rstrip("?")
    except UnicodeDecodeError:
        return request.path


def routing_page(exc: HTTPException | SandboxError) -> Response | None:
    """The console's page, with its headers, for a refusal under its prefix that no page handled
    (no such page, not with that method, or refused before routing); ``None`` for other paths,
    which the API answers. Installed as the app's ``ROUTING_PAGES``."""
    if request.blueprint is not None or not is_console_path(request.path):
        return None
    status = exc.status if isinstance(exc, SandboxError) else (exc.code or 500)
    if status < 500:
        # The header shows who is signed in, as every page's does (no page ran signed_in here);
        # if the database cannot tell, the page is still this one, signed out.
        try:
            signed_in()
        except SQLAlchemyError:
            current_app.logger.warning("request %s: session not re-checked", g.get("request_id"))
    if isinstance(exc, SandboxError):
        return _headers(make_response(*_sandbox_error(exc)))
    return _headers(_http_error(exc))


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    return {"lang": i18n.language(), "other_lang": i18n.other_language(), "current_user": g.get("principal")}
