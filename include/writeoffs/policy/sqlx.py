"""Small portable SQL constructs the policy queries need (PostgreSQL and SQLite render them differently).

- :class:`days_between`: whole days between two dates (PostgreSQL ``date - date``; SQLite ``julianday``).
- :class:`json_obj`: a JSON object built in SQL, so evidence is produced set-wise with the selection itself
  (PostgreSQL ``json_build_object``; SQLite ``json_object``).
- :class:`json_bool`: a boolean that lands in JSON as ``true``/``false`` on both (SQLite has no boolean type).
- :func:`rows_table`: a handful of literal rows as a subquery (resolved policy parameters), typed explicitly so
  PostgreSQL never has to guess a parameter's type.
- :func:`temp_table`: a query materialised as a session-temporary table (``CREATE TEMPORARY TABLE ... AS``),
  analysed, and returned as a :class:`~sqlalchemy.Table` to build further queries on; :func:`drop_temp` removes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Integer,
    MetaData,
    Select,
    String,
    Subquery,
    Table,
    Text,
    cast,
    literal,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.expression import ClauseElement, ColumnElement, FunctionElement
from sqlalchemy.types import TypeEngine

from writeoffs.db import dialect


class days_between(FunctionElement[int]):
    """``later - earlier`` in whole days."""

    type = Integer()
    inherit_cache = True
    name = "days_between"


@compiles(days_between)
def _days_pg(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return f"(CAST({compiler.process(later, **kw)} AS DATE) - CAST({compiler.process(earlier, **kw)} AS DATE))"


@compiles(days_between, "sqlite")
def _days_sqlite(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return f"CAST(julianday({compiler.process(later, **kw)}) - julianday({compiler.process(earlier, **kw)}) AS INTEGER)"


class json_obj(FunctionElement[str]):
    """JSON object from alternating key/value clauses; ``as_text`` casts the PostgreSQL ``json`` to text."""

    type = Text()
    inherit_cache = False
    name = "json_obj"

    def __init__(self, pairs: Mapping[str, Any], *, as_text: bool = True) -> None:
        args: list[Any] = []
        for k, v in pairs.items():
            # Keys are inlined: they are our own identifiers, and PostgreSQL cannot type a bound key parameter.
            args += [literal_column("'" + k.replace("'", "''") + "'"), v]
        self.as_text = as_text
        super().__init__(*args)


@compiles(json_obj)
def _json_pg(element: json_obj, compiler: Any, **kw: Any) -> str:
    body = f"json_build_object({compiler.process(element.clause_expr.element, **kw)})"
    return f"CAST({body} AS TEXT)" if element.as_text else body


@compiles(json_obj, "sqlite")
def _json_sqlite(element: json_obj, compiler: Any, **kw: Any) -> str:
    return f"json_object({compiler.process(element.clause_expr.element, **kw)})"


class json_bool(FunctionElement[bool]):
    type = Boolean()
    inherit_cache = True
    name = "json_bool"


@compiles(json_bool)
def _jb_pg(element: json_bool, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(next(iter(element.clauses)), **kw)})"


@compiles(json_bool, "sqlite")
def _jb_sqlite(element: json_bool, compiler: Any, **kw: Any) -> str:
    inner = compiler.process(next(iter(element.clauses)), **kw)
    return f"json(CASE WHEN {inner} THEN 'true' ELSE 'false' END)"


class json_pick(FunctionElement[str]):
    """A JSON value chosen by an SQL expression (e.g. a CASE over :class:`json_obj` values, ``as_text=False``).

    SQLite keeps the JSON subtype of ``json_object`` only as far as the value is passed on directly; ``json(...)``
    restores it, so the picked object nests as an object, not as a string, inside an enclosing ``json_object``."""

    type = Text()
    inherit_cache = True
    name = "json_pick"


@compiles(json_pick)
def _jp_pg(element: json_pick, compiler: Any, **kw: Any) -> str:
    return compiler.process(next(iter(element.clauses)), **kw)


@compiles(json_pick, "sqlite")
def _jp_sqlite(element: json_pick, compiler: Any, **kw: Any) -> str:
    return f"json({compiler.process(next(iter(element.clauses)), **kw)})"


class money_text(FunctionElement[str]):
    """A money expression as its exact decimal text (``50.0000``) on both databases: amounts in evidence JSON are
    strings, never binary floats (SQLite stores ten-thousandths, see :mod:`writeoffs.db.money`)."""

    type = Text()
    inherit_cache = True
    name = "money_text"


@compiles(money_text)
def _mt_pg(element: money_text, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(next(iter(element.clauses)), **kw)} AS TEXT)"


@compiles(money_text, "sqlite")
def _mt_sqlite(element: money_text, compiler: Any, **kw: Any) -> str:
    from writeoffs.db.money import sqlite_decimal_text_sql

    return sqlite_decimal_text_sql(compiler.process(next(iter(element.clauses)), **kw))


class _pg_cast(FunctionElement[Any]):
    inherit_cache = True
    name = "pg_cast"

    def __init__(self, inner: ColumnElement[Any], type_: TypeEngine[Any]) -> None:
        super().__init__(inner)
        self.type = type_


@compiles(_pg_cast)
def _pg_cast_pg(element: _pg_cast, compiler: Any, **kw: Any) -> str:
    return compiler.process(cast(next(iter(element.clauses)), element.type), **kw)


@compiles(_pg_cast, "sqlite")
def _pg_cast_sqlite(element: _pg_cast, compiler: Any, **kw: Any) -> str:
    # No CAST on SQLite: its type affinities would turn '2026-11-24' into 2026 (NUMERIC affinity of DATE).
    return compiler.process(next(iter(element.clauses)), **kw)


def typed(value: Any, type_: TypeEngine[Any]) -> ColumnElement[Any]:
    """A literal with an explicit SQL type (``CAST(:p AS type)`` on PostgreSQL, which cannot always infer it)."""
    inner = null() if value is None else literal(value, type_)
    return _pg_cast(inner, type_=type_)


def rows_table(name: str, columns: Sequence[tuple[str, TypeEngine[Any]]], rows: Sequence[Sequence[Any]]) -> Subquery:
    """Literal rows as a subquery with typed columns; an empty ``rows`` yields an empty table of the same shape."""
    if not rows:
        empty = select(*[typed(None, t).label(c) for c, t in columns]).where(literal(1, Integer) == literal(0, Integer))
        return empty.subquery(name)
    selects = [select(*[typed(v, t).label(c) for (c, t), v in zip(columns, row, strict=True)]) for row in rows]
    return (selects[0] if len(selects) == 1 else union_all(*selects)).subquery(name)


class _CreateTempAs(Executable, ClauseElement):
    inherit_cache = False

    def __init__(self, name: str, query: Select[Any]) -> None:
        self.name = name
        self.query = query


@compiles(_CreateTempAs)
def _cta_pg(element: _CreateTempAs, compiler: Any, **kw: Any) -> str:
    # ON COMMIT DROP: the table never outlives the transaction that computed it, whatever happens in between.
    body = compiler.process(element.query, **kw)
    return f"CREATE TEMPORARY TABLE {element.name} ON COMMIT DROP AS {body}"


@compiles(_CreateTempAs, "sqlite")
def _cta_sqlite(element: _CreateTempAs, compiler: Any, **kw: Any) -> str:
    return f"CREATE TEMPORARY TABLE {element.name} AS {compiler.process(element.query, **kw)}"


def _temp_name(conn: Connection, name: str) -> str:
    # Qualified, so a DROP can only ever hit the session's own temporary table, never a real one of that name.
    return dialect.of(conn).temp(name)


def drop_temp(conn: Connection, name: str) -> None:
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_temp_name(conn, name)}")


def temp_table(conn: Connection, name: str, query: Select[Any]) -> Table:
    """Materialise ``query`` as temporary table ``name`` in the caller's transaction and analyse it.

    Why: PostgreSQL runs ``CREATE TABLE ... AS SELECT`` with parallel workers (an ``INSERT ... SELECT`` never is,
    up to PG 15 at least), and the fresh statistics give the planner true row counts for every later join instead
    of a CTE's guess. The returned table carries the query's column names and types.
    """
    drop_temp(conn, name)
    conn.execute(_CreateTempAs(name, query))
    conn.exec_driver_sql(f"ANALYZE {_temp_name(conn, name)}")
    return Table(name, MetaData(), *[Column(c.name, c.type) for c in query.selected_columns])


__all__ = [
    "String",
    "days_between",
    "drop_temp",
    "json_bool",
    "json_obj",
    "json_pick",
    "money_text",
    "rows_table",
    "temp_table",
    "typed",
]
