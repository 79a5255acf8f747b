"""The demo's job steps: sealed verifications (one refused for lack of consent), a private aggregate.

Kept apart from :mod:`sandbox.demo` so each module stays readable; the steps use its HTTP helpers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from sandbox.demo import DemoContext, _bearer, cli_env, http


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def step_verify(ctx: DemoContext) -> None:
    """Four checks about firms: answered and sealed, refused without the subject's consent, or
    refused for a mistyped code (two neighbouring characters swapped), which would read as false."""
    contract = ctx.notes["contract_id"]
    firm, stranger = ctx.notes["credit_codes"][0], ctx.notes["credit_codes"][1]
    at = next(i for i in range(8, 16) if firm[i] != firm[i + 1])
    mistyped = firm[:at] + firm[at + 1] + firm[at] + firm[at + 2 :]
    operator = _bearer(ctx, "operator")
    asks = [
        (firm, {"threshold": 500_000, "year": 2024}),
        (firm, {"threshold": 10_000, "year": 2024}),
        (stranger, {"threshold": 10_000, "year": 2024}),
        (mistyped, {"threshold": 10_000, "year": 2024}),
    ]
    for subject, params in asks:
        body = {
            "authorization_id": contract,
            "template": "tax_paid_at_least",
            "subject": subject,
            "params": params,
        }
        status, _, answer = http(ctx, "POST", "/v1/verify", body, operator)
        if status == 200:
            shown = f"result {_show(answer['result'])}"
        else:
            problems = answer["error"].get("details") or []
            shown = " ".join([answer["error"]["code"], *(f"({p['message']})" for p in problems)])
        ctx.echo(f"   operator: tax_paid_at_least {subject} {_show(params)} → {status} {shown}")
        if status == 200 and "sealed_result" not in ctx.notes:
            ctx.notes["sealed_result"] = answer
    sealed = ctx.notes["sealed_result"]
    ctx.echo(
        f"     sealed: job …{sealed['job_id'][-8:]}, audit event #{sealed['audit_seq']}, "
        f"seal {sealed['seal'][:32]}…"
    )
    ctx.echo(f"     ({stranger} never consented: refused, and the refusal is on that firm's own access list)")
    status, _, mine = http(ctx, "GET", "/v1/subjects/me/accesses", None, _bearer(ctx, "firm"))
    listed = ", ".join(f"{a['template']} by {a['operator_name']} ({a['outcome']})" for a in mine["accesses"])
    ctx.echo(f"   firm: GET /v1/subjects/me/accesses → {status}: {listed}")
    _check_seal_offline(ctx, sealed)


def _check_seal_offline(ctx: DemoContext, sealed: dict[str, Any]) -> None:
    """`sandbox seal verify` in a separate process with nothing but two files: a bank's view."""
    _, _, jwks = http(ctx, "GET", "/.well-known/jwks.json")
    answer_file, jwks_file = ctx.home / "sealed_verification.json", ctx.home / "jwks.json"
    answer_file.write_text(json.dumps(sealed, ensure_ascii=False, indent=2), encoding="utf-8")
    jwks_file.write_text(json.dumps(jwks), encoding="utf-8")
    env = cli_env(ctx, with_home=False)

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "sandbox.cli",
                "seal",
                "verify",
                str(answer_file),
                "--jwks",
                str(jwks_file),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    ok = check()
    ctx.echo(f"   $ sandbox seal verify {answer_file.name} --jwks {jwks_file.name}   (offline)")
    ctx.echo(f"     exit {ok.returncode}: {ok.stderr.strip().splitlines()[-1] if ok.stderr.strip() else ''}")
    head, body, signature = sealed["seal"].split(".")
    middle = len(body) // 2
    flipped = body[:middle] + ("A" if body[middle] != "A" else "B") + body[middle + 1 :]
    answer_file.write_text(json.dumps({**sealed, "seal": f"{head}.{flipped}.{signature}"}), encoding="utf-8")
    bad = check()
    ctx.echo(f"     one byte of the seal changed → exit {bad.returncode}: {bad.stderr.strip()}")
    answer_file.write_text(json.dumps(sealed, ensure_ascii=False, indent=2), encoding="utf-8")


def _statistics_contract(ctx: DemoContext) -> str:
    request = {
        "purpose": "区域产业纳税统计分析",
        "operations": ["aggregate"],
        "datasets": {"enterprise_tax": ["year", "district", "industry", "annual_tax"]},
        "limits": {
            "valid_days": 90,
            "daily_quota": 1000,
            "epsilon_total": 2.0,
            "epsilon_per_query": 1.0,
            "min_cell_size": 10,
        },
    }
    _, _, contract = http(ctx, "POST", "/v1/authorizations", request, _bearer(ctx, "operator"))
    url = f"/v1/authorizations/{contract['id']}/approve"
    status, _, approved = http(ctx, "POST", url, {"comment": "统计用途, 差分隐私"}, _bearer(ctx, "reviewer"))
    limits = approved["limits"]
    ctx.echo(
        f"   a statistics contract: aggregate over enterprise_tax, ε {limits['epsilon_total']} in all, "
        f"≤ {limits['epsilon_per_query']} per query, cells ≥ {limits['min_cell_size']} "
        f"→ {status} {approved['status']}"
    )
    return str(contract["id"])


def step_aggregate(ctx: DemoContext) -> None:
    """A private aggregate; the same question again is free; a bad ε and an overspend are refused."""
    contract = _statistics_contract(ctx)
    operator = _bearer(ctx, "operator")
    spec = {
        "authorization_id": contract,
        "dataset": "enterprise_tax",
        "metrics": [{"op": "count"}, {"op": "mean", "field": "annual_tax"}],
        "group_by": ["district"],
        "filters": [{"field": "year", "op": "eq", "value": 2024}],
        "epsilon": 1.0,
    }
    status, _, answer = http(ctx, "POST", "/v1/aggregate", spec, operator)
    ctx.echo(f"   operator: POST /v1/aggregate (count and mean tax by district, 2024, ε 1.0) → {status}")
    for row in answer["rows"]:
        ctx.echo(
            f"     {row['district']:<6} count {row['count']:>6}   mean tax ¥{row['mean_annual_tax']:>14,.2f}"
        )
    ctx.echo(
        "     (a mean's noise grows with the field's bounds in policy over the group's count: a small"
        " district's mean can land at its lower bound, ¥0)"
    )
    ctx.echo(
        f"     {answer['suppressed_groups']} district(s) suppressed (under {answer['min_cell_size']}, or"
        f" with a noisy count under {answer['min_cell_size'] + answer.get('noisy_count_margin', 0)}); "
        f"ε spent {answer['epsilon_spent']} (δ {answer.get('delta', 1e-6):.0e}), "
        f"left {answer['epsilon_remaining']}; "
        f"sealed, audit #{answer['audit_seq']}"
    )
    status, _, again = http(ctx, "POST", "/v1/aggregate", spec, operator)
    same = again["rows"] == answer["rows"] and again["seal"] == answer["seal"]
    ctx.echo(
        f"   the same query again → {status}, same answer: {same}, cached {again['cached']}, "
        f"charged {again['charged']} (averaging repeats gains nothing)"
    )
    for epsilon in (1e9, -1):
        status, _, refused = http(ctx, "POST", "/v1/aggregate", {**spec, "epsilon": epsilon}, operator)
        ctx.echo(f"   ε = {epsilon:g} → {status} {refused['error']['code']}")
    for year in (2024, 2023):
        other = {**spec, "group_by": ["industry"], "filters": [{"field": "year", "op": "eq", "value": year}]}
        status, _, result = http(ctx, "POST", "/v1/aggregate", other, operator)
        code = result["error"]["code"] if status != 200 else f"ε left {result['epsilon_remaining']}"
        ctx.echo(f"   a new query (by industry, {year}), ε 1.0 → {status} {code}")
