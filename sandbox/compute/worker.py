"""Compute workers: claim queued jobs from the control database and run them, one at a time each.

Any number of workers, on any number of hosts, may share one control database (see
:mod:`sandbox.compute.queue` for why two never run the same job). ``sandbox serve`` starts
workers beside the server (spawned processes: they share nothing with gunicorn), ``sandbox
worker`` runs one on its own. At start-up a worker probes the process wall once, with host code,
and logs what it found: whether children get their own network namespace, whether files, sockets
and forks are refused inside.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
from dataclasses import replace
from multiprocessing.process import BaseProcess

from sqlalchemy.exc import SQLAlchemyError

from core.config import Settings
from core.errors import SandboxError
from sandbox.compute.execute import RunOptions, execute
from sandbox.compute.queue import claim_next, reap_expired
from sandbox.compute.runner import RunOutcome, probe_isolation
from sandbox.runtime import Runtime, open_runtime

log = logging.getLogger("sandbox.worker")
POLL_SECONDS = 1.0


def worker_name() -> str:
    """``host:pid``: how a worker names itself in the job's record and the log."""
    return f"{socket.gethostname()}:{os.getpid()}"


def log_isolation() -> RunOutcome:
    """Probe the wall once and log it; a worker runs jobs either way and records each run's report."""
    outcome = probe_isolation()
    isolation = outcome.isolation
    if isolation is None:
        log.warning("isolation probe failed (%s): cannot tell how runs are isolated", outcome.error_class)
        return outcome
    if isolation.network in ("namespace", "user_namespace"):
        log.info("network namespaces available: each run gets its own (%s)", isolation.network)
    else:
        log.warning(
            "network namespaces NOT available (%s): runs rely on RLIMIT_NOFILE=0 to refuse sockets",
            isolation.network_detail or "no detail",
        )
    log.info(
        "run isolation: privileges %s, no_new_privs %s; probe %s",
        isolation.privileges,
        isolation.no_new_privs,
        ", ".join(f"{k}={v}" for k, v in sorted(outcome.probe.items())),
    )
    return outcome


def warn_if_crowded(concurrency: int, cores: int | None = None) -> bool:
    """Warn when this worker's children could get less than half a core each (``True`` if so).

    A private release holds each run to half its slot as CPU time so that a neighbour's spinning
    cannot make it run out of wall time: that holds while every child gets half a core. With more
    children than twice the cores, whether one partition times out could depend on what another
    partition's data made its program do (found in review)."""
    cores = cores or os.cpu_count() or 1
    if concurrency <= 2 * cores:
        return False
    log.warning(
        "%s children at once on %s cores: a private release's partitions can make each other run out"
        " of time; run at most %s (and count every worker on this host)",
        concurrency,
        cores,
        2 * cores,
    )
    return True


def run_pending(
    runtime: Runtime,
    options: RunOptions | None = None,
    *,
    worker: str | None = None,
    stop: threading.Event | None = None,
) -> list[str]:
    """Reap lost jobs, then claim and run queued jobs until none is left (or ``stop``); their ids."""
    options = options or RunOptions()
    name = worker or worker_name()
    reap_expired(runtime)
    ran: list[str] = []
    while stop is None or not stop.is_set():
        claim = claim_next(runtime, worker=name, lease_seconds=options.lease_seconds)
        if claim is None:
            break
        log.info("job %s: claimed (attempt %s)", claim.job_id, claim.attempt)
        status = execute(runtime, claim, options)
        log.info("job %s: %s", claim.job_id, status.value if status else "lease lost")
        ran.append(claim.job_id)
    return ran


def run(
    settings: Settings, stop: threading.Event, options: RunOptions, *, poll_seconds: float = POLL_SECONDS
) -> None:
    """Run queued jobs until ``stop`` is set, polling every ``poll_seconds`` when the queue is empty."""
    runtime = open_runtime(settings)
    name = worker_name()
    log.info(
        "compute worker %s started (children at once: %s; a private release's rounds share %.0f s)",
        name,
        options.concurrency,
        options.limits.job_wall_seconds,
    )
    warn_if_crowded(options.concurrency)
    log_isolation()
    options = replace(options, pace=options.pace.watching(stop))  # a stop cuts a release's wait short
    try:
        while not stop.is_set():
            try:
                ran = run_pending(runtime, options, worker=name, stop=stop)
            except (SQLAlchemyError, SandboxError, OSError) as exc:
                # A locked or briefly unreachable database is no reason to stop; the job's lease
                # runs out and the job is re-queued if this worker lost it.
                log.warning("worker loop: %s: %s", exc.__class__.__name__, exc)
                ran = []
            except Exception:  # a bug in one job must not stop every later job
                # Logged with its trace; the job it hit keeps its lease, which runs out, and the
                # job is re-queued (at most MAX_ATTEMPTS starts) or failed as WorkerLost.
                log.exception("worker loop: unexpected error")
                ran = []
            if not ran:
                stop.wait(poll_seconds)
    finally:
        runtime.close()
        log.info("compute worker %s stopped", name)


def _main(settings: Settings, options: RunOptions, poll_seconds: float) -> None:
    logging.basicConfig(level=logging.INFO, format="[worker] %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(settings, stop, options, poll_seconds=poll_seconds)


def start_process(
    settings: Settings,
    options: RunOptions | None = None,
    *,
    index: int = 0,
    poll_seconds: float = POLL_SECONDS,
) -> BaseProcess:
    """Start one worker in its own (spawned, daemonic) process."""
    process = multiprocessing.get_context("spawn").Process(
        target=_main,
        args=(settings, options or RunOptions(), poll_seconds),
        name=f"sandbox-worker-{index}",
        daemon=True,
    )
    process.start()
    return process


def stop_processes(processes: list[BaseProcess], *, grace_seconds: float = 10.0) -> None:
    """Ask each worker to stop (it finishes its job), then kill any still running after the grace.

    A killed worker's job keeps its lease until it expires; another worker then re-queues it.
    """
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=grace_seconds)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
