"""Verification templates compiled once into parameterized SQL, and their answers evaluated.

A template becomes one point lookup by the dataset's indexed key::

    SELECT count(*) AS n_rows, <reduce>(CASE WHEN <where> THEN <field> END) AS value
    FROM <table> WHERE <key> = :subject

Every client value (the subject, each parameter) and every constant of the policy is a bound
parameter; nothing is formatted into the text. ``n_rows`` tells an unknown subject from a known
one *inside* the service, which then answers the template's ``unknown_answer`` so the two look the
same from outside. The statement is built once per template and catalog, and SQLAlchemy caches its
compiled form per dialect.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, Table, and_, bindparam, case, func, select

from catalog import Catalog, CompareOp, Condition, Dataset, ReduceOp, Template
from core.prepared import Prepared
from sandbox.data.stores import dataset_table

# Lookup stores whose drivers :class:`Prepared` runs on (DuckDB's goes through SQLAlchemy).
PREPARED_DIALECTS = frozenset({"sqlite", "postgresql"})

_COMPARE: dict[CompareOp, Callable[[Any, Any], bool]] = {
    CompareOp.EQ: operator.eq,
    CompareOp.NE: operator.ne,
    CompareOp.LT: operator.lt,
    CompareOp.LE: operator.le,
    CompareOp.GT: operator.gt,
    CompareOp.GE: operator.ge,
}


@dataclass(frozen=True)
class CompiledTemplate:
    """A template's lookup statement and what it needs to be answered."""

    template: Template
    dataset: Dataset
    statement: Select[Any]
    fields: tuple[str, ...]  # every column it reads: the key and the template's fields
    # Prepared on the engines whose drivers it knows, unless a parameter expands (``in``).
    prepared: Prepared | None

    def lookup(self, conn: Connection, subject: str, params: dict[str, Any]) -> tuple[int, Any]:
        """The subject's row count and the reduced value (``None`` when no row matched)."""
        binds = {"subject": subject, **{f"p_{name}": value for name, value in params.items()}}
        if self.prepared is not None and conn.dialect.name in PREPARED_DIALECTS:
            n_rows, value = self.prepared.rows(conn, binds)[0]
            return int(n_rows), value
        row = conn.execute(self.statement, binds).one()
        return int(row.n_rows), row.value

    def answer(self, n_rows: int, value: Any, params: dict[str, Any]) -> bool | str:
        """The boolean or band; an unknown subject answers like a real negative."""
        template = self.template
        if n_rows == 0:
            return template.unknown_answer
        op = template.reduce.op
        if op is ReduceOp.EXISTS:
            return bool(value)
        if value is None and op in (ReduceOp.SUM, ReduceOp.COUNT):
            value = 0  # the sum of no rows is zero, not unknown
        if template.answer == "band":
            return _band(template, value)
        assert template.test is not None  # a boolean template without exists has a test (catalog)
        if value is None:
            return False  # max/min of no matching rows: nothing satisfies the test
        expected = params[template.test.param] if template.test.param else template.test.value
        return bool(_COMPARE[template.test.op](value, expected))


def _band(template: Template, value: Any) -> str:
    assert template.bands is not None
    if value is None:
        return str(template.unknown_answer)
    for band in template.bands:
        if band.below is None or value < band.below:
            return band.label
    return template.bands[-1].label


def _condition(table: Table, condition: Condition, index: int) -> ColumnElement[bool]:
    column = table.c[condition.field]
    if condition.param is not None:
        operand = bindparam(f"p_{condition.param}", type_=column.type, expanding=condition.op is CompareOp.IN)
    else:
        operand = bindparam(
            f"v_{index}",
            value=condition.value,
            type_=column.type,
            expanding=condition.op is CompareOp.IN,
        )
    if condition.op is CompareOp.IN:
        return column.in_(operand)
    comparisons: dict[CompareOp, Callable[[Any, Any], ColumnElement[bool]]] = {
        CompareOp.EQ: operator.eq,
        CompareOp.NE: operator.ne,
        CompareOp.LT: operator.lt,
        CompareOp.LE: operator.le,
        CompareOp.GT: operator.gt,
        CompareOp.GE: operator.ge,
    }
    return comparisons[condition.op](column, operand)


def compile_template(dataset: Dataset, template: Template) -> CompiledTemplate:
    """The lookup statement of ``template`` over ``dataset``."""
    table = dataset_table(dataset)
    conditions = [_condition(table, c, i) for i, c in enumerate(template.where)]
    matched = and_(*conditions) if conditions else None
    field = table.c[template.reduce.field] if template.reduce.field else None
    op = template.reduce.op
    if op in (ReduceOp.EXISTS, ReduceOp.COUNT):
        value: ColumnElement[Any] = func.count(case((matched, 1))) if matched is not None else func.count()
    else:
        assert field is not None  # the catalog refuses sum/max/min without a field
        target: ColumnElement[Any] = case((matched, field)) if matched is not None else field
        if op is ReduceOp.SUM:
            value = func.sum(target)
        else:
            value = func.max(target) if op is ReduceOp.MAX else func.min(target)
    statement = select(func.count().label("n_rows"), value.label("value")).where(
        table.c[dataset.key] == bindparam("subject", type_=table.c[dataset.key].type)
    )
    expands = any(condition.op is CompareOp.IN for condition in template.where)
    return CompiledTemplate(
        template=template,
        dataset=dataset,
        statement=statement,
        fields=tuple(dict.fromkeys([dataset.key, *template.touched_fields()])),
        prepared=None if expands else Prepared(statement),
    )


class TemplateCache:
    """Compiled templates per catalog (by hash): each template compiled once per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._compiled: dict[tuple[str, str], CompiledTemplate] = {}

    def get(self, catalog: Catalog, name: str) -> CompiledTemplate:
        """The compiled template ``name`` of ``catalog`` (which must hold it)."""
        key = (catalog.sha256, name)
        with self._lock:
            found = self._compiled.get(key)
            if found is None:
                template = catalog.template(name)
                found = compile_template(catalog.dataset(template.dataset), template)
                self._compiled[key] = found
            return found


COMPILED = TemplateCache()
