"""`sandbox serve`: a gunicorn worker that exits leaves the server's helper processes running.

Gunicorn forks its workers from the process that started the checkpointer and the compute
workers; a worker that exits (a restart, a timeout) unwinds through the same code. Only the
process that started the helpers may stop them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from http import HTTPStatus
from pathlib import Path

from audit import Actor, ActorKind
from core.config import load_settings
from sandbox.runtime import init_home
from tests.conftest import POLICIES


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> dict[int, str]:
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat[1]) == pid and stat[0] != "Z":
            found[int(entry)] = cmdline
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_client_that_stops_sending_its_body_gets_a_400_and_frees_the_worker(tmp_path: Path) -> None:
    """It announces 100 bytes and sends 30 (to the token endpoint, which reads the body first).
    Without the socket's timeout the only worker waits until gunicorn kills it (60 s), and the
    client gets gunicorn's HTML 500."""
    server, port = _serve(tmp_path, workers=1)
    try:
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(
                b"POST /v1/oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"grant_type": "client_'
            )
            client.settimeout(50)  # well before gunicorn's 60 s kill
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), answer
        assert json.loads(body)["error"]["code"] == "bad_request", answer
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200  # the same, only, worker serves on
    finally:
        server.terminate()
        server.wait(timeout=30)


def _raw(port: int, request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Send ``request`` as is; the status line, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status.encode(), headers, body


def test_requests_gunicorn_refuses_before_the_app_get_the_apis_json_errors(tmp_path: Path) -> None:
    """Too long a request line or header, a malformed line, an unknown transfer coding: gunicorn
    answers these itself, and used to answer with an HTML page."""
    server, port = _serve(tmp_path, workers=1)
    try:
        cases = [
            (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n", 431,
             "headers_too_large"),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
             + b"\r\n", 431, "headers_too_large"),
            (b"GET /<script>alert(1)</script> HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request"),
            (b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: frobnicate\r\n\r\n", 501,
             "not_implemented"),
        ]  # fmt: skip
        for request, status, code in cases:
            line, headers, body = _raw(port, request)
            phrase = HTTPStatus(status).phrase.encode()  # a walkthrough saw "501 Bad Request"
            assert line.rstrip() == b"HTTP/1.1 %d %s" % (status, phrase), (line, body)
            assert headers["content-type"] == "application/json", headers
            assert headers["x-content-type-options"] == "nosniff" and len(headers["x-request-id"]) == 32
            error = json.loads(body)["error"]
            assert error["code"] == code and error["message"], error
            assert "<" not in body.decode("ascii").replace("\\u003c", ""), body  # escaped, never markup
            assert headers["x-request-id"] in (tmp_path / "server.log").read_text()  # findable
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200  # the same, only, worker serves on
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_chunked_body_whose_framing_is_malformed_is_a_400_and_an_audit_event(tmp_path: Path) -> None:
    """Found by a sweep: gunicorn raises its own exception (InvalidChunkSize and the like) from the
    body's stream when the app reads it, and each was a 500, on the token endpoint too, which anyone
    may call. A form is read before routing, JSON by the view: both are covered."""
    from sqlalchemy import func, select

    from audit import AuditEvent
    from sandbox.runtime import open_runtime

    server, port = _serve(tmp_path, workers=1)
    bodies = [
        b"zz\r\n{}\r\n0\r\n\r\n",  # a chunk size that is no hexadecimal number
        b"2\r\n{}xx\r\n0\r\n\r\n",  # more data than the chunk's size
        b"2;\x01\x02\r\n{}\r\n0\r\n\r\n",  # control bytes in a chunk extension
        b"2\r\n{}\r\n0\r\nbad trailer line\r\n\r\n",  # a trailer that is no header
    ]
    try:
        # The token endpoint, which anyone may call, reads both kinds of body.
        for path, kind in (
            ("/v1/oauth/token", "application/json"),
            ("/v1/oauth/token", "application/x-www-form-urlencoded"),
        ):
            for body in bodies:
                request = (
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n"
                ).encode() + body
                line, headers, answer = _raw(port, request)
                assert line.startswith(b"HTTP/1.1 400 "), (path, kind, body, line, answer)
                assert headers["content-type"] == "application/json"
                error = json.loads(answer)["error"]
                assert error["code"] == "bad_request" and "chunked" in error["message"], error
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200  # the same, only, worker serves on
    finally:
        server.terminate()
        server.wait(timeout=30)
    runtime = open_runtime(
        load_settings({"SANDBOX_HOME": str(tmp_path / "home"), "SANDBOX_POLICIES": str(POLICIES)})
    )
    try:
        with runtime.sessions() as session:
            events = session.execute(
                select(AuditEvent.outcome, func.count())
                .where(AuditEvent.action == "request.denied", AuditEvent.error_code == "bad_request")
                .group_by(AuditEvent.outcome)
            ).all()
            failed = session.execute(
                select(func.count()).where(AuditEvent.action == "request.failed")
            ).scalar()
    finally:
        runtime.close()
    assert events == [("denied", 8)] and failed == 0


def _serve(tmp_path: Path, *, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    """`sandbox serve` on a new home and a free port, once it answers its health check."""
    env = {"SANDBOX_HOME": str(tmp_path / "home"), "SANDBOX_POLICIES": str(POLICIES)}
    init_home(load_settings(env), actor=Actor(ActorKind.SYSTEM, "test"))
    port = _free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "sandbox.cli", "serve", "--port", str(port), "--workers", str(workers)],
            env={**clean, **env}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise AssertionError(log.read_text())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return server, port
        except OSError:
            time.sleep(0.2)


def test_a_worker_exiting_leaves_the_checkpointer_and_compute_workers_running(tmp_path: Path) -> None:
    server, port = _serve(tmp_path, workers=2)
    try:
        children = _children(server.pid)
        helpers = [pid for pid, cmd in children.items() if "multiprocessing" in cmd]
        workers = [pid for pid in children if pid not in helpers]
        assert len(helpers) >= 2 and len(workers) == 2, children  # checkpointer, compute worker(s)
        os.kill(workers[0], signal.SIGTERM)  # gunicorn starts another in its place
        deadline = time.monotonic() + 30
        while _alive(workers[0]) or len(_children(server.pid)) < len(children):
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.2)
        time.sleep(1.0)
        assert all(_alive(pid) for pid in helpers), (tmp_path / "server.log").read_text()
        assert "can only join a child process" not in (tmp_path / "server.log").read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        server.terminate()
        server.wait(timeout=30)
        # Every worker left cleanly, the one killed above and the ones stopped with the server: a
        # worker forked with DuckDB's default connection in it used to crash on its way out.
        log = (tmp_path / "server.log").read_text()
        assert "SIGSEGV" not in log and "was sent" not in log, log
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_on_a_home_that_was_never_initialized_says_so_in_one_line(tmp_path: Path) -> None:
    """Found in a sweep: the refusal came from the spawned check as a Python traceback."""
    for home in (tmp_path / "empty", tmp_path / "missing"):
        if home.name == "empty":
            home.mkdir()
        env = {**os.environ, "SANDBOX_HOME": str(home), "SANDBOX_POLICIES": str(POLICIES)}
        done = subprocess.run(
            [sys.executable, "-m", "sandbox.cli", "serve", "--port", "1", "--no-workers"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.startswith("error: "), done.stderr
