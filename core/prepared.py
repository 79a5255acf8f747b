"""Statements for hot paths: SQLAlchemy Core, compiled once per dialect, run on the driver's cursor.

A verification runs about ten short statements. Through ``Connection.execute`` each costs some
70-100 µs of Python here (cache key, execution context, result object) around 5-30 µs of
database work, which made the statements alone cost more than the rest of the request. A
:class:`Prepared` statement is still built with SQLAlchemy Core and compiled by SQLAlchemy for the
connection's dialect, with every value a bound parameter; what it skips is the per-call
machinery. Values go through the same type processing SQLAlchemy would apply, taken from the
public type API (``bind_processor`` / ``result_processor`` of each type's dialect
implementation), so ``UTCDateTime``, ``Date`` and ``JSON`` columns read and write exactly as they
do through the ORM. Driver errors are raised as SQLAlchemy's own exception classes.

The statement runs in whatever transaction its connection is in. On a connection that has not
begun one, SQLite runs it in autocommit (one statement, one consistent read) and PostgreSQL in an
implicit transaction that the pool rolls back when the connection is returned. Not supported,
and refused at compile time: expanding (``IN``) and literal-execute parameters, and escaped
parameter names. Written by hand: SQLAlchemy offers no public "prepared statement" object.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import ClauseElement, ColumnElement

Processor = Callable[[Any], Any] | None


@dataclass
class _Compiled:
    sql: str
    names: tuple[str, ...]  # in placeholder order (positional) or once each (named)
    positional: bool
    binds: tuple[tuple[str, Processor], ...]  # every bind name once, with its processor
    defaults: Mapping[str, Any]  # values fixed in the statement (``column == "approved"``)
    # One per result column, from the driver's type codes at the first run (PostgreSQL's numeric
    # processors depend on them); ``None`` until then, and empty when no column needs one.
    results: tuple[Processor, ...] | None = None


class Prepared:
    """One Core statement, run with :meth:`rows`, :meth:`first` or :meth:`scalar`."""

    def __init__(
        self,
        statement: ClauseElement,
        *,
        column_keys: Sequence[str] | None = None,
    ) -> None:
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        # A select's columns, or an UPDATE's RETURNING; none for a plain INSERT.
        self.result_columns: list[ColumnElement[Any]] = list(
            getattr(statement, "exported_columns", None) or []
        )
        self._by_dialect: weakref.WeakKeyDictionary[Dialect, _Compiled] = weakref.WeakKeyDictionary()

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled: Any = self.statement.compile(dialect=dialect, column_keys=self.column_keys)
        if compiled.literal_execute_params or compiled.post_compile_params or compiled.escaped_bind_names:
            raise NotImplementedError("expanding, literal-execute or escaped parameters are not supported")
        binds: dict[str, Processor] = {}
        defaults: dict[str, Any] = {}
        for bind, name in compiled.bind_names.items():
            binds[name] = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if not bind.required:
                defaults[name] = bind.effective_value
        names = tuple(compiled.positiontup) if compiled.positional else tuple(binds)
        found = _Compiled(
            sql=compiled.string,
            names=names,
            positional=bool(compiled.positional),
            binds=tuple(binds.items()),
            defaults=defaults,
        )
        self._by_dialect[dialect] = found
        return found

    def rows(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run the statement on ``conn`` with ``params`` and return every row it yields."""
        dialect = conn.dialect
        compiled = self._by_dialect.get(dialect) or self._compile(dialect)
        if compiled.defaults:
            given = {**compiled.defaults, **params} if params else compiled.defaults
        else:
            given = params or {}
        values: dict[str, Any] = {}
        for name, processor in compiled.binds:
            try:
                value = given[name]
            except KeyError:
                raise exc.ArgumentError(f"a value is required for bind parameter {name!r}") from None
            values[name] = processor(value) if processor is not None else value
        arguments: Any = tuple(values[name] for name in compiled.names) if compiled.positional else values
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, arguments)
            description = cursor.description
            found = cursor.fetchall() if description else []
        except dialect.loaded_dbapi.Error as error:
            raise exc.DBAPIError.instance(
                compiled.sql, arguments, error, dialect.loaded_dbapi.Error, dialect=dialect
            ) from error
        finally:
            cursor.close()
        results = compiled.results
        # A statement with no result columns may still yield rows (PostgreSQL's INSERT returns the
        # new primary key unasked): they are returned as the driver gives them.
        if results is None and description and self.result_columns:
            results = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, entry[1])
                for column, entry in zip(self.result_columns, description, strict=True)
            )
            results = compiled.results = results if any(p is not None for p in results) else ()
        if results:
            return [
                tuple(value if p is None else p(value) for p, value in zip(results, row, strict=True))
                for row in found
            ]
        return [tuple(row) for row in found]

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> tuple[Any, ...] | None:
        """The first row, or ``None``."""
        found = self.rows(conn, params)
        return found[0] if found else None

    def scalar(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row, or ``None``."""
        row = self.first(conn, params)
        return None if row is None else row[0]

    def execute(self, conn: Connection, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns nothing."""
        self.rows(conn, params)


def end_reads(conn: Connection) -> None:
    """End the transaction a driver began by itself for reads run outside SQLAlchemy's (psycopg
    does; SQLite in autocommit has none), so a request connection is not left idle in one."""
    if not conn.in_transaction():
        conn.connection.driver_connection.rollback()  # type: ignore[union-attr]
