"""Audit log: append rate, and the time to verify a log of 1,000,000 events offline.

    python bench/audit.py [--events 1000000] [--appends 3000] [--postgres URL]

Append: ``record_event`` (head lock, canonical entry, leaf hash) with one commit per event,
against a baseline measured in the same run on the same engine: the same prepared INSERT of the
same columns in the same kind of transaction, one commit per row, with no head lock and no
hashing. The ratio is the price of the log's guarantees.

Verify: the real ``sandbox audit verify --db`` path (stream every row, recompute every leaf hash,
check every column against its entry, rebuild the Merkle root, check every checkpoint's signature
and root) over a log of ``--events`` events with a checkpoint every 100,000. Goal: <= 10 s for 1M.
The log is written in bulk with the same canonical serialization, since 1M separate commits
would only measure the disk.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audit import Actor, ActorKind, AuditAction, Target, record_event  # noqa: E402
from audit.merkle import RootBuilder  # noqa: E402
from audit.models import AuditCheckpoint, AuditEvent, AuditHead  # noqa: E402
from audit.notes import sign_checkpoint  # noqa: E402
from audit.services import canonical_entry, leaf_hash  # noqa: E402
from audit.verify_db import verify_database  # noqa: E402
from core.clock import rfc3339  # noqa: E402
from core.db import create_control_engine, session_factory, transaction, with_driver, writing_connection  # noqa: E402
from core.ids import time_ordered_hex, time_ordered_id  # noqa: E402
from core.keys import generate  # noqa: E402
from core.prepared import Prepared  # noqa: E402
from sandbox import migrate  # noqa: E402

ORIGIN = "bench.local/audit"


def _engine(url: str) -> Engine:
    migrate.upgrade(url)
    return create_control_engine(url)


def _event_fields(seq: int, moment: datetime) -> dict[str, Any]:
    return {
        "seq": seq,
        "event_id": time_ordered_id(),  # as record_event makes them, so both pay the same index inserts
        "time": rfc3339(moment),
        "actor": {"kind": "operator", "id": f"op-{seq % 50}"},
        "action": "verification.run",
        "target": {"type": "subject", "id": f"9137010{seq:011d}"},
        "outcome": "success" if seq % 17 else "denied",
        "error_code": None if seq % 17 else "quota_exceeded",
        "request_id": time_ordered_hex(),
        "details": {"template": "tax_paid_at_least", "authorization_id": str(uuid.uuid4()), "result": True},
    }


def bench_append(url: str, count: int) -> None:
    engine = _engine(url)
    sessions = session_factory(engine)
    actor = Actor(ActorKind.OPERATOR, "op-bench")
    start = time.perf_counter()
    for i in range(count):
        with transaction(sessions) as session:
            record_event(
                session,
                action=AuditAction.AUTHORIZATION_REQUEST,
                actor=actor,
                target=Target("authorization", str(i)),
                details={"purpose": "贷前核验", "n": i},
            )
    logged = time.perf_counter() - start
    # Baseline: the same columns through the same transactions and the same prepared INSERT
    # (core.prepared, as record_event runs it), one commit per row; no head lock, no hashing (the
    # rows are made before the clock starts).
    moment = datetime.now(UTC)
    rows = [_row(_event_fields(10**9 + i, moment)) for i in range(count)]
    insert_row = Prepared(insert(AuditEvent.__table__), column_keys=list(rows[0]))
    start = time.perf_counter()
    for row in rows:
        with transaction(sessions) as session:
            insert_row.execute(writing_connection(session), row)
    raw = time.perf_counter() - start
    engine.dispose()
    print(
        f"append ({engine.dialect.name}): {count / logged:,.0f} events/s through record_event; "
        f"{count / raw:,.0f} rows/s raw INSERT; ratio {logged / raw:.2f}x"
    )


def _row(fields: dict[str, Any]) -> dict[str, Any]:
    entry = canonical_entry(fields)
    return {
        "seq": fields["seq"],
        "event_id": fields["event_id"],
        "occurred_at": datetime.fromisoformat(fields["time"].replace("Z", "+00:00")),
        "actor_kind": fields["actor"]["kind"],
        "actor_id": fields["actor"]["id"],
        "action": fields["action"],
        "target_type": fields["target"]["type"],
        "target_id": fields["target"]["id"],
        "outcome": fields["outcome"],
        "error_code": fields["error_code"],
        "request_id": fields["request_id"],
        "details": fields["details"],
        "entry": entry.decode("utf-8"),
        "leaf_hash": leaf_hash(entry),
    }


def build_log(url: str, events: int, every: int) -> None:
    engine = _engine(url)
    key = generate()
    builder = RootBuilder()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    batch: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for seq in range(events):
            row = _row(_event_fields(seq, base + timedelta(seconds=seq)))
            builder.append(bytes.fromhex(row["leaf_hash"]))
            batch.append(row)
            if len(batch) == 20_000:
                conn.execute(insert(AuditEvent), batch)
                batch.clear()
            if builder.size % every == 0 or builder.size == events:
                if batch:
                    conn.execute(insert(AuditEvent), batch)
                    batch.clear()
                moment = base + timedelta(seconds=seq)
                _, note = sign_checkpoint(ORIGIN, builder.size, builder.root(), moment, key.private)
                conn.execute(
                    insert(AuditCheckpoint).values(
                        tree_size=builder.size,
                        root_hash=builder.root().hex(),
                        issued_at=moment,
                        key_id=key.kid,
                        note=note,
                    )
                )
        conn.execute(update(AuditHead).where(AuditHead.id == 1).values(tree_size=events))
    engine.dispose()
    _KEYS.append(key.public)


_KEYS: list[Any] = []


def bench_verify(url: str, events: int, workers: int | None = None) -> float:
    """The path of ``sandbox audit verify --db``: chunks checked on every core, then folded."""
    start = time.perf_counter()
    report = verify_database(url, [], _KEYS, workers=workers)
    elapsed = time.perf_counter() - start
    assert report.intact and report.verified_size == events, report.as_dict()
    return elapsed


def bench_scan(url: str) -> float:
    """Baseline: just reading the same rows on the same engine."""
    engine = create_engine(with_driver(url))
    start = time.perf_counter()
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=20_000).execute(
            text(
                "SELECT seq, entry, leaf_hash, event_id, occurred_at, actor_kind, actor_id, action, "
                "target_type, target_id, outcome, error_code, request_id, details "
                "FROM audit_events ORDER BY seq"
            )
        )
        for _ in result:
            pass
    engine.dispose()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=3_000)
    parser.add_argument("--postgres", help="also measure on this PostgreSQL database (a scratch schema)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        bench_append(f"sqlite:///{folder}/append.sqlite", args.appends)
        if args.postgres:
            bench_append(_pg_schema(args.postgres), args.appends)
        url = f"sqlite:///{folder}/log.sqlite"
        start = time.perf_counter()
        build_log(url, args.events, 100_000)
        print(f"built a log of {args.events:,} events in {time.perf_counter() - start:.1f} s")
        scan = bench_scan(url)
        one = bench_verify(url, args.events, workers=1)
        took = bench_verify(url, args.events)
        print(
            f"verify ({args.events:,} events, SQLite): {took:.2f} s on {os.cpu_count()} cores "
            f"({args.events / took:,.0f} events/s), {one:.2f} s on one; reading the rows alone: "
            f"{scan:.2f} s; ratio {took / scan:.2f}x; goal <= 10 s: {'met' if took <= 10 else 'NOT met'}"
        )


def _pg_schema(url: str) -> str:
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(with_driver(url))
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return (
        make_url(with_driver(url))
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )


if __name__ == "__main__":
    main()
