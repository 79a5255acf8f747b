"""Release: exact for reviewer-allowed programs, differentially private (sample-and-aggregate) by default."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from diffprivlib import BudgetAccountant

from sandbox.compute import release
from sandbox.compute.compile import compile_program
from sandbox.compute.errors import ReleaseRefused
from sandbox.compute.release import (
    MIN_RUN_SECONDS,
    SLOT_MARGIN_SECONDS,
    Pace,
    ReleaseMode,
    ReleaseStopped,
    _clamped_mean,
    partition,
    release_exact,
    release_private,
    schedule,
)
from sandbox.compute.runner import Limits, RunOutcome, RunStatus
from tests.compute.conftest import VICTIM_INCOME, VICTIM_SSN, text_of
from tests.compute.factories import CountingPace

ONE_RECORD_SUM = f"""
OUTPUT_BOUNDS = [0, 1000000]
result = stats.sum([r["income"] for r in data if r["ssn"] == "{VICTIM_SSN}"])
"""


def test_one_record_sum_under_default_release_does_not_give_the_record(
    rows: list[dict[str, Any]], limits: Limits, pace: CountingPace
) -> None:
    program = compile_program(ONE_RECORD_SUM)
    assert release_exact(program, rows, limits=limits).value == VICTIM_INCOME  # what exact would give
    values = []
    for seed in range(3):
        release = release_private(
            program, rows, epsilon=1.0, partitions=10, limits=limits, seed=seed, pace=pace
        )
        assert release.status is RunStatus.SUCCEEDED and release.mode is ReleaseMode.PRIVATE
        assert release.epsilon_spent == 1.0
        values.append(release.value)
    assert all(isinstance(v, float) and 0 <= v <= 1_000_000 for v in values)
    # The record moves the clamped average by at most (hi - lo) / k = 100,000; the noise has that
    # scale too, so no release sits near the record's value.
    assert all(abs(v - VICTIM_INCOME) > 0.01 * VICTIM_INCOME for v in values if isinstance(v, float))
    assert len(set(values)) > 1  # noisy, not a fixed answer


def test_one_partition_moves_the_average_by_at_most_the_sensitivity() -> None:
    bounds = {(): (0.0, 100.0)}
    quiet = [RunOutcome(status=RunStatus.SUCCEEDED, result=10.0) for _ in range(10)]
    loud = [RunOutcome(status=RunStatus.SUCCEEDED, result=1e9), *quiet[1:]]
    failed = [RunOutcome(status=RunStatus.FAILED, error_class="ValueError"), *quiet[1:]]
    base = _clamped_mean(quiet, bounds)[()]
    assert _clamped_mean(loud, bounds)[()] - base <= 100.0 / 10
    assert _clamped_mean(failed, bounds)[()] == pytest.approx(base + (50.0 - 10.0) / 10)


def test_one_partition_cannot_overflow_the_average() -> None:
    """Summed before dividing, 99 outputs just under max/100 and one at the bound overflowed to
    inf, and inf + noise is exactly the bound: one subject's bit at any ε (attacks/test_a1)."""
    bounds = {(): (0.0, 1e308)}
    quiet = [RunOutcome(status=RunStatus.SUCCEEDED, result=1.79e306) for _ in range(100)]
    loud = [RunOutcome(status=RunStatus.SUCCEEDED, result=1e308), *quiet[1:]]
    base, moved = _clamped_mean(quiet, bounds)[()], _clamped_mean(loud, bounds)[()]
    assert math.isfinite(moved) and moved - base <= 1e308 / 100 * (1 + 1e-9)


def test_private_release_is_refused_before_anything_runs_or_is_spent(rows: list[dict[str, Any]]) -> None:
    unbounded = compile_program("result = 1\n")
    with pytest.raises(ReleaseRefused) as refused:
        release_private(unbounded, rows, epsilon=1.0)
    assert refused.value.details == {"problem": "no_output_bounds"}
    bounded = compile_program("OUTPUT_BOUNDS = [0, 1]\nresult = 1\n")
    for epsilon, k in ((0.0, 10), (-1.0, 10), (math.nan, 10), (math.inf, 10), (1.0, 1)):
        with pytest.raises(ReleaseRefused):
            release_private(bounded, rows, epsilon=epsilon, partitions=k)


def test_released_keys_are_the_declared_ones_whatever_the_data_adds(
    rows: list[dict[str, Any]], limits: Limits, pace: CountingPace
) -> None:
    source = (
        'OUTPUT_BOUNDS = {"mean": [0, 5000], "bands": {"high": [0, 1]}}\n'
        'result = {"mean": stats.mean(stats.column(data, "income")), "bands": {"high": 0.5}}\n'
        'result[data[0]["ssn"]] = 1\n'
    )
    release = release_private(
        compile_program(source), rows, epsilon=2.0, partitions=5, limits=limits, seed=1, pace=pace
    )
    assert isinstance(release.value, dict) and set(release.value) == {"mean", "bands"}
    assert isinstance(release.value["bands"], dict) and set(release.value["bands"]) == {"high"}
    assert "100-00" not in text_of(release.to_record()) and VICTIM_SSN not in text_of(release.to_record())


def test_a_failing_partition_does_not_show(
    rows: list[dict[str, Any]], limits: Limits, pace: CountingPace
) -> None:
    source = (
        "OUTPUT_BOUNDS = [0, 5000]\n"
        f"if any(r['ssn'] == '{VICTIM_SSN}' for r in data):\n    raise ValueError('found')\n"
        "result = stats.mean(stats.column(data, 'income'))\n"
    )
    release = release_private(
        compile_program(source), rows, epsilon=1.0, partitions=5, limits=limits, seed=2, pace=pace
    )
    assert release.status is RunStatus.SUCCEEDED
    public = release.public_dict()
    assert public["error"] is None and "runs" not in public
    assert sum(not run.succeeded for run in release.runs) == 1  # staff can see it in the record


@pytest.mark.parametrize(
    ("partitions", "concurrency", "cpu", "wall", "seconds"),
    [
        (10, 2, 2, 5.0, 30.0),  # 5 rounds share 30 s: 6 s slots, a run killed at 5 s, half that CPU
        (100, 2, 1, 2.0, 150.0),  # 50 rounds: 0.6 s each, raised to the least a run is given
        (100, 1, 1, 2.0, 300.0),  # 100 rounds
        (2, 8, 10, 20.0, 21.0),  # 1 round: a run's own limits stand, and the slot is no longer
    ],
)
def test_a_private_jobs_runs_share_its_time_on_a_timetable_fixed_by_its_shape(
    partitions: int, concurrency: int, cpu: int, wall: float, seconds: float
) -> None:
    """Found in a sweep: 100 partitions that each spun to their own 20 s held a worker 15 minutes.
    Each run is held to CPU time, each process's own, half its wall time (review: wall time alone,
    which neighbours share, would let one partition's data make another time out)."""
    timetable = schedule(Limits(), partitions, concurrency)
    shared = timetable.limits
    assert (shared.cpu_seconds, shared.wall_seconds, timetable.seconds) == (cpu, wall, seconds)
    assert shared.memory_bytes == Limits().memory_bytes
    rounds = math.ceil(partitions / concurrency)
    assert timetable.rounds == rounds and 2 * shared.cpu_seconds <= shared.wall_seconds
    assert timetable.slot_seconds == shared.wall_seconds + SLOT_MARGIN_SECONDS
    assert timetable.seconds <= max(
        Limits().job_wall_seconds, rounds * (2 * MIN_RUN_SECONDS + SLOT_MARGIN_SECONDS)
    )


def test_each_partition_runs_under_its_share_and_one_that_runs_out_does_not_show(
    rows: list[dict[str, Any]], limits: Limits, monkeypatch: pytest.MonkeyPatch, pace: CountingPace
) -> None:
    given: list[Limits] = []

    def run(source: str, part: Any, params: Any, *, sha256: str, limits: Limits) -> RunOutcome:
        given.append(limits)
        if len(given) == 1:  # the share ran out on the data of this one
            return RunOutcome(status=RunStatus.TIMED_OUT)
        return real(source, part, params, sha256=sha256, limits=limits)

    real = release.run_program
    monkeypatch.setattr(release, "run_program", run)
    budget = replace(limits, job_wall_seconds=2 * MIN_RUN_SECONDS)
    source = "OUTPUT_BOUNDS = [0, 5000]\nresult = stats.mean(stats.column(data, 'income'))\n"
    released = release_private(
        compile_program(source), rows, epsilon=1.0, partitions=4, limits=budget, seed=2, pace=pace
    )
    assert released.status is RunStatus.SUCCEEDED
    assert [r.status for r in released.runs].count(RunStatus.TIMED_OUT) == 1
    assert {(g.cpu_seconds, g.wall_seconds) for g in given} == {(1, 2.0)} and len(given) == 4


def test_when_every_partition_fails_the_release_still_releases_and_says_nothing_of_it(
    rows: list[dict[str, Any]], limits: Limits, pace: CountingPace
) -> None:
    """Found by a sweep: a job failed when every partition failed, reporting the first failure's
    class and line. A program that fails only when a firm's value passes a threshold, or fails on
    the line ``value % 1000`` picks, released that firm's tax without noise, job by job."""
    program = compile_program("OUTPUT_BOUNDS = [0, 1]\nx = 1\nresult = x / 0\n")
    released = release_private(program, rows, epsilon=0.5, partitions=3, limits=limits, pace=pace)
    assert released.status is RunStatus.SUCCEEDED and released.epsilon_spent == 0.5
    assert isinstance(released.value, float) and 0 <= released.value <= 1  # the midpoint, noised
    assert released.public_dict()["error"] is None
    assert "ZeroDivisionError" not in text_of(released.public_dict())
    assert {run.error_class for run in released.runs} == {"ZeroDivisionError"}  # the staff's record
    assert [run["error_class"] for run in released.to_record()["runs"]] == ["ZeroDivisionError"] * 3


def test_a_program_that_fails_on_a_subjects_value_releases_alike_either_way(
    rows: list[dict[str, Any]], limits: Limits, pace: CountingPace
) -> None:
    source = f"""
OUTPUT_BOUNDS = [0, 1]
v = [r["income"] for r in data if r["ssn"] == "{VICTIM_SSN}"]
if not v or v[0] <= params["t"]:
    raise ValueError
result = 1
"""
    program = compile_program(source)
    views = []
    for threshold in (VICTIM_INCOME - 1, VICTIM_INCOME + 1):  # the run fails everywhere in the second
        released = release_private(
            program, rows, {"t": threshold}, epsilon=1.0, partitions=2, limits=limits, seed=3, pace=pace
        )
        view = released.public_dict()
        assert view["status"] == "succeeded" and view["error"] is None, view
        views.append({key: value for key, value in view.items() if key != "result"})
    assert views[0] == views[1]


def test_only_a_program_no_row_could_make_fail_fails_a_private_release(
    rows: list[dict[str, Any]], limits: Limits, pace: CountingPace
) -> None:
    program = compile_program("OUTPUT_BOUNDS = [0, 1]\nresult = 1\n")
    changed = replace(program, sha256="0" * 64)  # not the program approved: the child refuses it
    released = release_private(changed, rows, epsilon=0.5, partitions=2, limits=limits, pace=pace)
    assert (released.status, released.error_class) == (RunStatus.FAILED, "ProgramChanged")
    assert released.value is None and released.epsilon_spent == 0.5


def test_a_program_the_child_cannot_compile_is_no_failure_a_private_release_shows(
    rows: list[dict[str, Any]], limits: Limits, monkeypatch: pytest.MonkeyPatch, pace: CountingPace
) -> None:
    """Review: the child compiles after it holds the partition's rows, so a compile that runs out of
    memory there (ProgramInvalid) said how much data a partition held."""

    def run(source: str, part: Any, params: Any, *, sha256: str, limits: Limits) -> RunOutcome:
        return RunOutcome(status=RunStatus.FAILED, error_class="ProgramInvalid")

    monkeypatch.setattr(release, "run_program", run)
    program = compile_program("OUTPUT_BOUNDS = [0, 1]\nresult = 1\n")
    released = release_private(program, rows, epsilon=0.5, partitions=2, limits=limits, pace=pace)
    assert released.status is RunStatus.SUCCEEDED and released.public_dict()["error"] is None


def test_progress_and_the_end_keep_to_the_timetable_not_to_the_runs(
    rows: list[dict[str, Any]], limits: Limits, pace: CountingPace
) -> None:
    """Progress is told at each slot's end and the release returns at the last one's, whatever
    the runs did (a sweep could read a subject's value off how long a release took)."""
    seen: list[tuple[int, int, float]] = []
    program = compile_program("OUTPUT_BOUNDS = [0, 1]\nresult = 0.5\n")
    timetable = schedule(limits, 5, 2)
    released = release_private(
        program, rows, epsilon=1.0, partitions=5, limits=limits, pace=pace,
        progress=lambda d, t: seen.append((d, t, pace.now())),
    )  # fmt: skip
    slot = timetable.slot_seconds
    assert seen == [(2, 5, slot), (4, 5, 2 * slot), (5, 5, 3 * slot)]
    assert pace.now() == timetable.seconds == 3 * slot
    assert released.schedule is not None and released.schedule["seconds"] == timetable.seconds
    assert released.to_record()["schedule"]["overran_seconds"] == 0.0
    assert "schedule" not in released.public_dict()


@pytest.mark.parametrize("spin", [False, True], ids=["quick", "spins_until_killed"])
def test_a_release_on_the_real_clock_ends_when_its_timetable_does(
    rows: list[dict[str, Any]], limits: Limits, spin: bool
) -> None:
    """Waited out for real: a program that ends at once and one that spins on the victim's row
    until its run is killed both return at the timetable's end, and look alike to the operator."""
    source = f"""
OUTPUT_BOUNDS = [0, 1]
if {spin} and any(r["ssn"] == "{VICTIM_SSN}" for r in data):
    while True:
        pass
result = 0.5
"""
    clock = RecordingPace()
    budget = replace(limits, job_wall_seconds=2 * MIN_RUN_SECONDS + SLOT_MARGIN_SECONDS)
    timetable = schedule(budget, 2, 2)
    released = release_private(
        compile_program(source), rows, epsilon=1.0, partitions=2, limits=budget, pace=clock, seed=5
    )
    assert timetable.rounds == 1 and clock.asked == [clock.started + timetable.seconds]
    assert clock.started + timetable.seconds <= clock.now() < clock.started + timetable.seconds + 1.0
    assert released.status is RunStatus.SUCCEEDED and released.public_dict()["error"] is None
    statuses = {run.status for run in released.runs}
    assert statuses == ({RunStatus.SUCCEEDED, RunStatus.TIMED_OUT} if spin else {RunStatus.SUCCEEDED})


def test_a_run_that_outlives_its_slot_does_not_make_the_release_late(
    rows: list[dict[str, Any]], limits: Limits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review: a release waited for every run, so one that outlived its slot (a kill or a reap
    that a loaded machine made slow, an input too big to encode in the margin) moved its end,
    which the operator reads off ``finished_at``, unnoised. At the timetable's end the release
    returns; a run not done by then stands in its midpoints, as any failed one."""
    budget = replace(limits, job_wall_seconds=2 * MIN_RUN_SECONDS + SLOT_MARGIN_SECONDS)
    timetable = schedule(budget, 2, 2)
    calls: list[int] = []

    def run(source: str, part: Any, params: Any, *, sha256: str, limits: Limits) -> RunOutcome:
        calls.append(1)
        if len(calls) == 1:  # this partition's run ends well past its slot
            time.sleep(timetable.slot_seconds + 3)
        return RunOutcome(status=RunStatus.SUCCEEDED, result=1.0)

    monkeypatch.setattr(release, "run_program", run)
    clock = RecordingPace()
    released = release_private(
        compile_program("OUTPUT_BOUNDS = [0, 1]\nresult = 1\n"),
        rows, epsilon=1.0, partitions=2, limits=budget, pace=clock, seed=5,
    )  # fmt: skip
    assert clock.started is not None and clock.now() - clock.started < timetable.seconds + 1.0
    assert released.status is RunStatus.SUCCEEDED and released.public_dict()["error"] is None
    assert sorted(run.status for run in released.runs) == [RunStatus.SUCCEEDED, RunStatus.TIMED_OUT]
    assert released.to_record()["schedule"]["late_runs"] == 1


class RecordingPace(Pace):
    """The real clock, noting when a release began and what it waited for."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.asked: list[float] = []

    def now(self) -> float:
        at = super().now()
        if self.started is None:
            self.started = at
        return at

    def wait_until(self, deadline: float) -> None:
        self.asked.append(deadline)
        super().wait_until(deadline)


def test_diffprivlibs_global_accountant_is_never_used(
    rows: list[dict[str, Any]], limits: Limits, pace: CountingPace
) -> None:
    accountant = BudgetAccountant.load_default(None)
    before = list(accountant.spent_budget)
    program = compile_program("OUTPUT_BOUNDS = [0, 1]\nresult = 0.5\n")
    release_private(program, rows, epsilon=1.0, partitions=2, limits=limits, pace=pace)
    assert list(BudgetAccountant.load_default(None).spent_budget) == before


def test_partitions_are_disjoint_complete_and_keep_a_subject_together() -> None:
    import random

    rows = [{"id": i, "firm": f"F{i % 30}"} for i in range(600)]
    parts = partition(rows, 7, key="firm", rng=random.Random(3))
    assert sorted(r["id"] for part in parts for r in part) == list(range(600))
    for firm in {r["firm"] for r in rows}:
        assert sum(any(r["firm"] == firm for r in part) for part in parts) == 1
    assert all(parts)
    by_row = partition(rows, 7, rng=random.Random(3))
    assert sorted(r["id"] for part in by_row for r in part) == list(range(600))


def test_partitions_by_groups_beside_the_rows_keep_a_subject_together_unseen() -> None:
    import random

    # The subject of each row is given beside it, not in it: the program never sees the key.
    rows = [{"id": i} for i in range(300)]
    subjects = [f"F{i % 20}" for i in range(300)]
    parts = partition(rows, 5, rng=random.Random(4), groups=subjects)
    assert sorted(r["id"] for part in parts for r in part) == list(range(300))
    for firm in set(subjects):
        holding = [p for p in parts if any(subjects[r["id"]] == firm for r in p)]
        assert len(holding) == 1
    with pytest.raises(ValueError, match="every row"):
        partition(rows, 5, groups=subjects[:-1])


SCORE = """
OUTPUT_BOUNDS = {"score": [300, 900], "band": [0, 3]}
incomes = stats.column(data, "income")
score = min(900, 300 + stats.mean(incomes) / 10)
result = {"score": score, "band": 0 if score < 450 else (1 if score < 600 else 2)}
"""


def test_exact_release_of_one_subjects_score(rows: list[dict[str, Any]], limits: Limits) -> None:
    subject_rows = [r for r in rows if r["credit_code"] == "C999"]
    release = release_exact(compile_program(SCORE), subject_rows, limits=limits)
    assert release.status is RunStatus.SUCCEEDED and release.mode is ReleaseMode.EXACT
    assert release.value == {"score": 900, "band": 2} and release.epsilon_spent == 0.0
    assert release.public_dict()["network_isolation"] in ("namespace", "user_namespace", "unavailable")


def test_exact_release_keeps_to_declared_keys_and_shapes(rows: list[dict[str, Any]], limits: Limits) -> None:
    undeclared = compile_program('OUTPUT_BOUNDS = {"a": [0, 1]}\nresult = {"a": 1, "b": 2}\n')
    release = release_exact(undeclared, rows, limits=limits)
    assert (release.status, release.problem) == (RunStatus.FAILED, "undeclared_key")
    free = release_exact(compile_program('result = {"a": 1, "b": 2}\n'), rows, limits=limits)
    assert free.value == {"a": 1, "b": 2}
    rows_out = release_exact(compile_program("result = {'r': list(data)}\n"), rows, limits=limits)
    assert (rows_out.status, rows_out.error_class) == (RunStatus.FAILED, "ResultRefused")
    assert rows_out.value is None


def test_a_release_whose_worker_is_asked_to_stop_gives_up_its_wait(
    rows: list[dict[str, Any]], limits: Limits
) -> None:
    stop = threading.Event()
    clock = RecordingPace().watching(stop)
    threading.Timer(0.2, stop.set).start()
    program = compile_program("OUTPUT_BOUNDS = [0, 1]\nresult = 0.5\n")
    with pytest.raises(ReleaseStopped):
        release_private(program, rows, epsilon=1.0, partitions=2, limits=limits, pace=clock)
    assert isinstance(clock, RecordingPace) and clock.started is not None
    assert clock.now() - clock.started < schedule(limits, 2, 2).seconds  # not the timetable's end
