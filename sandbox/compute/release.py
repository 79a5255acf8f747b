"""Release: what of a program's output may leave, and how.

**Private (the default)**, by sample-and-aggregate: the rows are split into ``k`` disjoint
partitions, the program runs once per partition (each in its own fresh child), each output is
clamped leaf by leaf to the range the program declared in ``OUTPUT_BOUNDS``, the ``k`` outputs are
averaged, and Laplace noise (diffprivlib) is added with sensitivity ``(hi - lo) / k`` and the job's
ε split evenly across the leaves. One subject lives in one partition, so it moves the average by
at most ``(hi - lo) / k``: even an approved program cannot single out a record. What is released
is the average of per-partition outputs, so a program released this way should compute something
meaningful on a sample (a mean, a rate, a quantile, a score): a sum over a partition is ~1/k of
the total. The keys of the release are those declared, never ones the data chose.

A partition whose run fails, or whose output lacks a declared leaf or is not a number there,
contributes the midpoint of that leaf's range: its failure must not show. That holds when every
partition fails too: whether a run fails, and its error's class, line and problem, can depend on
the data (``if v > t: raise``), and a job that failed, or said where, would release without noise
what the ε was meant to cover (a sweep recovered a firm's exact tax from the failing line). So a
private release fails only for what no row can cause: the program not being the program
approved. (Not compiling in the child is no such failure: the program compiled before the job
started, so in the child it means the memory the partition's rows left was too little.) What the
runs did is in the staff's record of the job, not the operator's.

How long it took is no more the data's to say than whether it failed (``if v > t: spin``): a
private release keeps a timetable fixed before any run, from the job's shape and the worker's
settings alone (:func:`schedule`), as Fuzz does for its microqueries (Haeberlen, Pierce and
Narayan, "Differential Privacy Under Fire", USENIX Security 2011). Each partition's run is given
one slot of wall time and is killed at its end (its midpoints stand in); progress is reported at
the slots' ends, not as runs finish; and the release waits for the last slot to end before it
returns, so its end is the same whatever the runs did. A run that outlives its slot (a machine
too loaded to kill and reap it in the margin) is not waited for: the release returns at the
timetable's end and the run stands in as timed out (``SlotExceeded``); the staff's record counts
such runs.

**Exact**, only for programs a reviewer allowed it for (the caller checks): one run over all the
rows it was given — the whole authorized data, or one consenting subject's rows for a
subject-scoped job — with the same shape checks, and when OUTPUT_BOUNDS is declared, only its
keys.

**Mock**, for any approved program: an exact run over mock rows made from the schema alone
(:mod:`sandbox.compute.inputs`), so that an operator sees its program's output and failures —
class, line, problem — on data with nothing to protect, as a private release will not show them.
Its output is not sealed (:mod:`sandbox.compute.execute`).

The ε budget of record lives in the control database; this module never touches diffprivlib's
global ``BudgetAccountant``. ``Release.epsilon_spent`` is what the caller charges (reserve it
before calling: it is spent once partitions have run, whatever the outcome).
"""

from __future__ import annotations

import copy
import math
import random
import secrets
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from diffprivlib.mechanisms import Laplace

from sandbox.compute.compile import CompiledProgram
from sandbox.compute.errors import ReleaseRefused
from sandbox.compute.runner import Isolation, Limits, RunOutcome, RunStatus, run_program
from sandbox.compute.shape import (
    Bounds,
    Path,
    ResultValue,
    ShapeProblem,
    flatten,
    flatten_bounds,
    unflatten,
)

Row = Mapping[str, Any]
Progress = Callable[[int, int], None]
MIN_PARTITIONS = 2
MAX_PARTITIONS = 1000
# The least CPU time a partition's run is given, whatever its share (its wall time is twice it): a
# fresh interpreter that drops privileges and enters its namespaces needs ~0.1 s of it before the
# program starts.
MIN_RUN_SECONDS = 1.0
# What a slot holds beyond its run's wall time: starting the child, killing and reaping it at the
# limit, recording progress.
SLOT_MARGIN_SECONDS = 1.0
# Failures no row can cause: the child checks the source's hash before anything else. Only these
# fail a private release, and only when every partition failed so (see the module docstring).
DATA_INDEPENDENT = frozenset({"ProgramChanged"})
# What a run not done at its timetable's end stands in as (it is not waited for).
LATE = "SlotExceeded"


class ReleaseMode(StrEnum):
    """How a result is released."""

    PRIVATE = "private"
    EXACT = "exact"
    MOCK = "mock"  # exact, over mock rows made from the schema: nothing of the data to protect


@dataclass(frozen=True, kw_only=True)
class Release:
    """What a job releases (``value``) or how it failed, with every run behind it."""

    mode: ReleaseMode
    status: RunStatus
    value: ResultValue | None = None
    epsilon_spent: float = 0.0
    partitions: int = 1
    error_class: str | None = None
    error_line: int | None = None
    problem: str | None = None
    runs: tuple[RunOutcome, ...] = ()
    schedule: Mapping[str, Any] | None = None  # a private release's timetable, for staff

    @property
    def isolation(self) -> Isolation | None:
        """The isolation the runs achieved (the weakest network isolation among them)."""
        reports = [run.isolation for run in self.runs if run.isolation is not None]
        weakest = [r for r in reports if r.network != "namespace"] or reports
        return weakest[0] if weakest else None

    def public_dict(self) -> dict[str, Any]:
        """What the operator may see: never per-partition detail."""
        isolation = self.isolation
        return {
            "mode": self.mode.value,
            "status": self.status.value,
            "result": self.value,
            "epsilon_spent": self.epsilon_spent,
            "error": None
            if self.status is RunStatus.SUCCEEDED
            else {"class": self.error_class, "line": self.error_line, "problem": self.problem},
            "network_isolation": isolation.network if isolation else None,
        }

    def to_record(self) -> dict[str, Any]:
        """The full record for staff: the public part and every run."""
        isolation = self.isolation
        return {
            **self.public_dict(),
            "partitions": self.partitions,
            "isolation": isolation.to_dict() if isolation else None,
            "schedule": dict(self.schedule) if self.schedule is not None else None,
            "runs": [run.to_record() for run in self.runs],
        }


def _failed(mode: ReleaseMode, outcome: RunOutcome, **extra: Any) -> Release:
    return Release(
        mode=mode,
        status=outcome.status,
        error_class=outcome.error_class,
        error_line=outcome.error_line,
        problem=outcome.problem,
        **extra,
    )


def release_exact(
    program: CompiledProgram,
    rows: Sequence[Row],
    params: Mapping[str, Any] | None = None,
    *,
    limits: Limits | None = None,
    mode: ReleaseMode = ReleaseMode.EXACT,
) -> Release:
    """Run once over ``rows`` and release the checked output as it is (reviewer-allowed only, or
    ``mode`` mock: over mock rows)."""
    outcome = run_program(program.source, rows, params, sha256=program.sha256, limits=limits)
    if not outcome.succeeded or outcome.result is None:
        return _failed(mode, outcome, runs=(outcome,))
    if program.output_bounds is not None:
        declared = set(flatten_bounds(program.output_bounds))
        if not set(flatten(outcome.result)) <= declared:
            return Release(
                mode=mode,
                status=RunStatus.FAILED,
                error_class="ResultRefused",
                problem=ShapeProblem.UNDECLARED_KEY.value,
                runs=(outcome,),
            )
    return Release(mode=mode, status=RunStatus.SUCCEEDED, value=outcome.result, runs=(outcome,))


def partition(
    rows: Sequence[Row],
    k: int,
    *,
    key: str | None = None,
    rng: random.Random | None = None,
    groups: Sequence[Hashable] | None = None,
) -> list[list[Row]]:
    """Split ``rows`` into ``k`` disjoint partitions, all rows of one ``key`` value together.

    Each group (one row, or every row sharing ``key``) draws its partition independently and
    uniformly, so adding or removing one subject changes one partition and leaves the others'
    draws alone — the property the sensitivity bound rests on. ``groups``, when given, names the
    group of each row instead of ``key`` (parallel to ``rows``): the subject a row is about, when
    the program is not shown the field that identifies it. The draws come from the system's
    CSPRNG unless a seeded ``rng`` is given (tests only).
    """
    if groups is not None and len(groups) != len(rows):
        raise ValueError("groups must name the group of every row")
    draw = rng or secrets.SystemRandom()
    parts: list[list[Row]] = [[] for _ in range(k)]
    assigned: dict[Any, int] = {}
    for position, row in enumerate(rows):
        if key is None and groups is None:
            index = draw.randrange(k)
        else:
            group = groups[position] if groups is not None else row.get(key or "")
            if group not in assigned:
                assigned[group] = draw.randrange(k)
            index = assigned[group]
        parts[index].append(row)
    return parts


def _check_private(program: CompiledProgram, epsilon: float, k: int) -> dict[Path, Bounds]:
    if program.output_bounds is None:
        raise ReleaseRefused(
            "private release needs the program to declare OUTPUT_BOUNDS",
            details={"problem": "no_output_bounds"},
        )
    if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon > 0):
        raise ReleaseRefused("epsilon must be a positive number", details={"problem": "bad_epsilon"})
    if not MIN_PARTITIONS <= k <= MAX_PARTITIONS:
        raise ReleaseRefused(
            f"partitions must be between {MIN_PARTITIONS} and {MAX_PARTITIONS}",
            details={"problem": "bad_partitions"},
        )
    return flatten_bounds(program.output_bounds)


class ReleaseStopped(Exception):
    """The worker was asked to stop while a private release kept its timetable: nothing released."""


class Pace:
    """The clock a private release keeps its timetable by: monotonic time, waited out by sleeping,
    and cut short (:class:`ReleaseStopped`) when ``stop`` is set (:meth:`watching`).

    Tests give one that only counts (the schedule is the same; nothing waits)."""

    stop: threading.Event | None = None

    def watching(self, stop: threading.Event) -> Pace:
        """A copy that gives up its wait when ``stop`` is set: a worker asked to stop does not
        hold its job for the rest of a timetable (the moment is the administrator's, not the data's)."""
        watched = copy.copy(self)
        watched.stop = stop
        return watched

    def now(self) -> float:
        """Seconds on a clock that never goes back."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (less, when ``stop`` is set meanwhile)."""
        if self.stop is not None:
            self.stop.wait(seconds)
        else:
            time.sleep(seconds)

    def wait_until(self, deadline: float) -> None:
        """Return no earlier than ``deadline`` (a time of :meth:`now`); raise
        :class:`ReleaseStopped` if ``stop`` is set first."""
        while (left := deadline - self.now()) > 0:
            if self.stop is not None and self.stop.is_set():
                raise ReleaseStopped
            self.sleep(left)

    def settle(self, futures: Sequence[Future[RunOutcome]], deadline: float) -> set[Future[RunOutcome]]:
        """The runs done by ``deadline`` (a time of :meth:`now`), which has passed or nearly."""
        done, _ = wait(futures, timeout=max(0.0, deadline - self.now()))
        return done


@dataclass(frozen=True)
class Schedule:
    """A private release's timetable: ``rounds`` slots of ``slot_seconds``, each run's ``limits``."""

    limits: Limits
    rounds: int
    slot_seconds: float

    @property
    def seconds(self) -> float:
        """How long the release takes, whatever its runs do."""
        return self.rounds * self.slot_seconds

    def to_record(self, overran: float, late: int = 0) -> dict[str, Any]:
        """For the staff's record of the job: also how late it returned, and the runs not done
        at its end (they count as timed out)."""
        return {
            "rounds": self.rounds,
            "slot_seconds": self.slot_seconds,
            "seconds": self.seconds,
            "run_cpu_seconds": self.limits.cpu_seconds,
            "run_wall_seconds": self.limits.wall_seconds,
            "overran_seconds": round(overran, 3),
            "late_runs": late,
        }


def schedule(limits: Limits, partitions: int, concurrency: int) -> Schedule:
    """The timetable of a private release, fixed before any run from its shape and ``limits``.

    The partitions run ``concurrency`` at a time, so in ``rounds``; each round is one slot of the
    job's time (``job_wall_seconds``), at least what a run needs. A run is killed at its slot's
    wall time less a margin, and is held to half that as CPU time, which is each process's own
    (``RLIMIT_CPU``): a partition that spins on its data does not make its neighbour, which shares
    the machine but not the CPU budget, run out of wall time, so one subject still moves one
    partition's output only, as sample-and-aggregate's bound assumes. A partition that runs out
    contributes its midpoints like any failed one. (Stopping the whole job at the first timeout
    would release, unnoised, that some partition's data made the program slow.)

    ``rounds * slot_seconds`` is the release's length; it is ``job_wall_seconds`` unless a run's
    own limits make it shorter or the least a run is given makes it longer.
    """
    rounds = math.ceil(partitions / max(1, concurrency))
    wall = min(
        limits.wall_seconds,
        max(2.0 * MIN_RUN_SECONDS, limits.job_wall_seconds / rounds - SLOT_MARGIN_SECONDS),
    )
    cpu = max(1, min(limits.cpu_seconds, math.floor(wall / 2)))
    return Schedule(
        limits=replace(limits, cpu_seconds=cpu, wall_seconds=wall),
        rounds=rounds,
        slot_seconds=wall + SLOT_MARGIN_SECONDS,
    )


def _run_partitions(
    program: CompiledProgram,
    parts: list[list[Row]],
    params: Mapping[str, Any] | None,
    timetable: Schedule,
    concurrency: int,
    progress: Progress | None,
    pace: Pace,
) -> tuple[list[RunOutcome], float, int]:
    """Every partition's run, in a pool of ``concurrency``; progress and the return kept to the
    timetable. Also how many seconds past its end the release returned (0 when on time) and how
    many runs were not done by then.

    A run not done when the timetable ends is not waited for: it stands in as timed out (its
    partition's midpoints, as any failed one's), and its thread reaps it after the release has
    returned. Waiting would let a run that outlived its slot move the release's end, which the
    operator sees, unnoised; not waiting lets it move at most the partitions that queued behind it
    in its thread, whose outputs are noised."""
    started = pace.now()
    end = started + timetable.seconds
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    try:
        futures = [
            pool.submit(
                run_program, program.source, part, params, sha256=program.sha256, limits=timetable.limits
            )
            for part in parts
        ]
        # Told by the clock, never by a run: a run that ends early shows no sooner than its slot.
        for slot in range(1, timetable.rounds + 1):
            pace.wait_until(started + slot * timetable.slot_seconds)
            if progress is not None:
                progress(min(slot * max(1, concurrency), len(parts)), len(parts))
        done = pace.settle(futures, end)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    outcomes = [
        future.result() if future in done else RunOutcome(status=RunStatus.TIMED_OUT, error_class=LATE)
        for future in futures
    ]
    overran = max(0.0, pace.now() - end)
    return outcomes, overran, len(futures) - len(done)


def _clamped_mean(outcomes: list[RunOutcome], bounds: dict[Path, Bounds]) -> dict[Path, float]:
    """Per leaf: each partition's output clamped to its range (midpoint if missing), averaged.

    Each output divided by k first, then summed exactly (``math.fsum``): a running sum that
    overflowed would let one partition move the average to inf, past the sensitivity the noise
    assumes (OUTPUT_BOUNDS are held far below that anyway: ``shape.MAX_ABS_BOUND``)."""
    totals: dict[Path, list[float]] = {path: [] for path in bounds}
    for outcome in outcomes:
        leaves = flatten(outcome.result) if outcome.succeeded and outcome.result is not None else {}
        for path, (low, high) in bounds.items():
            value = leaves.get(path)
            totals[path].append((low + high) / 2 if value is None else min(max(value, low), high))
    return {path: math.fsum(v / len(outcomes) for v in values) for path, values in totals.items()}


def _noised(
    means: dict[Path, float], bounds: dict[Path, Bounds], epsilon: float, k: int, seed: int | None
) -> dict[Path, float]:
    """Laplace noise per leaf (ε split evenly), then clamped back into range (post-processing)."""
    share = epsilon / len(means)
    noisy: dict[Path, float] = {}
    for index, (path, mean) in enumerate(means.items()):
        low, high = bounds[path]
        state = None if seed is None else seed + index
        mechanism = Laplace(epsilon=share, sensitivity=(high - low) / k, random_state=state)
        noisy[path] = min(max(float(mechanism.randomise(mean)), low), high)
    return noisy


def release_private(
    program: CompiledProgram,
    rows: Sequence[Row],
    params: Mapping[str, Any] | None = None,
    *,
    epsilon: float,
    partitions: int = 10,
    partition_key: str | None = None,
    groups: Sequence[Hashable] | None = None,
    limits: Limits | None = None,
    concurrency: int = 2,
    progress: Progress | None = None,
    seed: int | None = None,
    pace: Pace | None = None,
) -> Release:
    """Differentially private release by sample-and-aggregate (see the module docstring).

    ``partition_key`` names the field that identifies a subject (a firm's credit code), so that
    all of one subject's rows fall in one partition and the guarantee covers the subject, not
    just the row; or ``groups`` gives each row's subject without showing it to the program (see
    :func:`partition`). ``ReleaseRefused`` (nothing run, nothing spent) when the program declares no
    OUTPUT_BOUNDS or ε or ``partitions`` is out of range. ``seed`` makes partitions and noise
    reproducible: for tests, never for a real release. The release returns when its timetable
    ends (:func:`schedule`), by ``pace``'s clock (the real one unless a test gives another).
    """
    bounds = _check_private(program, epsilon, partitions)
    # A seeded generator is for tests only; real releases draw from the CSPRNG.
    rng = None if seed is None else random.Random(seed)  # noqa: S311
    parts = partition(rows, partitions, key=partition_key, rng=rng, groups=groups)
    timetable = schedule(limits or Limits(), partitions, concurrency)
    outcomes, overran, late = _run_partitions(
        program, parts, params, timetable, concurrency, progress, pace or Pace()
    )
    spent, runs = float(epsilon), tuple(outcomes)
    timing = timetable.to_record(overran, late)
    unrunnable = [o for o in outcomes if o.error_class in DATA_INDEPENDENT]
    if len(unrunnable) == len(outcomes):
        return _failed(
            ReleaseMode.PRIVATE,
            unrunnable[0],
            epsilon_spent=spent,
            partitions=partitions,
            runs=runs,
            schedule=timing,
        )
    means = _clamped_mean(outcomes, bounds)
    value = unflatten(_noised(means, bounds, spent, partitions, seed))
    return Release(
        mode=ReleaseMode.PRIVATE,
        status=RunStatus.SUCCEEDED,
        value=value,
        epsilon_spent=spent,
        partitions=partitions,
        runs=runs,
        schedule=timing,
    )
