"""An aggregate's spec, checked against the policy and the contract, and its canonical form.

Every field must be allowed by policy for its use (``filter``, ``group_by``, ``aggregate``) and be
in the contract's scope; a group-by field must have a public key set (policy guarantees it). The
client gives only what to compute and its ε: bounds come from policy, noise from the engine, and
an unknown key anywhere is refused. Every problem is listed at once.

The canonical form sorts what order cannot change (metrics, group-by fields, filters, ``in``
lists), so the same question asked twice hashes the same and is answered from the cache.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import cached_property
from typing import Any

from catalog import Dataset, FieldType, Use
from core.seals import canonical_json
from sandbox.engine.errors import JobInvalid, OutOfScope, label, problem

MAX_METRICS = 10
MAX_FILTERS = 20
MAX_GROUP_BY = 3
MAX_GROUPS = 10_000  # rows of the answer: the product of the group-by key sets
MAX_LIST = 100
MAX_TEXT = 256
MAX_BINS = 32
QUANTILE_BINS = 32  # the noisy histogram a quantile is read from


class MetricOp(StrEnum):
    """What an aggregate computes per group."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    QUANTILE = "quantile"
    HISTOGRAM = "histogram"


class FilterOp(StrEnum):
    """How a filter compares a field with its value."""

    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    IN = "in"
    BETWEEN = "between"


ORDERED_OPS = {FilterOp.LT, FilterOp.LE, FilterOp.GT, FilterOp.GE, FilterOp.BETWEEN}
# What each comparing op does: in SQL (on columns, in sandbox.engine.aggregate_sql) and in Python.
COMPARE: dict[FilterOp, Callable[[Any, Any], Any]] = {
    FilterOp.EQ: operator.eq,
    FilterOp.NE: operator.ne,
    FilterOp.LT: operator.lt,
    FilterOp.LE: operator.le,
    FilterOp.GT: operator.gt,
    FilterOp.GE: operator.ge,
}


@dataclass(frozen=True)
class Metric:
    """One metric: ``count``, or an op over a numeric field clamped to its policy bounds."""

    op: MetricOp
    field: str | None = None
    q: float | None = None
    bins: int | None = None

    @property
    def name(self) -> str:
        """The metric's column in the answer: ``count``, ``sum_annual_tax``, ``quantile_0.5_annual_tax``."""
        if self.op is MetricOp.COUNT:
            return "count"
        if self.op is MetricOp.QUANTILE:
            return f"quantile_{self.q:g}_{self.field}"
        return f"{self.op.value}_{self.field}"

    @property
    def histogram_bins(self) -> int:
        """Bins of the noisy histogram behind a histogram or quantile (0 for other ops)."""
        if self.op is MetricOp.HISTOGRAM:
            return int(self.bins or 0)
        return QUANTILE_BINS if self.op is MetricOp.QUANTILE else 0

    def canonical(self) -> dict[str, Any]:
        """The metric as canonical JSON values."""
        out: dict[str, Any] = {"op": self.op.value}
        if self.field is not None:
            out["field"] = self.field
        if self.q is not None:
            out["q"] = self.q
        if self.bins is not None:
            out["bins"] = self.bins
        return out


@dataclass(frozen=True)
class Filter:
    """One filter, its value checked in the field's type (``in`` and ``between`` take lists)."""

    field: str
    op: FilterOp
    value: Any

    def admits(self, value: Any) -> bool:
        """Whether a row whose field holds ``value`` passes the filter, as the SQL decides."""
        try:
            if self.op is FilterOp.IN:
                return bool(value in self.value)
            if self.op is FilterOp.BETWEEN:
                return bool(self.value[0] <= value <= self.value[1])
            return bool(COMPARE[self.op](value, self.value))
        except TypeError:  # not comparable: counted as let through, which only overcounts
            return True

    def canonical(self) -> dict[str, Any]:
        """The filter as canonical JSON values (dates as ISO text)."""

        def one(value: Any) -> Any:
            return value.isoformat() if isinstance(value, date) else value

        value = [one(v) for v in self.value] if isinstance(self.value, list) else one(self.value)
        return {"field": self.field, "op": self.op.value, "value": value}


@dataclass(frozen=True)
class AggregateQuery:
    """A checked aggregate, in canonical order."""

    dataset: Dataset
    metrics: tuple[Metric, ...]
    group_by: tuple[str, ...]
    filters: tuple[Filter, ...]
    epsilon: float

    def canonical(self) -> dict[str, Any]:
        """The query as canonical JSON: what is sealed, logged and hashed for the cache."""
        return {
            "dataset": self.dataset.name,
            "metrics": [m.canonical() for m in self.metrics],
            "group_by": list(self.group_by),
            "filters": [f.canonical() for f in self.filters],
            "epsilon": self.epsilon,
        }

    @property
    def fields(self) -> list[str]:
        """Every field the query reads, once each."""
        named = [*self.group_by, *(f.field for f in self.filters), *(m.field for m in self.metrics)]
        if self.rows_per_subject > 1:  # its subjects are counted apart from its rows
            named.append(self.dataset.key)
        return [name for name in dict.fromkeys(named) if name is not None]

    @cached_property  # read for every metric of every group while noising: counted once
    def rows_per_subject(self) -> int:
        """The most rows of one subject the query can read: the dataset's bound, or fewer where
        the row key's values the query can read are fewer (``year = 2024`` leaves a firm one
        tax-year row; a year of ``utilities`` is twelve months, its key set, not sixty).

        A subject has at most one row per combination of row-key values. A row-key field with a
        key set holds only those keys (a load checks it), so the values a query reads are the keys
        its filters admit; one without is counted off its filters (``eq``, ``in``, a ``between``
        of integers or dates), and is unbounded otherwise. Every sensitivity of the answer is
        this many times one row's, so that its guarantee covers a subject (a firm, a person)
        and not one of its rows."""
        bound = self.dataset.max_rows_per_subject
        if bound == 1 or not self.dataset.row_key:
            return bound
        product = 1
        for name in self.dataset.row_key:
            values = self._row_key_values(name)
            if values is None:
                return bound
            product *= values
        return max(1, min(bound, product))

    def _row_key_values(self, name: str) -> int | None:
        """How many values of row-key field ``name`` the filters let through (``None``: not counted)."""
        field = self.dataset.field(name)
        on_it = [f for f in self.filters if f.field == name]
        if field.key_set is not None:
            return sum(1 for key in field.key_set if all(f.admits(key) for f in on_it))
        counted = [n for n in (values_let_through(f, field.type) for f in on_it) if n is not None]
        return min(counted) if counted else None

    @property
    def sha256(self) -> str:
        """The hash of the canonical query: the cache key under one contract."""
        return hashlib.sha256(canonical_json(self.canonical())).hexdigest()


def values_let_through(item: Filter, kind: FieldType) -> int | None:
    """How many values of its field a filter lets through, where that is a count (``None`` for
    ``ne``, an open range, or a range of real numbers or strings)."""
    if item.op is FilterOp.EQ:
        return 1
    if item.op is FilterOp.IN:
        return len(item.value)  # made distinct when checked
    if item.op is FilterOp.BETWEEN and kind is FieldType.INTEGER:
        return int(item.value[1] - item.value[0]) + 1
    if item.op is FilterOp.BETWEEN and kind is FieldType.DATE:
        days: int = (item.value[1] - item.value[0]).days
        return days + 1
    return None


class _Checker:
    """Collects every problem of one spec; policy problems and scope problems apart."""

    def __init__(self, dataset: Dataset, granted: set[str]) -> None:
        self.dataset = dataset
        self.granted = granted
        self.problems: list[dict[str, str]] = []
        self.scope: list[dict[str, str]] = []

    def field(self, at: str, name: object, use: Use) -> str | None:
        """``name`` if it is a field allowed for ``use`` and granted; else note why and ``None``."""
        if not isinstance(name, str) or not self.dataset.has_field(name):
            self.problems.append(problem(at, f"no such field in dataset {self.dataset.name}"))
            return None
        if not self.dataset.field(name).allows(use):
            self.problems.append(problem(at, f"policy does not allow field {name} for {use.value}"))
            return None
        if name not in self.granted:
            self.scope.append(problem(at, f"field {name} is not in the authorization's scope"))
            return None
        return name


def parse_query(
    dataset: Dataset, granted: set[str], spec: Mapping[str, Any], epsilon: float
) -> AggregateQuery:
    """The checked, canonical query; :class:`JobInvalid` or :class:`OutOfScope` listing every problem."""
    check = _Checker(dataset, granted)
    metrics = _metrics(check, spec.get("metrics"))
    group_by = _group_by(check, spec.get("group_by", []))
    filters = _filters(check, spec.get("filters", []))
    if check.problems:
        problems = check.problems + check.scope
        raise JobInvalid(f"{len(problems)} problem(s) with the aggregate", details=problems)
    if check.scope:
        raise OutOfScope(f"{len(check.scope)} field(s) out of the authorization's scope", details=check.scope)
    return AggregateQuery(
        dataset=dataset,
        metrics=tuple(sorted(metrics, key=lambda m: canonical_json(m.canonical()))),
        group_by=tuple(sorted(group_by)),
        filters=tuple(sorted(filters, key=lambda f: canonical_json(f.canonical()))),
        epsilon=epsilon,
    )


def _metrics(check: _Checker, raw: object) -> list[Metric]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_METRICS:
        check.problems.append(problem("metrics", f"a list of 1-{MAX_METRICS} metrics"))
        return []
    out: list[Metric] = []
    for index, item in enumerate(raw):
        metric = _metric(check, f"metrics[{index}]", item)
        if metric is None:
            continue
        # By name, which is the metric's column in the answer: two histograms of one field with
        # different bins would share a column (one answer lost) and each be charged its share of ε.
        if any(m.name == metric.name for m in out):
            check.problems.append(
                problem(f"metrics[{index}]", f"{metric.name} is asked twice (one per field and op)")
            )
        out.append(metric)
    return out


def _metric(check: _Checker, at: str, item: object) -> Metric | None:
    if not isinstance(item, dict) or not isinstance(item.get("op"), str):
        check.problems.append(problem(at, "an object with an 'op'"))
        return None
    allowed = {"op", "field", "q", "bins"}
    unknown = [k for k in item if k not in allowed]
    for key in unknown:
        check.problems.append(
            problem(f"{at}.{label(key)}", "unknown key (bounds and noise come from policy)")
        )
    try:
        op = MetricOp(item["op"])
    except ValueError:
        check.problems.append(problem(f"{at}.op", f"one of {', '.join(m.value for m in MetricOp)}"))
        return None
    if op in (MetricOp.MIN, MetricOp.MAX):
        check.problems.append(
            problem(f"{at}.op", f"no policy allows {op.value}: it would release one subject's value")
        )
        return None
    if op is MetricOp.COUNT:
        if "field" in item:
            check.problems.append(problem(f"{at}.field", "count takes no field"))
        _shape(check, at, op, item)  # a q or bins on a count is refused too, not dropped
        return None if unknown else Metric(op)
    name = check.field(f"{at}.field", item.get("field"), Use.AGGREGATE)
    q, bins = _shape(check, at, op, item)
    if (
        name is None
        or unknown
        or (op is MetricOp.QUANTILE and q is None)
        or (op is MetricOp.HISTOGRAM and bins is None)
    ):
        return None
    return Metric(op, name, q, bins)


def _shape(check: _Checker, at: str, op: MetricOp, item: dict[str, Any]) -> tuple[float | None, int | None]:
    q, bins = item.get("q"), item.get("bins")
    if op is MetricOp.QUANTILE:
        if isinstance(q, bool) or not isinstance(q, int | float) or not 0.01 <= q <= 0.99:
            check.problems.append(problem(f"{at}.q", "a number from 0.01 to 0.99"))
            q = None
    elif q is not None:
        check.problems.append(problem(f"{at}.q", "only a quantile takes q"))
    if op is MetricOp.HISTOGRAM:
        if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= MAX_BINS:
            check.problems.append(problem(f"{at}.bins", f"an integer from 2 to {MAX_BINS}"))
            bins = None
    elif bins is not None:
        check.problems.append(problem(f"{at}.bins", "only a histogram takes bins"))
    return (float(q) if q is not None else None), bins


def _group_by(check: _Checker, raw: object) -> list[str]:
    if not isinstance(raw, list) or len(raw) > MAX_GROUP_BY:
        check.problems.append(problem("group_by", f"a list of at most {MAX_GROUP_BY} fields"))
        return []
    out: list[str] = []
    for index, name in enumerate(raw):
        found = check.field(f"group_by[{index}]", name, Use.GROUP_BY)
        if found in out:
            check.problems.append(problem(f"group_by[{index}]", f"{found} is listed twice"))
        elif found is not None:
            out.append(found)
    groups = math.prod(len(check.dataset.field(name).key_set or []) for name in out)
    if groups > MAX_GROUPS:
        check.problems.append(problem("group_by", f"{groups} groups; at most {MAX_GROUPS}"))
    return out


def _filters(check: _Checker, raw: object) -> list[Filter]:
    if not isinstance(raw, list) or len(raw) > MAX_FILTERS:
        check.problems.append(problem("filters", f"a list of at most {MAX_FILTERS} filters"))
        return []
    out: list[Filter] = []
    at_index: list[int] = []  # where each of ``out`` was given
    for index, item in enumerate(raw):
        at = f"filters[{index}]"
        if not isinstance(item, dict) or set(item) != {"field", "op", "value"}:
            check.problems.append(problem(at, "an object with exactly 'field', 'op' and 'value'"))
            continue
        name = check.field(f"{at}.field", item["field"], Use.FILTER)
        try:
            op = FilterOp(item["op"]) if isinstance(item["op"], str) else None
        except ValueError:
            op = None
        if op is None:
            check.problems.append(problem(f"{at}.op", f"one of {', '.join(o.value for o in FilterOp)}"))
        if name is None or op is None:
            continue
        value = _filter_value(check, at, check.dataset.field(name).type, op, item["value"])
        if value is None:
            continue
        found = Filter(name, op, value)
        if found in out:  # the same question either way, but it would hash apart and be charged again
            first = at_index[out.index(found)]
            check.problems.append(problem(at, f"the same filter as filters[{first}]"))
            continue
        out.append(found)
        at_index.append(index)
    return out


def _filter_value(check: _Checker, at: str, kind: FieldType, op: FilterOp, raw: object) -> Any:
    if op in ORDERED_OPS and not (kind.numeric or kind is FieldType.DATE):
        check.problems.append(problem(f"{at}.op", f"{op.value} compares numbers or dates, not {kind.value}"))
        return None
    if op in (FilterOp.IN, FilterOp.BETWEEN):
        size = (2, 2) if op is FilterOp.BETWEEN else (1, MAX_LIST)
        if not isinstance(raw, list) or not size[0] <= len(raw) <= size[1]:
            want = "[low, high]" if op is FilterOp.BETWEEN else f"a list of 1-{MAX_LIST} values"
            check.problems.append(problem(f"{at}.value", want))
            return None
        values = [_scalar(kind, item) for item in raw]
        if any(v is None for v in values):
            check.problems.append(problem(f"{at}.value", f"every value {_one(kind)}"))
            return None
        if op is FilterOp.BETWEEN:
            if values[0] > values[1]:
                check.problems.append(problem(f"{at}.value", "low must not exceed high"))
                return None
            return values
        return sorted(set(values), key=lambda v: (str(type(v)), v))
    value = _scalar(kind, raw)
    if value is None:
        check.problems.append(problem(f"{at}.value", _one(kind)))
    return value


def _one(kind: FieldType) -> str:
    """What a value of ``kind`` must be, for a problem's message."""
    if kind is FieldType.STRING:
        return f"a string of 1-{MAX_TEXT} characters"
    return f"{'an' if kind is FieldType.INTEGER else 'a'} {kind.value}"


def _scalar(kind: FieldType, raw: object) -> Any:
    """``raw`` in the field's type, or ``None``."""
    if kind is FieldType.BOOLEAN:
        return raw if isinstance(raw, bool) else None
    if kind.numeric:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return None
        if kind is FieldType.INTEGER and not isinstance(raw, int):
            return None
        if isinstance(raw, float) and not math.isfinite(raw):
            return None
        if isinstance(raw, int) and abs(raw) > 2**63 - 1:
            return None
        # One spelling per value, so the same question hashes the same (and is answered from the
        # cache, charging nothing): 100 and 100.0 of a number field are one value, as are 0.0 and
        # -0.0. Integers past 2**53, which a float cannot hold exactly, stay integers.
        if kind is FieldType.NUMBER and (isinstance(raw, float) or abs(raw) <= 2**53):
            return float(raw) + 0.0
        return raw
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_TEXT:
        return None
    if kind is FieldType.DATE:
        try:
            return date.fromisoformat(raw)
        except ValueError:
            return None
    return raw
