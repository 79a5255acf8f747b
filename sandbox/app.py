"""The Flask application factory."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from flask import Flask, Response, g, request

from audit import Actor, ActorKind
from core.config import Settings, load_settings
from core.db import transaction
from core.errors import BadRequest, TooLarge
from core.ids import time_ordered_hex
from sandbox.api import audit as audit_api
from sandbox.api import auth, authorizations, catalog, codes, consents, errors, identity, meta, operators
from sandbox.api import jobs as jobs_api
from sandbox.api import programs as programs_api
from sandbox.api.parsing import body_bytes, single_values
from sandbox.runtime import Runtime, open_runtime, sync_policy
from sandbox.web import init_app as init_console

_REQUEST_ID = re.compile(r"\A[A-Za-z0-9._:-]{1,128}\Z")  # \Z: "$" would let a final newline in
MAX_BODY_BYTES = 1024 * 1024


def create_app(
    settings: Settings | None = None, *, runtime: Runtime | None = None, config: dict[str, Any] | None = None
) -> Flask:
    """Build the app on ``runtime`` (or open one from ``settings``, or from the environment).

    Opening validates the policy catalog and refuses to start on a bad one, and records the
    catalog as a new policy version (an audited event) when it changed since the last start.
    """
    if runtime is None:
        runtime = open_runtime(settings or load_settings())
        with transaction(runtime.sessions) as session:
            sync_policy(
                session, runtime.catalog, actor=Actor(ActorKind.SYSTEM, "server"), clock=runtime.clock
            )
    app = Flask(__name__)
    # A path with "//" would be redirected (308, an HTML page) to the merged path, at an address
    # built from the client's Host header; it is an unknown path instead, a JSON 404.
    app.url_map.merge_slashes = False
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # Chinese names round-trip as text
    if config:
        app.config.update(config)
    app.extensions["sandbox"] = runtime
    errors.register(app)
    auth.init_app(app)
    _request_ids(app)
    for blueprint in (
        meta.bp,
        identity.bp,
        operators.bp,
        codes.bp,
        catalog.bp,
        authorizations.bp,
        consents.bp,
        audit_api.bp,
    ):
        app.register_blueprint(blueprint)
    app.register_blueprint(jobs_api.bp)
    app.register_blueprint(programs_api.bp)
    init_console(app, runtime)
    logging.getLogger("sandbox").setLevel(logging.INFO)
    return app


_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_CONSOLE = "/console"
# The console's fields that take several values (a consent's templates, ticked); any other given
# twice is refused: which one counts would be a guess.
_MULTI_FIELDS = frozenset({"templates"})


def _request_ids(app: Flask) -> None:
    """Every response carries ``X-Request-Id``: the client's when well-formed, else a new one."""

    @app.before_request
    def _assign() -> None:
        given = request.headers.get("X-Request-Id", "")
        g.request_id = given if _REQUEST_ID.match(given) else time_ordered_hex()
        # PostgreSQL cannot store NUL in text (a console form field with one was a 500 there), so it is
        # refused here for every backend alike, in the path, the query and any form field.
        # Only what is there is parsed: building an empty query and form for every JSON request
        # cost ~28 µs, 2% of a verification (Werkzeug parses a form from these two types only).
        # A body over the limit is refused here, before routing or authentication, whatever its
        # type; as a refusal of the service's own (an audit event), like a streamed body's.
        limit = request.max_content_length
        if limit is not None and request.content_length is not None and request.content_length > limit:
            raise TooLarge(f"the body is over {limit} bytes")
        fields = []
        if request.query_string:
            try:
                # Werkzeug decodes percent-escapes that are no UTF-8 (%ff) to U+FFFD, quietly: a
                # name or value would be read as another than the one sent.
                unquote_to_bytes(request.query_string).decode("utf-8")
                fields.append(request.args)
            except UnicodeDecodeError:  # a raw non-UTF-8 byte in the query (a 500 until now)
                raise BadRequest("the query string is not UTF-8") from None
        if request.mimetype in _FORM_TYPES:
            body = body_bytes()  # read here, where a body that cannot be read is a clear 400
            if request.mimetype == "application/x-www-form-urlencoded":
                try:  # as for the query: Werkzeug kept an escape that is no UTF-8 as literal text
                    unquote_to_bytes(body.replace(b"+", b" ")).decode("utf-8")
                except UnicodeDecodeError:
                    raise BadRequest("the form is not UTF-8") from None
            fields.append(request.form)
        if request.path.startswith(_CONSOLE):  # the API's views check their own
            for found in fields:
                single_values(found, "the field", repeatable=_MULTI_FIELDS)
        if "\x00" in request.path or any(
            "\x00" in k or "\x00" in v for found in fields for k, v in found.items(multi=True)
        ):
            raise BadRequest("NUL characters are not allowed in the path, query or form fields")

    @app.after_request
    def _stamp(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id") or time_ordered_hex()
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        return response
