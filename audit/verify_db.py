"""Verifying a log in the database on every core: aligned chunks checked in parallel, then folded.

Each chunk is ``chunk_size`` events (a power of two) starting at a multiple of it, so a complete
chunk is one subtree of the RFC 6962 tree and the parent only folds chunk roots. Workers open
their own connection; nothing but plain data crosses the process boundary.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, create_engine, func, select

from audit.models import AuditEvent
from audit.sources import checkpoints_from_database, records_from_database
from audit.verify import Chunk, Report, SourcedCheckpoint, combine, scan_chunk, trusted_roots
from core.db import with_driver

CHUNK = 1 << 16
_engines: dict[str, Engine] = {}


def _engine(url: str) -> Engine:
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = create_engine(with_driver(url))
    return engine


def scan_database_chunk(url: str, start: int, end: int, sizes: Collection[int]) -> Chunk:
    """Check events ``[start, end)`` of the log at ``url`` (run in a worker process)."""
    with _engine(url).connect() as conn:
        return scan_chunk(records_from_database(conn, start, end), start, sizes)


def verify_database(
    url: str,
    checkpoints: list[SourcedCheckpoint],
    keys: list[Ed25519PublicKey],
    *,
    chunk_size: int = CHUNK,
    workers: int | None = None,
) -> Report:
    """Verify the log at ``url`` against its own checkpoints plus ``checkpoints``."""
    if chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError("chunk_size must be a power of two")
    engine = create_engine(with_driver(url))
    try:
        with engine.connect() as conn:
            stored = checkpoints_from_database(conn)
            last = conn.execute(select(func.max(AuditEvent.seq))).scalar_one_or_none()
    finally:
        engine.dispose()
    report = Report()
    roots = trusted_roots(stored + checkpoints, keys, report)
    starts = range(0, (-1 if last is None else int(last)) + 1, chunk_size) or range(1)
    workers = workers or os.cpu_count() or 1

    def jobs() -> Iterator[tuple[int, int, list[int]]]:
        for start in starts:
            end = start + chunk_size
            yield start, end, [s for s in roots if start < s < end]

    if workers == 1 or len(starts) == 1:
        chunks: Iterator[Chunk] = (scan_database_chunk(url, a, b, s) for a, b, s in jobs())
        combine(chunks, roots, report, chunk_size=chunk_size)
        return report
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        args = list(jobs())
        results = pool.map(
            scan_database_chunk,
            [url] * len(args),
            [a for a, _, _ in args],
            [b for _, b, _ in args],
            [s for _, _, s in args],
        )
        combine(results, roots, report, chunk_size=chunk_size)
    return report
