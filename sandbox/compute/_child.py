"""The child process of one run: lock the process down, then compile and run one program.

Started by runner.py as ``python -I -S -B -X utf8 _child.py IMPORT_ROOT RP_ROOT CPU MEMORY MODE``
with an empty environment, ``/`` as working directory, only the two pipes open, in a session of
its own. The order matters:

1. import everything it will ever need (trusted code; afterwards no file can be opened);
2. a new network namespace (``unshare(CLONE_NEWNET)``, which needs CAP_SYS_ADMIN);
3. as root, drop to nobody (65534) with no groups: a privileged process could undo its limits,
   and RLIMIT_NPROC does not bind root; if step 2 was refused, now try a network namespace
   inside a new user namespace (as nobody, so the real uid in there is never root); if neither
   is allowed, the run says so in its isolation report instead of failing;
4. ``PR_SET_NO_NEW_PRIVS`` and not dumpable; close every descriptor but stdin (the input pipe)
   and stdout (the output pipe);
5. rlimits: no core, CPU seconds, address space, no file growth, no processes, no new file
   descriptors at all (``RLIMIT_NOFILE`` 0: no open, no socket, no pipe);
6. write the isolation report (frame 1), and only then read the input and touch the program.

The output is two JSON lines: the isolation report, then the outcome — a checked result, or an
error class and line, never a message. Exit is ``os._exit``: nothing of the program runs after.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import resource
import sys
import time
import warnings
from typing import Any

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
NOBODY = 65534
READ_CHUNK = 1 << 20


def _import_trusted(import_root: str, rp_root: str) -> Any:
    """Import the sandbox's own modules now, while files can still be opened."""
    sys.path[:0] = [import_root, rp_root]
    # The parser imports unicodedata when a name is not ASCII (to NFKC-normalize it): after the
    # lock-down that import fails, and a program naming a value 税额 could never run.
    import unicodedata  # noqa: F401

    from sandbox.compute import guards, policy, shape

    return guards, policy, shape


def _isolate_network(libc: Any, privileged: bool) -> tuple[str, str | None]:
    """A new network namespace: directly, or (unprivileged) inside a new user namespace."""
    if privileged:
        if libc.unshare(CLONE_NEWNET) == 0:
            return "namespace", None
        return "", f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}"
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        return "user_namespace", None
    return "", f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {os.strerror(ctypes.get_errno())}"


def _drop_privileges() -> str:
    if os.geteuid() != 0:
        return f"unchanged (uid {os.getresuid()[0]})"
    try:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    except OSError as error:  # root without CAP_SETUID (some containers): say so, go on
        return f"still root: {os.strerror(error.errno or 0)}"
    return f"dropped to uid {NOBODY}"


def _limit(cpu_seconds: int, memory_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (0, 0))


def lock_down(cpu_seconds: int, memory_bytes: int) -> dict[str, Any]:
    """Steps 2 to 5 above; the isolation report of what was achieved."""
    libc = ctypes.CDLL(None, use_errno=True)
    # As root: a plain network namespace, then drop to nobody. Failing that (no CAP_SYS_ADMIN),
    # drop first and try a user namespace as nobody, so the real uid is never root in there
    # (RLIMIT_NPROC does not bind root).
    network, first_failure = _isolate_network(libc, privileged=os.geteuid() == 0)
    report: dict[str, Any] = {"privileges": _drop_privileges()}
    if not network:
        network, failure = _isolate_network(libc, privileged=False)
        if not network:
            network = "unavailable"
            report["network_detail"] = "; ".join(filter(None, [first_failure, failure]))
    report["network"] = network
    report["netns"] = os.readlink("/proc/self/ns/net")
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    report["no_new_privs"] = libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1
    os.closerange(2, 1 << 16)
    sys.stderr = None
    _limit(cpu_seconds, memory_bytes)
    report["rlimits"] = {"cpu_seconds": cpu_seconds, "memory_bytes": memory_bytes, "nofile": 0, "nproc": 0}
    return report


def write_frame(frame: dict[str, Any]) -> None:
    """One JSON line to the output pipe."""
    data = (json.dumps(frame, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def read_input() -> Any:
    """The whole input message from the input pipe."""
    chunks = []
    while chunk := os.read(0, READ_CHUNK):
        chunks.append(chunk)
    return json.loads(b"".join(chunks))


def _program_line(error: BaseException, filename: str) -> int | None:
    line = None
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == filename:
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


def run(message: dict[str, Any], modules: Any) -> dict[str, Any]:
    """Compile (again) and run the program; the outcome frame."""
    guards, policy, shape = modules
    source = message["source"]
    if hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest() != message["sha256"]:
        return {"status": "error", "error_class": "ProgramChanged", "error_line": None}
    code, problems = policy.compile_restricted(source, guards.SAFE_BUILTIN_NAMES, guards.ATTRIBUTE_NAMES)
    if code is None:
        return {"status": "error", "error_class": "ProgramInvalid", "error_line": problems[0].line}
    try:
        names = guards.namespace(message.pop("rows"), message["params"])
    except MemoryError:
        return {"status": "error", "error_class": "MemoryError", "error_line": None}
    started = time.perf_counter()
    try:
        exec(code, names)  # noqa: S102 - restricted bytecode, guarded names, locked-down process
    except BaseException as error:  # noqa: BLE001 - every failure of the program ends the run alike
        name = type(error).__name__
        return {
            "status": "error",
            "error_class": name if name in guards.REPORTABLE_ERRORS else "Exception",
            "error_line": _program_line(error, policy.FILENAME),
            "compute_seconds": time.perf_counter() - started,
        }
    seconds = time.perf_counter() - started
    if "result" not in names:
        return {"status": "error", "error_class": "NoResult", "error_line": None, "compute_seconds": seconds}
    try:
        result = shape.check_result(names["result"])
    except shape.ShapeError as refused:
        return {"status": "error", "error_class": "ResultRefused", "problem": refused.problem.value}
    return {"status": "ok", "result": result, "compute_seconds": seconds}


def probe() -> dict[str, str]:
    """Host-written attempts at each wall, made after lock-down; the program is not involved."""
    checks: dict[str, str] = {}
    attempts = {
        "read_file": lambda: os.open("/etc/passwd", os.O_RDONLY),
        "write_file": lambda: os.open("/sandbox-probe", os.O_WRONLY | os.O_CREAT, 0o600),
        "socket": lambda: __import__("_socket").socket(),
        "fork": os.fork,
    }
    for name, attempt in attempts.items():
        try:
            value = attempt()
        except OSError as error:
            checks[name] = f"blocked ({os.strerror(error.errno or 0)})"
        else:
            if name == "fork" and value == 0:
                os._exit(0)
            checks[name] = "allowed"
    checks["descriptors"] = ",".join(str(fd) for fd in range(256) if _is_open(fd))
    checks["environment"] = ",".join(sorted(os.environ)) or "empty"
    return checks


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def main(argv: list[str]) -> None:
    """Lock down, report, read, run, report, exit."""
    import_root, rp_root, cpu, memory, mode = argv[1:6]
    warnings.simplefilter("ignore")
    # The parent passes an empty environment; Python's locale coercion (PEP 538) adds LC_CTYPE.
    os.environ.clear()
    modules = _import_trusted(import_root, rp_root)
    if mode == "probe":
        __import__("_socket")
    write_frame({"isolation": lock_down(int(cpu), int(memory))})
    message = read_input()
    outcome = {"status": "ok", "probe": probe()} if mode == "probe" else run(message, modules)
    write_frame(outcome)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except BaseException:  # noqa: BLE001 - the parent reads a failure from the exit status
        os._exit(70)
    os._exit(0)
