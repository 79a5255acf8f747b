"""The command line: init, data synth, data load, exit codes and messages."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from audit import AuditEvent
from authz.accounts import authenticate
from core.config import Settings
from sandbox.cli import main
from sandbox.data.stores import row_counts
from sandbox.runtime import open_runtime
from tests.engine import rows


def _env(settings: Settings) -> dict[str, str]:
    return {
        "SANDBOX_HOME": str(settings.home),
        "SANDBOX_DATABASE_URL": settings.database_url,
        "SANDBOX_DATA_URL": "",
        "SANDBOX_DATA_LOOKUP_URL": "",
        "SANDBOX_POLICIES": str(settings.policy_dir),
    }


def _events(settings: Settings) -> list[tuple[str, str]]:
    runtime = open_runtime(settings)
    try:
        with runtime.sessions() as session:
            rows = session.execute(
                select(AuditEvent.action, AuditEvent.outcome).order_by(AuditEvent.seq)
            ).all()
            return [(a, o) for a, o in rows]
    finally:
        runtime.close()


@pytest.fixture
def cli(settings: Settings) -> CliRunner:
    runner = CliRunner(env=_env(settings))
    result = runner.invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    return runner


def test_init_reports_home_and_key(cli: CliRunner, settings: Settings) -> None:
    result = cli.invoke(main, ["init"])
    assert result.exit_code == 0
    assert str(settings.home) in result.output
    assert "signing key" in result.output and "up to date" in result.output


def test_synth_fills_every_dataset_and_is_audited(cli: CliRunner, settings: Settings) -> None:
    result = cli.invoke(main, ["data", "synth", "--enterprises", "200", "--persons", "150", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "enterprises" in result.output and "rows/s" in result.output
    runtime = open_runtime(settings)
    try:
        counts = row_counts(runtime.stores, runtime.catalog)
    finally:
        runtime.close()
    assert counts["enterprises"] == 200 and counts["household_registration"] == 150
    assert all(count for count in counts.values()), counts
    assert ("data.synthesize", "success") in _events(settings)


def test_load_refuses_mismatching_csv_listing_every_problem(
    cli: CliRunner, settings: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / "credit.csv"
    bad.write_text(
        "credit_code,district,rating,dishonest_debtor,dishonest_cases,updated_date,extra\n"
        "91370102MA3C5XXXX1,历下区,A,maybe,1.5,2024-02-30,x\n",
        encoding="utf-8",
    )
    result = cli.invoke(main, ["data", "load", "public_credit", str(bad)])
    assert result.exit_code == 1
    for column in ("extra", "dishonest_debtor", "dishonest_cases", "updated_date"):
        assert column in result.output, result.output
    assert ("data.load", "denied") in _events(settings)


def test_a_file_that_is_not_there_is_said_once(cli: CliRunner, tmp_path: Path) -> None:
    """A walkthrough saw the one problem printed twice: in the message and again as its detail."""
    result = cli.invoke(main, ["data", "load", "public_credit", str(tmp_path / "absent.csv")])
    assert result.exit_code == 1
    assert result.output.count("cannot read the file") == 1, result.output


def test_load_accepts_matching_csv(cli: CliRunner, settings: Settings, tmp_path: Path) -> None:
    good = tmp_path / "credit.csv"
    good.write_text(
        "credit_code,district,rating,dishonest_debtor,dishonest_cases,updated_date\n"
        "91370102MA3C5XXXX1,历下区,A,false,0,2024-02-28\n"
        "91370103MA3C5XXXX2,市中区,B,true,2,2024-03-01\n",
        encoding="utf-8",
    )
    result = cli.invoke(main, ["data", "load", "public_credit", str(good)])
    assert result.exit_code == 0, result.output
    assert "loaded 2 rows into public_credit" in result.output
    assert ("data.load", "success") in _events(settings)


def test_commands_on_an_uninitialized_home_fail_clearly(tmp_path: Path) -> None:
    runner = CliRunner(
        env={
            "SANDBOX_HOME": str(tmp_path / "none"),
            "SANDBOX_DATABASE_URL": "",
            "SANDBOX_DATA_URL": "",
            "SANDBOX_DATA_LOOKUP_URL": "",
            "SANDBOX_POLICIES": "",
        }
    )
    result = runner.invoke(main, ["data", "synth", "--enterprises", "10"])
    assert result.exit_code == 1
    assert "sandbox init" in result.output
    assert "Traceback" not in result.output


def test_bad_policy_stops_init_naming_file_and_key(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    (policies / "datasets").mkdir(parents=True)
    (policies / "datasets" / "x.yaml").write_text("name: x\ndescription: d\nkey: id\nfields: []\nowner: me\n")
    runner = CliRunner(
        env={
            "SANDBOX_HOME": str(tmp_path / "home"),
            "SANDBOX_POLICIES": str(policies),
            "SANDBOX_DATABASE_URL": "",
            "SANDBOX_DATA_URL": "",
            "SANDBOX_DATA_LOOKUP_URL": "",
        }
    )
    result = runner.invoke(main, ["init"])
    assert result.exit_code == 1
    assert "policies/datasets/x.yaml: owner: unknown key" in result.output
    assert result.output.count("unknown key") == 1  # the message lists it: not its details again


def test_usage_error_exits_2(cli: CliRunner) -> None:
    assert cli.invoke(main, ["data", "synth", "--enterprises", "-5"]).exit_code == 2
    # Found by a sweep: a negative seed was numpy's traceback; a NaN poll made a worker spin.
    assert cli.invoke(main, ["data", "synth", "--seed", "-1"]).exit_code == 2
    assert cli.invoke(main, ["worker", "--poll", "nan", "--once"]).exit_code == 2
    for seconds in ("nan", "inf", "5", "3601", "-30"):
        assert cli.invoke(main, ["worker", "--job-seconds", seconds, "--once"]).exit_code == 2
        assert cli.invoke(main, ["serve", "--job-seconds", seconds]).exit_code == 2


def test_a_worker_keeps_the_private_release_timetable_it_is_given(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.compute import worker as compute_worker
    from sandbox.compute.execute import RunOptions

    given: list[RunOptions] = []
    monkeypatch.setattr(compute_worker, "run_pending", lambda runtime, options: given.append(options) or [])
    assert cli.invoke(main, ["init"]).exit_code == 0
    assert cli.invoke(main, ["worker", "--once", "--job-seconds", "90"]).exit_code == 0
    assert cli.invoke(main, ["worker", "--once"]).exit_code == 0
    assert [options.limits.job_wall_seconds for options in given] == [90.0, 30.0]


def test_bad_settings_are_one_line_not_a_traceback(tmp_path: Path) -> None:
    """Settings are read before a command's own handler: a bad number was int()'s traceback, and a
    home with '?' in its path made its databases elsewhere ("a?1" wrote to "a")."""
    for env, wanted in (
        (
            {"SANDBOX_HOME": str(tmp_path / "h"), "SANDBOX_TOKEN_TTL_SECONDS": "abc"},
            "SANDBOX_TOKEN_TTL_SECONDS",
        ),
        ({"SANDBOX_HOME": str(tmp_path / "h"), "SANDBOX_CHECKPOINT_EVERY_EVENTS": "0"}, "whole number"),
        ({"SANDBOX_HOME": str(tmp_path / "a?1")}, "may not contain"),
        # And database URLs that name nothing usable: a malformed port, an unknown dialect.
        ({"SANDBOX_HOME": str(tmp_path / "h"), "SANDBOX_DATABASE_URL": "postgresql://[::1"}, "database URL"),
        ({"SANDBOX_HOME": str(tmp_path / "h"), "SANDBOX_DATA_URL": "nope://"}, "database URL"),
    ):
        result = CliRunner(env={"SANDBOX_DATABASE_URL": "", "SANDBOX_DATA_URL": "", **env}).invoke(
            main, ["init"]
        )
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert wanted in result.output and "Traceback" not in result.output
    assert not (tmp_path / "a").exists()


def test_a_password_that_is_not_utf8_is_a_usage_error(cli: CliRunner, settings: Settings) -> None:
    """Found by a sweep: bytes that are not UTF-8 on stdin were a traceback from the hasher."""
    command = [sys.executable, "-c", "from sandbox.cli import main; main()"]
    args = ["users", "add", "--role", "admin", "--username", "bytes", "--password-stdin"]
    env = {**os.environ, **_env(settings)}
    done = subprocess.run([*command, *args], input=b"long enough \xff\xfe password\n", env=env,
                          capture_output=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert b"not UTF-8" in done.stderr and b"Traceback" not in done.stderr
    closed = subprocess.run([*command, *args], stdin=subprocess.DEVNULL, env=env, capture_output=True,
                            timeout=60, check=False)  # fmt: skip
    assert closed.returncode in (1, 2) and b"Traceback" not in closed.stderr


def test_users_add_reads_the_password_from_stdin(cli: CliRunner, settings: Settings) -> None:
    result = cli.invoke(
        main,
        ["users", "add", "--role", "reviewer", "--username", "wang.reviewer", "--password-stdin"],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert "created reviewer wang.reviewer" in result.output
    assert ("account.create", "success") in _events(settings)
    again = cli.invoke(
        main,
        ["users", "add", "--role", "reviewer", "--username", "wang.reviewer", "--password-stdin"],
        input="a long enough password\n",
    )
    assert again.exit_code == 1 and "taken" in again.output
    short = cli.invoke(
        main,
        ["users", "add", "--role", "subject", "--username", "li.si", "--password-stdin"],
        input="short\n",
    )
    assert short.exit_code == 1
    assert "password" in short.output and "subject_id" in short.output


def test_a_password_no_sign_in_could_send_is_refused_and_a_bom_is_no_part_of_it(
    cli: CliRunner, settings: Settings
) -> None:
    """Found in a sweep: a NUL made an account that could never sign in (every form refuses one),
    and a byte order mark on stdin became the password's first character."""
    add = ["users", "add", "--role", "reviewer", "--password-stdin", "--username"]
    for n, password in enumerate(
        ("long enough\x00password", "long enough\x1bpassword", "long\ufeffenough pw")
    ):
        refused = cli.invoke(main, [*add, f"refused{n}"], input=password + "\n")
        assert refused.exit_code == 1 and "no control characters" in refused.output, password
    bom = cli.invoke(main, [*add, "bom.user"], input="\ufeffa long enough password\r\n")
    assert bom.exit_code == 0, bom.output
    runtime = open_runtime(settings)
    try:
        with runtime.sessions() as session:
            assert authenticate(session, username="bom.user", password="a long enough password") is not None
    finally:
        runtime.close()


def test_a_database_error_is_one_line_with_the_drivers_reason(
    cli: CliRunner, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement the database refuses is "error: database: <class>: <the driver's first line>",
    exit 1, no traceback; a driver error with no message at all names its class (it had been an
    IndexError inside the handler)."""
    import sqlite3

    from sqlalchemy import exc, text

    from authz import accounts

    def refused(session: Any, **_: Any) -> None:
        session.execute(text("SELECT missing_column FROM no_such_table"))

    def silent(session: Any, **_: Any) -> None:
        raise exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError())

    args = ["users", "add", "--role", "reviewer", "--username", "zhao.reviewer", "--password-stdin"]
    for fake, wanted in ((refused, "no_such_table"), (silent, "OperationalError: OperationalError")):
        monkeypatch.setattr(accounts, "create_account", fake)
        result = cli.invoke(main, args, input="a long enough password\n")
        assert result.exit_code == 1, result.output
        assert isinstance(result.exception, SystemExit)
        line = result.output.strip()
        assert line.startswith("error: database: ") and "\n" not in line, line
        assert wanted in line and "Traceback" not in result.output
    assert ("account.create", "success") not in _events(settings)


def test_keys_rotate_keeps_the_old_key_published(cli: CliRunner, settings: Settings) -> None:
    from core import keyring

    result = cli.invoke(main, ["keys", "rotate"])
    assert result.exit_code == 0, result.output
    runtime = open_runtime(settings)
    try:
        with runtime.sessions() as session:
            kids = [k["kid"] for k in keyring.published_jwks(session)["keys"]]
            active = keyring.active_record(session)
    finally:
        runtime.close()
    assert len(kids) == 2 and active is not None and active.kid in result.output
    assert ("key.rotate", "success") in _events(settings)


def test_a_synth_stopped_by_sigterm_leaves_no_staging_tables(tmp_path: Path) -> None:
    """Found by a sweep: SIGTERM (``kill``, a service manager, ``timeout``) ended a synth on the
    spot and left its staging tables in both stores (342 MB), which nothing removed later."""
    import signal
    import sqlite3
    import time

    from core.config import load_settings
    from tests.conftest import POLICIES

    env = {
        "SANDBOX_HOME": str(tmp_path / "home"),
        "SANDBOX_DATABASE_URL": "",
        "SANDBOX_DATA_URL": "",
        "SANDBOX_DATA_LOOKUP_URL": "",
        "SANDBOX_POLICIES": str(POLICIES),
    }
    assert CliRunner(env=env).invoke(main, ["init"]).exit_code == 0
    settings = load_settings(env)
    lookup = Path(str(settings.data_lookup_url).removeprefix("sqlite:///"))
    command = [sys.executable, "-c", "from sandbox.cli import main; main()", "data", "synth"]
    synth = subprocess.Popen([*command, "--enterprises", "5000000", "--persons", "10"],
                             env={**os.environ, **env}, stderr=subprocess.PIPE)  # fmt: skip

    def staging() -> list[str]:
        with closing(sqlite3.connect(lookup, timeout=30)) as db:
            return [n for (n,) in db.execute("SELECT name FROM sqlite_master") if "__load_" in n]

    try:
        deadline = time.monotonic() + 60
        while not staging() and synth.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert staging() and synth.poll() is None, "the synth never staged a table"
        synth.send_signal(signal.SIGTERM)
        _, stderr = synth.communicate(timeout=60)
    finally:
        synth.kill()
    assert synth.returncode == 143, stderr
    assert b"stopped by SIGTERM" in stderr and b"Traceback" not in stderr
    runtime = open_runtime(settings)
    try:
        from sqlalchemy import inspect

        for engine in runtime.stores.engines:
            names = inspect(engine).get_table_names()
            assert not [n for n in names if "__" in n], names
        assert ("data.synthesize", "success") not in _events(settings)
    finally:
        runtime.close()


def test_serve_host_is_an_address_or_a_name_and_ipv6_is_bracketed(cli: CliRunner) -> None:
    """Found by a sweep: ``--host ""`` bound every interface while the banner read
    ``http://:8000``, and ``--host ::1`` was handed to gunicorn without its brackets."""
    from sandbox.cli import listen_host

    assert listen_host(None, None, "::1") == "[::1]" == listen_host(None, None, "[::1]")
    assert listen_host(None, None, "0.0.0.0") == "0.0.0.0"
    assert listen_host(None, None, "bureau.example.cn") == "bureau.example.cn"
    for bad in ("", " ", "1.2.3", "a b", "-x", "a..b"):
        result = cli.invoke(main, ["serve", "--host", bad, "--no-workers"])
        assert result.exit_code == 2, (bad, result.output)
        assert "neither an IP address nor a host name" in result.output
    assert "0.0.0.0" in cli.invoke(main, ["serve", "--host", ""]).output  # says how to mean everywhere


def test_codes_accept_list_and_withdraw_a_non_conforming_credit_code(
    cli: CliRunner, settings: Settings
) -> None:
    from core.identifiers import USCC_CHARSET, uscc_check_char

    right = "913701023C5XXXX13C"
    code = right[:17] + USCC_CHARSET[(USCC_CHARSET.index(uscc_check_char(right[:17])) + 1) % 31]
    add_firm = ["users", "add", "--role", "subject", "--username", "legacy.firm", "--subject-id", code]
    add_firm.append("--password-stdin")
    added = cli.invoke(main, add_firm, input="a long enough password\n")
    assert added.exit_code == 1 and "a character is mistyped" in added.output

    accepted = cli.invoke(main, ["codes", "accept", code, "--reason", "核对登记簿"])
    assert accepted.exit_code == 0, accepted.output
    assert accepted.output.startswith(f"accepted {code} (")
    row_id = accepted.output.strip().rsplit("(", 1)[1].rstrip(")")
    added = cli.invoke(main, add_firm, input="a long enough password\n")
    assert added.exit_code == 0, added.output
    listed = cli.invoke(main, ["codes", "list"])
    assert (
        listed.exit_code == 0
        and f"{code}  {row_id}  accepted" in listed.output
        and "核对登记簿" in listed.output
    )

    twice = cli.invoke(main, ["codes", "accept", code, "--reason", "again"])
    assert twice.exit_code == 1 and "accepted already" in twice.output
    conforming = cli.invoke(main, ["codes", "accept", right, "--reason", "x"])
    assert conforming.exit_code == 1 and "check characters are right" in conforming.output
    assert cli.invoke(main, ["codes", "accept", code]).exit_code == 2  # --reason is required

    withdrawn = cli.invoke(main, ["codes", "withdraw", row_id, "--reason", "登记簿已更正"])
    assert withdrawn.exit_code == 0 and withdrawn.output.strip() == f"withdrawn {code} ({row_id})"
    assert "withdrawn 20" in cli.invoke(main, ["codes", "list"]).output
    missing = cli.invoke(main, ["codes", "withdraw", "no-such-id", "--reason", "x"])
    assert missing.exit_code == 1 and "no such accepted code" in missing.output
    assert [a for a, _ in _events(settings) if a.startswith("code.")] == ["code.accept", "code.withdraw"]


def test_load_names_the_keys_that_fail_their_check_leaving_out_accepted_codes(
    cli: CliRunner, settings: Settings, tmp_path: Path
) -> None:
    from core.identifiers import is_valid_uscc

    right, wrong, accepted = "913701023C5XXXX13C", "913701023C5XXXX130", "913701023C5XXXX131"
    assert is_valid_uscc(right) and not is_valid_uscc(wrong) and not is_valid_uscc(accepted)
    assert cli.invoke(main, ["codes", "accept", accepted, "--reason", "核对登记簿"]).exit_code == 0
    good = tmp_path / "credit.csv"
    good.write_text(
        "credit_code,district,rating,dishonest_debtor,dishonest_cases,updated_date\n"
        f"{right},历下区,A,false,0,2024-02-28\n{wrong},市中区,B,true,2,2024-03-01\n"
        f"{accepted},市中区,B,true,2,2024-03-01\n",
        encoding="utf-8",
    )
    result = cli.invoke(main, ["data", "load", "public_credit", str(good)])
    assert result.exit_code == 0, result.output
    assert "loaded 3 rows into public_credit" in result.output
    assert "warning: 1 distinct key of public_credit fails its id's check" in result.output
    assert f"  '{wrong}'" in result.output and accepted not in result.output and right not in result.output
    assert "sandbox codes accept" in result.output

    runtime = open_runtime(settings)
    try:
        with runtime.sessions() as session:
            event = session.scalars(
                select(AuditEvent).where(AuditEvent.action == "data.load").order_by(AuditEvent.seq.desc())
            ).first()
    finally:
        runtime.close()
    assert event is not None and event.details["keys_failing_check"] == 1
    assert wrong not in event.entry  # the keys stay out of the permanent log

    clean = tmp_path / "clean.csv"
    clean.write_text(good.read_text(encoding="utf-8").replace(f"{wrong},市中区,B,true,2,2024-03-01\n", ""))
    quiet = cli.invoke(main, ["data", "load", "public_credit", str(clean)])
    assert quiet.exit_code == 0 and "warning" not in quiet.output

    row_id = cli.invoke(main, ["codes", "list"]).output.split()[1]
    assert cli.invoke(main, ["codes", "withdraw", row_id, "--reason", "登记簿已更正"]).exit_code == 0
    warned = cli.invoke(main, ["data", "load", "public_credit", str(clean)])  # withdrawn: named again
    assert warned.exit_code == 0 and f"  '{accepted}'" in warned.output and "1 distinct key" in warned.output


def test_a_load_keyed_by_id_numbers_names_an_accepted_credit_code_too(
    cli: CliRunner, settings: Settings, tmp_path: Path
) -> None:
    """A dataset keyed by resident ID numbers takes no credit code, accepted or not: it is named,
    and the hint to accept it is not given, as accepting it would change nothing there."""
    person, code = "11010519491231002X", "913701023C5XXXX131"
    assert cli.invoke(main, ["codes", "accept", code, "--reason", "核对登记簿"]).exit_code == 0
    path = tmp_path / "households.csv"
    header = "resident_id,name,gender,birth_year,district,household_type,registered_date,address"
    lines = [f"{key},张三,男,1949,历下区,家庭户,2000-01-01,某路 1 号" for key in (person, code)]
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    result = cli.invoke(main, ["data", "load", "household_registration", str(path)])
    assert result.exit_code == 0, result.output
    assert f"  '{code}'" in result.output and person not in result.output
    assert "sandbox codes accept" not in result.output


def test_codes_list_says_when_there_is_none_and_keeps_one_row_per_line(cli: CliRunner) -> None:
    assert cli.invoke(main, ["codes", "list"]).output == "no accepted codes\n"
    code = "913701023C5XXXX131"
    assert cli.invoke(main, ["codes", "accept", code, "--reason", "核对登记簿\n经办人复核"]).exit_code == 0
    listed = cli.invoke(main, ["codes", "list"]).output
    assert listed.count("\n") == 1 and listed.rstrip().endswith("核对登记簿 / 经办人复核")
    named = cli.invoke(main, ["codes", "accept", "913701023C5XXXX132", "--reason", f"查 {code[:-1]}2 无误"])
    assert named.exit_code == 1 and "names the code itself" in named.output


def test_codes_commands_refuse_arguments_that_are_not_utf8(cli: CliRunner) -> None:
    """Bytes a shell passes that are not UTF-8 arrive as lone surrogates: refused, no traceback."""
    accept = cli.invoke(main, ["codes", "accept", "913701023C5XXXX131", "--reason", "\udcff\udcfe"])
    assert accept.exit_code == 1 and "reason" in accept.output and "Traceback" not in accept.output
    withdraw = cli.invoke(main, ["codes", "withdraw", "\udcff", "--reason", "x"])
    assert withdraw.exit_code == 1 and "no such accepted code" in withdraw.output


def test_init_warns_of_a_dataset_the_policy_changed_until_it_is_loaded_again(
    cli: CliRunner, settings: Settings, tmp_path: Path
) -> None:
    runtime = open_runtime(settings, read_only_data=False)
    try:  # what a load under an older policy left: the rating column under another name
        for engine in runtime.stores.engines:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE public_credit RENAME COLUMN rating TO grade"))
    finally:
        runtime.close()
    result = cli.invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    assert "warning: the stored data of public_credit does not match the policy (no column rating)" in (
        result.stderr
    )
    assert "sandbox data load public_credit FILE" in result.stderr
    good = tmp_path / "credit.csv"
    good.write_text(
        "credit_code,district,rating,dishonest_debtor,dishonest_cases,updated_date\n"
        "91370102MA3C5XXXX1,历下区,A,false,0,2024-02-28\n",
        encoding="utf-8",
    )
    assert cli.invoke(main, ["data", "load", "public_credit", str(good)]).exit_code == 0
    again = cli.invoke(main, ["init"])
    assert again.exit_code == 0 and "warning" not in again.stderr


def test_init_warns_of_stored_rows_past_the_bound_on_rows_per_subject_naming_no_subject(
    cli: CliRunner, settings: Settings, tmp_path: Path
) -> None:
    """A table stored before its policy bounded a subject's rows (a home upgraded): aggregates on
    it are refused, and the bureau hears so at start-up, not from an operator's 503."""
    code = "91370102MA3C5XXXX1"
    runtime = open_runtime(settings, read_only_data=False)
    try:
        rows.write(runtime.stores, runtime.catalog, {"enterprises": [rows.enterprise(code)]})
        for engine in runtime.stores.engines:
            with engine.begin() as conn:  # as an old load left it: the firm twice
                conn.execute(text("INSERT INTO enterprises SELECT * FROM enterprises"))
    finally:
        runtime.close()
    result = cli.invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    assert (
        "warning: the stored data of enterprises holds a subject with more rows than max_rows_per_subject 1; "
        "aggregates on it are refused until it is loaded again: sandbox data load enterprises FILE"
    ) in result.stderr
    assert code not in result.stderr and "enterprise_tax" not in result.stderr
    good = tmp_path / "firms.csv"
    firm = rows.enterprise(code)
    good.write_text(",".join(firm) + "\n" + ",".join(str(v) for v in firm.values()) + "\n", encoding="utf-8")
    assert cli.invoke(main, ["data", "load", "enterprises", str(good)]).exit_code == 0
    assert "max_rows_per_subject" not in cli.invoke(main, ["init"]).stderr
