"""``sandbox audit checkpoint`` and ``sandbox audit verify``: exit 0 intact, 1 tampered, 2 usage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from audit.models import AuditEvent
from audit.services import SYSTEM
from core import keyring
from core.config import Settings
from sandbox.cli import main
from sandbox.runtime import open_runtime
from sandbox.services import audit_log
from tests.audit.conftest import add_events, attacker
from tests.cli.test_cli import _env


@pytest.fixture
def cli(settings: Settings) -> CliRunner:
    runner = CliRunner(env=_env(settings))
    assert runner.invoke(main, ["init"]).exit_code == 0
    return runner


@pytest.fixture
def jwks(settings: Settings, tmp_path: Path) -> Path:
    runtime = open_runtime(settings)
    try:
        with runtime.sessions() as session:
            path = tmp_path / "jwks.json"
            path.write_text(json.dumps(keyring.published_jwks(session)), encoding="utf-8")
    finally:
        runtime.close()
    return path


def _checkpoint(cli: CliRunner) -> dict[str, object]:
    result = cli.invoke(main, ["audit", "checkpoint"])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def test_verify_an_intact_log_exits_0(cli: CliRunner, jwks: Path) -> None:
    _checkpoint(cli)
    result = cli.invoke(main, ["audit", "verify", "--key", str(jwks)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("intact:")


def test_verify_json_reports_first_failing_seq_and_reason_with_exit_1(
    cli: CliRunner, jwks: Path, settings: Settings
) -> None:
    runtime = open_runtime(settings, read_only_data=False)
    try:
        add_events(runtime, 6)
        _checkpoint(cli)
        with attacker(runtime) as conn:
            conn.execute(
                text("UPDATE audit_events SET entry = replace(entry, '贷前核验', '贷后催收') WHERE seq = 4")
            )
    finally:
        runtime.close()
    result = cli.invoke(main, ["audit", "verify", "--key", str(jwks), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["intact"], report["first_failing_seq"], report["reason"]) == (
        False,
        4,
        "leaf_hash_mismatch",
    )


@pytest.mark.parametrize(
    "edit",
    [
        "occurred_at = 'yesterday'",  # PostgreSQL reads it as a time, SQLite keeps the text
        "details = '{not json'",
    ],
)
def test_a_column_edited_into_something_unreadable_is_tampering_exit_1(
    cli: CliRunner, jwks: Path, settings: Settings, edit: str
) -> None:
    """Found in review: a column that could not be parsed was called an unusable URL (exit 2)."""
    runtime = open_runtime(settings, read_only_data=False)
    try:
        add_events(runtime, 6)
        _checkpoint(cli)
        refused_here = edit.startswith("details") and settings.database_url.startswith("postgresql")
        if refused_here:  # PostgreSQL's json type refuses the edit itself: nothing to verify
            with pytest.raises(DBAPIError, match="json"), attacker(runtime) as conn:
                conn.execute(text(f"UPDATE audit_events SET {edit} WHERE seq = 4"))
            return
        with attacker(runtime) as conn:
            conn.execute(text(f"UPDATE audit_events SET {edit} WHERE seq = 4"))
    finally:
        runtime.close()
    result = cli.invoke(main, ["audit", "verify", "--key", str(jwks), "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["first_failing_seq"], report["reason"]) == (4, "entry_mismatch")


def test_verify_an_export_with_a_trusted_checkpoint(
    cli: CliRunner, jwks: Path, settings: Settings, tmp_path: Path
) -> None:
    trusted = tmp_path / "trusted.json"
    trusted.write_text(json.dumps(_checkpoint(cli)), encoding="utf-8")
    export = tmp_path / "export.ndjson"
    runtime = open_runtime(settings)
    try:
        from audit.queries import EventFilter, export_lines

        export.write_text("".join(export_lines(runtime.sessions, EventFilter())), encoding="utf-8")
    finally:
        runtime.close()
    ok = cli.invoke(
        main,
        [
            "audit",
            "verify",
            "--export",
            str(export),
            "--key",
            str(jwks),
            "--trusted-checkpoint",
            str(trusted),
        ],
    )
    assert ok.exit_code == 0, ok.output
    lines = export.read_text(encoding="utf-8").splitlines()
    export.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")  # the last event cut off
    cut = cli.invoke(
        main,
        [
            "audit",
            "verify",
            "--export",
            str(export),
            "--key",
            str(jwks),
            "--trusted-checkpoint",
            str(trusted),
            "--json",
        ],
    )
    assert cut.exit_code == 1
    assert json.loads(cut.stdout)["reason"] == "truncated"


def test_verify_the_export_of_a_time_window(
    cli: CliRunner, jwks: Path, settings: Settings, tmp_path: Path
) -> None:
    """A window of the log proves itself (``--export`` alone): exit 0; one event changed: exit 1."""
    export = tmp_path / "window.ndjson"
    runtime = open_runtime(settings, read_only_data=False)
    try:
        add_events(runtime, 12)
        with runtime.sessions() as session:
            since = session.get(AuditEvent, 6).occurred_at  # type: ignore[union-attr]
        lines = list(audit_log.export(runtime, actor=SYSTEM, request_id=None, since=since))
    finally:
        runtime.close()
    export.write_text("".join(lines), encoding="utf-8")
    ok = cli.invoke(main, ["audit", "verify", "--export", str(export), "--key", str(jwks)])
    assert ok.exit_code == 0, ok.output
    assert "of a window, from seq 5" in ok.output  # 6 on, after the fence before them
    header, first, *rest = lines
    record = json.loads(first)
    entry = record["entry"].replace('"n":', '"n":1')
    forged = {**record, "entry": entry, "leaf_hash": hashlib.sha256(b"\x00" + entry.encode()).hexdigest()}
    export.write_text("".join([header, json.dumps(forged) + "\n", *rest]), encoding="utf-8")
    bad = cli.invoke(main, ["audit", "verify", "--export", str(export), "--key", str(jwks), "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["reason"] == "root_mismatch"


@pytest.mark.parametrize(
    "args",
    [
        [],  # no key
        ["--key", "/nonexistent/key.pem"],
        ["--key", "{jwks}", "--db", "sqlite:///x.sqlite", "--export", "e.ndjson"],
        ["--key", "{jwks}", "--export", "/nonexistent/export.ndjson"],
        ["--key", "{jwks}", "--trusted-checkpoint", "{garbage}"],
        # Found by a sweep: these were tracebacks, or "TAMPERED" for a file that is no checkpoint.
        ["--key", "{jwks}", "--trusted-checkpoint", "{empty}"],
        ["--key", "{odd_jwks}"],
        ["--key", "{jwks}", "--export", "{huge_seq}"],
        ["--key", "{jwks}", "--export", "{nested}"],
        # Found by another: a traceback (a driver not installed), and exit 1, "tampered", for a
        # URL that could not be parsed.
        ["--key", "{jwks}", "--db", "mysql://x"],
        ["--key", "{jwks}", "--db", "garbage"],
        ["--key", "{jwks}", "--db", "sqlite:///{missing}/control.sqlite"],
        ["--key", "{jwks}", "--export", "{empty}"],  # had been "intact: 0 events", exit 0
    ],
)
def test_usage_errors_exit_2(cli: CliRunner, jwks: Path, tmp_path: Path, args: list[str]) -> None:
    files = {
        "garbage": "{not json",
        "empty": "",
        "odd_jwks": '{"keys": [1]}',
        "huge_seq": '{"seq": 1e999, "entry": "{}", "leaf_hash": "00"}\n',
        "nested": "[" * 100_000 + "\n",
    }
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    paths = {name: tmp_path / name for name in [*files, "missing"]}
    filled = [a.format(jwks=jwks, **paths) for a in args]
    result = cli.invoke(main, ["audit", "verify", *filled])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_a_key_that_did_not_sign_is_tampered_not_usage(cli: CliRunner, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from core.keys import generate

    _checkpoint(cli)
    other = tmp_path / "other.pem"
    other.write_bytes(
        generate().public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    result = cli.invoke(main, ["audit", "verify", "--key", str(other), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["reason"] == "bad_checkpoint_signature"


def test_an_export_saved_with_a_bom_verifies(
    cli: CliRunner, jwks: Path, settings: Settings, tmp_path: Path
) -> None:
    """Found in a sweep: seal verify and data load took a BOM, audit verify called line 1 no JSON."""
    from audit.queries import EventFilter, export_lines

    _checkpoint(cli)
    export = tmp_path / "bom.ndjson"
    runtime = open_runtime(settings)
    try:
        export.write_text("\ufeff" + "".join(export_lines(runtime.sessions, EventFilter())), encoding="utf-8")
    finally:
        runtime.close()
    result = cli.invoke(main, ["audit", "verify", "--key", str(jwks), "--export", str(export)])
    assert result.exit_code == 0 and "intact" in result.output, result.output


def test_checkpoint_on_a_home_that_cannot_be_opened_is_one_error_line(tmp_path: Path) -> None:
    runner = CliRunner(env={"SANDBOX_HOME": str(tmp_path / "missing")})
    result = runner.invoke(main, ["audit", "checkpoint"])
    assert result.exit_code == 1 and result.output.startswith("error: "), result.output


def test_a_home_that_is_not_here_is_named_as_missing(cli: CliRunner, jwks: Path, tmp_path: Path) -> None:
    """A walkthrough ran it outside the home folder: the error named only OperationalError."""
    elsewhere = {"SANDBOX_HOME": str(tmp_path / "elsewhere"), "SANDBOX_DATABASE_URL": None}
    for args in ([], ["--db", f"sqlite:///{tmp_path}/nothing.sqlite"]):
        result = cli.invoke(main, ["audit", "verify", "--key", str(jwks), *args], env=elsewhere)
        assert result.exit_code == 2, result.output
        assert "no control database at " in result.output and "SANDBOX_HOME" in result.output
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "nothing.sqlite").exists()  # none made
