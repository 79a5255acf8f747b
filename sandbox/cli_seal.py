"""``sandbox seal verify``: check a sealed result offline (exit 0 valid, 1 invalid, 2 usage)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from core.config import load_settings
from core.errors import SandboxError
from core.seals import SealInvalid

INVALID = 1
USAGE = 2


@click.group()
def seal() -> None:
    """Sealed results: verification and aggregate answers signed by the bureau."""


@seal.command("verify")
@click.argument("source", default="-", metavar="[FILE|-]")
@click.option(
    "--jwks",
    "jwks_source",
    metavar="FILE|URL",
    help="The published key set (/.well-known/jwks.json), as a file or URL. Default: this home's keys.",
)
def verify(source: str, jwks_source: str | None) -> None:
    """Check the seal in FILE (a response JSON or a bare compact JWS; '-' reads stdin)."""
    from sandbox.services.seals import check_sealed, local_jwks, read_jwks

    try:
        if source == "-" and sys.stdin is None:  # started with stdin closed
            raise OSError("no standard input")
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        click.secho(f"error: cannot read {source}: {exc}", fg="red", err=True)
        raise SystemExit(USAGE) from None
    try:
        jwks = read_jwks(jwks_source) if jwks_source else local_jwks(load_settings().database_url)
    except (SandboxError, OSError) as exc:  # a key set that cannot be read says nothing of the seal
        message = exc.message if isinstance(exc, SandboxError) else str(exc)
        click.secho(f"error: no key set: {message}; pass --jwks FILE|URL", fg="red", err=True)
        raise SystemExit(USAGE) from None
    try:
        check = check_sealed(text, jwks)
    except SealInvalid as exc:
        click.secho(f"seal INVALID: {exc.message}", fg="red", err=True)
        raise SystemExit(INVALID) from None
    click.echo(json.dumps(check.payload, ensure_ascii=False, indent=2, sort_keys=True))
    compared = f"; the response's {', '.join(check.compared)} match it" if check.compared else ""
    click.secho(f"seal OK: signed by key {check.kid}{compared}", fg="green", err=True)
    if check.unsealed:
        click.secho(
            f"not sealed, so not vouched for: the response's {', '.join(check.unsealed)}",
            fg="yellow",
            err=True,
        )
