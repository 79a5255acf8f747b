"""Workers as the product runs them: a spawned process beside the server, and `sandbox worker`."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit import Actor, ActorKind
from core.config import Settings
from core.db import create_control_engine, session_factory
from sandbox.compute.models import ComputeJob, JobStatus
from sandbox.compute.worker import log_isolation, start_process, stop_processes, warn_if_crowded
from sandbox.runtime import init_home, open_runtime
from tests.compute.factories import OPTIONS, approved_program, compute_contract, firm, queued_job, write_tax
from tests.factories import make_operator

ROOT = Path(__file__).resolve().parents[2]


def _home_with_queued_jobs(settings: Settings, count: int) -> list[str]:
    """An initialized home with tax data and ``count`` queued jobs; nothing left open."""
    init_home(settings, actor=Actor(ActorKind.SYSTEM, "test"))
    runtime = open_runtime(settings, read_only_data=False)
    try:
        write_tax(runtime, [(firm(i), 500.0 * i) for i in range(1, 30)])
        with runtime.sessions.begin() as session:
            operator = make_operator(session).id
        contract = compute_contract(runtime, operator)
        program = approved_program(runtime, operator, contract)
        return [queued_job(runtime, operator, contract, program) for _ in range(count)]
    finally:
        runtime.close()  # the worker opens the data stores itself (DuckDB: read-only)


def _statuses(settings: Settings, job_ids: list[str]) -> list[str]:
    engine = create_control_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            jobs = [session.get(ComputeJob, job_id) for job_id in job_ids]
            return [job.status if job is not None else "missing" for job in jobs]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_worker_process_runs_queued_jobs_and_stops_when_asked(settings: Settings) -> None:
    job_ids = _home_with_queued_jobs(settings, 2)
    process = start_process(settings, OPTIONS, poll_seconds=0.1)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if all(JobStatus(s).finished for s in _statuses(settings, job_ids)):
                break
            time.sleep(0.2)
    finally:
        stop_processes([process])
    assert _statuses(settings, job_ids) == ["succeeded", "succeeded"]
    assert process.exitcode == 0  # SIGTERM asked it to stop; it stopped by itself


def test_the_worker_logs_whether_network_namespaces_are_available(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sandbox.worker"):
        outcome = log_isolation()
    assert outcome.isolation is not None
    text = caplog.text
    assert "network namespaces" in text and "run isolation" in text
    assert ("NOT available" in text) == (outcome.isolation.network == "unavailable")
    assert "socket=blocked" in text and "read_file=blocked" in text


@pytest.mark.slow
def test_sandbox_worker_once_runs_what_is_queued_and_exits(settings: Settings) -> None:
    job_ids = _home_with_queued_jobs(settings, 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env.update(
        SANDBOX_HOME=str(settings.home),
        SANDBOX_DATABASE_URL=settings.database_url,
        SANDBOX_POLICIES=str(settings.policy_dir),
    )
    result = subprocess.run(
        [sys.executable, "-m", "sandbox.cli", "worker", "--once"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ran 1 job(s)" in result.stdout
    assert "network namespaces" in result.stderr
    assert _statuses(settings, job_ids) == ["succeeded"]


def test_a_worker_with_more_children_than_twice_the_cores_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Review: each run is held to half its slot as CPU time so a neighbour's spinning cannot make it
    run out of wall time; that needs half a core per child."""
    with caplog.at_level(logging.WARNING, logger="sandbox.worker"):
        assert not warn_if_crowded(4, cores=2) and not caplog.records
        assert warn_if_crowded(5, cores=2)
    assert "5 children at once on 2 cores" in caplog.text and "at most 4" in caplog.text
