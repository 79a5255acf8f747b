"""The wall: each run a fresh, locked-down child; every way a program can end is an outcome."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox.compute._child import _isolate_network
from sandbox.compute.compile import compile_program
from sandbox.compute.errors import ProgramInvalid
from sandbox.compute.runner import (
    Limits,
    RunStatus,
    _Exchange,
    _interpret,
    _isolation,
    _service_netns,
    probe_isolation,
    run_program,
)
from tests.compute.conftest import text_of


def test_a_program_runs_over_read_only_rows_and_returns_its_result(limits: Limits) -> None:
    rows = [{"tax": 10.0, "d": "历下区"}, {"tax": 30.0, "d": "市中区"}]
    outcome = run_program("result = {'mean': stats.mean(stats.column(data, 'tax'))}", rows, limits=limits)
    assert outcome.status is RunStatus.SUCCEEDED and outcome.result == {"mean": 20.0}
    assert outcome.compute_seconds is not None and outcome.duration_seconds > 0


def test_params_reach_the_program(limits: Limits) -> None:
    outcome = run_program("result = params['n'] * 2", [], {"n": 21}, limits=limits)
    assert outcome.result == 42


@pytest.mark.parametrize(
    "source",
    ["税额 = stats.sum(stats.column(data, 'tax'))\nresult = 税额\n", "de\ufb01ne = 40.0\nresult = define\n"],
)
def test_a_program_whose_names_are_not_ascii_runs_as_submission_accepted_it(
    source: str, limits: Limits
) -> None:
    """Found by a sweep: the parser imports unicodedata for such a name, which the locked-down
    child could no longer open, so an approved program every run of which ended ChildError."""
    compile_program(source)
    outcome = run_program(source, [{"tax": 10.0}, {"tax": 30.0}], limits=limits)
    assert outcome.status is RunStatus.SUCCEEDED and outcome.result == 40.0


def test_a_name_that_normalizes_to_a_forbidden_one_is_refused_in_the_child_too(limits: Limits) -> None:
    source = "ｅｖａｌ('1')\nresult = 1\n"  # NFKC: eval
    with pytest.raises(ProgramInvalid):
        compile_program(source)
    outcome = run_program(source, [], limits=limits)
    assert (outcome.status, outcome.error_class) == (RunStatus.FAILED, "ProgramInvalid")


def test_the_child_is_isolated_before_it_reads_anything() -> None:
    probe = probe_isolation()
    assert probe.status is RunStatus.SUCCEEDED
    for wall in ("read_file", "write_file", "socket", "fork"):
        assert probe.probe[wall].startswith("blocked"), probe.probe
    assert probe.probe["descriptors"] == "0,1"
    assert probe.probe["environment"] == "empty"
    isolation = probe.isolation
    assert isolation is not None and isolation.no_new_privs
    if isolation.network == "unavailable":
        assert isolation.network_detail  # said, not silent
    else:
        assert isolation.network in ("namespace", "user_namespace")


ENDINGS: dict[str, tuple[str, RunStatus, str, int | None]] = {
    "exception_class_and_line": ("x = 1\ny = x / 0\n", RunStatus.FAILED, "ZeroDivisionError", 2),
    "deep_recursion": (
        "def f(n):\n    return f(n + 1)\nresult = f(0)\n",
        RunStatus.FAILED,
        "RecursionError",
        2,
    ),
    "nested_repr": (
        "x = []\nfor i in range(200000):\n    x = [x]\nresult = len(str(x))\n",
        RunStatus.FAILED,
        "RecursionError",
        4,
    ),
    "string_memory_bomb": ("s = 'a' * 10**10\nresult = len(s)\n", RunStatus.FAILED, "MemoryError", 1),
    "list_memory_bomb": ("l = [0] * 10**10\nresult = len(l)\n", RunStatus.FAILED, "MemoryError", 1),
    "growing_list": (
        "l = []\nwhile True:\n    l.append('x' * 1000000)\n",
        RunStatus.FAILED,
        "MemoryError",
        3,
    ),
    "cpu_loop": ("i = 0\nwhile True:\n    i += 1\n", RunStatus.TIMED_OUT, "CPUTimeExceeded", None),
    "bignum": ("result = 7 ** (10 ** 9)\n", RunStatus.TIMED_OUT, "CPUTimeExceeded", None),
    "huge_int_str": ("result = len(str(10 ** 100000))\n", RunStatus.FAILED, "ValueError", 1),
    "system_exit": ("raise SystemExit\n", RunStatus.FAILED, "ProgramInvalid", 1),
    "fork_attempt": ("import os\nresult = os.fork()\n", RunStatus.FAILED, "ProgramInvalid", 1),
    "no_result": ("x = 1\n", RunStatus.FAILED, "NoResult", None),
    "rows_as_result": ("result = data\n", RunStatus.FAILED, "ResultRefused", None),
    "write_to_data": ("data[0]['x'] = 1\n", RunStatus.FAILED, "TypeError", 1),
    "append_to_data": ("data.append(1)\n", RunStatus.FAILED, "AttributeError", 1),
}


@pytest.mark.parametrize("case", ENDINGS.values(), ids=ENDINGS.keys())
def test_every_ending_is_an_outcome_and_the_next_run_works(
    case: tuple[str, RunStatus, str, int | None], limits: Limits
) -> None:
    source, status, error_class, line = case
    outcome = run_program(source, [{"x": 1}], limits=limits)
    assert (outcome.status, outcome.error_class, outcome.error_line) == (status, error_class, line)
    assert outcome.result is None
    assert outcome.duration_seconds < limits.wall_seconds + 2
    assert run_program("result = 1", [], limits=limits).result == 1


def test_the_wall_clock_kills_what_the_cpu_limit_would_not_yet() -> None:
    outcome = run_program("while True:\n    pass\n", [], limits=Limits(cpu_seconds=60, wall_seconds=1.0))
    assert (outcome.status, outcome.error_class) == (RunStatus.TIMED_OUT, "WallClockExceeded")
    assert 1.0 <= outcome.duration_seconds < 3.0


def test_exception_messages_and_printed_text_never_leave(limits: Limits) -> None:
    rows = [{"name": "张三", "income": 987654.32}]
    failed = run_program(
        "print('secret-456')\nraise ValueError(str(data[0]['income']))\n", rows, limits=limits
    )
    assert (failed.error_class, failed.error_line) == ("ValueError", 2)
    printed = run_program("print(data[0]['name'], 'secret-456')\nresult = 1\n", rows, limits=limits)
    assert printed.result == 1
    for outcome in (failed, printed):
        shown = text_of(outcome.to_record()) + repr(outcome)
        assert "secret-456" not in shown and "987654" not in shown and "张三" not in shown


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("result = [1, 2]", "not_number_or_mapping"),
        ("result = 'text'", "not_number_or_mapping"),
        ("result = float('nan')", "not_finite"),
        ("result = 2 ** 60", "number_too_large"),
        ("result = {'a': {'b': {'c': 1}}}", "too_deep"),
        ("result = {str(i): i for i in range(65)}", "too_many_keys"),
        ("result = {'': 1}", "bad_key"),
        ("result = {'k' * 65: 1}", "bad_key"),
        ("result = {1: 1}", "bad_key"),
        ("result = {}", "empty_mapping"),
        ("result = {'rows': data}", "not_number_or_mapping"),
    ],
)
def test_output_shape_is_checked_in_the_child(source: str, problem: str, limits: Limits) -> None:
    outcome = run_program(source, [{"x": 1}], limits=limits)
    assert (outcome.status, outcome.error_class, outcome.problem) == (
        RunStatus.FAILED,
        "ResultRefused",
        problem,
    )


def test_a_changed_source_is_refused_by_the_child(limits: Limits) -> None:
    outcome = run_program("result = 1", [], sha256="0" * 64, limits=limits)
    assert outcome.error_class == "ProgramChanged"


def test_rows_that_cannot_be_json_are_an_outcome(limits: Limits) -> None:
    for rows in ([{"x": float("nan")}], [{"x": object()}], [{"x": "\ud800"}]):
        outcome = run_program("result = 1", rows, limits=limits)
        assert (outcome.status, outcome.error_class) == (RunStatus.FAILED, "InvalidInput")


def test_input_and_output_caps(limits: Limits) -> None:
    too_big = run_program("result = 1", [{"x": "a" * 100}], limits=Limits(max_input_bytes=50))
    assert (too_big.status, too_big.error_class) == (RunStatus.FAILED, "InputTooLarge")
    chatty = run_program("result = {str(i): i for i in range(60)}", [], limits=Limits(max_output_bytes=300))
    assert (chatty.status, chatty.error_class) == (RunStatus.KILLED, "OutputTooLarge")


def _interpreted(output: bytes, returncode: int, elapsed: float = 0.1) -> Any:
    return _interpret(_Exchange(output=bytearray(output)), returncode, elapsed, Limits(cpu_seconds=5))


@pytest.mark.parametrize(
    ("returncode", "status", "error_class"),
    [
        (-signal.SIGSEGV, RunStatus.KILLED, "Crashed"),
        (-signal.SIGABRT, RunStatus.KILLED, "Crashed"),
        (-signal.SIGXCPU, RunStatus.TIMED_OUT, "CPUTimeExceeded"),
        (-signal.SIGXFSZ, RunStatus.KILLED, "FileSizeExceeded"),
        (-signal.SIGKILL, RunStatus.KILLED, "Killed"),
        (70, RunStatus.FAILED, "ChildError"),
    ],
)
def test_a_child_that_dies_is_an_outcome(returncode: int, status: RunStatus, error_class: str) -> None:
    outcome = _interpreted(b"", returncode)
    assert (outcome.status, outcome.error_class) == (status, error_class)


def test_the_parent_does_not_believe_a_compromised_child() -> None:
    netns = _service_netns()
    isolation = b'{"isolation": {"network": "namespace", "netns": "%s"}}\n' % netns.encode()
    forged = _interpreted(isolation + b'{"status": "ok", "result": [{"ssn": "999"}]}\n', 0)
    assert (forged.status, forged.error_class, forged.problem) == (
        RunStatus.FAILED,
        "ResultRefused",
        "not_number_or_mapping",
    )
    assert forged.isolation is not None and forged.isolation.network == "unavailable"
    odd = _interpreted(
        b'{"isolation": {}}\n{"status": "error", "error_class": "secret text", "error_line": "9"}\n', 0
    )
    assert (odd.error_class, odd.error_line) == ("Exception", None)
    garbage = _interpreted(b"not json at all", 0)
    assert (garbage.status, garbage.error_class) == (RunStatus.FAILED, "ChildError")


def test_unavailable_network_isolation_is_said_with_its_reason() -> None:
    class NoNamespaces:
        def unshare(self, flags: int) -> int:
            ctypes.set_errno(errno.EPERM)
            return -1

    network, reason = _isolate_network(NoNamespaces(), privileged=True)
    assert (network, reason) == ("", "unshare(CLONE_NEWNET): Operation not permitted")
    report = {"network": "unavailable", "network_detail": reason, "netns": _service_netns()}
    isolation = _isolation({"isolation": report})
    assert isolation is not None and isolation.to_dict()["network_isolation"] == "unavailable"
    assert isolation.network_detail == reason


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_without_cap_sys_admin_the_child_drops_root_then_uses_a_user_namespace() -> None:
    code = (
        "import json\nfrom sandbox.compute.runner import probe_isolation\n"
        "p = probe_isolation()\n"
        "print(json.dumps({'isolation': p.isolation.to_dict(), 'probe': dict(p.probe)}))"
    )
    done = subprocess.run(
        ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", sys.executable, "-c", code],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2], timeout=60,
    )  # fmt: skip
    seen = json.loads(done.stdout)
    assert seen["isolation"]["network_isolation"] in ("user_namespace", "unavailable")
    assert seen["isolation"]["privileges"] == "dropped to uid 65534"
    assert seen["probe"]["fork"].startswith("blocked")
