"""``sandbox audit``: sign a checkpoint, verify the log offline, and check one event's inclusion
offline (exit 0 intact, 1 tampered, 2 usage)."""

from __future__ import annotations

import binascii
import json
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

from audit.inclusion import Inclusion, NamedKey, ProofInvalid, verify_inclusion_proof
from audit.sources import (
    SignedCheckpoint,
    SourceError,
    checkpoints_from_file,
    load_public_keys,
    named_keys_from_jwks,
    read_checkpoint,
    read_inclusion_proof,
    trusted_checkpoint,
)
from audit.verify import Report, SourcedCheckpoint, read_export, verify_log, verify_window
from audit.verify_db import verify_database
from core.config import load_settings
from core.db import display_url, require_existing, usable_url, with_driver
from core.errors import ConfigurationError

INVALID = 1
USAGE = 2
MAX_INPUT_BYTES = 16 * 1024 * 1024


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


@audit.command("verify-inclusion")
@click.argument("proof_source", default="-", metavar="PROOF|-")
@click.option(
    "--checkpoint",
    "checkpoint_source",
    metavar="FILE|-",
    help="The signed checkpoint (GET /v1/audit/checkpoint, or its note). Default: the one in the proof.",
)
@click.option(
    "--jwks",
    "jwks_source",
    metavar="FILE|URL",
    required=True,
    help="The bureau's published key set (/.well-known/jwks.json), as a file or URL.",
)
@click.option(
    "--seal",
    "seal_source",
    metavar="FILE|-",
    help="The sealed answer (the API's JSON response or the bare JWS): it must name the proof's event.",
)
def verify_inclusion(
    proof_source: str, checkpoint_source: str | None, jwks_source: str, seal_source: str | None
) -> None:
    """Check offline that an event is in the log a signed checkpoint vouches for.

    PROOF is GET /v1/audit/proofs/inclusion's JSON ('-' reads stdin). Exit 0 included, 1 a
    signature, hash or the seal does not verify, 2 an input that cannot be used.
    """
    from core.seals import SealInvalid
    from sandbox.services.seals import SealUnreadable, check_seal_names_event, check_sealed

    sources = [s for s in (proof_source, checkpoint_source, seal_source) if s is not None]
    if sources.count("-") > 1:
        _usage("only one input can be read from standard input ('-')")
    try:
        proof = read_inclusion_proof(_read_input(proof_source, "the inclusion proof"), _named(proof_source))
        signed = _checkpoint_given(checkpoint_source, proof.checkpoint)
        jwks, keys = _key_set(jwks_source)
        seal_text = _read_input(seal_source, "the sealed answer") if seal_source else None
        inclusion = verify_inclusion_proof(proof, signed, keys)
    except SourceError as exc:
        _usage(str(exc))
    except ProofInvalid as exc:
        _invalid(str(exc))
    if seal_text is None:
        _print_inclusion(inclusion)
        return
    try:
        check = check_sealed(seal_text, jwks)
        check_seal_names_event(check.payload, inclusion.seq, inclusion.leaf_hash.hex())
    except SealUnreadable as exc:
        _usage(f"{_named(seal_source or '-')}: {exc.message}")
    except SealInvalid as exc:
        _invalid(f"the seal: {exc.message}")
    _print_inclusion(inclusion)
    click.echo(
        f"sealed answer: its seal (key {check.kid}) names audit event {inclusion.seq} "
        f"with leaf hash {inclusion.leaf_hash.hex()}: the answer is in the log"
    )


def _read_input(source: str, what: str) -> str:
    try:
        if source == "-":
            if sys.stdin is None:  # started with stdin closed
                raise OSError("no standard input")
            return sys.stdin.read(MAX_INPUT_BYTES)
        with Path(source).open(encoding="utf-8") as file:
            return file.read(MAX_INPUT_BYTES)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SourceError(f"cannot read {what} {_named(source)}: {reason}") from exc


def _named(source: str) -> str:
    return "standard input" if source == "-" else source


def _checkpoint_given(source: str | None, in_proof: SignedCheckpoint | None) -> SignedCheckpoint:
    if source is not None:
        return read_checkpoint(_read_input(source, "the checkpoint"), _named(source))
    if in_proof is None:
        raise SourceError(
            "the proof holds no checkpoint (none was signed at its size): pass --checkpoint FILE"
        )
    return in_proof


def _key_set(source: str) -> tuple[dict[str, Any], list[NamedKey]]:
    from core.seals import SealInvalid
    from sandbox.services.seals import read_jwks

    try:
        jwks = read_jwks(source)
        keys = named_keys_from_jwks(jwks)
    except SealInvalid as exc:
        raise SourceError(f"no key set: {exc.message}") from exc
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise SourceError(f"no key set: {source} is not a JWKS of Ed25519 keys") from exc
    if not keys:
        raise SourceError(f"no key set: {source} holds no Ed25519 key")
    return jwks, keys


def _print_inclusion(inclusion: Inclusion) -> None:
    checkpoint = inclusion.checkpoint
    signer = f"key {inclusion.kid}" if inclusion.kid else "a key of the key set"
    click.echo(
        f"included: audit event {inclusion.seq} (leaf hash {inclusion.leaf_hash.hex()}) is in the checkpoint "
        f"of size {checkpoint.tree_size} signed by {signer} at {checkpoint.timestamp}, "
        f"root {checkpoint.root_hash.hex()}"
    )


def _invalid(message: str) -> None:
    click.secho(f"INVALID: {message}", fg="red", err=True)
    raise SystemExit(INVALID)


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
