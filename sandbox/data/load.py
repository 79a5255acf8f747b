"""Data intake: check a CSV or Parquet file against a dataset's policy, then replace the table.

A file is read twice, streaming batch by batch. The first pass only checks: every column of the
policy present, no undeclared column, every value of its field's type. Any problem refuses the whole
file and lists every problem at once (up to a limit), so the person fixing it fixes it in one go.
Only a clean file is read again and written through one :class:`StagedLoad`, which makes the
dataset's table exactly the file's rows, or leaves the old table untouched.

The first pass also counts the keys that are no id of the kind the dataset is keyed by, their
check characters right (a credit code, GB 32100; a resident ID number, GB 11643). They do not
refuse the file: a few real credit codes issued before 2016 do not conform, and the bureau may
accept them (``sandbox codes accept``). But a verification about any other such key is refused as
mistyped, so the load says how many there are, and which.

The rows written are checked once more before they replace the old: no subject may have more rows
than the policy's ``max_rows_per_subject``, nor two rows with the same ``row_key`` (a firm's two
rows for one tax year). An aggregate's noise is scaled by that bound, so it must hold in the data.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog import Catalog, Classification, Dataset, Field, FieldFormat, FieldType
from core.errors import Invalid
from sandbox.data.codes import valid_mask
from sandbox.data.stores import (
    ARROW_TYPES,
    DataStores,
    LoadStopped,
    StagedLoad,
    TooManyRowsPerSubject,
    arrow_schema,
)

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_INT64 = (-(2**63), 2**63 - 1)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "是": True, "否": False}
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of undecodable bytes
_EMPTY = "empty value; the field is required"
_HIDDEN = (Classification.SENSITIVE, Classification.FORBIDDEN)


@dataclass(frozen=True)
class LoadProblem:
    """One reason a file was refused: a data row (1-based) and column where there is one."""

    row: int | None
    column: str | None
    message: str


def file_label(path: Path) -> str:
    """How messages and records name a file: its name, or for ``.`` or ``/``, what it points at."""
    return path.name or path.resolve().name or str(path)


class LoadRefused(Invalid):
    """The file was not loaded; ``problems`` lists every reason (``details`` as dicts)."""

    code = "load_refused"
    status = 422

    def __init__(self, path: Path, problems: Sequence[LoadProblem], *, total: int | None = None) -> None:
        self.problems = list(problems)
        count = total if total is not None else len(self.problems)
        message = f"{file_label(path)} was refused: {count} problem{'' if count == 1 else 's'}"
        if count == 1:
            message += f": {self.problems[0].message}"
        super().__init__(message, details=[asdict(p) for p in self.problems])


@dataclass(frozen=True)
class LoadResult:
    """What a successful load wrote, and its keys that fail their id's check.

    ``key_kind`` is the id the dataset is keyed by (``uscc``, ``resident_id``), if either;
    ``failing_keys`` holds its distinct keys that fail the id's check, at most
    ``MAX_FAILING_KEYS`` of them; ``failing_keys_more`` says there were more.
    """

    dataset: str
    rows: int
    sha256: str
    format: str
    key_kind: str | None = None
    failing_keys: frozenset[str] = frozenset()
    failing_keys_more: bool = False


MAX_FAILING_KEYS = 10_000  # more than this many, and the file is keyed by something else


class _FailingKeys:
    """The distinct keys of a dataset keyed by credit codes or ID numbers that fail the id's check."""

    def __init__(self, dataset: Dataset) -> None:
        kind = dataset.key_field.format
        self.kind = kind.value if kind in (FieldFormat.USCC, FieldFormat.RESIDENT_ID) else None
        self.key = dataset.key
        self.found: set[str] = set()
        self.more = False

    def add(self, batch: pa.RecordBatch) -> None:
        if self.kind is None or self.more or self.key not in batch.schema.names:
            return
        keys = pc.unique(batch.column(self.key).drop_null()).to_pylist()
        for key, valid in zip(keys, valid_mask(keys, self.kind), strict=True):
            if not valid:
                self.found.add(key)
        if len(self.found) > MAX_FAILING_KEYS:
            self.found = set(sorted(self.found)[:MAX_FAILING_KEYS])
            self.more = True


class _Problems:
    """Problems found so far: the first ``limit`` kept, the rest only counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: list[LoadProblem] = []
        self.total = 0

    def add(self, row: int | None, column: str | None, message: str) -> None:
        self.add_rows([row], column, message)

    def add_rows(
        self, rows: Sequence[int | None], column: str | None, message: str, *, total: int | None = None
    ) -> None:
        """Add a problem per row; ``total`` counts rows beyond those listed in ``rows``."""
        room = max(self.limit - len(self.items), 0)
        self.items.extend(LoadProblem(row, column, message) for row in rows[:room])
        self.total += len(rows) if total is None else total

    def __bool__(self) -> bool:
        return self.total > 0

    def refusal(self, path: Path) -> LoadRefused:
        # Columns are checked one at a time; a person fixing the file reads it row by row.
        listed = sorted(self.items, key=lambda p: (p.row is not None, p.row or 0))
        if self.total > len(listed):
            listed.append(LoadProblem(None, None, f"... and {self.total - len(listed)} more"))
        return LoadRefused(path, listed, total=self.total)


def load_file(
    stores: DataStores,
    catalog: Catalog,
    dataset_name: str,
    path: Path,
    *,
    max_problems: int = 100,
    batch_size: int = 50_000,
    stop: threading.Event | None = None,
) -> LoadResult:
    """Replace ``dataset_name``'s table with the rows of ``path``, or refuse the file with every problem.

    Raises :class:`LoadRefused` for an unknown dataset, an unreadable file or format, or any
    column or value that does not fit the policy; nothing is written then. Setting ``stop``
    ends it at its next batch, checking or writing, with :class:`LoadStopped`, the table unchanged.
    """
    if max_problems < 1 or batch_size < 1:
        raise ValueError("max_problems and batch_size must be at least 1")
    dataset = catalog.datasets.get(dataset_name)
    if dataset is None:
        known = ", ".join(sorted(catalog.datasets))
        raise _refusal(path, f"unknown dataset {dataset_name!r}; known: {known}")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        allowed = ", ".join(FORMATS)
        raise _refusal(path, f"unknown file type; use one of {allowed}")
    # Each reader yields checked record batches, and stops yielding once a problem is found.
    read = _csv_batches if fmt == "csv" else _parquet_batches
    digest = _sha256(path)
    problems = _Problems(max_problems)
    failing = _FailingKeys(dataset)
    for batch in read(path, dataset, problems, batch_size):
        failing.add(batch)
        if stop is not None and stop.is_set():
            raise LoadStopped("the load was stopped before it finished; the data is unchanged")
    if problems:
        raise problems.refusal(path)
    try:
        with StagedLoad(stores, [dataset], stop=stop) as staged:
            for batch in read(path, dataset, problems, batch_size):
                staged.write(dataset.name, batch)
            if problems or _sha256(path) != digest:
                problems.add(None, None, "the file changed while it was being loaded")
                raise problems.refusal(path)
            rows = staged.rows[dataset.name]
    except TooManyRowsPerSubject as error:  # checked on the written rows, before they replace the old
        for column, message in error.findings:
            problems.add(None, column, message)
        raise problems.refusal(path) from None
    return LoadResult(
        dataset=dataset.name,
        rows=rows,
        sha256=digest,
        format=fmt,
        key_kind=failing.kind,
        failing_keys=frozenset(failing.found),
        failing_keys_more=failing.more,
    )


def _refusal(path: Path, message: str) -> LoadRefused:
    return LoadRefused(path, [LoadProblem(None, None, message)])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as error:
        raise _refusal(path, f"cannot read the file: {error.strerror}") from None
    return digest.hexdigest()


def _required(dataset: Dataset, field: Field) -> bool:
    return field.name == dataset.key or not field.nullable


def _shown(field: Field, text: str) -> str:
    # Values of sensitive fields stay out of error messages, which may be logged.
    if field.classification in _HIDDEN:
        return ""
    return f": {_printable(text)[:40]!r}"


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _positions(dataset: Dataset, header: Sequence[str], problems: _Problems) -> dict[str, int]:
    """Where each policy field is in the header; missing, undeclared and repeated columns are problems."""
    positions: dict[str, int] = {}
    for index, name in enumerate(header):
        shown = _printable(name)
        if not dataset.has_field(name):
            problems.add(None, shown, f"column {index + 1} is not declared by dataset {dataset.name!r}")
        elif name in positions:
            problems.add(None, shown, f"column {index + 1} repeats column {positions[name] + 1}")
        else:
            positions[name] = index
    for field in dataset.fields:
        if field.name not in positions:
            problems.add(None, field.name, "column is missing")
    return positions


def _record_batch(dataset: Dataset, columns: dict[str, pa.Array]) -> pa.RecordBatch:
    return pa.record_batch([columns[f.name] for f in dataset.fields], schema=arrow_schema(dataset))


# CSV: every cell is text, parsed by its field's type.


def _integer(text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise ValueError("not an integer")
    value = int(text)
    if not _INT64[0] <= value <= _INT64[1]:
        raise ValueError("integer out of range")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    if not math.isfinite(value):
        raise ValueError("not a finite number (NaN and infinity are refused)")
    if not _NUMBER.fullmatch(text):
        raise ValueError("not a plain decimal number")
    return value


def _date(text: str) -> date:
    if not _DATE.fullmatch(text):
        raise ValueError("not a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError("not a real date") from None


def _boolean(text: str) -> bool:
    try:
        return _BOOLEANS[text.lower()]
    except KeyError:
        raise ValueError("not a boolean (true/false, 1/0, 是/否)") from None


def _string(text: str) -> str:
    if _NOT_UTF8.search(text):
        raise ValueError("not valid UTF-8")
    if "\x00" in text:
        raise ValueError("contains a NUL character")
    return text


_PARSERS: dict[FieldType, Callable[[str], Any]] = {
    FieldType.STRING: _string,
    FieldType.INTEGER: _integer,
    FieldType.NUMBER: _number,
    FieldType.DATE: _date,
    FieldType.BOOLEAN: _boolean,
}


def _key_problem(text: str) -> str | None:
    if not text.strip():
        return _EMPTY
    if text != text.strip():
        return "key has leading or trailing spaces"
    return None


def _plain_strings(cells: Sequence[str], required: bool) -> bool:
    joined = "".join(cells)
    return "\x00" not in joined and not _NOT_UTF8.search(joined) and not (required and "" in cells)


def _parse_column(
    dataset: Dataset, field: Field, cells: Sequence[str], rows: Sequence[int], problems: _Problems
) -> list[Any]:
    parse, required, is_key = _PARSERS[field.type], _required(dataset, field), field.name == dataset.key
    if field.type is FieldType.STRING and not is_key and _plain_strings(cells, required):
        return [text or None for text in cells]  # the common case, checked at C speed
    values: list[Any] = []
    for row, text in zip(rows, cells, strict=True):
        value = None
        try:
            if is_key and (message := _key_problem(text)):
                problems.add(row, field.name, message)
            elif text:
                value = parse(text)
            elif required:
                problems.add(row, field.name, _EMPTY)
        except ValueError as error:
            problems.add(row, field.name, f"{error}{_shown(field, text)}")
        values.append(value)
    return values


# The longest line read: the csv module takes a whole line into memory before it parses it, so a
# file of one 200 MB line cost 600 MB before its first field was refused (found in a sweep).
MAX_LINE_CHARS = 16 * 1024 * 1024


class _LineTooLong(Exception):
    pass


def _lines(handle: TextIO) -> Iterator[str]:
    while line := handle.readline(MAX_LINE_CHARS + 1):
        if len(line) > MAX_LINE_CHARS:
            raise _LineTooLong
        yield line


def _csv_records(path: Path, problems: _Problems) -> Iterator[list[str]]:
    """The file's non-blank records; a syntax error ends the file, as a problem."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(_lines(handle), strict=True)
        try:
            yield from (cells for cells in reader if cells)
        except csv.Error as error:
            problems.add(None, None, f"unreadable CSV at line {reader.line_num}: {error}")
        except _LineTooLong:
            where = f"unreadable CSV at line {reader.line_num + 1}"
            problems.add(None, None, f"{where}: over {MAX_LINE_CHARS:,} characters")


def _numbered(
    records: Iterator[list[str]], width: int, problems: _Problems
) -> Iterator[tuple[int, list[str]]]:
    for number, cells in enumerate(records, start=1):
        if len(cells) == width:
            yield number, cells
        else:
            problems.add(number, None, f"has {len(cells)} cells; the header has {width}")


def _csv_batches(path: Path, dataset: Dataset, problems: _Problems, size: int) -> Iterator[pa.RecordBatch]:
    records = _csv_records(path, problems)
    header = next(records, None)
    if header is None:
        if not problems:  # not when its first line could not be read
            problems.add(None, None, "the file is empty; its first row must name the columns")
        return
    positions = _positions(dataset, header, problems)
    types = {f.name: ARROW_TYPES[f.type] for f in dataset.fields}
    rows = _numbered(records, len(header), problems)
    while chunk := list(islice(rows, size)):
        numbers = [number for number, _ in chunk]
        columns = {
            name: _parse_column(dataset, dataset.field(name), [c[i] for _, c in chunk], numbers, problems)
            for name, i in positions.items()
        }
        if not problems:
            yield _record_batch(dataset, {n: pa.array(v, type=types[n]) for n, v in columns.items()})


# Parquet: the column types are checked once, then the values batch by batch.

_ACCEPTED: dict[FieldType, tuple[Callable[[pa.DataType], bool], ...]] = {
    FieldType.STRING: (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view),
    FieldType.INTEGER: (pa.types.is_integer,),
    FieldType.NUMBER: (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal),
    FieldType.DATE: (pa.types.is_date, pa.types.is_timestamp),
    FieldType.BOOLEAN: (pa.types.is_boolean,),
}


def _compatible(kind: FieldType, arrow: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow):
        arrow = arrow.value_type
    if pa.types.is_timestamp(arrow) and arrow.tz is not None:
        return False  # which day an instant falls on depends on a time zone the policy does not name
    return any(accepts(arrow) for accepts in _ACCEPTED[kind])


def _flag(problems: _Problems, mask: pa.Array, rows: range, column: str, message: str) -> None:
    indices = pc.indices_nonzero(pc.fill_null(mask, False))
    listed = [rows[i] for i in indices[: problems.limit].to_pylist()]
    problems.add_rows(listed, column, message, total=len(indices))


def _check_values(dataset: Dataset, field: Field, array: pa.Array, rows: range, problems: _Problems) -> None:
    name, kind = field.name, array.type
    if _required(dataset, field) and array.null_count:
        _flag(problems, array.is_null(), rows, name, _EMPTY)
    if field.type is FieldType.INTEGER and pa.types.is_uint64(kind):
        too_big = pc.greater(array, pa.scalar(_INT64[1], pa.uint64()))
        _flag(problems, too_big, rows, name, "integer out of range")
    elif field.type is FieldType.NUMBER and pa.types.is_floating(kind):
        message = "not a finite number (NaN and infinity are refused)"
        _flag(problems, pc.invert(pc.is_finite(array)), rows, name, message)
    elif field.type is FieldType.DATE and (pa.types.is_timestamp(kind) or pa.types.is_date64(kind)):
        timed = pc.not_equal(pc.floor_temporal(array, unit="day"), array)
        _flag(problems, timed, rows, name, "a time of day, not a date")
    elif field.type is FieldType.STRING:
        _check_strings(dataset, field, array, rows, problems)


def _check_strings(dataset: Dataset, field: Field, array: pa.Array, rows: range, problems: _Problems) -> None:
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        problems.add(None, field.name, "not valid UTF-8")
        return
    _flag(problems, pc.match_substring(array, "\x00"), rows, field.name, "contains a NUL character")
    if field.name == dataset.key:
        trimmed = pc.utf8_trim_whitespace(array)
        blank = pc.and_(pc.equal(trimmed, ""), array.is_valid())
        _flag(problems, blank, rows, field.name, _EMPTY)
        padded = pc.and_not(pc.not_equal(trimmed, array), blank)
        _flag(problems, padded, rows, field.name, "key has leading or trailing spaces")


def _converted(field: Field, array: pa.Array, problems: _Problems) -> pa.Array | None:
    """``array`` as the field's Arrow type, or ``None`` (and a problem) if it will not convert."""
    target = ARROW_TYPES[field.type]
    # Checked already: a time of day, or rounding a decimal or a huge integer to float, is accepted here.
    safe = not (pa.types.is_floating(target) or pa.types.is_temporal(array.type))
    try:
        return array if array.type == target else pc.cast(array, target, safe=safe)
    except pa.ArrowInvalid as error:
        problems.add(None, field.name, f"cannot convert to {field.type.value}: {error}")
        return None


def _parquet_batch(
    dataset: Dataset, batch: pa.RecordBatch, rows: range, problems: _Problems
) -> pa.RecordBatch | None:
    columns = {}
    for name in batch.schema.names:
        field, array = dataset.field(name), batch.column(name)
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        if field.type is FieldType.STRING:
            array = _converted(field, array, problems)  # string_view has no compute kernels
        if array is not None:
            _check_values(dataset, field, array, rows, problems)
            columns[name] = array
    if problems:
        return None
    columns = {name: _converted(dataset.field(name), array, problems) for name, array in columns.items()}
    return None if problems else _record_batch(dataset, columns)


def _parquet_usable(dataset: Dataset, schema: pa.Schema, problems: _Problems) -> list[str]:
    """Columns whose values can be checked: policy fields, named once, of a compatible type."""
    positions = _positions(dataset, schema.names, problems)
    if len(set(schema.names)) != len(schema.names):
        return []  # a repeated name cannot be read by name; the problem is already listed
    usable = []
    for name, index in positions.items():
        field, arrow = dataset.field(name), schema.field(index).type
        if _compatible(field.type, arrow):
            usable.append(name)
        else:
            problems.add(None, name, f"Parquet type {arrow} does not fit field type {field.type.value}")
    return usable


def _parquet_batches(
    path: Path, dataset: Dataset, problems: _Problems, size: int
) -> Iterator[pa.RecordBatch]:
    try:
        source = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        problems.add(None, None, f"not a readable Parquet file: {error}")
        return
    with source:
        usable = _parquet_usable(dataset, source.schema_arrow, problems)
        batches = source.iter_batches(batch_size=size, columns=usable) if usable else iter(())
        offset = 0
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as error:
                problems.add(offset + 1, None, f"unreadable Parquet data: {error}")
                return
            if batch is None:
                return
            checked = _parquet_batch(dataset, batch, range(offset + 1, offset + batch.num_rows + 1), problems)
            offset += batch.num_rows
            if checked is not None:
                yield checked
