"""``sandbox worker``: run queued compute jobs (``sandbox serve`` also starts workers by default).

Exit codes: 0 stopped (SIGTERM/SIGINT) or, with ``--once``, the queue drained; 1 refused or failed.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from typing import Any

import click

from core.config import load_settings
from core.errors import SandboxError
from sandbox.compute.runner import Limits


def _finite(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    """click's FloatRange lets NaN through (every comparison with it is false): a worker polling
    every NaN seconds spun at full CPU."""
    if not math.isfinite(value):
        raise click.BadParameter("a finite number of seconds")
    return value


def job_seconds_option(command: Any) -> Any:
    """``--job-seconds``: what a private release's runs share, and so how long one takes
    (:func:`sandbox.compute.release.schedule`)."""
    return click.option(
        "--job-seconds",
        type=click.FloatRange(6, 3600),
        default=Limits().job_wall_seconds,
        show_default=True,
        callback=_finite,
        help=(
            "How long a private release takes, whatever its program does: its rounds of partitions"
            " share it, each round 3-21 s (a run's least and its own limit), so very many rounds"
            " take longer and very few take less."
        ),
    )(command)


@click.command("worker")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Program runs (child processes) at once for one job's partitions.",
)
@click.option(
    "--poll",
    "poll_seconds",
    type=click.FloatRange(0.05, 60),
    default=1.0,
    show_default=True,
    callback=_finite,
)
@job_seconds_option
@click.option("--once", is_flag=True, help="Run what is queued now, then exit.")
def worker(concurrency: int, poll_seconds: float, job_seconds: float, once: bool) -> None:
    """Run queued compute jobs from the control database, until stopped."""
    from sqlalchemy.exc import SQLAlchemyError

    from sandbox.compute import worker as compute_worker
    from sandbox.compute.execute import RunOptions
    from sandbox.runtime import open_runtime

    logging.basicConfig(level=logging.INFO, format="[worker] %(message)s")
    settings = load_settings()
    options = RunOptions(limits=Limits(job_wall_seconds=job_seconds), concurrency=concurrency)
    try:
        if once:
            runtime = open_runtime(settings)
            try:
                compute_worker.log_isolation()
                ran = compute_worker.run_pending(runtime, options)
            finally:
                runtime.close()
            click.echo(f"ran {len(ran)} job(s)")
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        compute_worker.run(settings, stop, options, poll_seconds=poll_seconds)
    except SandboxError as exc:
        click.secho(f"error: {exc.message}", fg="red", err=True)
        raise SystemExit(1) from None
    except SQLAlchemyError as exc:
        click.secho(f"error: database: {exc.__class__.__name__}", fg="red", err=True)
        raise SystemExit(1) from None
