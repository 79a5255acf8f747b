"""Every payload of the shared escape corpus, through the product, as an approved program.

Each payload is submitted over HTTP. Refused at submission (422, with its lines) is harmless. Any
that compiles is approved by a reviewer and queued the default way (private release), and again
with ``OUTPUT_BOUNDS`` declared in front of it, so that it really runs in the worker's children
rather than being refused for lack of bounds. Each job must end failed, denied or harmless: no
file read or written, no import, frame, globals or builtins reached, no socket, no rows or printed
text or a victim's value released, no hang. After each payload the service answers the next
request and the next job runs.

One home per backend serves the whole module (logins hash passwords; a home per payload would
take minutes).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from audit import Actor, ActorKind
from authz.permissions import Role
from core import passwords
from core.config import load_settings
from core.db import with_driver
from sandbox.app import create_app
from sandbox.compute.worker import run_pending
from sandbox.runtime import Runtime, init_home, open_runtime
from tests.api.conftest import Party, make_account, make_operator
from tests.compute.conftest import load_corpus
from tests.compute.factories import OPTIONS, approved_program, compute_contract, firm, write_tax
from tests.conftest import BACKENDS, POLICIES, POSTGRES_URL

PAYLOADS = load_corpus()
VICTIM_TAX = 987_654.32
BOUNDS = "OUTPUT_BOUNDS = [0, 1000000]\n"
OUT = Path("/tmp/research/rp_escape/out")
FORBIDDEN_TEXT = ("root:", "/bin/", "uid=", "__builtins__", "f_globals", "listdir", "987654")
CANARY = "canary-3b9e51"
BENIGN = "result = stats.sum([r['annual_tax'] for r in data])\n"


@dataclass
class World:
    runtime: Runtime
    client: FlaskClient
    operator: Party
    reviewer: Party
    contract: str
    benign: str


@contextmanager
def _control_url(backend: str, tmp: Path) -> Iterator[str]:
    """An empty control database: a SQLite file, or a fresh PostgreSQL schema dropped after."""
    if backend != "postgres":
        yield f"sqlite:///{tmp}/control.sqlite"
        return
    base = with_driver(POSTGRES_URL)
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield (
            make_url(base)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("escape")
    (tmp / "canary.txt").write_text(CANARY, encoding="utf-8")
    cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    with _control_url(request.param, tmp) as url, pytest.MonkeyPatch.context() as mp:
        settings = load_settings(
            {
                "SANDBOX_HOME": str(tmp / "home"),
                "SANDBOX_DATABASE_URL": url,
                "SANDBOX_POLICIES": str(POLICIES),
            }
        )
        mp.setattr(passwords, "_HASHER", cheap)
        mp.setattr(passwords, "_DUMMY_HASH", cheap.hash("no such account"))
        init_home(settings, actor=Actor(ActorKind.SYSTEM, "test"))
        runtime = open_runtime(settings, read_only_data=False)
        try:
            client = create_app(runtime=runtime).test_client()
            operator = make_operator(runtime, client, "齐鲁普惠贷科技有限公司", "913701023C5XXXX13C")
            reviewer = make_account(runtime, client, Role.REVIEWER, "reviewer1")
            write_tax(runtime, [*((firm(i), 1000.0 * i) for i in range(1, 41)), (firm(99), VICTIM_TAX)])
            contract = compute_contract(
                runtime, operator.id, daily_quota=100_000, epsilon_total=1000.0, epsilon_per_query=1.0
            )
            benign = approved_program(runtime, operator.id, contract, BENIGN, exact=True)
            yield World(runtime, client, operator, reviewer, contract, benign)
        finally:
            runtime.close()


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _submit_and_approve(world: World, source: str, name: str) -> str | None:
    """The approved program's id, or ``None`` when submission refused it (422 with its lines)."""
    body = {"authorization_id": world.contract, "name": name, "source": source}
    response = world.client.post("/v1/programs", json=body, headers=world.operator.headers)
    if response.status_code == 422:
        details = response.get_json()["error"]["details"]
        assert details and all(isinstance(p["line"], int | None) for p in details)
        return None
    assert response.status_code == 201, response.get_json()
    program = response.get_json()["id"]
    approval = world.client.post(
        f"/v1/programs/{program}/approve", json={"comment": "corpus"}, headers=world.reviewer.headers
    )
    assert approval.status_code == 200, approval.get_json()
    return str(program)


def _run_default(world: World, program: str) -> dict[str, Any] | None:
    """Queue the default way and run it; the staff view of the job, or ``None`` if refused at once."""
    body = {"program_id": program, "authorization_id": world.contract, "partitions": 4, "epsilon": 0.5}
    response = world.client.post("/v1/jobs", json=body, headers=world.operator.headers)
    if response.status_code == 422:
        assert response.get_json()["error"]["code"] == "release_refused"  # no OUTPUT_BOUNDS: nothing ran
        return None
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job_id"]
    assert run_pending(world.runtime, OPTIONS, worker="escape") == [job_id]
    operator_view = world.client.get(f"/v1/jobs/{job_id}", headers=world.operator.headers)
    staff_view = world.client.get(f"/v1/jobs/{job_id}", headers=world.reviewer.headers).get_json()
    for shown in (operator_view.get_data(as_text=True), _shown(staff_view)):
        for forbidden in (*FORBIDDEN_TEXT, CANARY):
            assert forbidden not in shown
    assert staff_view["status"] in ("succeeded", "failed"), staff_view
    runs = staff_view["record"]["runs"]
    assert all(run["duration_seconds"] < OPTIONS.limits.wall_seconds + 2 for run in runs)
    if staff_view["status"] == "succeeded":
        result = staff_view["result"]
        assert type(result) in (int, float) and 0 <= result <= 1_000_000  # the declared bounds
        assert abs(result - VICTIM_TAX) > 1.0
    return dict(staff_view)


def _service_still_answers(world: World) -> None:
    assert world.client.get("/healthz").status_code == 200
    assert world.client.get("/v1/programs", headers=world.operator.headers).status_code == 200
    body = {"program_id": world.benign, "authorization_id": world.contract, "release": "exact"}
    job_id = world.client.post("/v1/jobs", json=body, headers=world.operator.headers).get_json()["job_id"]
    assert run_pending(world.runtime, OPTIONS, worker="escape") == [job_id]
    follow_up = world.client.get(f"/v1/jobs/{job_id}", headers=world.operator.headers).get_json()
    assert (follow_up["status"], follow_up["result"]) == ("succeeded", 820_000.0 + VICTIM_TAX)


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p["id"] for p in PAYLOADS])
def test_escape_payload_submitted_approved_and_run_ends_failed_or_harmless(
    world: World, payload: dict[str, str]
) -> None:
    program = _submit_and_approve(world, payload["source"], payload["id"])
    if program is not None:
        _run_default(world, program)
        declared = _submit_and_approve(world, BOUNDS + payload["source"], payload["id"] + "+bounds")
        assert declared is not None
        ran = _run_default(world, declared)
        assert ran is not None
    assert not any(OUT.glob("pwn_*")) if OUT.exists() else True
    _service_still_answers(world)
