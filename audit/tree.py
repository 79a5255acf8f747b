"""The audit log's Merkle tree over the database: roots and proofs for the API and checkpoints.

One ``LogTree`` per process keeps the hashes of complete subtrees (they never change in an
append-only log), so a proof or a checkpoint over millions of events reads only the few leaves
the cache does not cover.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import merkle
from audit.models import AuditEvent


class LogCorrupted(RuntimeError):
    """The table does not hold the leaves its own head promises."""


class LogTree:
    """Merkle hashes of the log in the database a session reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: Session | None = None
        self._cache = merkle.SubtreeCache(self._read_leaves)

    def _read_leaves(self, start: int, end: int) -> Sequence[bytes]:
        assert self._session is not None  # set by _using for the duration of a call
        rows = self._session.execute(
            select(AuditEvent.seq, AuditEvent.leaf_hash)
            .where(AuditEvent.seq >= start, AuditEvent.seq < end)
            .order_by(AuditEvent.seq)
        ).all()
        if len(rows) != end - start or (rows and (rows[0][0] != start or rows[-1][0] != end - 1)):
            raise LogCorrupted(f"leaves {start}..{end - 1} are not all in the log")
        return [bytes.fromhex(h) for _, h in rows]

    @contextmanager
    def _using(self, session: Session) -> Iterator[merkle.SubtreeCache]:
        # One caller at a time: the cache reads leaves through the caller's session.
        with self._lock:
            self._session = session
            try:
                yield self._cache
            finally:
                self._session = None

    def root(self, session: Session, size: int) -> bytes:
        """The root of the first ``size`` events."""
        with self._using(session) as cache:
            return cache.hash(0, size)

    def inclusion(self, session: Session, index: int, size: int) -> list[bytes]:
        """The audit path of event ``index`` in the tree of ``size``."""
        with self._using(session) as cache:
            return merkle.inclusion_proof(cache, index, size)

    def consistency(self, session: Session, first: int, second: int) -> list[bytes]:
        """Proof that the first ``first`` events are a prefix of the first ``second``."""
        with self._using(session) as cache:
            return merkle.consistency_proof(cache, first, second)

    def range_proof(
        self, session: Session, start: int, end: int, size: int
    ) -> tuple[list[bytes], list[bytes]]:
        """What places events ``[start, end)`` in the tree of ``size`` without the others: the
        roots of the aligned subtrees of ``[0, start)`` and of ``[end, size)``, left to right."""
        with self._using(session) as cache:
            return (
                [cache.hash(s, s + (1 << h)) for s, h in merkle.aligned_subtrees(0, start)],
                [cache.hash(s, s + (1 << h)) for s, h in merkle.aligned_subtrees(end, size)],
            )
