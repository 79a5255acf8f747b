"""POST /v1/verify under load on a real multi-worker server, against a bare endpoint of that server.

    python bench/verify.py [--workers 2] [--connections 64] [--seconds 10] [--enterprises 20000]

One home (embedded: SQLite control database, SQLite lookup store), synthetic data, an operator
with a contract for ``tax_paid_at_least`` and the consent of 500 firms. The server is gunicorn
running the real app with one extra route, ``GET /bench/bare``, which returns a constant JSON body
through the same app (request ids, error handlers, headers), so both endpoints pay the same HTTP
and framework cost and the ratio isolates what a verification adds: token check, contract,
consent, quota, the indexed lookup, the audit event, the access record, the Ed25519 seal and the
commit. Load: one asyncio client process, N concurrent connections, one request per connection
(gunicorn's sync workers close after each response), rounds alternating bare and verify.

Besides req/s and latency it prints the CPU the workers and the client spent per request (from
/proc): this machine's speed moves from minute to minute, and CPU per request moves far less
than req/s does, so it shows where a change went when the ratio is within the noise.

A third route, ``POST /bench/minimal``, is the floor the issue describes: "a minimal gunicorn+Flask
app doing JWT check, SQLite lookup, chained audit insert and Ed25519 signature", on the same
server and data. It checks the token as /v1/verify does (the signature once per process, then
remembered, so the floor pays no check the real path skips), reads the subject's tax with
one bound sqlite3 statement on the lookup store, appends a hash-chained row to its own WAL SQLite
file in one ``BEGIN IMMEDIATE`` transaction, and seals the answer with the bureau's key through
PyJWT. It has no contract, consent, quota, access record, Merkle log or stored seal: what it
reaches shows how much of the gap any verification must pay on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audit import Actor, ActorKind  # noqa: E402
from core.config import Settings, load_settings  # noqa: E402
from core.db import transaction  # noqa: E402

SYSTEM = Actor(ActorKind.SYSTEM, "bench")
SUBJECTS = 500


def _setup(settings: Settings, enterprises: int) -> tuple[str, str, str, list[str]]:
    """Home, data, operator, credentials, contract and consents; returns ids, secret, subjects."""
    from sqlalchemy import select

    from authz import consent, contracts
    from operators import services as operators
    from sandbox.data.stores import dataset_table
    from sandbox.runtime import init_home, open_runtime
    from sandbox.services.data import synthesize_recorded

    init_home(settings, actor=SYSTEM)
    runtime = open_runtime(settings, read_only_data=False)
    try:
        synthesize_recorded(runtime, enterprises=enterprises, persons=100, seed=1, actor=SYSTEM)
        table = dataset_table(runtime.catalog.dataset("enterprise_tax"))
        with runtime.stores.lookup.connect() as conn:
            query = select(table.c.credit_code).where(table.c.year == 2024).limit(SUBJECTS)
            subjects = [row[0] for row in conn.execute(query)]
        with transaction(runtime.sessions) as session:
            operator = operators.register_operator(
                session, name="压测运营方", credit_code="91370102MA3C5XXX06", license_no="B-1",
                qualifications=[], actor=SYSTEM, request_id=None,
            )  # fmt: skip
            credential, secret = operators.issue_credentials(
                session, operator.id, actor=SYSTEM, request_id=None
            )
            contract = contracts.request_authorization(
                session, runtime.catalog, operator_id=operator.id, purpose="压测", actor=SYSTEM,
                request_id=None, datasets={"enterprise_tax": ["credit_code", "year", "annual_tax"]},
                operations=["verify:tax_paid_at_least"],
                limits={"valid_days": 30, "daily_quota": 100_000, "epsilon_total": 1.0,
                        "epsilon_per_query": 0.5},
            )  # fmt: skip
            contracts.approve(
                session, runtime.catalog, contract.id, reviewer_id="bench", comment=None, actor=SYSTEM,
                request_id=None,
            )  # fmt: skip
            for subject in subjects:
                consent.grant_consent(
                    session, runtime.catalog, subject_id=subject, operator_id=operator.id, purpose="贷款",
                    templates=["tax_paid_at_least"], valid_days=30, actor=SYSTEM, request_id=None,
                )  # fmt: skip
            return contract.id, credential.client_id, secret, subjects
    finally:
        runtime.close()


def serve(port: int, workers: int) -> None:
    """The server process: the real app plus a bare route, under gunicorn sync workers."""
    from flask import Response, jsonify
    from gunicorn.app.base import BaseApplication

    from sandbox.app import create_app

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {
                "bind": f"127.0.0.1:{port}", "workers": workers, "worker_class": "sync", "backlog": 2048,
                "accesslog": None, "errorlog": "-", "loglevel": "warning", "timeout": 120,
            }.items():  # fmt: skip
                self.cfg.set(key, value)

        def load(self) -> Any:
            app = create_app(load_settings())

            @app.get("/bench/bare")
            def bare() -> Response:
                return jsonify({"ok": True})

            app.add_url_rule("/bench/minimal", "minimal", _minimal_view(app), methods=["POST"])
            return app

    Server().run()


MINIMAL_LOG = "{home}/minimal-log.sqlite"


def _make_minimal_log(settings: Settings) -> None:
    """The minimal app's hash-chained log, made once before the workers start (no race to make it)."""
    import sqlite3

    with closing(sqlite3.connect(MINIMAL_LOG.format(home=settings.home), isolation_level=None)) as log:
        log.execute("PRAGMA journal_mode=WAL")
        log.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY, entry TEXT, hash BLOB)")


def _minimal_view(app: Any) -> Any:
    """The issue's minimal verification app as one view (see the module's docstring)."""
    import hashlib
    import sqlite3

    import jwt
    from flask import Response, jsonify, request

    from core.keyring import active_key
    from sandbox.api.auth import key_cache, token_memo

    runtime = app.extensions["sandbox"]
    opened: dict[str, Any] = {}  # per worker, opened at its first request (after the fork)

    def minimal() -> Response:
        if not opened:  # the log file was made before the server started (_make_minimal_log)
            log = sqlite3.connect(
                MINIMAL_LOG.format(home=runtime.settings.home), isolation_level=None, timeout=30
            )
            log.execute("PRAGMA synchronous=NORMAL")
            with runtime.sessions() as session:
                key = active_key(session, runtime.settings.keys_dir)
            data = sqlite3.connect(runtime.stores.lookup.url.database, isolation_level=None)
            opened.update(data=data, log=log, key=key)
        # The token checked as /v1/verify checks it (its signature once per process, then remembered).
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        claims = token_memo().verify(bearer, key_cache().get(runtime))
        body = request.get_json()
        found = (
            opened["data"]
            .execute(
                "SELECT sum(annual_tax) FROM enterprise_tax WHERE credit_code = ? AND year = ?",
                (body["subject"], body["params"]["year"]),
            )
            .fetchone()
        )
        answer = {
            "subject": body["subject"], "operator": claims.subject,
            "result": (found[0] or 0) >= body["params"]["threshold"],
        }  # fmt: skip
        entry = json.dumps(answer, sort_keys=True)
        log = opened["log"]
        log.execute("BEGIN IMMEDIATE")
        last = log.execute("SELECT hash FROM log ORDER BY seq DESC LIMIT 1").fetchone()
        chained = hashlib.sha256((last[0] if last else b"") + entry.encode()).digest()
        seq = log.execute("INSERT INTO log (entry, hash) VALUES (?, ?)", (entry, chained)).lastrowid
        log.execute("COMMIT")
        key = opened["key"]
        sealed = jwt.encode(answer, key.private, algorithm="EdDSA", headers={"kid": key.kid})
        return jsonify({**answer, "seq": seq, "seal": sealed})

    return minimal


async def _one(port: int, request: bytes, latencies: list[float], statuses: dict[int, int]) -> None:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    latencies.append(time.perf_counter() - started)
    status = int(data[9:12]) if data.startswith(b"HTTP/1.") else 0
    statuses[status] = statuses.get(status, 0) + 1


async def _load(port: int, requests: list[bytes], connections: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await _one(port, requests[next(counter) % len(requests)], latencies, statuses)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        "statuses": statuses,
    }


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (Linux /proc; 0 where it cannot be read)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _workers(server: int) -> list[int]:
    """The gunicorn workers: the server process's children."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{server}/task"):
            found += [int(pid) for pid in Path(f"/proc/{server}/task/{task}/children").read_text().split()]
    except OSError:
        pass
    return found


def _measured(
    port: int, requests: list[bytes], connections: int, seconds: float, workers: list[int]
) -> dict[str, Any]:
    """One round of load, with the CPU the workers and this client spent per request."""
    before_workers, before_client = _cpu_seconds(workers), time.process_time()
    result = asyncio.run(_load(port, requests, connections, seconds))
    served = max(1.0, result["rps"] * seconds)
    result["worker_cpu_ms"] = (_cpu_seconds(workers) - before_workers) / served * 1000
    result["client_cpu_ms"] = (time.process_time() - before_client) / served * 1000
    return result


def _http(method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


def _wait(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server did not start")


def _token(port: int, client_id: str, secret: str) -> str:
    body = json.dumps({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/oauth/token",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return str(json.loads(response.read())["access_token"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--enterprises", type=int, default=20_000)
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.workers)
        return
    with tempfile.TemporaryDirectory() as home:
        env = {"SANDBOX_HOME": home}
        settings = load_settings(env)
        contract, client_id, secret, subjects = _setup(settings, args.enterprises)
        _make_minimal_log(settings)
        child_env = {**{k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}, **env}
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--port", str(args.port), "--workers", str(args.workers)],
            env=child_env,
        )
        try:
            _wait(args.port)
            _run(args, contract, _token(args.port, client_id, secret), subjects, _workers(server.pid))
        finally:
            server.terminate()
            server.wait(timeout=30)


def _run(
    args: argparse.Namespace, contract: str, token: str, subjects: list[str], workers: list[int]
) -> None:
    bare = [_http("GET", "/bench/bare", b"", {})]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    verify = [
        _http("POST", "/v1/verify", json.dumps({
            "authorization_id": contract, "template": "tax_paid_at_least", "subject": subject,
            "params": {"threshold": 100_000, "year": 2024},
        }).encode(), headers)
        for subject in subjects
    ]  # fmt: skip
    minimal = [request.replace(b"POST /v1/verify ", b"POST /bench/minimal ", 1) for request in verify]
    asyncio.run(_load(args.port, bare + verify + minimal, args.connections, 3.0))  # warm every path
    results: dict[str, list[dict[str, Any]]] = {"bare": [], "verify": [], "minimal": []}
    for _ in range(args.rounds):
        for name, requests in (("bare", bare), ("verify", verify), ("minimal", minimal)):
            results[name].append(_measured(args.port, requests, args.connections, args.seconds, workers))
    print(
        f"{args.workers} sync workers, {args.connections} connections, "
        f"{args.rounds} x {args.seconds:.0f} s per endpoint, {os.cpu_count()} cores shared with the client"
    )
    summary = {}
    for name, runs in results.items():
        rps = statistics.mean(r["rps"] for r in runs)
        p99 = statistics.mean(r["p99"] for r in runs)
        p50 = statistics.mean(r["p50"] for r in runs)
        codes: dict[int, int] = {}
        for run in runs:
            for code, count in run["statuses"].items():
                codes[code] = codes.get(code, 0) + count
        summary[name] = (rps, p99)
        worker_cpu = statistics.mean(r["worker_cpu_ms"] for r in runs)
        client_cpu = statistics.mean(r["client_cpu_ms"] for r in runs)
        print(
            f"  {name:<7} {rps:8,.0f} req/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   "
            f"CPU per request: workers {worker_cpu:.2f} ms, client {client_cpu:.2f} ms   statuses {codes}"
        )
    (bare_rps, bare_p99), (verify_rps, verify_p99) = summary["bare"], summary["verify"]
    minimal_rps, minimal_p99 = summary["minimal"]
    print(f"verify / bare req/s  {verify_rps / bare_rps:6.2f}   (goal >= 0.60)")
    print(f"verify / bare p99    {verify_p99 / bare_p99:6.2f}x  (goal <= 1.50x)")
    floor = f"req/s {minimal_rps / bare_rps:.2f}, p99 {minimal_p99 / bare_p99:.2f}x"
    print(f"the issue's minimal app / bare: {floor}   (what a verification pays at least)")


if __name__ == "__main__":
    main()
