"""The demo's compute step: a program submitted, reviewed, approved, run by a worker and released.

The server the demo started runs a compute worker beside it (``sandbox serve`` does by default),
so the job is queued over HTTP and polled until that worker has run it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

from core.errors import ConfigurationError
from sandbox.demo import DemoContext, _bearer, cli_env, http

REFUSED_SOURCE = """\
import os
result = os.listdir("/")
secret = ().__class__.__mro__
"""
PROGRAM = """\
OUTPUT_BOUNDS = {"median_tax": [0, 100000], "share_grade_a": [0, 1]}
paid = [r["annual_tax"] for r in data if r["year"] == params["year"]]
grades = [r["tax_credit_grade"] for r in data if r["year"] == params["year"]]
result = {
    "median_tax": stats.median(paid) if paid else 0,
    "share_grade_a": grades.count("A") / len(grades) if grades else 0,
}
"""
POLL_SECONDS = 90


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _compute_contract(ctx: DemoContext) -> str:
    request = {
        "purpose": "小微企业纳税画像研究",
        "operations": ["compute"],
        "datasets": {"enterprise_tax": ["credit_code", "year", "annual_tax", "tax_credit_grade"]},
        "limits": {
            "valid_days": 30,
            "daily_quota": 100,
            "epsilon_total": 2.0,
            "epsilon_per_query": 1.0,
            "min_cell_size": 10,
        },
    }
    _, _, contract = http(ctx, "POST", "/v1/authorizations", request, _bearer(ctx, "operator"))
    url = f"/v1/authorizations/{contract['id']}/approve"
    status, _, approved = http(ctx, "POST", url, {"comment": "研究用途"}, _bearer(ctx, "reviewer"))
    ctx.echo(
        "   a compute contract: enterprise_tax year, annual_tax, tax_credit_grade; "
        f"ε {approved['limits']['epsilon_total']} → {status} {approved['status']}"
    )
    return str(contract["id"])


def _submit(ctx: DemoContext, contract: str) -> str:
    operator = _bearer(ctx, "operator")
    bad = {"authorization_id": contract, "name": "目录遍历", "source": REFUSED_SOURCE}
    status, _, refused = http(ctx, "POST", "/v1/programs", bad, operator)
    ctx.echo(
        f"   operator: POST /v1/programs (imports os, reads __class__) → {status} {refused['error']['code']}:"
    )
    for problem in refused["error"]["details"]:
        ctx.echo(f"     - line {problem['line']}: {problem['message']}")
    body = {"authorization_id": contract, "name": "纳税中位数与A级占比", "source": PROGRAM}
    status, _, program = http(ctx, "POST", "/v1/programs", body, operator)
    analysis = program["analysis"]
    ctx.echo(
        f"   operator: POST /v1/programs → {status} {program['status']}, sha256 {program['sha256'][:16]}…"
    )
    ctx.echo(
        f"     analysis for the reviewer: reads {', '.join(analysis['fields_read'])}; "
        f"calls {', '.join(analysis['names_called'])}; {len(analysis['loops'])} loop(s); "
        f"output could carry rows: {analysis['output_may_carry_rows']}"
    )
    url = f"/v1/programs/{program['id']}/approve"
    status, _, approved = http(ctx, "POST", url, {"comment": "只输出聚合值"}, _bearer(ctx, "reviewer"))
    ctx.echo(
        f"   reviewer: POST /v1/programs/…/approve → {status} {approved['status']}, "
        f"sha256 pinned {approved['approved_sha256'][:16]}… (a changed source is a new program)"
    )
    return str(program["id"])


def _poll(ctx: DemoContext, job_id: str) -> dict[str, Any]:
    seen: list[str] = []
    deadline = time.monotonic() + POLL_SECONDS
    while time.monotonic() < deadline:
        _, _, job = http(ctx, "GET", f"/v1/jobs/{job_id}", None, _bearer(ctx, "operator"))
        state = job["status"] if job["status"] != "running" else f"running {job['progress']:.0%}"
        if not seen or seen[-1] != state:
            seen.append(state)
        if job["status"] not in ("queued", "running"):
            ctx.echo(f"   operator: GET /v1/jobs/… → {' → '.join(seen)}")
            return dict(job)
        time.sleep(0.2)
    raise ConfigurationError(f"the compute job did not finish within {POLL_SECONDS} s; see server.log")


def _check_seal(ctx: DemoContext, job: dict[str, Any]) -> None:
    _, _, jwks = http(ctx, "GET", "/.well-known/jwks.json")
    result_file, jwks_file = ctx.home / "sealed_compute.json", ctx.home / "jwks.json"
    result_file.write_text(json.dumps(job, ensure_ascii=False, indent=2), encoding="utf-8")
    jwks_file.write_text(json.dumps(jwks), encoding="utf-8")
    env = cli_env(ctx, with_home=False)
    checked = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "sandbox.cli", "seal", "verify", str(result_file), "--jwks", str(jwks_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said = checked.stderr.strip().splitlines()
    verdict = next((line for line in said if line.startswith("seal ")), said[-1] if said else "")
    ctx.echo(
        f"   $ sandbox seal verify {result_file.name} --jwks {jwks_file.name}"
        f" → exit {checked.returncode}: {verdict}"
    )
    for line in said:
        if line.startswith("not sealed"):  # the job's bookkeeping beside its sealed result
            ctx.echo(f"     {line}")


def step_compute(ctx: DemoContext) -> None:
    """Submit (one refused, one accepted), approve, queue, poll, release, check the seal offline."""
    contract = _compute_contract(ctx)
    program = _submit(ctx, contract)
    operator = _bearer(ctx, "operator")
    request = {
        "program_id": program,
        "authorization_id": contract,
        "params": {"year": 2024},
        "epsilon": 1.0,
        "partitions": 10,
    }
    status, _, queued = http(ctx, "POST", "/v1/jobs", request, operator)
    ctx.echo(
        "   operator: POST /v1/jobs (private release, ε 1.0, 10 partitions, "
        f"params {_show(request['params'])}) → {status} {queued['status']}"
    )
    job = _poll(ctx, queued["job_id"])
    if job["status"] != "succeeded":
        raise ConfigurationError(f"the compute job ended {job['status']}: {job['error']}")
    ctx.echo(
        f"     result {_show(job['result'])} (noised: one firm moves an output by at most its range / 10)"
    )
    took = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
    ctx.echo(
        f"     it took {took.total_seconds():.0f} s, as every private release here does whatever its"
        " program did with the data (a timetable fixed before it ran: `--job-seconds`)"
    )
    ctx.echo(
        f"     ε {job['epsilon_spent']} spent; each run in a fresh child, network isolation: "
        f"{job['network_isolation']}; sealed, audit #{job['audit_seq']}"
    )
    _check_seal(ctx, job)
    exact = {k: v for k, v in request.items() if k not in ("epsilon", "partitions")} | {"release": "exact"}
    status, _, refused = http(ctx, "POST", "/v1/jobs", exact, operator)
    ctx.echo(
        f'   the same job with "release": "exact" → {status} {refused["error"]["code"]}'
        " (no reviewer allowed it)"
    )
    query = f"/v1/audit/events?target_id={job['job_id']}"
    _, _, page = http(ctx, "GET", query, None, _bearer(ctx, "auditor"))
    trail = ", ".join(f"#{e['seq']} {e['action']}" for e in page["events"])
    ctx.echo(f"   auditor: the job's events → {trail}")
