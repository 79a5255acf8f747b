"""``sandbox demo``: a fresh home, synthetic data, and the whole path walked against a real server.

Each later capability adds its steps here, so the demo always shows everything the product does.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from audit import Actor, ActorKind
from audit.models import AuditEvent
from core.config import Settings, load_settings
from core.errors import ConfigurationError
from sandbox.data.load import LoadRefused
from sandbox.data.stores import dataset_table, row_counts
from sandbox.runtime import Runtime, init_home, open_runtime
from sandbox.services.data import load_recorded, synthesize_recorded

Echo = Callable[[str], None]
MARKER = ".sandbox-demo-home"
DEMO_ACTOR = Actor(ActorKind.SYSTEM, "demo")


@dataclass
class DemoContext:
    """What the steps share."""

    home: Path
    settings: Settings
    echo: Echo
    enterprises: int
    persons: int
    base_url: str = ""
    server: subprocess.Popen[bytes] | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def fresh_home(home: Path) -> None:
    """Empty ``home`` for the demo; refuse a folder the demo did not make."""
    home = home.resolve()
    if home.exists():
        if not (home / MARKER).exists() and any(home.iterdir()):
            raise ConfigurationError(f"{home} exists and is not a demo home; pass another --home")
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text("made by `sandbox demo`; deleted and remade on every run\n", encoding="utf-8")


def run_demo(home: Path, *, enterprises: int, persons: int, echo: Echo) -> bool:
    """Run every step; ``True`` when all of them succeeded."""
    from sandbox.demo_compute import step_compute
    from sandbox.demo_jobs import step_aggregate, step_verify  # they use this module's helpers

    fresh_home(home)
    # Embedded defaults in the demo home only: never the URLs of a real deployment.
    settings = load_settings({"SANDBOX_HOME": str(home.resolve())})
    ctx = DemoContext(
        home=home.resolve(), settings=settings, echo=echo, enterprises=enterprises, persons=persons
    )
    steps: list[tuple[str, Callable[[DemoContext], None]]] = [
        ("Initialize a home: control database, data stores, signing key", step_init),
        ("Synthesize government data", step_synth),
        ("Load a data file: a bad one is refused, a good one replaces the dataset", step_load),
        ("Start the API server (gunicorn, 2 workers)", step_start_server),
        ("Call the API", step_api),
        ("Identities: staff and subject accounts, an operator and its credentials", step_identities),
        ("A contract: the operator requests, a reviewer approves, the firm consents", step_contract),
        ("Verifications: sealed, refused without consent or mistyped, a seal checked offline", step_verify),
        ("An aggregate under differential privacy: suppressed, noised, charged once", step_aggregate),
        ("Compute: a program submitted, approved, run and released", step_compute),
        ("Audit proofs: a checkpoint and the sealed result's inclusion proof, checked offline", step_proofs),
        ("Read the audit log", step_audit),
    ]
    try:
        for number, (title, step) in enumerate(steps, start=1):
            echo("")
            echo(f"── {number}. {title}")
            step(ctx)
    finally:
        stop_server(ctx)
    echo("")
    echo(f"Demo finished. Home: {ctx.home}  (SANDBOX_HOME={ctx.home} sandbox serve  to explore it:")
    echo(
        "  the console at http://127.0.0.1:8000/console, as admin, reviewer, auditor or firm,"
        f" password {DEMO_PASSWORD})"
    )
    return True


def step_init(ctx: DemoContext) -> None:
    """`sandbox init`."""
    report = init_home(ctx.settings, actor=DEMO_ACTOR)
    ctx.echo(f"   $ SANDBOX_HOME={ctx.home} sandbox init")
    ctx.echo(f"   control database  {ctx.settings.database_url}")
    ctx.echo(f"   lookup store      {ctx.settings.data_lookup_url}   (SQLite: indexed point lookups)")
    ctx.echo(f"   scan store        {ctx.settings.data_url}   (DuckDB: columnar scans)")
    ctx.echo(f"   signing key       Ed25519, kid {report.active_kid}")


def step_synth(ctx: DemoContext) -> None:
    """`sandbox data synth`."""
    ctx.echo(f"   $ sandbox data synth --enterprises {ctx.enterprises} --persons {ctx.persons} --seed 7")
    runtime = open_runtime(ctx.settings, read_only_data=False)
    try:
        started = time.perf_counter()
        rows = synthesize_recorded(
            runtime, enterprises=ctx.enterprises, persons=ctx.persons, seed=7, actor=DEMO_ACTOR
        )
        seconds = time.perf_counter() - started
        for name, count in sorted(rows.items()):
            ctx.echo(f"   {name:<24}{count:>10,} rows")
        ctx.echo(f"   {sum(rows.values()):,} rows in {seconds:.1f} s, identical for the same seed")
        table = dataset_table(runtime.catalog.dataset("enterprises"))
        with runtime.stores.lookup.connect() as conn:
            sample = conn.execute(select(table.c.credit_code, table.c.name, table.c.district).limit(3)).all()
        ctx.echo("   a few enterprises (the bureau's own view; operators never see rows):")
        for code, name, district in sample:
            ctx.echo(f"     {code}  {name}  {district}")
        ctx.notes["credit_codes"] = [row[0] for row in sample]
    finally:
        runtime.close()


def _write_public_credit(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _current_rows(runtime: Runtime, name: str) -> list[dict[str, Any]]:
    """The bureau's own rows of a dataset, as CSV-ready text (the admin's view, never an operator's)."""
    table = dataset_table(runtime.catalog.dataset(name))
    with runtime.stores.lookup.connect() as conn:
        result = conn.execute(select(table).order_by(table.c[runtime.catalog.dataset(name).key]))
        rows = [dict(row._mapping) for row in result]
    for row in rows:
        for key, value in row.items():
            row[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return rows


def step_load(ctx: DemoContext) -> None:
    """`sandbox data load`, refused then accepted."""
    runtime = open_runtime(ctx.settings, read_only_data=False)
    try:
        codes = ctx.notes["credit_codes"]
        bad = ctx.home / "public_credit_bad.csv"
        _write_public_credit(
            bad,
            [
                {
                    "credit_code": codes[0],
                    "district": "历下区",
                    "rating": "A",
                    "dishonest_debtor": "false",
                    "dishonest_cases": "zero",
                    "updated_date": "2024-02-30",
                },
                {
                    "credit_code": "",
                    "district": "历下区",
                    "rating": "B",
                    "dishonest_debtor": "maybe",
                    "dishonest_cases": "0",
                    "updated_date": "2024-03-01",
                },
            ],
        )
        before = row_counts(runtime.stores, runtime.catalog)["public_credit"]
        ctx.echo(f"   $ sandbox data load public_credit {bad.name}")
        try:
            load_recorded(runtime, "public_credit", bad, actor=DEMO_ACTOR)
        except LoadRefused as refused:
            ctx.echo(f"   refused: {refused.message}")
            for problem in refused.problems:
                ctx.echo(f"     - row {problem.row}, column {problem.column}: {problem.message}")
        after = row_counts(runtime.stores, runtime.catalog)["public_credit"]
        ctx.echo(f"   public_credit still holds {after:,} rows (was {before:,}): nothing was loaded")
        good = ctx.home / "public_credit_2024q4.csv"
        rows = _current_rows(runtime, "public_credit")
        cleared = [row for row in rows if row["dishonest_debtor"] == "true"][:2]
        for row in cleared:  # a court lifted these listings; the credit office sends the full table
            row.update(dishonest_debtor="false", dishonest_cases="0", updated_date="2024-12-31")
        _write_public_credit(good, rows)
        ctx.echo(
            f"   $ sandbox data load public_credit {good.name}"
            f"   (the full table; {len(cleared)} listings lifted)"
        )
        result = load_recorded(runtime, "public_credit", good, actor=DEMO_ACTOR)
        ctx.echo(
            f"   loaded {result.rows:,} rows (sha256 {result.sha256[:16]}…), replacing the dataset whole"
        )
    finally:
        runtime.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def step_start_server(ctx: DemoContext) -> None:
    """`sandbox serve` in a child process, waited for until /healthz answers."""
    port = _free_port()
    env = cli_env(ctx)
    log = (ctx.home / "server.log").open("wb")
    ctx.server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "sandbox.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    ctx.base_url = f"http://127.0.0.1:{port}"
    ctx.echo(f"   $ sandbox serve --port {port} --workers 2      (log: {ctx.home / 'server.log'})")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ctx.server.poll() is not None:
            raise ConfigurationError(
                f"the server exited with {ctx.server.returncode}; see {ctx.home / 'server.log'}"
            )
        try:
            status, _, _ = http(ctx, "GET", "/healthz")
            if status == 200:
                ctx.echo(f"   up at {ctx.base_url}")
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise ConfigurationError("the server did not answer /healthz within 30 s")


def stop_server(ctx: DemoContext) -> None:
    """Stop the child server gracefully."""
    if ctx.server is not None and ctx.server.poll() is None:
        ctx.server.terminate()
        try:
            ctx.server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            ctx.server.kill()
            ctx.server.wait()


def http(
    ctx: DemoContext, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """One request to the demo server: status, headers, parsed JSON body."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - the demo's own server on loopback
        ctx.base_url + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def step_api(ctx: DemoContext) -> None:
    """Health, keys, the OpenAPI document and the error shape."""
    status, headers, body = http(ctx, "GET", "/healthz", headers={"X-Request-Id": "demo-health-1"})
    ctx.echo(f"   GET /healthz → {status} {json.dumps(body, ensure_ascii=False)}")
    ctx.echo(f"     X-Request-Id: {headers.get('X-Request-Id')} (echoed from the request)")
    status, _, body = http(ctx, "GET", "/.well-known/jwks.json")
    ctx.echo(f"   GET /.well-known/jwks.json → {status}, keys: {[k['kid'] for k in body['keys']]}")
    status, _, body = http(ctx, "GET", "/openapi.json")
    ctx.echo(f"   GET /openapi.json → {status}, OpenAPI {body['openapi']}, {len(body['paths'])} paths")
    status, _, body = http(ctx, "GET", "/v1/no-such-thing")
    ctx.echo(f"   GET /v1/no-such-thing → {status} {json.dumps(body, ensure_ascii=False)}")


DEMO_PASSWORD = "demo-password-1234"  # noqa: S105 - the demo's throwaway accounts


def _bearer(ctx: DemoContext, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ctx.notes['tokens'][who]}"}


def _login(ctx: DemoContext, username: str) -> str:
    status, _, body = http(ctx, "POST", "/v1/auth/login", {"username": username, "password": DEMO_PASSWORD})
    if status != 200:
        raise ConfigurationError(f"login of {username} failed: {body}")
    return str(body["access_token"])


def step_identities(ctx: DemoContext) -> None:
    """Accounts by the CLI's service; the operator registered and credentialed over HTTP."""
    from authz.accounts import create_account
    from authz.permissions import Role
    from core.db import transaction

    firm = ctx.notes["credit_codes"][0]
    people = [
        ("admin", Role.ADMIN, None),
        ("reviewer", Role.REVIEWER, None),
        ("auditor", Role.AUDITOR, None),
        ("firm", Role.SUBJECT, firm),
    ]
    runtime = open_runtime(ctx.settings)
    try:
        for username, role, subject_id in people:
            with transaction(runtime.sessions) as session:
                create_account(
                    session,
                    username=username,
                    role=role,
                    password=DEMO_PASSWORD,
                    subject_id=subject_id,
                    actor=DEMO_ACTOR,
                )
            extra = f" --subject-id {subject_id}" if subject_id else ""
            ctx.echo(
                f"   $ sandbox users add --role {role.value} --username {username}{extra} --password-stdin"
            )
    finally:
        runtime.close()
    ctx.notes["tokens"] = {name: _login(ctx, name) for name, _, _ in people}
    ctx.echo("   POST /v1/auth/login → 200 for each: EdDSA access tokens, 15 minutes")
    status, _, operator = http(
        ctx,
        "POST",
        "/v1/operators",
        {
            "name": "齐鲁普惠金融科技有限公司",
            "credit_code": "91370102MA3C8K2Q7C",
            "license_no": "鲁金监许〔2024〕17号",
            "qualifications": ["网络小额贷款"],
        },
        _bearer(ctx, "admin"),
    )
    ctx.echo(f"   admin: POST /v1/operators → {status} {operator['name']} ({operator['status']})")
    status, _, secret = http(
        ctx, "POST", f"/v1/operators/{operator['id']}/credentials", None, _bearer(ctx, "admin")
    )
    ctx.echo(
        f"   admin: POST /v1/operators/…/credentials → {status} client_id {secret['client_id']}"
        " (the secret is shown once, stored as an argon2 hash)"
    )
    status, _, token = http(ctx, "POST", "/v1/oauth/token", {"grant_type": "client_credentials", **secret})
    ctx.echo(f"   operator: POST /v1/oauth/token → {status}, expires in {token['expires_in']} s")
    ctx.notes["tokens"]["operator"] = token["access_token"]
    ctx.notes["operator_id"] = operator["id"]
    status, _, body = http(
        ctx, "POST", f"/v1/operators/{operator['id']}/suspend", {"reason": "demo"}, _bearer(ctx, "auditor")
    )
    ctx.echo(
        f"   auditor: POST /v1/operators/…/suspend → {status} {body['error']['code']}"
        " (auditors change nothing)"
    )


def step_contract(ctx: DemoContext) -> None:
    """Request, approve (tightened), consent, read back with usage; suspension bites at once."""
    request = {
        "purpose": "小微企业信用贷款贷前核验",
        "operations": ["verify:tax_paid_at_least", "verify:enterprise_active"],
        "datasets": {
            "enterprise_tax": ["credit_code", "year", "annual_tax"],
            "enterprises": ["credit_code", "status"],
        },
        "limits": {
            "valid_days": 180,
            "daily_quota": 5000,
            "epsilon_total": 1.0,
            "epsilon_per_query": 0.5,
            "min_cell_size": 10,
        },
    }
    bad = {**request, "datasets": {"enterprises": ["credit_code", "legal_rep_id"]}, "operations": ["export"]}
    status, _, body = http(ctx, "POST", "/v1/authorizations", bad, _bearer(ctx, "operator"))
    ctx.echo(
        f"   operator: POST /v1/authorizations (asks for a forbidden field) → {status} "
        f"{body['error']['code']}:"
    )
    for problem in body["error"]["details"]:
        ctx.echo(f"     - {problem['field']}: {problem['message']}")
    status, _, contract = http(ctx, "POST", "/v1/authorizations", request, _bearer(ctx, "operator"))
    ctx.echo(f"   operator: POST /v1/authorizations → {status} {contract['status']}")
    ctx.notes["contract_id"] = contract["id"]
    url = f"/v1/authorizations/{contract['id']}"
    status, _, contract = http(
        ctx,
        "POST",
        f"{url}/approve",
        {"comment": "用途明确, 范围最小", "limits": {"daily_quota": 2000}},
        _bearer(ctx, "reviewer"),
    )
    ctx.echo(
        f"   reviewer: approve, tightening the daily quota to {contract['limits']['daily_quota']} → {status} "
        f"{contract['status']} until {contract['valid_until'][:10]}"
    )
    status, _, body = http(ctx, "POST", f"{url}/approve", {}, _bearer(ctx, "reviewer"))
    ctx.echo(f"   reviewer: approve again → {status} {body['error']['code']}")
    status, _, consent = http(
        ctx,
        "POST",
        "/v1/consents",
        {
            "operator_id": ctx.notes["operator_id"],
            "purpose": "申请经营贷款",
            "templates": ["tax_paid_at_least"],
            "valid_days": 30,
        },
        _bearer(ctx, "firm"),
    )
    ctx.echo(
        f"   firm {consent['subject_id']}: POST /v1/consents → {status}, until {consent['valid_until'][:10]}"
    )
    status, _, mine = http(ctx, "GET", url, None, _bearer(ctx, "operator"))
    usage = mine["usage"]
    ctx.echo(
        f"   operator: GET its contract → {status}; usage "
        f"{usage['calls_today']}/{usage['daily_quota']} calls "
        f"today, ε {usage['epsilon_spent']} spent of {usage['epsilon_total']}"
    )
    operator_id = ctx.notes["operator_id"]
    http(
        ctx,
        "POST",
        f"/v1/operators/{operator_id}/suspend",
        {"reason": "演示: 暂停"},
        _bearer(ctx, "reviewer"),
    )
    status, _, body = http(ctx, "GET", url, None, _bearer(ctx, "operator"))
    ctx.echo(f"   reviewer suspends the operator; its very next request → {status} {body['error']['code']}")
    http(
        ctx,
        "POST",
        f"/v1/operators/{operator_id}/reinstate",
        {"reason": "演示: 恢复"},
        _bearer(ctx, "reviewer"),
    )
    status, _, _ = http(ctx, "GET", url, None, _bearer(ctx, "operator"))
    ctx.echo(f"   reinstated; the same token works again → {status}")


def _sealed_seq(ctx: DemoContext) -> tuple[int, str]:
    """The audit seq of the demo's sealed result, or (before verifications exist) of the contract."""
    sealed = ctx.notes.get("sealed_result")
    if isinstance(sealed, dict) and isinstance(sealed.get("audit_seq"), int):
        return int(sealed["audit_seq"]), "the sealed verification"
    query = f"/v1/audit/events?target_id={ctx.notes['contract_id']}&action=authorization.request"
    _, _, page = http(ctx, "GET", query, headers=_bearer(ctx, "auditor"))
    return int(page["events"][0]["seq"]), "the operator's contract request"


def step_proofs(ctx: DemoContext) -> None:
    """The operator proves its job was logged; the auditor verifies the whole log offline."""
    seq, what = _sealed_seq(ctx)
    path = f"/v1/audit/proofs/inclusion?seq={seq}"
    status, _, proof = http(ctx, "GET", path, headers=_bearer(ctx, "operator"))
    if status != 200:
        raise ConfigurationError(f"inclusion proof refused: {proof}")
    ctx.echo(
        f"   GET {path} (operator, {what}) → {status}: "
        f"{len(proof['audit_path'])} hashes up to a tree of {proof['tree_size']}"
    )
    _, _, jwks = http(ctx, "GET", "/.well-known/jwks.json")
    folder = ctx.home / "auditor"
    folder.mkdir(exist_ok=True)
    (folder / "jwks.json").write_text(json.dumps(jwks), encoding="utf-8")
    (folder / "proof.json").write_text(json.dumps(proof, ensure_ascii=False), encoding="utf-8")
    command = ["audit", "verify-inclusion", str(folder / "proof.json"), "--jwks", str(folder / "jwks.json")]
    shown = "proof.json --jwks jwks.json"
    sealed = ctx.notes.get("sealed_result")
    if isinstance(sealed, dict) and sealed.get("audit_seq") == seq:
        (folder / "answer.json").write_text(json.dumps(sealed, ensure_ascii=False), encoding="utf-8")
        command += ["--seal", str(folder / "answer.json")]
        shown += " --seal answer.json"
    _verify_with_cli(ctx, command, f"{shown}  (the checkpoint the proof holds)")
    ctx.echo("   offline: the checkpoint's Ed25519 signature verifies against the JWKS, the entry hashes")
    ctx.echo(f"   to its leaf, and the path leads to the signed root {proof['root_hash'][:16]}…")
    _, _, checkpoint = http(ctx, "POST", "/v1/audit/checkpoints", headers=_bearer(ctx, "auditor"))
    (folder / "trusted-checkpoint.json").write_text(json.dumps(checkpoint), encoding="utf-8")
    size = checkpoint["tree_size"]
    ctx.echo(f"   POST /v1/audit/checkpoints (auditor) → size {size}; kept as a trusted copy:")
    for line in checkpoint["note"].rstrip("\n").split("\n"):
        ctx.echo(f"     | {line[:100]}")
    request = urllib.request.Request(  # noqa: S310 - the demo's own server on loopback
        ctx.base_url + "/v1/audit/export", headers=_bearer(ctx, "auditor")
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
        (folder / "export.ndjson").write_bytes(response.read())
    lines = (folder / "export.ndjson").read_text(encoding="utf-8").count("\n")
    ctx.echo(f"   GET /v1/audit/export (auditor) → {lines} NDJSON lines")
    command = [
        "audit",
        "verify",
        "--export",
        str(folder / "export.ndjson"),
        "--key",
        str(folder / "jwks.json"),
        "--trusted-checkpoint",
        str(folder / "trusted-checkpoint.json"),
    ]
    _verify_with_cli(
        ctx, command, "--export export.ndjson --key jwks.json --trusted-checkpoint trusted-checkpoint.json"
    )
    command = ["audit", "verify", "--key", str(folder / "jwks.json")]
    _verify_with_cli(ctx, command, "--key jwks.json  (the database, and the checkpoint file beside it)")


def _verify_with_cli(ctx: DemoContext, command: list[str], shown: str) -> None:
    result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "sandbox.cli", *command],
        capture_output=True,
        text=True,
        env=cli_env(ctx),
        check=False,
    )
    ctx.echo(f"   $ sandbox {' '.join(command[:2])} {shown} → exit {result.returncode}")
    for line in (result.stdout + result.stderr).strip().splitlines():
        ctx.echo(f"     {line}")
    if result.returncode != 0:
        raise ConfigurationError(f"sandbox {' '.join(command[:2])} did not verify")


def cli_env(ctx: DemoContext, *, with_home: bool = True) -> dict[str, str]:
    """The environment of a `sandbox` child: no SANDBOX_* of the caller's (never a real
    deployment's URLs); the demo home, unless the child must show it needs nothing but files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    return {**env, "SANDBOX_HOME": str(ctx.home)} if with_home else env


def step_audit(ctx: DemoContext) -> None:
    """The events so far, each with its RFC 6962 leaf hash."""
    runtime = open_runtime(ctx.settings)
    try:
        with runtime.sessions() as session:
            events = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
        shown = events if len(events) <= 60 else events[-60:]
        if len(shown) < len(events):
            ctx.echo(f"   … {len(events) - len(shown)} earlier events")
        for event in shown:
            actor = f"{event.actor_kind}:{(event.actor_id or '-')[:8]}"
            target_id, room = event.target_id or "", max(12, 25 - len(event.target_type or ""))
            shortened = target_id if len(target_id) <= room else "…" + target_id[-(room - 1) :]
            target = f"{event.target_type}:{shortened}" if event.target_type else ""
            outcome = event.outcome if not event.error_code else f"{event.outcome} ({event.error_code})"
            ctx.echo(
                f"   #{event.seq:<3} {event.action:<22} {outcome:<28} {actor:<18} {target:<26} "
                f"leaf {event.leaf_hash[:12]}…"
            )
        ctx.echo(f"   {len(events)} events; each entry's RFC 6962 leaf hash is stored with it")
    finally:
        runtime.close()
