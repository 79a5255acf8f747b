"""The ``sandbox`` command line: a thin shell over the services.

Exit codes: 0 success, 1 refused or failed (with a message on stderr), 2 usage.
"""

from __future__ import annotations

import ipaddress
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from audit import Actor, ActorKind
from core.config import Settings, load_settings
from core.db import display_url, driver_reason
from core.errors import SandboxError
from core.identifiers import USCC
from sandbox.cli_audit import audit as audit_commands
from sandbox.cli_seal import seal as seal_commands
from sandbox.cli_worker import job_seconds_option
from sandbox.cli_worker import worker as worker_command

if TYPE_CHECKING:  # pyarrow is slow to import for every command
    from sandbox.data.load import LoadResult

F = TypeVar("F", bound=Callable[..., Any])
CLI_ACTOR = Actor(ActorKind.SYSTEM, "cli")


def _fail(exc: SandboxError) -> None:
    click.secho(f"error: {exc.message}", fg="red", err=True)
    # A message of several lines lists its problems itself (the policy catalog's): not twice.
    details = exc.details if isinstance(exc.details, list) and "\n" not in exc.message else []
    for item in details[:200]:
        if isinstance(item, dict):
            where = ", ".join(f"{k} {v}" for k, v in item.items() if k != "message" and v is not None)
            if not where and len(details) == 1 and str(item.get("message")) in exc.message:
                continue  # the one problem, placeless, that the message already says
            click.echo(
                f"  - {where}: {item.get('message', '')}" if where else f"  - {item.get('message')}", err=True
            )
    raise SystemExit(1)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except SandboxError as exc:
        _fail(exc)
    except SQLAlchemyError as exc:
        # A database that is down or locked is an operating condition, not a bug: say so plainly.
        click.secho(
            f"error: database: {exc.__class__.__name__}: {driver_reason(exc)}"
            if hasattr(exc, "orig")
            else f"error: database: {exc}",
            fg="red",
            err=True,
        )
        raise SystemExit(1) from None
    except OSError as exc:
        click.secho(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), fg="red", err=True)
        raise SystemExit(1) from None


@contextmanager
def _sigterm_stops_loads() -> Iterator[threading.Event]:
    """An event that SIGTERM (``kill``, a service manager's stop, ``timeout``) sets.

    Python's default for SIGTERM ends the process on the spot, and a data load then left its
    staging tables behind (hundreds of MB for a large synth). Given this event, a load stops at
    its next batch and drops them, as for Ctrl-C; the exit status is then the shell's 143. A
    second SIGTERM ends the process at once (the next load drops what that one leaves).
    """
    import signal

    from sandbox.data.stores import LoadStopped  # here: pyarrow is slow to import for every command

    stop = threading.Event()

    def on_sigterm(_signum: int, _frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield stop
    except LoadStopped as stopped:
        click.secho(f"error: stopped by SIGTERM: {stopped.message}", fg="red", err=True)
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Commands(click.Group):
    """Every command runs inside :func:`_errors`: a refusal raised where a command has no handler
    of its own (settings read from the environment, a signing key missing) is still one line and
    exit 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        with _errors():
            return super().invoke(ctx)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="public-data-sandbox")
def main() -> None:
    """Public Data Sandbox: government data, usable but invisible."""


@main.command()
def init() -> None:
    """Create the home folder, both databases, the schema and a signing key (safe to repeat)."""
    from sandbox.runtime import init_home

    settings = load_settings()
    report = init_home(settings, actor=CLI_ACTOR)
    click.echo(f"home        {settings.home}")
    click.echo(f"control db  {display_url(settings.database_url)}")
    click.echo(f"data        scans: {display_url(settings.data_url)}")
    click.echo(f"            lookups: {display_url(settings.data_lookup_url)}")
    click.echo(f"policies    {settings.policy_dir}")
    click.echo(f"schema      {'created' if report.migrated_from is None else 'up to date'}")
    click.echo(f"signing key {report.active_kid}{' (new)' if report.key_created else ''}")
    if report.policy_recorded:
        click.echo("policy      new version recorded in the audit log")
    _warn_stale(report.stale_datasets)
    _warn_over_row_bound(report.over_row_bound)


def _warn_stale(stale: dict[str, list[str]]) -> None:
    """A warning for each dataset whose stored table the policy has changed under (on stderr)."""
    for name, problems in stale.items():
        click.echo(
            f"warning: the stored data of {name} does not match the policy ({'; '.join(problems)}); "
            f"jobs on it are refused until it is loaded again: sandbox data load {name} FILE",
            err=True,
        )


def _warn_over_row_bound(over: dict[str, str]) -> None:
    """A warning for each dataset whose stored rows break its policy's bound on rows per subject."""
    for name, why in over.items():
        click.echo(
            f"warning: the stored data of {name} holds {why}; aggregates on it are refused until it "
            f"is loaded again: sandbox data load {name} FILE (a load names each subject over the bound)",
            err=True,
        )


@main.group()
def users() -> None:
    """Staff and subject accounts."""


@users.command("add")
@click.option("--role", type=click.Choice(["admin", "reviewer", "auditor", "subject"]), required=True)
@click.option("--username", required=True)
@click.option("--subject-id", default=None, help="A subject's credit code or resident ID number.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_add(role: str, username: str, subject_id: str | None, password_stdin: bool) -> None:
    """Create an account (the password is read from stdin or prompted, never an argument)."""
    from authz.accounts import create_account
    from authz.permissions import Role
    from core.db import transaction
    from sandbox.runtime import open_runtime

    if password_stdin and sys.stdin is None:
        raise click.UsageError("--password-stdin, but standard input is closed")
    try:
        password = (
            # A line ended CRLF (a Windows editor) ends there too; a byte order mark is no part of it.
            sys.stdin.readline().rstrip("\r\n").removeprefix("\ufeff")
            if password_stdin
            else click.prompt("password", hide_input=True, confirmation_prompt=True)
        )
        password.encode("utf-8")  # bytes that are not UTF-8 arrive as surrogates, or fail above
    except UnicodeError:
        raise click.UsageError("the password is not UTF-8 text") from None
    runtime = open_runtime(load_settings())
    try:
        with transaction(runtime.sessions) as session:
            account = create_account(
                session,
                username=username,
                role=Role(role),
                password=password,
                subject_id=subject_id,
                actor=CLI_ACTOR,
                clock=runtime.clock,
            )
            account_id = account.id
    finally:
        runtime.close()
    click.echo(f"created {role} {username} ({account_id})")


@main.group()
def codes() -> None:
    """Credit codes accepted though their check characters do not conform to GB 32100."""


@codes.command("accept")
@click.argument("code")
@click.option(
    "--reason", required=True, help="How it was checked (kept in the audit log: do not write the code in it)."
)
def codes_accept(code: str, reason: str) -> None:
    """Accept CODE, a real credit code that fails its check, wherever a credit code is checked."""
    from authz.accepted_codes import accept_code
    from core.db import transaction
    from sandbox.runtime import open_runtime

    runtime = open_runtime(load_settings())
    try:
        with transaction(runtime.sessions) as session:
            row = accept_code(
                session, code=code, reason=reason, actor=CLI_ACTOR, request_id=None, clock=runtime.clock
            )
            row_id = row.id
    finally:
        runtime.close()
    click.echo(f"accepted {code} ({row_id})")


@codes.command("list")
def codes_list() -> None:
    """Every accepted code, withdrawn ones too, the newest acceptance first."""
    from authz.accepted_codes import list_codes
    from core.clock import rfc3339
    from sandbox.runtime import open_runtime

    runtime = open_runtime(load_settings())
    try:
        with runtime.sessions() as session:
            rows = list_codes(session)
            for row in rows:
                state = f"withdrawn {rfc3339(row.withdrawn_at)}" if row.withdrawn_at else "accepted"
                reason = " / ".join(row.reason.splitlines())  # one row per line
                click.echo(f"{row.code}  {row.id}  {state:<36}  {rfc3339(row.accepted_at)}  {reason}")
            if not rows:
                click.echo("no accepted codes")
    finally:
        runtime.close()


@codes.command("withdraw")
@click.argument("code_id")
@click.option("--reason", required=True)
def codes_withdraw(code_id: str, reason: str) -> None:
    """Withdraw the acceptance CODE_ID (as `codes list` shows it): the code is refused again."""
    from authz.accepted_codes import withdraw_code
    from core.db import transaction
    from sandbox.runtime import open_runtime

    runtime = open_runtime(load_settings())
    try:
        with transaction(runtime.sessions) as session:
            row = withdraw_code(
                session, code_id, reason=reason, actor=CLI_ACTOR, request_id=None, clock=runtime.clock
            )
            code = row.code
    finally:
        runtime.close()
    click.echo(f"withdrawn {code} ({code_id})")


@main.group()
def keys() -> None:
    """The bureau's signing keys."""


@keys.command("rotate")
def keys_rotate() -> None:
    """Make a new signing key active; older keys stay published so what they signed still verifies."""
    from audit import AuditAction, Target, record_event
    from core import keyring
    from core.db import transaction
    from sandbox.runtime import open_runtime

    settings = load_settings()
    runtime = open_runtime(settings)
    try:
        with transaction(runtime.sessions) as session:
            record, previous = keyring.rotate(session, settings.keys_dir, clock=runtime.clock)
            record_event(
                session,
                action=AuditAction.KEY_ROTATE,
                actor=CLI_ACTOR,
                target=Target("signing_key", record.kid),
                details={"previous": previous},
                clock=runtime.clock,
            )
            kid = record.kid
    finally:
        runtime.close()
    click.echo(f"active signing key {kid}; previous {previous} still published")


@main.group()
def data() -> None:
    """Government data in the data database."""


@data.command("synth")
@click.option("--enterprises", type=click.IntRange(0, 50_000_000), default=10_000, show_default=True)
@click.option("--persons", type=click.IntRange(0, 50_000_000), default=10_000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=20240101, show_default=True)
def data_synth(enterprises: int, persons: int, seed: int) -> None:
    """Replace every dataset with deterministic synthetic government data."""
    import time

    from sandbox.runtime import open_runtime
    from sandbox.services.data import synthesize_recorded

    runtime = open_runtime(load_settings(), read_only_data=False)
    try:
        started = time.perf_counter()
        with _sigterm_stops_loads() as stop:
            rows = synthesize_recorded(
                runtime, enterprises=enterprises, persons=persons, seed=seed, actor=CLI_ACTOR, stop=stop
            )
        seconds = time.perf_counter() - started
    finally:
        runtime.close()
    for name, count in sorted(rows.items()):
        click.echo(f"{name:<24}{count:>12,} rows")
    total = sum(rows.values())
    click.echo(
        f"{'total':<24}{total:>12,} rows in {seconds:.1f} s ({total / max(seconds, 1e-9):,.0f} rows/s)"
    )


@data.command("load")
@click.argument("dataset")
@click.argument("file", type=click.Path(path_type=Path))
def data_load(dataset: str, file: Path) -> None:
    """Replace DATASET with the rows of FILE (CSV or Parquet), after checking it against policy."""
    from sandbox.runtime import open_runtime
    from sandbox.services.data import load_recorded

    runtime = open_runtime(load_settings(), read_only_data=False)
    try:
        with _sigterm_stops_loads() as stop:
            result = load_recorded(runtime, dataset, file, actor=CLI_ACTOR, stop=stop)
    finally:
        runtime.close()
    click.echo(
        f"loaded {result.rows:,} rows into {result.dataset} from {file.name} (sha256 {result.sha256[:16]}…)"
    )
    if result.failing_keys:
        _warn_failing_keys(result)


def _warn_failing_keys(result: LoadResult) -> None:
    """Name the keys a verification will refuse as mistyped (the bureau sees its own data here)."""
    count = f"{'more than ' if result.failing_keys_more else ''}{len(result.failing_keys):,}"
    shown = sorted(result.failing_keys)[:10]
    one = len(result.failing_keys) == 1 and not result.failing_keys_more
    click.secho(
        f"warning: {count} distinct {'key' if one else 'keys'} of {result.dataset} "
        f"{'fails its' if one else 'fail their'} id's check; verifications about "
        f"{'it are' if one else 'them are'} refused as mistyped:",
        fg="yellow",
        err=True,
    )
    for key in shown:
        click.echo(f"  {key!r}", err=True)  # repr: a key's control characters are shown, not run
    if len(result.failing_keys) > len(shown):
        click.echo(f"  … and {len(result.failing_keys) - len(shown):,} more", err=True)
    if result.key_kind == USCC:  # a dataset keyed by ID numbers takes no credit code, accepted or not
        click.echo(
            "  a real credit code that does not conform can be accepted: "
            "sandbox codes accept CODE --reason …",
            err=True,
        )


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


def listen_host(_ctx: click.Context | None, _param: click.Parameter | None, value: str) -> str:
    """``--host`` as gunicorn binds it and a URL shows it: an IPv6 address in brackets.

    An empty host bound every interface while the banner said ``http://:8000``: an address that
    listens everywhere is refused unless it says so (``0.0.0.0`` or ``::``).
    """
    host = value.strip()
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(inner)
    except ValueError:
        if _HOSTNAME.match(host) and not host.rsplit(".", 1)[-1].isdigit():  # "1.2.3" is no name
            return host
        hint = "; to listen on every interface say so: 0.0.0.0 (or :: for IPv6)" if not host else ""
        raise click.BadParameter(f"{value!r} is neither an IP address nor a host name{hint}") from None
    return f"[{address.compressed}]" if address.version == 6 else address.compressed


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, callback=listen_host)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--access-log/--no-access-log", default=False)
@click.option(
    "--compute-workers",
    type=click.IntRange(0, 64),
    default=1,
    show_default=True,
    help="Compute workers to start beside the server.",
)
@click.option("--no-workers", is_flag=True, help="Start no compute workers (run `sandbox worker` elsewhere).")
@job_seconds_option
def serve(
    host: str,
    port: int,
    workers: int,
    threads: int,
    access_log: bool,
    compute_workers: int,
    no_workers: bool,
    job_seconds: float,
) -> None:
    """Run the API with gunicorn (the production server), and compute workers beside it."""
    import multiprocessing

    from sandbox.server import serve as run_server

    settings = load_settings()
    # The home is checked and the policy recorded once, before any worker starts, in a process of
    # its own: opening the data stores here would leave DuckDB's default connection, and its
    # threads, in the process gunicorn forks its workers from. A forked worker inherits the
    # connection but not the threads, and crashed (SIGSEGV) joining them as it exited.
    check = multiprocessing.get_context("spawn").Process(target=_open_and_sync_policy, args=(settings,))
    check.start()
    check.join()
    if check.exitcode != 0:  # it said why on stderr
        raise SystemExit(1)
    compute = 0 if no_workers else compute_workers
    click.echo(
        f"serving on http://{host}:{port} with {workers} worker(s) and {compute} compute worker(s)", err=True
    )
    run_server(
        settings,
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        access_log=access_log,
        compute_workers=compute,
        job_seconds=job_seconds,
    )


def _open_and_sync_policy(settings: Settings) -> None:
    """Open the service on its home (refusing a bad one) and record the policy if it changed."""
    from core.db import transaction
    from sandbox.data.stores import datasets_over_row_bound, stale_datasets
    from sandbox.runtime import open_runtime, sync_policy

    with _errors():  # a spawned process: its refusals are said as the command's own would be
        runtime = open_runtime(settings)
        try:
            with transaction(runtime.sessions) as session:
                sync_policy(session, runtime.catalog, actor=Actor(ActorKind.SYSTEM, "server"))
            _warn_stale(stale_datasets(runtime.stores, runtime.catalog))
            _warn_over_row_bound(datasets_over_row_bound(runtime.stores, runtime.catalog))
        finally:
            runtime.close()


@main.command()
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=Path(".sandbox-demo"),
    show_default=True,
    help="Folder for the demo's home; made afresh on every run.",
)
@click.option("--enterprises", type=click.IntRange(100, 1_000_000), default=3000, show_default=True)
@click.option("--persons", type=click.IntRange(100, 1_000_000), default=3000, show_default=True)
def demo(home: Path, enterprises: int, persons: int) -> None:
    """Walk the product end to end on a fresh demo home, against a real local server."""
    from sandbox.demo import run_demo

    ok = run_demo(home, enterprises=enterprises, persons=persons, echo=click.echo)
    sys.exit(0 if ok else 1)


main.add_command(audit_commands)
main.add_command(seal_commands)
main.add_command(worker_command)


def settings_for_home(home: Path) -> Settings:
    """Settings for an explicit home folder, other variables from the environment."""
    import os

    return load_settings({**os.environ, "SANDBOX_HOME": str(home)})


if __name__ == "__main__":
    main()
