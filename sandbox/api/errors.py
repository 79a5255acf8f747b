"""Every error becomes ``{"error": {"code", "message"}}`` with its status, here and nowhere else."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from audit import Actor, ActorKind, AuditAction, Outcome, Target, record_event
from core.db import holds_writer_lock, transaction
from core.errors import Invalid, SandboxError
from sandbox.engine.errors import label

log = logging.getLogger("sandbox.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    422: "invalid",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def http_code(status: int) -> str:
    """The error code of a plain HTTP refusal (no more specific code applies)."""
    return _HTTP_CODES.get(status, "error")


# At most this many problems are listed in one error: a body with 60,000 unknown keys would
# otherwise get an answer four times its own size. The message still counts them all.
MAX_LISTED_PROBLEMS = 50


# Where a front end other than the API (the console) answers the refusals of its own paths that
# no page of it handled: ``app.extensions[ROUTING_PAGES]`` holds a callable that returns its page,
# or ``None`` for a path that is not its own. Flask runs no blueprint's handler for a 404 or 405 of
# routing (no blueprint matched) nor for a refusal raised before it (the app's own checks), so
# without this a console path nobody serves answered in the API's JSON.
ROUTING_PAGES = "sandbox.routing_pages"
RoutingPage = Callable[[HTTPException | SandboxError], Response | None]


def _routing_page(exc: HTTPException | SandboxError) -> Response | None:
    page: RoutingPage | None = current_app.extensions.get(ROUTING_PAGES)
    return page(exc) if page is not None else None


def with_allow(response: Response, exc: HTTPException) -> Response:
    """``response`` with the ``Allow`` header a 405 must carry (RFC 9110, section 15.5.6)."""
    methods = getattr(exc, "valid_methods", None)
    if exc.code == 405 and methods:
        response.headers["Allow"] = ", ".join(sorted(methods))
    return response


def error_response(status: int, code: str, message: str, details: Any = None) -> Response:
    """The API's error shape."""
    body: dict[str, Any] = {"code": code, "message": message}
    if isinstance(details, list) and len(details) > MAX_LISTED_PROBLEMS:
        rest = len(details) - MAX_LISTED_PROBLEMS
        more = {"field": "(more)", "message": f"and {rest} more problem(s)"}
        details = [*details[:MAX_LISTED_PROBLEMS], more]
    if details is not None:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    return response


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as ``[{field, message}]``, without echoing the rejected input."""
    out = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = ".".join(label(p) for p in error["loc"]) or "(body)"  # a client's key, shortened
        message = "unknown field" if error["type"] == "extra_forbidden" else str(error["msg"])
        out.append({"field": loc, "message": message})
    return out


def record_denial(code: str) -> None:
    """A refused request is itself an audit event (outcome denied, with its code and request id).

    Written in a transaction of its own: the refused action's transaction has rolled back.
    """
    _record_request(AuditAction.REQUEST_DENIED, Outcome.DENIED, code)


def record_failure(code: str, error: BaseException | None = None) -> None:
    """A request that failed on the service's side (a 500) is an audit event too (outcome failed).

    At best effort, and never raising: the answer is an error already. Not tried when the database
    is what failed (locked, unreachable, a connection lost), nor while this thread still holds
    the SQLite writer lock: the write would only wait out its timeouts (30 s) in front of the
    answer, holding up every other writer meanwhile.
    """
    failed_database = isinstance(error, OperationalError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )
    if failed_database or holds_writer_lock():
        log.error("request %s failed with the database: no audit event for it", g.get("request_id"))
        return
    try:
        _record_request(AuditAction.REQUEST_FAILED, Outcome.FAILED, code)
    except Exception:
        log.exception("could not record the failure of request %s", g.get("request_id"))


def _record_request(action: AuditAction, outcome: Outcome, code: str) -> None:
    """An event for the request that ended badly: its caller, endpoint, code and request id."""
    runtime = current_app.extensions.get("sandbox")
    if runtime is None:
        return
    principal = g.get("principal")
    actor = principal.actor if principal is not None else Actor(ActorKind.ANONYMOUS, None)
    try:
        with transaction(runtime.sessions) as session:
            record_event(
                session,
                action=action,
                actor=actor,
                outcome=outcome,
                error_code=code,
                request_id=g.get("request_id"),
                target=Target("endpoint", request.endpoint or request.path[:128]),
                details={"method": request.method, "path": request.path[:256]},
                clock=runtime.clock,
            )
    except SQLAlchemyError:
        log.exception("could not record the end (%s) of request %s", code, g.get("request_id"))


def register(app: Flask) -> None:
    """Install the handlers on ``app``."""

    @app.errorhandler(SandboxError)
    def _sandbox_error(exc: SandboxError) -> Response:
        if (page := _routing_page(exc)) is not None:
            return page
        if exc.status >= 500:
            log.error("request %s failed: %s", g.get("request_id"), exc.message)
            record_failure(exc.code)
            # A 503's message is written for the client (what failed, what to do); a 500's may
            # name the server's files and settings, so it stays in the log.
            shown = exc.message if exc.status == 503 else "the service is misconfigured; see its log"
            return error_response(exc.status, exc.code, shown)
        record_denial(exc.code)
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        retry_after = getattr(exc, "retry_after", None)  # a limit that renews (RFC 9110, 10.2.3)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        challenge = getattr(exc, "www_authenticate", None)  # how to authenticate (RFC 9110, 11.6.1)
        if challenge is not None:
            response.headers["WWW-Authenticate"] = challenge
        return response

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> Response:
        details = validation_details(exc)
        record_denial(Invalid.code)
        return error_response(
            Invalid.status, Invalid.code, f"{len(details)} problem(s) in the request", details
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if (page := _routing_page(exc)) is not None:
            return page
        status = exc.code or 500
        code = http_code(status)
        messages = {
            404: "no such resource",
            405: "method not allowed on this resource",
            413: "request body too large",
        }
        message = messages.get(status, exc.description or exc.name)
        return with_allow(error_response(status, code, message), exc)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # The trace goes to the log, keyed by request id; the client gets the id only.
        log.exception("unhandled error in request %s", g.get("request_id"))
        record_failure("internal_error", exc)
        return error_response(
            500,
            "internal_error",
            f"internal error; quote request id {g.get('request_id')} to the operator of this service",
        )
