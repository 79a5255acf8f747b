"""Sign-in (people by password, operators by client credentials), sign-out, language switch."""

from __future__ import annotations

from flask import Response, flash, g, make_response, redirect, render_template, request, session, url_for

from authz.tokens import Unauthenticated
from core.errors import SandboxError
from sandbox.api.errors import record_denial
from sandbox.services import console as console_service
from sandbox.web import i18n
from sandbox.web.console import PUBLIC, home_for, page, runtime, safe_next, sign_in, signed_in

LANG_COOKIE_DAYS = 365


@page("/", permission=PUBLIC)
def index() -> Response:
    """The signed-in party's first page, or the sign-in page."""
    who = signed_in()
    return redirect(home_for(who.role) if who else url_for("web.login"))  # type: ignore[return-value]


@page("/login", permission=PUBLIC, methods=("GET", "POST"))
def login() -> Response | str | tuple[str, int]:
    """Staff and subjects: username and password."""
    target = request.args.get("next")
    if request.method != "POST":  # GET, and HEAD as GET (a HEAD is no sign-in attempt)
        return render_template("login.html", next=target)
    try:
        who = console_service.sign_in_person(
            runtime(),
            username=request.form.get("username", ""),
            password=request.form.get("password", ""),
            request_id=g.request_id,
        )
    except Unauthenticated as exc:
        return _failed(exc, target)
    sign_in(who)
    return redirect(safe_next(target, home_for(who.role)))  # type: ignore[return-value]


@page("/login/operator", permission=PUBLIC, methods=("POST",))
def login_operator() -> Response | tuple[str, int]:
    """Operators: client id and secret, to see their own contracts, jobs and results."""
    target = request.args.get("next")
    try:
        who = console_service.sign_in_operator(
            runtime(),
            client_id=request.form.get("client_id", ""),
            client_secret=request.form.get("client_secret", ""),
            request_id=g.request_id,
        )
    except SandboxError as exc:  # invalid credentials, or a suspended operator
        return _failed(exc, target)
    sign_in(who)
    return redirect(safe_next(target, home_for(who.role)))  # type: ignore[return-value]


def _failed(exc: SandboxError, target: str | None) -> tuple[str, int]:
    record_denial(exc.code)
    flash(i18n.error_text(exc.code, exc.message), "error")
    return render_template("login.html", next=target), exc.status


@page("/logout", permission=PUBLIC, methods=("POST",))
def logout() -> Response:
    """End the session, on the server too (a copy of the cookie no longer signs in), and clear the
    cookie; the CSRF check above still applied."""
    user = session.get("user")
    console_service.sign_out(
        runtime(), user.get("sid") if isinstance(user, dict) else None, request_id=g.request_id
    )
    session.clear()
    flash(i18n.t("flash.signed_out"), "info")
    return redirect(url_for("web.login"))  # type: ignore[return-value]


@page("/lang/<code>", permission=PUBLIC)
def set_language(code: str) -> Response:
    """Switch the language (a cookie) and go back to the page."""
    if code not in i18n.LANGUAGES:
        code = i18n.DEFAULT
    response = make_response(redirect(safe_next(request.args.get("next"), url_for("web.index"))))
    response.set_cookie(
        i18n.COOKIE,
        code,
        max_age=LANG_COOKIE_DAYS * 86400,
        samesite="Lax",
        httponly=True,
        secure=bool(runtime().settings.console_secure_cookie),
        path="/console",
    )
    return response
