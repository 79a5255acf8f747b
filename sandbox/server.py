"""The production server: gunicorn running the app factory in N worker processes."""

from __future__ import annotations

import json
import logging
import multiprocessing.process
import os
from http import HTTPStatus
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication

from core.config import Settings
from core.ids import time_ordered_hex
from sandbox.api.errors import http_code
from sandbox.compute.execute import RunOptions
from sandbox.compute.runner import Limits
from sandbox.compute.worker import start_process as start_worker
from sandbox.compute.worker import stop_processes as stop_workers
from sandbox.services.checkpointer import start_process

# How long a worker waits on a silent client, per read or write of its socket. A sync worker
# serves one request at a time: a client that announces a body and stops sending it would hold
# the worker until gunicorn's 60 s timeout killed it (two such clients stopped a two-worker
# server). With the socket's timeout the read fails instead, and the request ends as a 400.
CLIENT_TIMEOUT_SECONDS = 10.0


def _client_timeout(app: Any) -> Any:
    """``app`` with its client's socket given ``CLIENT_TIMEOUT_SECONDS`` before any body is read."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        client = environ.get("gunicorn.socket")
        if client is not None:
            client.settimeout(CLIENT_TIMEOUT_SECONDS)
        return app(environ, start_response)

    return wsgi


def _write_json_error(sock: Any, status: int, reason: str, message: str) -> None:
    """Gunicorn's own refusals in the API's error shape, instead of its HTML page.

    Gunicorn answers a request it cannot parse before the app runs: a request line or headers
    over the limits (414, 431), a malformed header or chunk (400), an unknown transfer coding
    (501). Its worker writes that answer through ``gunicorn.util.write_error`` (status, reason,
    message), which this replaces in the server's processes: the only hook gunicorn offers short of
    copying its whole error handler. The message is gunicorn's, which may quote the client's
    bytes: cut short, JSON-escaped, never rendered as HTML.
    """
    # Gunicorn gives its 501 the reason "Bad Request": the status's own phrase where it has one.
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else reason
    request_id = time_ordered_hex()
    # Logged where gunicorn logs the refusal, so an id a client quotes can be found.
    logging.getLogger("gunicorn.error").warning(
        "answered %s %s before the app, request id %s", status, reason, request_id
    )
    body = json.dumps(
        {"error": {"code": http_code(status), "message": (message or reason)[:300]}}, ensure_ascii=True
    ).encode("ascii")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Request-Id: {request_id}\r\n"
        "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


class SandboxServer(BaseApplication):  # type: ignore[misc]
    """Gunicorn configured from code; each worker builds its own app (no engine crosses fork)."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("post_fork", _forget_helpers)
        gunicorn_util.write_error = _write_json_error  # before the workers fork: theirs too

    def load(self) -> Any:
        from sandbox.app import create_app

        return _client_timeout(create_app(self.settings))


def _forget_helpers(_server: Any, _worker: Any) -> None:
    """In a new gunicorn worker: forget the helper processes the arbiter started before forking.

    The fork copies multiprocessing's registry of the parent's children, and multiprocessing's
    exit handler terminates every daemonic "child" it lists: without this, each worker that exits
    (a restart, a timeout) would kill the audit checkpointer and the compute workers. The registry
    is private; no public call forgets an inherited child.
    """
    multiprocessing.process._children.clear()  # type: ignore[attr-defined]


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int = 1,
    access_log: bool = False,
    compute_workers: int = 1,
    job_seconds: float = Limits().job_wall_seconds,
) -> None:
    """Run until stopped (SIGTERM/SIGINT for a graceful stop), with ``compute_workers`` beside it
    (a private release of theirs keeps a timetable of ``job_seconds``: see
    :func:`sandbox.compute.release.schedule`)."""
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 60,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "sandbox",
        "limit_request_line": 8190,
    }
    # Beside the server: the checkpointer signs the audit log every N events or T seconds.
    checkpointer = start_process(settings)
    # And compute workers, which run queued jobs; more of them may run elsewhere (`sandbox worker`).
    run = RunOptions(limits=Limits(job_wall_seconds=job_seconds))
    compute = [start_worker(settings, run, index=index) for index in range(compute_workers)]
    owner = os.getpid()
    try:
        SandboxServer(settings, options).run()
    finally:
        # A gunicorn worker is a fork of this process and leaves through here too (its sys.exit
        # unwinds the arbiter's stack): only the process that started them stops the helpers, or
        # one worker's restart would kill the checkpointer and the compute workers.
        if os.getpid() == owner:
            stop_workers(compute)
            checkpointer.terminate()
            checkpointer.join(timeout=5)
