"""``sandbox audit``: sign a checkpoint, and verify the log offline (exit 0 intact, 1 tampered, 2 usage)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

from audit.sources import SourceError, checkpoints_from_file, load_public_keys, trusted_checkpoint
from audit.verify import Report, SourcedCheckpoint, read_export, verify_log, verify_window
from audit.verify_db import verify_database
from core.config import load_settings
from core.db import display_url, require_existing, usable_url, with_driver
from core.errors import ConfigurationError

USAGE = 2


@click.group()
def audit() -> None:
    """The audit log: checkpoints and offline verification."""


@audit.command("checkpoint")
def checkpoint() -> None:
    """Sign a checkpoint of the log as it is now, and print it."""
    from sandbox.runtime import open_runtime
    from sandbox.services import audit_log

    runtime = open_runtime(load_settings())  # a refusal is "error: …", exit 1, as for every command
    try:
        click.echo(json.dumps(audit_log.sign_now(runtime), ensure_ascii=False, indent=2))
    finally:
        runtime.close()


@audit.command("verify")
@click.option("--db", "db_url", help="Control database URL (default: this home's).")
@click.option("--export", "export_file", type=click.Path(path_type=Path), help="An NDJSON export instead.")
@click.option(
    "--key",
    "key_files",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Pinned public key: PEM or JWKS file. Repeat for rotated keys.",
)
@click.option(
    "--trusted-checkpoint",
    "trusted",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A checkpoint saved earlier (signed note or the API's JSON). Repeatable.",
)
@click.option(
    "--checkpoint-log",
    type=click.Path(path_type=Path),
    help="The append-only checkpoint file (default with --db: this home's, if present).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(
    db_url: str | None,
    export_file: Path | None,
    key_files: tuple[Path, ...],
    trusted: tuple[Path, ...],
    checkpoint_log: Path | None,
    as_json: bool,
) -> None:
    """Check every leaf, every sequence number and every checkpoint; exit 0 intact, 1 tampered."""
    if db_url and export_file:
        _usage("give --db or --export, not both")
    try:
        keys = [key for path in key_files for key in load_public_keys(path)]
        checkpoints: list[SourcedCheckpoint] = [trusted_checkpoint(path) for path in trusted]
        if checkpoint_log is None and export_file is None:
            default_log = load_settings().checkpoints_file
            checkpoint_log = default_log if default_log.exists() else None
        if checkpoint_log is not None:
            checkpoints += checkpoints_from_file(checkpoint_log)
        report = (
            _verify_export(export_file, checkpoints, keys)
            if export_file
            else _verify_db(db_url or load_settings().database_url, checkpoints, keys)
        )
    except SourceError as exc:
        _usage(str(exc))
    _print(report, as_json)
    raise SystemExit(0 if report.intact else 1)


def _verify_export(path: Path, checkpoints: list[SourcedCheckpoint], keys: list[Any]) -> Report:
    try:
        with path.open(encoding="utf-8") as lines:
            window, records = read_export(lines)
            if window is not None:
                return verify_window(window, records, checkpoints, keys)
            return verify_log(records, checkpoints, keys)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SourceError(f"cannot read export {path}: {exc}") from exc


def _verify_db(url: str, checkpoints: list[SourcedCheckpoint], keys: list[Any]) -> Report:
    """A log that cannot be read (a malformed URL, a driver not installed, no database there) is
    a usage error, exit 2: exit 1 says the log was read and found tampered."""
    try:
        with usable_url(url):  # the URL and its driver only: a row that cannot be read is tampering
            create_engine(with_driver(url)).dispose()
            require_existing(url)
    except ConfigurationError as exc:
        raise SourceError(exc.message) from exc
    try:
        return verify_database(url, checkpoints, keys)
    except SQLAlchemyError as exc:
        raise SourceError(
            f"cannot read the audit log at {display_url(url)}: {exc.__class__.__name__}"
        ) from exc


def _print(report: Report, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        return
    first = report.first_failure
    if first is None:
        events = f"{report.events} events"
        if report.window:
            span = f"{report.since or 'the start'} to {report.until or 'the end'}"
            events += f" of a window, from seq {report.first_seq} (all of {span}, and a fence on each side)"
        checked = report.checkpoints_verified
        click.echo(
            f"intact: {events}, {checked} checkpoint{'' if checked == 1 else 's'} verified, "
            f"signed up to size {report.verified_size}; root of the tree checked: {report.root_hash}"
        )
    else:
        click.secho(
            f"TAMPERED: first failing seq {first.seq}: {first.reason.value}: {first.message}",
            fg="red",
            err=True,
        )
        for problem in report.problems:
            if problem is not first:
                click.echo(f"  also: {problem.reason.value}: {problem.message}", err=True)
    for warning in report.warnings:
        click.echo(f"warning: {warning.reason.value}: {warning.message}", err=True)


def _usage(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    raise SystemExit(USAGE)
