"""An aggregate compiled to one SQL query, pushed down whole: filter, clamp, group, count, sum.

::

    SELECT <group fields>, count(*) AS _n,
           sum(CASE WHEN v < :lo THEN :lo WHEN v > :hi THEN :hi ELSE v END) AS _s_v0,  -- clamped
           sum(CASE WHEN <bin of clamped v> = 0 THEN 1 ELSE 0 END) AS _b0_0, ...       -- histograms
    FROM <table> WHERE <filters, every value bound> GROUP BY <group fields>

Values are clamped to the policy's bounds in SQL, so an outlier weighs no more than the bound the
noise is calibrated to. Where a subject may have more than one row in the query
(:attr:`~sandbox.engine.spec.AggregateQuery.rows_per_subject`), each group also counts its distinct
subjects, ``count(DISTINCT <key>) AS _subjects``: the minimum cell size is a number of subjects.
Only one row per group comes back: no row of the table reaches Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Double,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    cast,
    distinct,
    func,
    literal,
    select,
)

from sandbox.data.stores import dataset_table
from sandbox.engine.spec import COMPARE, AggregateQuery, Filter, FilterOp, MetricOp

GroupKey = tuple[Any, ...]


@dataclass(frozen=True)
class GroupTotals:
    """The exact figures of one group, before any noise: they never leave the engine."""

    count: int
    sums: dict[str, float]  # metric name -> clamped sum
    bins: dict[str, list[int]]  # metric name -> rows per histogram bin
    subjects: int | None = None  # distinct subjects among the rows; None: one row each (the count)

    @property
    def subject_count(self) -> int:
        """Distinct subjects among the group's rows."""
        return self.count if self.subjects is None else self.subjects


def bounds_of(query: AggregateQuery, field: str) -> tuple[float, float]:
    """The policy's clamping bounds of an aggregated field (policy guarantees they exist)."""
    bounds = query.dataset.field(field).bounds
    assert bounds is not None
    return bounds


def _bound(name: str, value: float) -> ColumnElement[Any]:
    # Cast, so engines that infer parameter types (DuckDB, PostgreSQL) see a double, not unknown.
    return cast(bindparam(name, value=float(value), type_=Double()), Double())


def _clamped(column: Any, lo: ColumnElement[Any], hi: ColumnElement[Any]) -> ColumnElement[Any]:
    return case((column < lo, lo), (column > hi, hi), else_=cast(column, Double()))


def _condition(table: Any, index: int, item: Filter) -> ColumnElement[bool]:
    column = table.c[item.field]
    if item.op is FilterOp.IN:
        values = bindparam(f"f{index}", value=list(item.value), type_=column.type, expanding=True)
        found: ColumnElement[bool] = column.in_(values)
        return found
    if item.op is FilterOp.BETWEEN:
        low = bindparam(f"f{index}_lo", value=item.value[0], type_=column.type)
        high = bindparam(f"f{index}_hi", value=item.value[1], type_=column.type)
        return and_(column >= low, column <= high)
    compared: ColumnElement[bool] = COMPARE[item.op](
        column, bindparam(f"f{index}", value=item.value, type_=column.type)
    )
    return compared


@dataclass
class _Plan:
    """The statement and the names of its columns: a clamped sum per field, a count per bin."""

    statement: Select[Any]
    sums: dict[str, str]  # field -> column of its clamped sum
    bins: dict[tuple[str, int], str]  # (field, bins) -> prefix of its bin counts


def _inner(query: AggregateQuery, plan: _Plan) -> Any:
    """Filtered rows with each aggregated field clamped (``_v<i>``) and binned (``_b<i>``) once.

    Every column the plan names itself starts with ``_``, which no field's name can (a policy
    identifier starts with a letter): a group-by field named ``subject``, ``n`` or ``v0`` would
    otherwise share its name with one, and the query fail."""
    table = dataset_table(query.dataset)
    columns: list[Any] = [table.c[name] for name in query.group_by]
    clamped: dict[str, tuple[ColumnElement[Any], ColumnElement[Any]]] = {}
    for metric in query.metrics:
        if metric.field is None:
            continue
        lo, hi = bounds_of(query, metric.field)
        if metric.field not in clamped:
            index = len(clamped)
            lo_p = _bound(f"lo{index}", lo)
            clamped[metric.field] = (_clamped(table.c[metric.field], lo_p, _bound(f"hi{index}", hi)), lo_p)
            columns.append(clamped[metric.field][0].label(f"_v{index}"))
            plan.sums[metric.field] = f"_v{index}"
        count = metric.histogram_bins
        if count and (metric.field, count) not in plan.bins:
            # bin = floor((v - lo) * bins / (hi - lo)), the top edge folded into the last bin.
            name = f"_b{len(plan.bins)}"
            value, lo_p = clamped[metric.field]
            raw = cast(func.floor((value - lo_p) * _bound(f"{name}_scale", count / (hi - lo))), Integer())
            last = literal(count - 1, Integer())
            columns.append(case((raw > last, last), else_=raw).label(name))
            plan.bins[(metric.field, count)] = name
    if query.rows_per_subject > 1:
        columns.append(table.c[query.dataset.key].label("_subject"))
    if not columns:  # count alone, no group: the subquery still needs a column
        columns.append(literal(1, Integer()).label("_one"))
    inner = select(*columns).select_from(table)
    conditions = [_condition(table, i, f) for i, f in enumerate(query.filters)]
    if conditions:
        inner = inner.where(and_(*conditions))
    return inner.subquery("rows")


def plan_aggregate(query: AggregateQuery) -> _Plan:
    """The one statement of ``query``; every client value and policy bound a bound parameter."""
    plan = _Plan(statement=select(), sums={}, bins={})
    rows = _inner(query, plan)
    groups = [rows.c[name] for name in query.group_by]
    columns: list[Any] = [*groups, func.count().label("_n")]
    if query.rows_per_subject > 1:
        columns.append(func.count(distinct(rows.c["_subject"])).label("_subjects"))
    columns.extend(func.sum(rows.c[name]).label(f"_s{name}") for name in plan.sums.values())
    for (_, count), name in plan.bins.items():
        columns.extend(
            func.sum(case((rows.c[name] == literal(b, Integer()), 1), else_=0)).label(f"{name}_{b}")
            for b in range(count)
        )
    plan.statement = select(*columns).select_from(rows)
    if groups:
        plan.statement = plan.statement.group_by(*groups)
    return plan


def compile_aggregate(query: AggregateQuery) -> Select[Any]:
    """The statement alone (for inspection and the benchmark)."""
    return plan_aggregate(query).statement


def run_aggregate_sql(conn: Connection, query: AggregateQuery) -> dict[GroupKey, GroupTotals]:
    """Exact totals per group present in the data (absent groups have no row)."""
    plan = plan_aggregate(query)
    out: dict[GroupKey, GroupTotals] = {}
    width = len(query.group_by)
    for row in conn.execute(plan.statement):
        found = row._mapping
        sums: dict[str, float] = {}
        histograms: dict[str, list[int]] = {}
        for metric in query.metrics:
            if metric.op in (MetricOp.SUM, MetricOp.MEAN):
                assert metric.field is not None
                sums[metric.name] = float(found[f"_s{plan.sums[metric.field]}"] or 0.0)
            elif metric.histogram_bins:
                assert metric.field is not None
                name = plan.bins[(metric.field, metric.histogram_bins)]
                histograms[metric.name] = [
                    int(found[f"{name}_{b}"] or 0) for b in range(metric.histogram_bins)
                ]
        subjects = int(found["_subjects"]) if query.rows_per_subject > 1 else None
        out[tuple(row[:width])] = GroupTotals(int(found["_n"]), sums, histograms, subjects)
    return out
