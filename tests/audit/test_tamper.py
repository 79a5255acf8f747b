"""Every tamper an attacker with the database could try is caught, with its reason and seq."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from audit import merkle
from audit.notes import sign_checkpoint
from audit.verify import Reason, Report
from core import keyring
from core.keys import SigningKey, generate
from sandbox.runtime import Runtime
from tests.audit.conftest import add_events, attacker, checkpoint, verify


@pytest.fixture
def log(runtime: Runtime) -> Runtime:
    """About 45 events (init's own first), checkpoints at three sizes, copied to the file."""
    add_events(runtime, 2)
    checkpoint(runtime)  # size S1, small
    add_events(runtime, 15)
    checkpoint(runtime)
    add_events(runtime, 20)
    checkpoint(runtime)
    report = verify(runtime)
    assert report.intact and not report.warnings, report.as_dict()
    return runtime


def _sizes(conn: Connection) -> list[int]:
    return [
        int(r[0]) for r in conn.execute(text("SELECT tree_size FROM audit_checkpoints ORDER BY tree_size"))
    ]


def _entry(conn: Connection, seq: int) -> dict[str, object]:
    raw = conn.execute(text("SELECT entry FROM audit_events WHERE seq = :s"), {"s": seq}).scalar_one()
    return dict(json.loads(raw))


def _write(
    conn: Connection, seq: int, fields: dict[str, object], *, rehash: bool, new_seq: int | None = None
) -> None:
    entry = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    leaf = hashlib.sha256(b"\x00" + entry.encode()).hexdigest()
    sets = (
        "entry = :e" + (", leaf_hash = :h" if rehash else "") + (", seq = :n" if new_seq is not None else "")
    )
    conn.execute(
        text(f"UPDATE audit_events SET {sets} WHERE seq = :s"),
        {"e": entry, "h": leaf, "s": seq, "n": new_seq},
    )


def _failure(report: Report) -> tuple[str, int | None]:
    assert not report.intact
    first = report.first_failure
    assert first is not None
    return first.reason.value, first.seq


def test_edit_a_body_is_a_leaf_hash_mismatch(log: Runtime) -> None:
    with attacker(log) as conn:
        fields = _entry(conn, 20)
        fields["details"] = {"purpose": "贷后催收", "n": 0}
        _write(conn, 20, fields, rehash=False)
    assert _failure(verify(log)) == (Reason.LEAF_HASH_MISMATCH, 20)


def test_edit_an_indexed_column_is_an_entry_mismatch(log: Runtime) -> None:
    with attacker(log) as conn:
        conn.execute(text("UPDATE audit_events SET outcome = 'success', actor_id = 'someone' WHERE seq = 12"))
    assert _failure(verify(log)) == (Reason.ENTRY_MISMATCH, 12)


def test_edit_a_body_and_rehash_onward_is_a_root_mismatch_after_the_last_good_checkpoint(
    log: Runtime,
) -> None:
    with attacker(log) as conn:
        first_size = _sizes(conn)[0]
        fields = _entry(conn, first_size + 3)
        fields["outcome"] = "success"
        fields["details"] = {"purpose": "无", "n": -1}
        _write(conn, first_size + 3, fields, rehash=True)
        conn.execute(
            text("UPDATE audit_events SET details = :d WHERE seq = :s"),
            {"d": json.dumps(fields["details"], ensure_ascii=False), "s": first_size + 3},
        )
    assert _failure(verify(log)) == (Reason.ROOT_MISMATCH, first_size)


def test_delete_a_row_is_a_sequence_gap(log: Runtime) -> None:
    with attacker(log) as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 9"))
    assert _failure(verify(log)) == (Reason.SEQUENCE_GAP, 9)


def test_delete_and_renumber_is_a_root_mismatch(log: Runtime) -> None:
    with attacker(log) as conn:
        first_size = _sizes(conn)[0]
        victim = first_size + 1
        last = int(conn.execute(text("SELECT max(seq) FROM audit_events")).scalar_one())
        conn.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": victim})
        for seq in range(victim + 1, last + 1):
            fields = _entry(conn, seq)
            fields["seq"] = seq - 1
            _write(conn, seq, fields, rehash=True, new_seq=seq - 1)
        conn.execute(text("UPDATE audit_head SET tree_size = :n"), {"n": last})
    assert _failure(verify(log)) == (Reason.ROOT_MISMATCH, first_size)


def test_swap_two_rows_is_a_sequence_mismatch(log: Runtime) -> None:
    with attacker(log) as conn:
        a, b = _entry(conn, 14), _entry(conn, 15)
        _write(conn, 14, b, rehash=True)
        _write(conn, 15, a, rehash=True)
    assert _failure(verify(log)) == (Reason.SEQUENCE_MISMATCH, 14)


def test_swap_two_rows_and_renumber_their_entries_is_a_root_mismatch(log: Runtime) -> None:
    with attacker(log) as conn:
        first_size = _sizes(conn)[0]
        a, b = first_size + 2, first_size + 3
        parked = 10**9
        for old, new in ((a, parked), (b, a), (parked, b)):  # whole rows change places
            conn.execute(text("UPDATE audit_events SET seq = :n WHERE seq = :o"), {"n": new, "o": old})
        for seq in (a, b):
            fields = _entry(conn, seq)
            fields["seq"] = seq
            _write(conn, seq, fields, rehash=True)
    assert _failure(verify(log)) == (Reason.ROOT_MISMATCH, first_size)


def test_cut_the_tail_and_its_checkpoints_is_caught_by_the_checkpoint_file(log: Runtime) -> None:
    with attacker(log) as conn:
        sizes = _sizes(conn)
        cut = sizes[1] + 5
        conn.execute(text("DELETE FROM audit_events WHERE seq >= :c"), {"c": cut})
        conn.execute(text("DELETE FROM audit_checkpoints WHERE tree_size > :c"), {"c": cut})
        conn.execute(text("UPDATE audit_head SET tree_size = :c"), {"c": cut})
    assert _failure(verify(log)) == (Reason.TRUNCATED, cut)
    # Without the file, the database alone looks intact: that is why the file exists.
    assert verify(log, use_file=False).intact


def test_truncation_below_a_trusted_checkpoint(log: Runtime) -> None:
    with log.sessions() as session:
        from audit.checkpoints import latest_checkpoint

        row = latest_checkpoint(session)
        assert row is not None
        trusted, size = row.note, row.tree_size
    with attacker(log) as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq >= 10"))
        conn.execute(text("DELETE FROM audit_checkpoints"))
    log.settings.checkpoints_file.unlink()
    report = verify(log, trusted=[trusted])
    assert _failure(report) == (Reason.TRUNCATED, 10)
    assert size > 10
    # A walkthrough read "TAMPERED: truncated" beside "unverified_tail: 10 events … consistent".
    assert [w.reason for w in report.warnings] == []


def test_change_a_checkpoint_is_a_bad_signature(log: Runtime) -> None:
    with attacker(log) as conn:
        size = _sizes(conn)[1]
        note = conn.execute(
            text("SELECT note FROM audit_checkpoints WHERE tree_size = :s"), {"s": size}
        ).scalar_one()
        lines = note.split("\n")
        lines[1] = str(size - 1)  # claim a smaller tree with the same root and signature
        conn.execute(
            text("UPDATE audit_checkpoints SET note = :n WHERE tree_size = :s"),
            {"n": "\n".join(lines), "s": size},
        )
    report = verify(log, use_file=False)
    assert _failure(report)[0] == Reason.BAD_CHECKPOINT_SIGNATURE


def test_change_a_checkpoints_columns_is_a_checkpoint_mismatch(log: Runtime) -> None:
    with attacker(log) as conn:
        size = _sizes(conn)[1]
        conn.execute(
            text("UPDATE audit_checkpoints SET root_hash = :r WHERE tree_size = :s"),
            {"r": "00" * 32, "s": size},
        )
    assert _failure(verify(log, use_file=False))[0] == Reason.CHECKPOINT_MISMATCH


def test_a_checkpoint_signed_by_another_key_is_refused(log: Runtime) -> None:
    with attacker(log) as conn:
        size = _sizes(conn)[-1]
        root = bytes.fromhex(
            conn.execute(
                text("SELECT root_hash FROM audit_checkpoints WHERE tree_size = :s"), {"s": size}
            ).scalar_one()
        )
    _, forged = sign_checkpoint(log.settings.audit_origin, size, root, log.clock(), generate().private)
    report = verify(log, trusted=[forged])
    assert _failure(report)[0] == Reason.BAD_CHECKPOINT_SIGNATURE
    assert "not signed by a trusted key" in report.problems[0].message


def _real_key(log: Runtime) -> SigningKey:
    with log.sessions() as session:
        return keyring.active_key(session, log.settings.keys_dir)


def _rewrite_history(log: Runtime, conn: Connection, key: SigningKey) -> list[int]:
    """Change one event, rehash, and re-sign every checkpoint with the bureau's real key."""
    sizes = _sizes(conn)
    fields = _entry(conn, 5)
    fields["details"] = {"purpose": "改写", "n": 5}
    _write(conn, 5, fields, rehash=True)
    conn.execute(
        text("UPDATE audit_events SET details = :d WHERE seq = 5"),
        {"d": json.dumps(fields["details"], ensure_ascii=False)},
    )
    leaves = [
        bytes.fromhex(h) for (h,) in conn.execute(text("SELECT leaf_hash FROM audit_events ORDER BY seq"))
    ]
    conn.execute(text("DELETE FROM audit_checkpoints"))
    for size in sizes:
        root = merkle.root_of(leaves[:size])
        _, note = sign_checkpoint(log.settings.audit_origin, size, root, log.clock(), key.private)
        conn.execute(
            text(
                "INSERT INTO audit_checkpoints (tree_size, root_hash, issued_at, key_id, note) "
                "VALUES (:s, :r, :t, :k, :n)"
            ),
            {"s": size, "r": root.hex(), "t": log.clock(), "k": key.kid, "n": note},
        )
    return sizes


def test_rewrite_history_and_resign_with_the_real_key_is_a_fork_against_the_file(log: Runtime) -> None:
    key = _real_key(log)
    with attacker(log) as conn:
        sizes = _rewrite_history(log, conn, key)
    assert verify(log, use_file=False).intact  # the database alone now agrees with itself
    reason, seq = _failure(verify(log))
    assert (reason, seq) == (Reason.FORK, sizes[0])  # the histories agree up to the first checkpoint


def test_rewrite_history_and_resign_is_caught_by_an_auditors_trusted_checkpoint(log: Runtime) -> None:
    with log.sessions() as session:
        from audit.checkpoints import latest_checkpoint

        row = latest_checkpoint(session)
        assert row is not None
        trusted = row.note
    key = _real_key(log)
    with attacker(log) as conn:
        _rewrite_history(log, conn, key)
    log.settings.checkpoints_file.unlink()
    assert _failure(verify(log, trusted=[trusted]))[0] == Reason.FORK


def test_entries_past_the_last_checkpoint_are_a_warning_not_a_failure(log: Runtime) -> None:
    add_events(log, 4, tag="late")
    report = verify(log)
    assert report.intact
    assert [(w.reason, w.seq) for w in report.warnings] == [(Reason.UNVERIFIED_TAIL, report.verified_size)]
    assert report.events - report.verified_size == 4


def test_the_database_refuses_update_and_delete_of_audit_rows(log: Runtime) -> None:
    from sqlalchemy import create_engine

    from core.db import with_driver

    engine = create_engine(with_driver(log.settings.database_url))
    statements = [
        "UPDATE audit_events SET outcome = 'denied' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
        "DELETE FROM audit_checkpoints",
        "UPDATE audit_checkpoints SET root_hash = 'x'",
    ]
    if engine.dialect.name == "postgresql":
        statements += ["TRUNCATE audit_events", "TRUNCATE audit_checkpoints"]
    try:
        for statement in statements:
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    assert verify(log).intact


def test_parallel_workers_reach_the_same_verdict_as_one_pass(log: Runtime) -> None:
    from audit.verify_db import verify_database
    from tests.audit.conftest import public_keys

    url, keys = log.settings.database_url, public_keys(log)
    assert (
        verify_database(url, [], keys, chunk_size=8, workers=2).as_dict()
        == verify(log, use_file=False).as_dict()
    )
    with attacker(log) as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 17"))
    parallel = verify_database(url, [], keys, chunk_size=8, workers=2)
    assert (parallel.first_failure.reason, parallel.first_failure.seq) == (Reason.SEQUENCE_GAP, 17)  # type: ignore[union-attr]
    assert parallel.as_dict() == verify(log, use_file=False).as_dict()
