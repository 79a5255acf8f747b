"""End to end: `sandbox demo` in a real process, with its real server process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_walks_every_step_against_a_real_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    home = tmp_path / "demo-home"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox.cli",
            "demo",
            "--home",
            str(home),
            "--enterprises",
            "300",
            "--persons",
            "200",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for expected in (
        "1. Initialize",
        "Synthesize",
        "refused",
        "nothing was loaded",
        "GET /healthz → 200",
        "X-Request-Id: demo-health-1",
        "GET /v1/no-such-thing → 404",
        "data.load",
        "POST /v1/operators → 201",
        "POST /v1/oauth/token → 200",
        "403 forbidden",
        "field legal_rep_id is forbidden",
        "201 pending",
        "approved until",
        "approve again → 409 conflict",
        "POST /v1/consents → 201",
        "403 operator_suspended",
        "the same token works again → 200",
        "tax_paid_at_least",
        "→ 403 consent_required",
        "→ 422 invalid (a unified social credit code; its check character does not match the rest: "
        "a character is mistyped)",
        "exit 0: seal OK",
        "exit 1: seal INVALID",
        "POST /v1/aggregate",
        "suppressed (under 10, or with a noisy count under 35)",
        "ε spent 1.0 (δ 5e-06), left 1.0",
        "same answer: True, cached True, charged 0.0",
        "ε = 1e+09 → 422 invalid",
        "→ 429 budget_exhausted",
        "10. Compute: a program submitted, approved, run and released",
        "(imports os, reads __class__) → 422 invalid:",
        "- line 1: Imports are not allowed in compute programs.",
        "POST /v1/programs → 201 pending_review, sha256 ",
        "output could carry rows: False",
        "POST /v1/programs/…/approve → 200 approved, sha256 pinned",
        "→ 202 queued",
        "→ succeeded",
        "as every private release here does whatever its program did with the data",
        '"median_tax": ',
        "network isolation: ",
        "sealed_compute.json --jwks jwks.json → exit 0: seal OK",
        '"release": "exact" → 403 exact_release_not_allowed',
        "job.queue, #",
        "job.finish",
        "(operator, the sealed verification) → 200",
        "the checkpoint's Ed25519 signature verifies against the JWKS",
        "sandbox audit verify-inclusion proof.json --jwks jwks.json --seal answer.json",
        "(the checkpoint the proof holds) → exit 0",
        "sealed answer: its seal (key ",
        "— public-data-sandbox.local/audit ",
        "--trusted-checkpoint trusted-checkpoint.json → exit 0",
        "(the database, and the checkpoint file beside it) → exit 0",
        "audit.export",
        "verification.run",
        "aggregate.run",
        "denied (operator_suspended)",
        "Demo finished",
        "as admin, reviewer, auditor or firm, password demo-password-1234",  # how to look around after
    ):
        assert expected in output, f"{expected!r} missing from:\n{output}"
    assert "Traceback" not in output
    # The demo refuses to wipe a folder it did not make.
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("do not delete")
    refused = subprocess.run(
        [sys.executable, "-m", "sandbox.cli", "demo", "--home", str(foreign)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1 and "not a demo home" in refused.stderr
    assert (foreign / "thesis.txt").exists()
