"""Offline verification of the audit log: from the database or an NDJSON export.

Checks, in one streaming pass: sequence numbers dense from 0; each stored leaf hash equal to
SHA-256(0x00 || entry); each entry's own ``seq`` (and, from the database, every indexed column)
equal to its row; the Merkle root at every checkpoint's size equal to the checkpoint's root.
Checkpoints come from the database, the checkpoint file and the auditor's trusted copies; each
must carry a valid signature by a pinned key; two roots for one size are a fork; a checkpoint
larger than the log proves truncation. Entries past the last checkpoint are a warning: they are
consistent, but nothing signed vouches for them yet.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.merkle import EMPTY_ROOT, RootBuilder, aligned_subtrees, fold
from audit.notes import Checkpoint, NoteError, verify_note
from core.clock import rfc3339


class Reason(StrEnum):
    """Why the log is not intact (or, for warnings, not fully vouched for)."""

    LEAF_HASH_MISMATCH = "leaf_hash_mismatch"
    ENTRY_MISMATCH = "entry_mismatch"
    SEQUENCE_MISMATCH = "sequence_mismatch"
    SEQUENCE_GAP = "sequence_gap"
    MALFORMED_ENTRY = "malformed_entry"
    ROOT_MISMATCH = "root_mismatch"
    BAD_CHECKPOINT_SIGNATURE = "bad_checkpoint_signature"
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    FORK = "fork"
    TRUNCATED = "truncated"
    UNVERIFIED_TAIL = "unverified_tail"
    NOT_CHECKED = "not_checked"
    WINDOW_INCOMPLETE = "window_incomplete"
    TIME_WENT_BACK = "time_went_back"
    NO_CHECKPOINT = "no_checkpoint"


COLUMNS = (
    "event_id",
    "occurred_at",
    "actor_kind",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "error_code",
    "request_id",
    "details",
)


class LogRecord(NamedTuple):
    """One stored event: its seq, its canonical entry and stored leaf hash, and (from a database)
    the indexed columns, in ``COLUMNS`` order, that must agree with the entry."""

    seq: int
    entry: str
    leaf_hash: str
    columns: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class SourcedCheckpoint:
    """A signed note, where it came from (``database``, ``file``, ``trusted``), and what its row
    claimed besides the note (size and root columns), if anything."""

    source: str
    note: str
    claimed: dict[str, Any] | None = None


@dataclass(frozen=True)
class Finding:
    """A problem or a warning."""

    reason: Reason
    message: str
    seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return {"reason": self.reason.value, "seq": self.seq, "message": self.message}


@dataclass
class Report:
    """The verdict: intact when there are no problems."""

    events: int = 0
    window: bool = False  # an export of a time window, from ``first_seq``
    first_seq: int = 0
    since: str | None = None  # the window's time range, as its proof gives it
    until: str | None = None
    checkpoints_verified: int = 0
    verified_size: int = 0
    root_hash: str = ""
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        """No problem found."""
        return not self.problems

    @property
    def first_failure(self) -> Finding | None:
        """The problem at the lowest seq (checkpoint-level problems, which have none, last)."""
        if not self.problems:
            return None
        return min(self.problems, key=lambda f: (f.seq is None, f.seq or 0))

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        first = self.first_failure
        return {
            "intact": self.intact,
            "events": self.events,
            "window": self.window,
            "first_seq": self.first_seq,
            "since": self.since,
            "until": self.until,
            "checkpoints_verified": self.checkpoints_verified,
            "verified_size": self.verified_size,
            "root_hash": self.root_hash,
            "first_failing_seq": first.seq if first else None,
            "reason": first.reason.value if first else None,
            "problems": [p.as_dict() for p in self.problems],
            "warnings": [w.as_dict() for w in self.warnings],
        }


@dataclass
class TimeOrder:
    """Where events' times went back along the log: the writer stamps none earlier than the one
    before it (audit.services), so a time window's neighbours outside its range prove that none of
    its events was left out. A log with such a place (written before that rule, or by a writer not
    keeping it) is still intact, but a window across it is not proven complete: a warning."""

    first: datetime | None = None
    last: datetime | None = None
    back: int = 0  # how many events are stamped earlier than the one before them
    first_back: int | None = None  # the seq of the first

    def add(self, seq: int, time: datetime | None) -> None:
        """The next event's time (``None``: an entry without a readable one, which is skipped).
        Inline rather than a one-event ``join``: it runs once per event of the log."""
        if time is None:
            return
        if self.last is not None and time < self.last:
            self._went_back(seq, 1)
        self.first = self.first or time
        self.last = time

    def join(self, following: TimeOrder, first_seq: int) -> None:
        """Continue with the next chunk's order, whose first event is ``first_seq``."""
        if self.last is not None and following.first is not None and following.first < self.last:
            self._went_back(first_seq, 1)
        if following.back:
            self._went_back(following.first_back, following.back)
        self.first = self.first or following.first
        self.last = following.last or self.last

    def _went_back(self, seq: int | None, count: int) -> None:
        self.back += count
        if self.first_back is None:
            self.first_back = seq

    def warn(self, report: Report) -> None:
        """A warning on ``report`` if any time went back."""
        if self.back:
            report.warnings.append(
                Finding(
                    Reason.TIME_WENT_BACK,
                    f"{self.back} event{'s are' if self.back > 1 else ' is'} stamped earlier than the "
                    f"event before {'them' if self.back > 1 else 'it'} (the first at seq "
                    f"{self.first_back}): a time window across such a place is not proven complete",
                    seq=self.first_back,
                )
            )


@dataclass
class Chunk:
    """What one pass over consecutive records from ``start`` found: how many were sound, the
    first problem, and the compact range of ``[start, size)`` at each size asked for and at the end;
    and its sound records' first and last times and where a time went back (see ``TimeOrder``)."""

    start: int
    count: int = 0
    problem: Finding | None = None
    stacks: dict[int, list[bytes]] = field(default_factory=dict)
    times: TimeOrder = field(default_factory=TimeOrder)


def scan_chunk(records: Iterable[LogRecord], start: int, sizes: Collection[int]) -> Chunk:
    """Check records ``start, start+1, ...`` in order, up to the first problem."""
    chunk = Chunk(start)
    builder = RootBuilder()
    stream = iter(records)
    try:
        for record in stream:
            problem, time = _check_record(record, start + builder.size)
            if problem is not None:
                chunk.problem = problem
                break
            chunk.times.add(record.seq, time)
            builder.append(bytes.fromhex(record.leaf_hash))
            if start + builder.size in sizes:
                chunk.stacks[start + builder.size] = builder.stack()
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # a database cursor left open by an early stop must be released now
    chunk.count = builder.size
    chunk.stacks[start + builder.size] = builder.stack()
    return chunk


def verify_log(
    records: Iterable[LogRecord],
    checkpoints: Iterable[SourcedCheckpoint],
    keys: list[Ed25519PublicKey],
) -> Report:
    """Verify ``records`` (in seq order, from 0) against ``checkpoints`` signed by one of ``keys``."""
    report = Report()
    roots = trusted_roots(checkpoints, keys, report)
    combine([scan_chunk(records, 0, roots.keys())], roots, report, chunk_size=None)
    return report


def combine(
    chunks: Iterable[Chunk], roots: dict[int, bytes], report: Report, *, chunk_size: int | None
) -> None:
    """Fold consecutive chunks (each ``chunk_size`` records, a power of two, but the last) into the
    verdict: the root at every checkpoint size, the first problem, truncation and the tail."""
    top = RootBuilder()  # over the roots of complete chunks
    vouched, events, stopped = 0, 0, False
    times = TimeOrder()
    if 0 in roots:
        stopped = not _check_root(report, EMPTY_ROOT, 0, roots[0], 0)
    final = EMPTY_ROOT
    for chunk in chunks if not stopped else ():
        if chunk.start != events:  # a whole chunk missing: the previous one ended short
            report.problems.append(Finding(Reason.SEQUENCE_GAP, f"no events from seq {events}", seq=events))
            stopped = True
            break
        for size in sorted(chunk.stacks):
            complete = chunk_size is not None and size - chunk.start == chunk_size
            root = _root_at(top, chunk.stacks[size], complete)
            final = root
            if size in roots and size > 0:
                if not _check_root(report, root, size, roots[size], vouched):
                    stopped = True
                    break
                vouched = size
        if stopped:
            events = size  # the verdict ends at the first checkpoint that fails
            break
        events = chunk.start + chunk.count
        times.join(chunk.times, chunk.start)
        if chunk.problem is not None:
            report.problems.append(chunk.problem)
            stopped = True
            break
        if chunk_size is not None and chunk.count == chunk_size:
            top.append(chunk.stacks[events][0])
    report.events = events
    report.verified_size = vouched
    report.root_hash = final.hex()
    if not report.problems:  # a tampered log's verdict ends where the tampering is found
        times.warn(report)
    if not stopped:
        _check_end(report, sorted(roots))


def _root_at(top: RootBuilder, stack: list[bytes], complete: bool) -> bytes:
    if complete:  # the chunk is one subtree as tall as the chunks in ``top``: merge it as they merge
        merged = top.copy()
        merged.append(stack[0])
        return merged.root()
    return fold(top.stack() + stack)  # taller subtrees from ``top``, then shorter ones: in order


def trusted_roots(
    checkpoints: Iterable[SourcedCheckpoint], keys: list[Ed25519PublicKey], report: Report
) -> dict[int, bytes]:
    """Signature-checked roots by size; forks, bad signatures and edited rows become problems."""
    roots: dict[int, bytes] = {}
    seen: dict[int, str] = {}
    forks: dict[int, str] = {}
    for sourced in checkpoints:
        try:
            checkpoint = verify_note(sourced.note, keys)
        except NoteError as exc:
            report.problems.append(
                Finding(Reason.BAD_CHECKPOINT_SIGNATURE, f"{sourced.source} checkpoint: {exc}")
            )
            continue
        report.checkpoints_verified += 1
        _check_claims(sourced, checkpoint, report)
        size = checkpoint.tree_size
        if size in roots and roots[size] != checkpoint.root_hash:
            forks.setdefault(size, f"two signed roots for size {size} ({seen[size]} and {sourced.source})")
            continue
        roots[size] = checkpoint.root_hash
        seen[size] = sourced.source
    for size, message in sorted(forks.items()):
        # The two histories agree up to the largest undisputed size below; they part after it.
        agreed = max((s for s in roots if s < size and s not in forks), default=0)
        report.problems.append(Finding(Reason.FORK, message, seq=agreed))
        del roots[size]
    return roots


def _check_claims(sourced: SourcedCheckpoint, checkpoint: Checkpoint, report: Report) -> None:
    claimed = sourced.claimed or {}
    if ("tree_size" in claimed and claimed["tree_size"] != checkpoint.tree_size) or (
        "root_hash" in claimed and claimed["root_hash"] != checkpoint.root_hash.hex()
    ):
        report.problems.append(
            Finding(
                Reason.CHECKPOINT_MISMATCH,
                f"{sourced.source} checkpoint row disagrees with its signed note "
                f"(size {checkpoint.tree_size})",
            )
        )


def _check_record(record: LogRecord, expected: int) -> tuple[Finding | None, datetime | None]:
    """The record's problem, if any, and the time its entry gives (``None`` if unreadable)."""
    if record.seq != expected:
        return Finding(
            Reason.SEQUENCE_GAP,
            f"expected seq {expected}, found {record.seq}",
            seq=min(expected, record.seq),
        ), None
    entry = record.entry.encode("utf-8")
    if hashlib.sha256(b"\x00" + entry).hexdigest() != record.leaf_hash:
        return Finding(
            Reason.LEAF_HASH_MISMATCH, "stored leaf hash is not the hash of the entry", record.seq
        ), None
    try:
        fields = orjson.loads(record.entry)
    except orjson.JSONDecodeError:
        return Finding(Reason.MALFORMED_ENTRY, "entry is not JSON", record.seq), None
    if not isinstance(fields, dict) or fields.get("seq") != record.seq:
        return Finding(Reason.SEQUENCE_MISMATCH, "the entry was written for another seq", record.seq), None
    if record.columns is None:
        return None, _time_of(fields)
    implied = columns_of(fields)
    if implied is None or record.columns != implied:
        return Finding(
            Reason.ENTRY_MISMATCH, "stored columns disagree with the hashed entry", record.seq
        ), None
    return None, implied[1]  # the entry's time, parsed once, equal to the stored aware one


def _time_of(fields: dict[str, Any]) -> datetime | None:
    """The entry's time; ``None`` when it has none, or one without its offset (not comparable)."""
    try:
        time = datetime.fromisoformat(fields["time"])
    except (KeyError, TypeError, ValueError):
        return None
    return time if time.tzinfo is not None else None


def columns_of(fields: dict[str, Any]) -> tuple[Any, ...] | None:
    """The indexed columns an entry implies, in ``COLUMNS`` order, as the database reader gives
    them; ``None`` when the entry lacks a field every entry has."""
    try:
        actor, target = fields["actor"], fields["target"] or {}
        return (
            fields["event_id"],
            datetime.fromisoformat(fields["time"]),
            actor["kind"],
            actor["id"],
            fields["action"],
            target.get("type"),
            target.get("id"),
            fields["outcome"],
            fields["error_code"],
            fields["request_id"],
            fields["details"],
        )
    except (KeyError, TypeError, ValueError):
        return None


def _check_root(report: Report, root: bytes, size: int, want: bytes, vouched: int) -> bool:
    if root == want:
        return True
    report.problems.append(
        Finding(
            Reason.ROOT_MISMATCH,
            f"the first {size} events do not have the root signed for that size; "
            f"events from seq {vouched} on cannot be trusted",
            seq=vouched,
        )
    )
    return False


def _check_end(report: Report, sizes: list[int]) -> None:
    beyond = [s for s in sizes if s > report.events]
    if beyond:
        report.problems.append(
            Finding(
                Reason.TRUNCATED,
                f"the log has {report.events} events but a checkpoint signed {max(beyond)}: "
                "events were cut off its end, or it was exported before that checkpoint was signed",
                seq=report.events,
            )
        )
    if beyond:
        return  # its tail is not "consistent but not yet signed": a signature says it is short
    if not sizes:
        report.warnings.append(
            Finding(Reason.NO_CHECKPOINT, "no signed checkpoint: nothing vouches for the log")
        )
    elif report.verified_size < report.events:
        tail = report.events - report.verified_size
        report.warnings.append(
            Finding(
                Reason.UNVERIFIED_TAIL,
                f"{tail} events after the last checkpoint are consistent but not yet signed",
                seq=report.verified_size,
            )
        )


@dataclass(frozen=True)
class Window:
    """A time window's proof, the first line of its export.

    ``[start, end)`` are the seqs exported: every event of ``since <= time < until`` among the
    first ``tree_size``, and one event more on each side that is outside the range (a fence; none
    at the log's start or at ``tree_size``), so that an edge event left out shows. ``left`` and
    ``right`` are the roots of the subtrees of ``[0, start)`` and ``[end, tree_size)`` in the tree
    the checkpoint (a signed note) names.
    """

    since: datetime | None
    until: datetime | None
    start: int
    end: int
    tree_size: int
    left: list[bytes]
    right: list[bytes]
    checkpoint: str

    @classmethod
    def parse(cls, value: Any) -> Window:
        """From the export's first line; ``ValueError`` if it is not one."""
        try:
            window = value["window"]
            found = cls(
                since=_time(window["since"]),
                until=_time(window["until"]),
                start=_count(window["start"]),
                end=_count(window["end"]),
                tree_size=_count(window["tree_size"]),
                left=[_hash(h) for h in window["left"]],
                right=[_hash(h) for h in window["right"]],
                checkpoint=str(window["checkpoint"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError("the export's first line is not a window's proof") from exc
        return found

    def outside(self, time: datetime) -> bool:
        """Whether an event of ``time`` lies outside the window's time range."""
        before = self.since is not None and time < self.since
        return before or (self.until is not None and time >= self.until)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    found = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if found.tzinfo is None:
        raise ValueError("a time without its zone")
    return found


def _hash(value: Any) -> bytes:
    found = bytes.fromhex(value)
    if len(found) != 32:
        raise ValueError("not a SHA-256 hash")
    return found


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError("not a count")
    return value


def read_export(lines: Iterable[str]) -> tuple[Window | None, Iterator[LogRecord]]:
    """An NDJSON export (``GET /v1/audit/export``): a window's proof if it opens with one, and
    its records; ``ValueError`` on a line that is neither, as the records are read, and on a file
    with no line at all (an export holds at least its own ``audit.export`` event: an empty file is
    a download that failed, not an intact log). A byte order mark, as some editors save, is skipped."""
    numbered = (
        (n, line.removeprefix("\ufeff") if n == 1 else line)
        for n, line in enumerate(lines, start=1)
        if line.strip()
    )
    first = next(numbered, None)
    if first is None:
        raise ValueError("the export is empty: every export holds at least its own audit.export event")
    try:
        value = json.loads(first[1])
    except (ValueError, RecursionError) as exc:
        raise ValueError("export line 1 is not JSON") from exc
    if isinstance(value, dict) and "window" in value:
        return Window.parse(value), _records(numbered)
    return None, _records(itertools.chain([first], numbered))


def _records(lines: Iterable[tuple[int, str]]) -> Iterator[LogRecord]:
    for number, line in lines:
        try:
            value = json.loads(line)
            yield LogRecord(
                seq=int(value["seq"]), entry=str(value["entry"]), leaf_hash=str(value["leaf_hash"])
            )
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
            raise ValueError(f"export line {number} is not an audit record") from exc


def verify_window(
    window: Window,
    records: Iterable[LogRecord],
    checkpoints: Iterable[SourcedCheckpoint],
    keys: list[Ed25519PublicKey],
) -> Report:
    """Verify a window's records (seqs ``window.start`` to ``window.end``, dense) and place them
    in the tree of its checkpoint: the subtrees around them and their leaves must fold into the
    signed root. Then its edges: each exported event next to a part of the log left out must be
    outside the time range (a fence), so no event of the range was cut off the window's ends.

    That proves the window complete when the log's times increase with its seqs, as they do while
    the clock is not set back. A window proves the one size its proof names; other checkpoints
    given are checked for signature and forks only, and a warning says so.
    """
    report = Report(
        window=True,
        first_seq=window.start,
        since=rfc3339(window.since) if window.since else None,
        until=rfc3339(window.until) if window.until else None,
    )
    roots = trusted_roots([*checkpoints, SourcedCheckpoint("export", window.checkpoint)], keys, report)
    signed = _signed_size(window.checkpoint, keys)
    if signed is not None and signed != window.tree_size:
        report.problems.append(
            Finding(
                Reason.CHECKPOINT_MISMATCH,
                f"the window's proof is for size {window.tree_size}, its checkpoint signs size {signed}",
            )
        )
    try:
        if not window.start <= window.end <= window.tree_size:
            raise ValueError(f"seqs {window.start} to {window.end} are not in a tree of {window.tree_size}")
        builder = RootBuilder.resumed(window.start, window.left)
        heights = [h for _, h in aligned_subtrees(window.end, window.tree_size)]
        if len(heights) != len(window.right):
            raise ValueError("the subtrees right of the window are not those of its size")
    except ValueError as exc:
        report.problems.append(Finding(Reason.ROOT_MISMATCH, f"the window's proof is malformed: {exc}"))
        return report
    expected, times, order = window.start, [], TimeOrder()
    for record in records:
        problem, time = _check_record(record, expected)
        if problem is not None:
            report.problems.append(problem)
            break
        builder.append(bytes.fromhex(record.leaf_hash))
        times.append(time)
        order.add(record.seq, time)
        expected += 1
    report.events = expected - window.start
    if report.problems:
        return report
    if expected != window.end:
        report.problems.append(
            Finding(Reason.SEQUENCE_GAP, f"the window ends at seq {expected}, not {window.end}", seq=expected)
        )
        return report
    for node, height in zip(window.right, heights, strict=True):
        builder.append_subtree(node, height)
    root = builder.root()
    report.root_hash = root.hex()
    want = roots.get(window.tree_size)
    if want is None:
        return report  # its checkpoint's signature failed: a problem already
    if not _check_root(report, root, window.tree_size, want, window.start):
        return report
    report.verified_size = window.tree_size
    _check_fences(window, times, report)
    if not report.problems:  # as for the whole log: a tampered window's verdict is the tampering
        order.warn(report)
    others = sorted(size for size in roots if size != window.tree_size)
    if others:
        report.warnings.append(
            Finding(
                Reason.NOT_CHECKED,
                f"a window proves size {window.tree_size} only; checkpoints of sizes "
                f"{', '.join(map(str, others[:5]))}{'…' if len(others) > 5 else ''} were checked for "
                "their signatures, not against the log",
            )
        )
    return report


def _check_fences(window: Window, times: list[datetime | None], report: Report) -> None:
    """Each end of the window that is not an end of the tree is an event outside its range."""
    edges = []
    if window.start > 0:
        edges.append((window.start, times[0] if times else None, "first"))
    if window.end < window.tree_size:
        edges.append((window.end - 1, times[-1] if times else None, "last"))
    for seq, time, which in edges:
        if time is None or not window.outside(time):
            report.problems.append(
                Finding(
                    Reason.WINDOW_INCOMPLETE,
                    f"the window's {which} event is inside its time range: events of the range "
                    "beyond it may have been left out",
                    seq=seq,
                )
            )


def _signed_size(note: str, keys: list[Ed25519PublicKey]) -> int | None:
    try:
        return verify_note(note, keys).tree_size
    except NoteError:
        return None
