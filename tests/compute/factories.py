"""Compute rows for product tests: a compute contract, approved programs, queued jobs, tax data.

Contracts are inserted as plain rows (``tests.factories``); programs and jobs go through the real
services, so they carry their real analysis, sha256 pins and audit events.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, wait
from datetime import timedelta
from typing import Any

from audit import Actor, ActorKind
from core.clock import utcnow
from core.db import transaction
from sandbox.compute import programs
from sandbox.compute.checks import JobRequest
from sandbox.compute.execute import RunOptions
from sandbox.compute.jobs import queue_job
from sandbox.compute.release import Pace
from sandbox.compute.runner import Limits, RunOutcome
from sandbox.runtime import Runtime
from tests.engine import rows
from tests.factories import make_contract, uscc

SCOPE = {"enterprise_tax": ["credit_code", "year", "district", "annual_tax"]}
REVIEWER = Actor(ActorKind.REVIEWER, "reviewer-1")


class CountingPace(Pace):
    """A private release's clock that counts instead of waiting: the timetable is kept to the
    letter (every wait asked for, every progress at its slot's end) in no time at all."""

    def __init__(self) -> None:
        self.at = 0.0
        self.waits: list[float] = []

    def now(self) -> float:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.at += seconds

    def settle(self, futures: Sequence[Future[RunOutcome]], deadline: float) -> set[Future[RunOutcome]]:
        """Every run, however long it takes: the counted end came before any real one."""
        done, _ = wait(futures)
        return done


# Tight enough that an endless loop or a memory bomb ends in seconds; a private release keeps its
# timetable on a counting clock (tests/compute/test_release.py waits one out for real).
OPTIONS = RunOptions(
    limits=Limits(cpu_seconds=2, wall_seconds=6.0, memory_bytes=256 << 20), concurrency=2, pace=CountingPace()
)

MEAN_TAX = """\
OUTPUT_BOUNDS = {"mean_tax": [0, 100000]}
taxes = [r["annual_tax"] for r in data if r["_dataset"] == "enterprise_tax"]
result = {"mean_tax": stats.mean(taxes) if taxes else 0}
"""
SUM_TAX = """\
OUTPUT_BOUNDS = [0, 1000000]
result = stats.sum([r["annual_tax"] for r in data])
"""


def firm(index: int) -> str:
    """An 18-character credit code, distinct per index."""
    return uscc(f"91370102MA3C{index:06d}")


def write_tax(runtime: Runtime, taxes: list[tuple[str, float]]) -> None:
    """Replace enterprise_tax with one 2024 row per (credit code, tax paid)."""
    rows.write(
        runtime.stores,
        runtime.catalog,
        {"enterprise_tax": [rows.tax(code, 2024, paid) for code, paid in taxes]},
    )


def compute_contract(runtime: Runtime, operator_id: str, **overrides: Any) -> str:
    """An approved contract granting ``compute`` over ``SCOPE``, valid from a minute ago."""
    args: dict[str, Any] = {
        "datasets": SCOPE,
        "operations": ["compute"],
        "daily_quota": 100,
        "epsilon_total": 5.0,
        "epsilon_per_query": 1.0,
        "consent_required": False,
        "now": utcnow() - timedelta(minutes=1),
        **overrides,
    }
    with transaction(runtime.sessions) as session:
        return make_contract(session, operator_id=operator_id, **args).id


def submitted_program(
    runtime: Runtime, operator_id: str, contract_id: str, source: str, name: str = "p"
) -> str:
    """A program submitted through the service, pending review."""
    with transaction(runtime.sessions) as session:
        return programs.submit_program(
            session,
            runtime.catalog,
            operator_id=operator_id,
            authorization_id=contract_id,
            name=name,
            source=source,
            actor=Actor(ActorKind.OPERATOR, operator_id),
            request_id=None,
        ).id


def approved_program(
    runtime: Runtime, operator_id: str, contract_id: str, source: str = MEAN_TAX, *, exact: bool = False
) -> str:
    """A program submitted and approved through the services."""
    program_id = submitted_program(runtime, operator_id, contract_id, source)
    with transaction(runtime.sessions) as session:
        programs.approve_program(
            session,
            program_id,
            reviewer_id="reviewer-1",
            comment="ok",
            allow_exact_release=exact,
            actor=REVIEWER,
            request_id=None,
        )
    return program_id


def queued_job(runtime: Runtime, operator_id: str, contract_id: str, program_id: str, **request: Any) -> str:
    """A job queued through the service (every queue-time check made)."""
    job = queue_job(
        runtime,
        JobRequest(
            program_id=program_id, authorization_id=contract_id, params=request.pop("params", {}), **request
        ),
        operator_id=operator_id,
        actor=Actor(ActorKind.OPERATOR, operator_id),
        request_id=None,
    )
    return job.id
