"""Compute programs: RestrictedPython against plain Python, and the cost of a fresh child per job.

    python bench/compute.py [--rows 200000] [--repeat 5] [--starts 20]

1. The same scoring program over the same rows (read-only records, the same ``stats`` and
   ``math`` helpers), executed in this process twice: compiled by the sandbox's policy with its
   guards, and compiled as plain Python with the real builtins. CPU time, best of ``--repeat``.
   The goal is a ratio of at most 2x.
   For scale, the same program as a job (one child) and as a private release (10 children, which
   takes its fixed timetable, 30 s by default, however quick its runs: see sandbox.compute.release).
2. Job start overhead: a run of an empty program (``result = 0``, no rows) through the real
   runner — fresh interpreter, imports, lock-down, pipes, wall clock — against starting a bare
   ``python -I -S -c pass`` the same way. Median of ``--starts``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.compute.compile import compile_program  # noqa: E402
from sandbox.compute.guards import ATTRIBUTE_NAMES, SAFE_BUILTIN_NAMES, namespace  # noqa: E402
from sandbox.compute.policy import compile_restricted  # noqa: E402
from sandbox.compute.release import release_private  # noqa: E402
from sandbox.compute.runner import probe_isolation, run_program  # noqa: E402

PROGRAM = """
totals = {}
counts = {}
for r in data:
    tax = r["annual_tax"]
    if tax is None or r["employees"] < params["min_employees"]:
        continue
    d = r["district"]
    totals[d] = totals.get(d, 0.0) + tax
    counts[d] = counts.get(d, 0) + 1
means = {d: totals[d] / counts[d] for d in totals}
scores = []
for r in data:
    s = 0.0
    if r["annual_tax"] is not None:
        s += math.log(1 + r["annual_tax"]) * 2
    s += min(r["employees"], 100) / 10
    if r["district"].startswith("历"):
        s += 1
    scores.append(s)
result = {"mean_score": stats.mean(scores), "median_score": stats.median(scores), "districts": len(means)}
"""
BOUNDS = 'OUTPUT_BOUNDS = {"mean_score": [0, 60], "median_score": [0, 60], "districts": [0, 10]}\n'
DISTRICTS = ["历下区", "市中区", "槐荫区", "天桥区", "历城区", "长清区"]


def _rows(count: int) -> list[dict[str, Any]]:
    rng = random.Random(1)
    return [
        {
            "annual_tax": None if rng.random() < 0.05 else round(rng.lognormvariate(11, 1.2), 2),
            "employees": int(rng.paretovariate(1.3)) + 1,
            "district": rng.choice(DISTRICTS),
        }
        for _ in range(count)
    ]


def _cpu(code: Any, names: dict[str, Any]) -> float:
    started = time.process_time()
    exec(code, names)
    return time.process_time() - started


def ratio(rows: list[dict[str, Any]], repeat: int) -> tuple[float, float]:
    """Best CPU seconds of the restricted and the plain run of PROGRAM over ``rows``."""
    restricted, problems = compile_restricted(PROGRAM, SAFE_BUILTIN_NAMES, ATTRIBUTE_NAMES)
    assert restricted is not None, problems
    plain = compile(PROGRAM, "<plain>", "exec")
    params = {"min_employees": 3}
    timings: dict[str, list[float]] = {"restricted": [], "plain": []}
    results = []
    for _ in range(repeat):
        guarded = namespace(rows, params)
        unguarded = {**guarded, "__builtins__": __builtins__}
        timings["restricted"].append(_cpu(restricted, guarded))
        timings["plain"].append(_cpu(plain, unguarded))
        results.append((guarded["result"], unguarded["result"]))
    assert all(a == b for a, b in results), "the two runs disagree"
    return min(timings["restricted"]), min(timings["plain"])


def _bare_start() -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", "pass"], env={}, cwd="/", close_fds=True, check=True
    )
    return time.perf_counter() - started


def starts(count: int) -> tuple[float, float]:
    """Median wall seconds of an empty job through the runner, and of a bare interpreter start."""
    jobs, bare = [], []
    for _ in range(count):
        outcome = run_program("result = 0\n", [])
        assert outcome.succeeded, outcome
        jobs.append(outcome.duration_seconds)
        bare.append(_bare_start())
    return statistics.median(jobs), statistics.median(bare)


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--starts", type=int, default=20)
    args = parser.parse_args()

    rows = _rows(args.rows)
    restricted, plain = ratio(rows, args.repeat)
    print(f"program over {args.rows:,} rows, best of {args.repeat} (CPU seconds, in-process):")
    print(f"  RestrictedPython + guards  {restricted:8.3f} s")
    print(f"  plain Python               {plain:8.3f} s")
    print(f"  ratio                      {restricted / plain:8.2f}x   (goal <= 2x)")

    in_child = run_program(PROGRAM, rows, {"min_employees": 3})
    assert in_child.succeeded, in_child
    print(f"  same program in a job:     {in_child.duration_seconds:8.3f} s wall "
          f"({in_child.compute_seconds or 0:.3f} s running the program)")  # fmt: skip

    started = time.perf_counter()
    release = release_private(compile_program(BOUNDS + PROGRAM), rows, {"min_employees": 3}, epsilon=1.0)
    assert release.value is not None, release
    took = time.perf_counter() - started
    slowest = max(run.duration_seconds for run in release.runs)
    timetable = release.schedule or {}
    fixed = timetable.get("seconds", 0)
    print(f"  private release, {release.partitions} partitions: {took:8.3f} s wall, its timetable's "
          f"{fixed:.0f} s whatever the runs do (the slowest run took {slowest:.3f} s)")  # fmt: skip

    job, bare = starts(args.starts)
    print(f"job start overhead, median of {args.starts}:")
    print(f"  empty job through the runner  {job * 1000:7.1f} ms")
    print(f"  bare `python -I -S -c pass`   {bare * 1000:7.1f} ms")
    print(f"  ratio                         {job / bare:7.1f}x")

    probe = probe_isolation()
    isolation = probe.isolation.to_dict() if probe.isolation else {}
    print("isolation:", isolation, dict(probe.probe))


if __name__ == "__main__":
    main()
