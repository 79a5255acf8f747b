"""The wall: every run of a program is a fresh child process, locked down before it reads anything.

RestrictedPython decides what the program's code may name; this module makes sure that even a
program that got past it finds nothing there: the child (``_child.py``) has an empty environment,
no inherited descriptors but its two pipes, no network namespace shared with the service, no
privileges, no new files, sockets or processes, and CPU and memory limits. The parent adds what
the child cannot do for itself: a hard wall-clock kill of the child's whole process group, a cap
on what it may write back, and a second check of everything it says. Whatever happens inside —
``SystemExit``, ``MemoryError``, a segfault, an endless loop, the OOM killer — ends as a
``RunOutcome`` with a status and an error class; nothing is raised into the caller.

Fresh ``exec`` rather than ``fork`` of a warm zygote: a fork would inherit the service's memory
(keys, other jobs' data) and threads; an exec starts from nothing, for ~0.1 s (bench/compute.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import RestrictedPython

import sandbox
from sandbox.compute.compile import source_sha256
from sandbox.compute.guards import REPORTABLE_ERRORS
from sandbox.compute.shape import ResultValue, ShapeError, ShapeProblem, check_result

CHILD = Path(__file__).with_name("_child.py")
IMPORT_ROOT = Path(sandbox.__file__).resolve().parent.parent
RP_ROOT = Path(RestrictedPython.__file__).resolve().parent.parent
MAX_FRAME_BYTES = 64 * 1024
# Error classes of the runner itself, besides the built-in exceptions a program may raise.
RUNNER_ERRORS = frozenset(
    {
        "ProgramInvalid", "ProgramChanged", "NoResult", "ResultRefused", "ChildError",
        "WallClockExceeded", "CPUTimeExceeded", "OutputTooLarge", "InputTooLarge", "Crashed",
        "Killed", "FileSizeExceeded", "InvalidInput", "SlotExceeded",
    }
)  # fmt: skip


class RunStatus(StrEnum):
    """How a run ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    KILLED = "killed"


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Resource limits of one run. Memory must hold the input rows about three times over.

    ``job_wall_seconds`` is what a private release's runs share, and how long such a release
    takes whatever they do (see :func:`sandbox.compute.release.schedule`): without a share, one
    job of 100 partitions that each spun to their own limit held a worker for half an hour.
    """

    cpu_seconds: int = 10
    wall_seconds: float = 20.0
    memory_bytes: int = 1 << 30
    max_input_bytes: int = 256 << 20
    max_output_bytes: int = MAX_FRAME_BYTES
    job_wall_seconds: float = 30.0


@dataclass(frozen=True, kw_only=True)
class Isolation:
    """What the child achieved before it read the program, as it reported and the parent checked."""

    network: str
    network_detail: str | None = None
    privileges: str = ""
    no_new_privs: bool = False

    def to_dict(self) -> dict[str, Any]:
        """For the job's record."""
        return {
            "network_isolation": self.network,
            "network_detail": self.network_detail,
            "privileges": self.privileges,
            "no_new_privs": self.no_new_privs,
        }


@dataclass(frozen=True, kw_only=True)
class RunOutcome:
    """The end of one run. ``result`` only when it succeeded; never a message, only a class."""

    status: RunStatus
    result: ResultValue | None = None
    error_class: str | None = None
    error_line: int | None = None
    problem: str | None = None
    isolation: Isolation | None = None
    duration_seconds: float = 0.0
    compute_seconds: float | None = None
    probe: Mapping[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        """Whether the program ran to the end and left a releasable result."""
        return self.status is RunStatus.SUCCEEDED

    def to_record(self) -> dict[str, Any]:
        """The run as the job's record keeps it (JSON)."""
        return {
            "status": self.status.value,
            "error_class": self.error_class,
            "error_line": self.error_line,
            "problem": self.problem,
            "isolation": self.isolation.to_dict() if self.isolation else None,
            "duration_seconds": round(self.duration_seconds, 6),
            "compute_seconds": None if self.compute_seconds is None else round(self.compute_seconds, 6),
        }


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot pass a {type(value).__name__} to a program")


def encode_input(
    source: str, sha256: str, rows: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> bytes:
    """The input message: program, its pinned hash, the authorized rows and the parameters."""
    message = {"source": source, "sha256": sha256, "rows": list(rows), "params": dict(params)}
    return json.dumps(message, ensure_ascii=False, allow_nan=False, default=_json_default).encode("utf-8")


def _argv(limits: Limits, mode: str) -> list[str]:
    return [
        sys.executable, "-I", "-S", "-B", "-X", "utf8", str(CHILD), str(IMPORT_ROOT), str(RP_ROOT),
        str(limits.cpu_seconds), str(limits.memory_bytes), mode,
    ]  # fmt: skip


@dataclass
class _Exchange:
    output: bytearray = field(default_factory=bytearray)
    timed_out: bool = False
    overflow: bool = False


def _pump(proc: subprocess.Popen[bytes], message: bytes, deadline: float, cap: int) -> _Exchange:
    """Write the input and read the output at once, until EOF, the deadline or the cap."""
    assert proc.stdin is not None and proc.stdout is not None
    done = _Exchange()
    stdin: IO[bytes] = proc.stdin
    view, sent = memoryview(message), 0
    os.set_blocking(stdin.fileno(), False)
    with selectors.DefaultSelector() as selector:
        selector.register(stdin, selectors.EVENT_WRITE)
        selector.register(proc.stdout, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                done.timed_out = True
                return done
            for key, _ in selector.select(remaining):
                if key.fileobj is stdin:
                    try:
                        sent += os.write(stdin.fileno(), view[sent : sent + (1 << 16)])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        sent = len(view)
                    if sent >= len(view):
                        selector.unregister(stdin)
                        stdin.close()
                    continue
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    selector.unregister(proc.stdout)
                done.output += chunk
                if len(done.output) > cap:
                    done.overflow = True
                    return done
    return done


def _exited(pid: int, deadline: float) -> bool:
    """Wait until the child has exited, without reaping it (so its group id stays its own)."""
    delay = 0.0005
    while True:
        found = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if found is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _spawn(message: bytes, limits: Limits, mode: str) -> tuple[_Exchange, int]:
    started = time.monotonic()
    deadline = started + limits.wall_seconds
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and script, fixed arguments
        _argv(limits, mode),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        env={},
        cwd="/",
        start_new_session=True,
    )
    try:
        exchange = _pump(proc, message, deadline, limits.max_output_bytes)
        if not (exchange.timed_out or exchange.overflow) and not _exited(proc.pid, deadline):
            exchange.timed_out = True
    finally:
        # The child is not reaped yet, so its process group cannot have been reused: kill the
        # whole group (anything it might have started too), then reap.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
    return exchange, proc.returncode


def _frames(output: bytes) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The isolation report and the outcome, if the child wrote them as it should."""
    frames: list[dict[str, Any]] = []
    for line in output.split(b"\n")[:2]:
        try:
            frame = json.loads(line)
        except ValueError:
            break
        if not isinstance(frame, dict):
            break
        frames.append(frame)
    return (frames[0] if frames else None), (frames[1] if len(frames) > 1 else None)


def _isolation(frame: dict[str, Any] | None) -> Isolation | None:
    """The child's report, believed only where the parent can check it."""
    if frame is None or not isinstance(frame.get("isolation"), dict):
        return None
    report = frame["isolation"]
    network = report.get("network") if report.get("network") in _NETWORK_MODES else "unknown"
    detail = report.get("network_detail")
    if network != "unavailable" and report.get("netns") == _service_netns():
        network, detail = "unavailable", "the child reported the service's own network namespace"
    return Isolation(
        network=str(network),
        network_detail=detail if isinstance(detail, str) else None,
        privileges=str(report.get("privileges", ""))[:80],
        no_new_privs=report.get("no_new_privs") is True,
    )


_NETWORK_MODES = frozenset({"namespace", "user_namespace", "unavailable"})


def _service_netns() -> str:
    return os.readlink("/proc/self/ns/net")


def _line(value: object) -> int | None:
    return value if type(value) is int and 0 < value < 1_000_000 else None


def _error_class(value: object) -> str:
    if isinstance(value, str) and (value in REPORTABLE_ERRORS or value in RUNNER_ERRORS):
        return value
    return "Exception"


def _seconds(value: object) -> float | None:
    return float(value) if type(value) in (int, float) and math.isfinite(value) else None  # type: ignore[arg-type]


_SIGNALS: dict[int, tuple[RunStatus, str]] = {
    signal.SIGXCPU: (RunStatus.TIMED_OUT, "CPUTimeExceeded"),
    signal.SIGXFSZ: (RunStatus.KILLED, "FileSizeExceeded"),
    signal.SIGKILL: (RunStatus.KILLED, "Killed"),
}


def _interpret(exchange: _Exchange, returncode: int, elapsed: float, limits: Limits) -> RunOutcome:
    first, last = _frames(bytes(exchange.output))
    common: dict[str, Any] = {"isolation": _isolation(first), "duration_seconds": elapsed}
    if exchange.overflow:
        return RunOutcome(status=RunStatus.KILLED, error_class="OutputTooLarge", **common)
    if exchange.timed_out:
        return RunOutcome(status=RunStatus.TIMED_OUT, error_class="WallClockExceeded", **common)
    if last is None or returncode != 0:
        if returncode < 0:
            status, name = _SIGNALS.get(-returncode, (RunStatus.KILLED, "Crashed"))
            if -returncode == signal.SIGKILL and elapsed >= limits.cpu_seconds:
                status, name = RunStatus.TIMED_OUT, "CPUTimeExceeded"
            return RunOutcome(status=status, error_class=name, **common)
        return RunOutcome(status=RunStatus.FAILED, error_class="ChildError", **common)
    common["compute_seconds"] = _seconds(last.get("compute_seconds"))
    if last.get("status") != "ok":
        problem = last.get("problem")
        return RunOutcome(
            status=RunStatus.FAILED,
            error_class=_error_class(last.get("error_class")),
            error_line=_line(last.get("error_line")),
            problem=problem if problem in set(ShapeProblem) else None,
            **common,
        )
    if isinstance(last.get("probe"), dict):
        probe = {str(k)[:40]: str(v)[:80] for k, v in last["probe"].items()}
        return RunOutcome(status=RunStatus.SUCCEEDED, probe=probe, **common)
    try:
        result = check_result(last.get("result"))
    except ShapeError as refused:
        return RunOutcome(
            status=RunStatus.FAILED, error_class="ResultRefused", problem=refused.problem.value, **common
        )
    return RunOutcome(status=RunStatus.SUCCEEDED, result=result, **common)


def run_program(
    source: str,
    rows: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any] | None = None,
    *,
    sha256: str | None = None,
    limits: Limits | None = None,
) -> RunOutcome:
    """Run ``source`` once over ``rows`` in a fresh locked-down child; never raises for the program.

    ``sha256`` is the hash the approval pinned: the child refuses a source that does not match
    it (``ProgramChanged``). ``rows`` are the authorized fields only, JSON-able (dates and
    decimals are converted); they reach the program as a tuple of read-only mappings.
    """
    limits = limits or Limits()
    try:
        message = encode_input(source, sha256 or source_sha256(source), rows, params or {})
    except (TypeError, ValueError):  # NaN, a lone surrogate, an unknown type: the caller's rows
        return RunOutcome(status=RunStatus.FAILED, error_class="InvalidInput")
    return _run(message, limits, "run")


def _run(message: bytes, limits: Limits, mode: str) -> RunOutcome:
    started = time.monotonic()
    if len(message) > limits.max_input_bytes:
        return RunOutcome(status=RunStatus.FAILED, error_class="InputTooLarge")
    try:
        exchange, returncode = _spawn(message, limits, mode)
    except OSError:
        return RunOutcome(status=RunStatus.FAILED, error_class="ChildError")
    return _interpret(exchange, returncode, time.monotonic() - started, limits)


def probe_isolation(limits: Limits | None = None) -> RunOutcome:
    """Start a child, lock it down and try each wall from inside with host code (no program).

    For the worker's start-up log: ``isolation`` says how the network was cut off (or why it
    could not be), ``probe`` what became of reading and writing a file, a socket and a fork.
    """
    message = encode_input("", source_sha256(""), [], {})
    return _run(message, limits or Limits(wall_seconds=10.0), "probe")
