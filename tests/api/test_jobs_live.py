"""Verification and aggregates against a real server: gunicorn, two worker processes, real databases.

One server per backend for the module (embedded: SQLite control database with SQLite + DuckDB
data stores; postgres: one PostgreSQL schema for everything). Each test makes its own contract.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from audit import Actor, ActorKind
from core.clock import utcnow
from core.config import Settings, load_settings
from core.db import transaction, with_driver
from operators import services as operator_services
from sandbox.runtime import init_home, open_runtime
from tests.conftest import POLICIES, POSTGRES_URL
from tests.engine import rows
from tests.factories import make_consent, make_contract, uscc

SYSTEM = Actor(ActorKind.SYSTEM, "test")
TARGET_CAPITAL = 7_654_321.0
TARGET_DAY = date(2011, 3, 14)
LIXIA = [{"field": "district", "op": "eq", "value": "历下区"}]
SCOPE = {
    "enterprises": [
        "credit_code",
        "district",
        "industry",
        "registered_capital",
        "established_date",
        "status",
    ],
    "enterprise_tax": ["credit_code", "year", "annual_tax"],
}


@dataclass
class Live:
    """A running server, its settings, and an operator's token."""

    base: str
    settings: Settings
    operator_id: str
    token: str

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def contract(self, **overrides: Any) -> str:
        args: dict[str, Any] = {
            "datasets": SCOPE,
            "operations": ["aggregate", "verify:tax_paid_at_least"],
            "epsilon_total": 5.0,
            "epsilon_per_query": 1.0,
            "daily_quota": 5000,
            "now": utcnow() - timedelta(minutes=1),
            **overrides,
        }
        runtime = open_runtime(self.settings)
        try:
            with transaction(runtime.sessions) as session:
                contract_id = make_contract(session, operator_id=self.operator_id, **args).id
                make_consent(
                    session,
                    subject_id=rows.FIRM,
                    operator_id=self.operator_id,
                    now=utcnow() - timedelta(minutes=1),
                )
                return contract_id
        finally:
            runtime.close()

    def epsilon_spent(self, contract_id: str) -> float:
        status, body = self.call("GET", f"/v1/authorizations/{contract_id}")
        assert status == 200, body
        return float(body["usage"]["epsilon_spent"])

    def aggregate(self, contract_id: str, **spec: Any) -> tuple[int, Any]:
        body = {
            "authorization_id": contract_id,
            "dataset": "enterprises",
            "metrics": [{"op": "count"}],
            **spec,
        }
        return self.call("POST", "/v1/aggregate", body)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_schema() -> Iterator[str]:
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


def _seed(settings: Settings) -> str:
    """Data, an operator and its credentials; returns ``client_id:secret``."""
    init_home(settings, actor=SYSTEM)
    runtime = open_runtime(settings, read_only_data=False)
    try:
        # Enough firms in 历下区 that its cell is released at ε 0.5 (its noisy count must pass the
        # minimum cell size plus a margin: sandbox.engine.privacy).
        firms = [rows.enterprise(uscc(f"91370102MA3C{i:06d}"), district="历下区") for i in range(150)]
        firms[0]["registered_capital"] = 1e15  # an outlier far above the policy bound of 1e9
        firms[1].update(registered_capital=TARGET_CAPITAL, established_date=TARGET_DAY)
        firms += [rows.enterprise(uscc(f"91370103MA3C{i:06d}"), district="市中区") for i in range(3)]
        tax = [rows.tax(rows.FIRM, 2024, 612_345.67)]
        rows.write(runtime.stores, runtime.catalog, {"enterprises": firms, "enterprise_tax": tax})
        with transaction(runtime.sessions) as session:
            operator = operator_services.register_operator(
                session, name="齐鲁普惠贷科技有限公司", credit_code="913701023C5XXXX13C", license_no="L-1",
                qualifications=[], actor=SYSTEM, request_id=None,
            )  # fmt: skip
            credential, secret = operator_services.issue_credentials(
                session, operator.id, actor=SYSTEM, request_id=None
            )
            return f"{operator.id}:{credential.client_id}:{secret}"
    finally:
        runtime.close()


@pytest.fixture(scope="module", params=["embedded", "postgres"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if request.param == "postgres" and not POSTGRES_URL:
        pytest.skip("SANDBOX_TEST_POSTGRES_URL is not set")
    tmp = tmp_path_factory.mktemp(f"live_{request.param}")
    env = {"SANDBOX_HOME": str(tmp / "home"), "SANDBOX_POLICIES": str(POLICIES)}
    schemas = _postgres_schema() if request.param == "postgres" else None
    if schemas is not None:
        url = next(schemas)
        env.update(SANDBOX_DATABASE_URL=url, SANDBOX_DATA_URL=url)
    else:
        env["SANDBOX_DATABASE_URL"] = f"sqlite:///{tmp}/control.sqlite"
    settings = load_settings(env)
    operator_id, client_id, secret = _seed(settings).split(":", 2)
    server = _start(tmp, env)
    try:
        live = Live(base=server[1], settings=settings, operator_id=operator_id, token="")
        status, token = live.call(
            "POST", "/v1/oauth/token",
            {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        )  # fmt: skip
        assert status == 200, token
        live.token = token["access_token"]
        yield live
    finally:
        server[0].terminate()
        server[0].wait(timeout=30)
        if schemas is not None:
            next(schemas, None)


def _start(tmp: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    with (tmp / "server.log").open("wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox.cli", "serve", "--port", str(port), "--workers", "2"],
            env={**clean, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, (tmp / "server.log").read_text()
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise AssertionError("the server did not start")


def test_small_cell_suppressed_and_outlier_clamped(live: Live) -> None:
    contract = live.contract()
    status, body = live.aggregate(contract, group_by=["district"], epsilon=0.5)
    assert status == 200, body
    assert [row["district"] for row in body["rows"]] == ["历下区"] and body["suppressed_groups"] == 11
    assert all(isinstance(row["count"], int) for row in body["rows"])
    metrics = [{"op": "sum", "field": "registered_capital"}, {"op": "mean", "field": "registered_capital"}]
    status, body = live.aggregate(contract, metrics=metrics, filters=LIXIA, epsilon=1.0)
    assert status == 200, body
    assert abs(body["rows"][0]["sum_registered_capital"]) < 1e12  # 1e15 unclamped
    assert 0 <= body["rows"][0]["mean_registered_capital"] <= 1e9


def test_differencing_two_overlapping_queries_gives_no_exact_value(live: Live) -> None:
    contract = live.contract()
    metrics = [{"op": "sum", "field": "registered_capital"}]
    others = [*LIXIA, {"field": "established_date", "op": "ne", "value": TARGET_DAY.isoformat()}]
    _, everyone = live.aggregate(contract, metrics=metrics, filters=LIXIA, epsilon=1.0)
    _, without = live.aggregate(contract, metrics=metrics, filters=others, epsilon=1.0)
    difference = everyone["rows"][0]["sum_registered_capital"] - without["rows"][0]["sum_registered_capital"]
    assert abs(difference - TARGET_CAPITAL) > 1.0


def test_a_thousand_repeats_return_one_answer_and_charge_once(live: Live) -> None:
    contract = live.contract()
    spec = {
        "metrics": [{"op": "count"}, {"op": "mean", "field": "registered_capital"}],
        "group_by": ["district"],
    }
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: live.aggregate(contract, epsilon=0.5, **spec), range(1000)))
    assert Counter(status for status, _ in answers) == Counter({200: 1000})
    assert len({json.dumps(body["rows"], sort_keys=True) for _, body in answers}) == 1
    assert (
        len({body["job_id"] for _, body in answers}) == 1 and len({body["seal"] for _, body in answers}) == 1
    )
    assert sum(body["charged"] for _, body in answers) == 0.5
    assert live.epsilon_spent(contract) == pytest.approx(0.5)


def test_fifty_concurrent_queries_against_a_budget_for_ten(live: Live) -> None:
    contract = live.contract(epsilon_total=1.0, epsilon_per_query=0.1)

    def one(index: int) -> tuple[int, Any]:
        filters = [{"field": "registered_capital", "op": "ge", "value": index}]  # 50 different queries
        return live.aggregate(contract, filters=filters, epsilon=0.1)

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(one, range(50)))
    outcomes = Counter(status if status == 200 else body["error"]["code"] for status, body in answers)
    assert outcomes == Counter({200: 10, "budget_exhausted": 40})
    assert live.epsilon_spent(contract) == pytest.approx(1.0)


def test_verifications_and_aggregates_on_one_contract_run_together(live: Live) -> None:
    """Both kinds charge the same contract at once: on PostgreSQL both lock its row before its
    daily counter (authz.usage), so none deadlocks, and every call and ε is counted once."""
    contract = live.contract(epsilon_total=5.0, epsilon_per_query=0.1)
    verify = {"authorization_id": contract, "template": "tax_paid_at_least", "subject": rows.FIRM,
              "params": {"threshold": 500_000, "year": 2024}}  # fmt: skip

    def one(index: int) -> tuple[int, Any]:
        if index % 2:
            return live.call("POST", "/v1/verify", verify)
        filters = [{"field": "registered_capital", "op": "ge", "value": index}]  # each query new
        return live.aggregate(contract, filters=filters, epsilon=0.1)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(one, range(40)))
    assert Counter(status for status, _ in answers) == Counter({200: 40}), answers
    status, body = live.call("GET", f"/v1/authorizations/{contract}")
    assert status == 200, body
    assert body["usage"]["calls_today"] == 40
    assert body["usage"]["epsilon_spent"] == pytest.approx(2.0)


# Under EPSILON_MIN (0.001), though above 0: far under it diffprivlib failed, which was a 500.
TINY_EPSILONS = ["5e-324", "1e-310", "0.0009"]


@pytest.mark.parametrize("epsilon", ["-1", "0", "NaN", "Infinity", "1e400", "1e9", *TINY_EPSILONS])
def test_bad_epsilon_refused(live: Live, epsilon: str) -> None:
    contract = live.contract()
    raw = json.dumps({"authorization_id": contract, "dataset": "enterprises", "metrics": [{"op": "count"}]})
    status, body = live.call("POST", "/v1/aggregate", raw=(raw[:-1] + f', "epsilon": {epsilon}}}').encode())
    assert status in (400, 422) and body["error"]["code"] in ("bad_request", "invalid"), body
    assert live.epsilon_spent(contract) == 0.0


def test_a_seal_verifies_offline_and_fails_when_one_byte_changes(live: Live, tmp_path: Path) -> None:
    contract = live.contract()
    status, answer = live.call(
        "POST", "/v1/verify",
        {"authorization_id": contract, "template": "tax_paid_at_least", "subject": rows.FIRM,
         "params": {"threshold": 500_000, "year": 2024}},
    )  # fmt: skip
    assert status == 200 and answer["result"] is True, answer
    with urllib.request.urlopen(live.base + "/.well-known/jwks.json") as response:
        (tmp_path / "jwks.json").write_bytes(response.read())
    sealed = tmp_path / "answer.json"
    sealed.write_text(json.dumps(answer, ensure_ascii=False), encoding="utf-8")
    # Offline: another process, no SANDBOX_* settings, nothing but the file and the key set.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env["SANDBOX_HOME"] = str(tmp_path / "nowhere")

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sandbox.cli", "seal", "verify", *args],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    ok = check(str(sealed), "--jwks", str(tmp_path / "jwks.json"))
    assert ok.returncode == 0, ok.stderr
    assert "seal OK" in ok.stderr and '"result": true' in ok.stdout
    assert check(str(sealed), "--jwks", live.base + "/.well-known/jwks.json").returncode == 0
    head, body, signature = answer["seal"].split(".")
    middle = len(body) // 2
    flipped = body[:middle] + ("A" if body[middle] != "A" else "B") + body[middle + 1 :]
    sealed.write_text(json.dumps({**answer, "seal": f"{head}.{flipped}.{signature}"}), encoding="utf-8")
    changed = check(str(sealed), "--jwks", str(tmp_path / "jwks.json"))
    assert changed.returncode == 1 and "seal INVALID" in changed.stderr
    sealed.write_text(json.dumps({**answer, "result": False}), encoding="utf-8")
    edited = check(str(sealed), "--jwks", str(tmp_path / "jwks.json"))
    assert edited.returncode == 1 and "'result' differs" in edited.stderr


def test_a_column_the_policy_no_longer_matches_is_a_503_in_every_worker_until_loaded(live: Live) -> None:
    """A lookup table left in an older shape (the policy's field under another name): every
    worker refuses in the API's words, not a 500, whether it had read the table before or not,
    and answers again once the table is right, without a restart."""
    contract = live.contract()
    verify = {"authorization_id": contract, "template": "tax_paid_at_least", "subject": rows.FIRM,
              "params": {"threshold": 500_000, "year": 2024}}  # fmt: skip
    engine = create_engine(with_driver(live.settings.data_lookup_url))

    def rename(before: str, after: str) -> None:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE enterprise_tax RENAME COLUMN {before} TO {after}"))

    def round_of_calls() -> list[tuple[int, Any]]:
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda _: live.call("POST", "/v1/verify", verify), range(16)))

    try:
        rename("annual_tax", "tax_paid")
        try:
            refused = round_of_calls()
        finally:
            rename("tax_paid", "annual_tax")
        answered = round_of_calls()
    finally:
        engine.dispose()
    assert {(status, body["error"]["code"]) for status, body in refused} == {(503, "dataset_unavailable")}
    assert {status for status, _ in answered} == {200}, answered
    status, body = live.call("GET", f"/v1/authorizations/{contract}")
    assert status == 200 and body["usage"]["calls_today"] == 16  # the refused ones charged nothing
