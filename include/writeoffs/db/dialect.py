"""The dialect adapter: the one module that tells SQLite from PostgreSQL.

The ledger runs on PostgreSQL (production) and SQLite (the embedded default). Code elsewhere never asks which one it
is on: it asks :func:`of` for the connection's :class:`Dialect` and uses what that offers —

- **capabilities**, named by what they allow: ``row_locks`` (``SELECT … FOR UPDATE``, ``LOCK TABLE``), ``arrays``
  (array parameters, ``= ANY``, ``unnest``), ``bulk_copy`` (``COPY`` and the bulk-load window), ``statistics``
  (``ANALYZE`` feeds a cost-based planner worth refreshing), ``roles`` (database roles and grants), ``snapshots``
  (a read-only repeatable-read transaction), ``errors_abort_transaction`` (guard a statement that may fail with a
  savepoint), ``native_decimal`` (an exact decimal type; SQLite stores money as integers, ``db.money``),
  ``native_dates``, ``conflicts_refused``, ``session_settings``, ``sha256``, ``row_json``, ``writable_ctes``;
- **SQL fragments** that differ in spelling: :meth:`Dialect.date`,
  :meth:`Dialect.days_between`, :meth:`Dialect.temp`;
- **statements** that differ in form: :meth:`Dialect.insert` (with ``ON CONFLICT``), :func:`set_local`,
  :func:`read_only` / :func:`end_read_only`. Statistics: ``db.stats``.

A database that is neither is refused when asked (fail closed): nothing guesses a dialect. ``tests/unit/
test_dialect_adapter.py`` fails on any module under ``include/``, ``plugins/`` or ``dags/`` (migrations aside: they
are history) that reads a dialect's name or imports a SQLAlchemy dialect package itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Date, Integer, Table, cast, func, literal, text
from sqlalchemy.dialects import postgresql as _postgresql
from sqlalchemy.dialects import sqlite as _sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.engine.interfaces import Dialect as _SADialect

from writeoffs.errors import LedgerError

#: PostgreSQL's array type, for the set-wise paths that only run where :attr:`Dialect.arrays` holds.
ARRAY = _postgresql.ARRAY


class UnsupportedDatabase(LedgerError):
    """The ledger is on a database that is neither PostgreSQL nor SQLite."""


@dataclass(frozen=True)
class Dialect:
    """What one database offers the ledger's code (see the module docstring)."""

    name: str  # for messages and logs only: code decides by the capabilities below
    row_locks: bool
    arrays: bool
    bulk_copy: bool
    statistics: bool
    roles: bool
    snapshots: bool
    #: a failed statement aborts the whole transaction unless it ran inside a savepoint (``begin_nested()``);
    #: SQLite undoes the failed statement alone
    errors_abort_transaction: bool
    native_decimal: bool
    native_dates: bool  # DATE columns hold dates (SQLite: ISO text under a declared type)
    row_json: bool  # row_to_json(row): a whole row as JSON without naming its columns
    file_database: bool
    #: the ledger's guard triggers refuse every INSERT that collides with an existing row of a guarded table,
    #: whatever its conflict clause (SQLite, where ``REPLACE`` exists: migration 0009): offer only new rows there
    conflicts_refused: bool
    #: transaction-scoped custom settings that triggers read (``set_config`` / ``current_setting``, ``SET LOCAL``);
    #: SQLite's triggers read a context table instead (migration 0013)
    session_settings: bool
    writable_ctes: bool  # INSERT/UPDATE/DELETE … RETURNING as a CTE of a statement (WITH ins AS (INSERT …) SELECT …)
    sha256: bool  # sha256() and string_agg(... ORDER BY ...) in SQL: a digest computed on the server

    def date(self, param: str) -> str:
        """``param`` (a bind such as ``:d``) as a date in SQL text: PostgreSQL needs the cast, SQLite keeps ISO text."""
        return f"CAST({param} AS DATE)" if self.name == "postgresql" else param

    def days_text(self, column: str, param: str = ":d") -> str:
        """Whole days from ``column`` to the date bind ``param``, as SQL text (``column``: the caller's own SQL)."""
        if self.name == "postgresql":
            return f"(CAST({param} AS DATE) - {column})"
        return f"CAST(julianday({param}) - julianday({column}) AS INTEGER)"

    def days_apart(self, start: Any, end: Any) -> Any:
        """Whole days from the date expression ``start`` to ``end`` (e.g. two columns) as an SQL expression."""
        if self.name == "postgresql":
            return cast(end - start, Integer)  # date - date is an integer on PostgreSQL
        return cast(func.julianday(end) - func.julianday(start), Integer)

    def days_between(self, as_of: date, column: Any) -> Any:
        """Whole days from ``column`` to ``as_of`` as an SQL expression (:meth:`days_apart` from a date)."""
        return self.days_apart(column, literal(as_of, Date))

    def temp(self, name: str) -> str:
        """The qualified name of the session's temporary table ``name``."""
        return f"pg_temp.{name}" if self.name == "postgresql" else f"temp.{name}"

    def insert(self, table: Table) -> Any:
        """An ``INSERT`` on ``table`` that offers ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
        return (_postgresql.insert if self.name == "postgresql" else _sqlite.insert)(table)

    def create_temp(self, name: str, columns: str) -> str:
        """DDL of a temporary table ``name`` (from :meth:`temp`) with ``columns`` (the caller's constant DDL) that is
        dropped at the end of the transaction where the database can (PostgreSQL ``ON COMMIT DROP``)."""
        tail = " ON COMMIT DROP" if self.name == "postgresql" else ""
        return f"CREATE TEMPORARY TABLE {name} ({columns}){tail}"

    def sql_file(self, name: str) -> str:
        """The file name of statement ``name``'s variant for this database (``db.sqlfiles``)."""
        return f"{name}.{self.name}.sql"

    def sqlalchemy_dialect(self) -> _SADialect:
        """A SQLAlchemy dialect object, to compile statements to this database's SQL text."""
        return _postgresql.dialect() if self.name == "postgresql" else _sqlite.dialect()


POSTGRESQL = Dialect(
    name="postgresql",
    row_locks=True,
    arrays=True,
    bulk_copy=True,
    statistics=True,
    roles=True,
    snapshots=True,
    errors_abort_transaction=True,
    native_decimal=True,
    native_dates=True,
    row_json=True,
    file_database=False,
    conflicts_refused=False,
    sha256=True,
    writable_ctes=True,
    session_settings=True,
)
SQLITE = Dialect(
    name="sqlite",
    row_locks=False,
    arrays=False,
    bulk_copy=False,
    statistics=False,
    roles=False,
    snapshots=False,
    errors_abort_transaction=False,
    native_decimal=False,
    native_dates=False,
    row_json=False,
    file_database=True,
    conflicts_refused=True,
    sha256=False,
    writable_ctes=False,
    session_settings=False,
)
_BY_NAME = {d.name: d for d in (POSTGRESQL, SQLITE)}


def of(bind: Connection | Engine | _SADialect | URL | Dialect | str) -> Dialect:
    """The :class:`Dialect` of a connection, engine, SQLAlchemy dialect, URL or URL string; anything else is refused."""
    if isinstance(bind, Dialect):
        return bind
    if isinstance(bind, (Connection, Engine)):
        name = bind.dialect.name
    elif isinstance(bind, URL):
        name = bind.get_backend_name()
    elif isinstance(bind, str):
        name = make_url(bind).get_backend_name() if "://" in bind else bind
    else:
        name = getattr(bind, "name", None)
    found = _BY_NAME.get(name) if isinstance(name, str) else None
    if found is None:
        raise UnsupportedDatabase(f"the ledger runs on PostgreSQL or SQLite, not on {str(name)[:40]!r}")
    return found


#: The oldest SQLite the ledger's SQL runs on: ``IS DISTINCT FROM`` (3.39), ``RETURNING`` (3.35), ``UPDATE … FROM``
#: (3.33). Python links the system's SQLite; Debian 12 ships 3.40.
SQLITE_MIN = (3, 39, 0)


def check_sqlite(version: tuple[int, ...] | None = None) -> None:
    """Refuse an SQLite older than :data:`SQLITE_MIN` (``version``: the linked library's, by default) with one line
    saying what to do, before any statement fails half-way with a syntax error."""
    import sqlite3

    found = version or sqlite3.sqlite_version_info
    if tuple(found) < SQLITE_MIN:
        raise UnsupportedDatabase(
            f"the ledger needs SQLite {'.'.join(map(str, SQLITE_MIN))} or later; this Python links SQLite "
            f"{'.'.join(map(str, found))} (use a newer Python build or OS, or a PostgreSQL ledger)"
        )


def money_as_integers(bind: Any) -> bool:
    """Does ``bind``'s database store money as integers (no exact decimal type; ``db.money``)? SQLAlchemy's generic
    compiler (``str(statement)``: text for a log or a test, never executed) answers no, as it always did."""
    if getattr(bind, "name", None) == "default" and isinstance(bind, _SADialect):
        return False
    return not of(bind).native_decimal


def set_local(conn: Connection, setting: str, value: str) -> None:
    """``SET LOCAL setting = 'value'`` for the rest of the caller's transaction (PostgreSQL; SQLite has no such
    settings: a no-op). ``setting`` and ``value`` are the caller's constants, never input."""
    if of(conn).session_settings:
        conn.execute(text(f"SET LOCAL {setting} = '{value}'"))


def read_only(conn: Connection) -> None:
    """Make the rest of ``conn``'s transaction read-only (SQLite: the connection, until :func:`end_read_only`)."""
    if of(conn).name == "postgresql":
        conn.execute(text("SET TRANSACTION READ ONLY"))
    else:
        conn.exec_driver_sql("PRAGMA query_only = ON")


def end_read_only(conn: Connection) -> None:
    """Undo :func:`read_only` after the transaction ended (PostgreSQL ends it with the transaction: a no-op)."""
    if of(conn).name == "sqlite":
        conn.exec_driver_sql("PRAGMA query_only = OFF")
