"""Locks held to the end of the caller's transaction: one ledger-wide lock per purpose, and row locks.

PostgreSQL: a transaction-level advisory lock keyed by (purpose, schema), so ledgers in other schemas of the same
database never wait for, or deadlock with, this one. SQLite: the database's single writer lock, taken by a no-op
write. pysqlite begins a transaction only at the first write, so without it a read that comes first (e.g. the audit
chain's last row) runs outside any transaction, and two processes could both read the same row and append after it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, Table, select, text, update

from writeoffs.db import dialect

#: Purposes, one key each (any int4 not used by another purpose).
AUDIT_APPEND = 7_311_001
ALLOWANCE_ESTIMATE = 7_311_007
SAMPLE_SEED = 7_311_017


def ledger_lock(conn: Connection, purpose: int) -> None:
    """Serialise ``purpose`` within this ledger until the transaction ends."""
    if dialect.of(conn).row_locks:
        conn.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:k AS integer), hashtext(current_schema()))"), {"k": purpose}
        )
    else:
        # A write statement that changes nothing: it begins the transaction and takes the writer lock now (waiting up
        # to the busy timeout), so what the caller reads next is the latest data and stays so until the commit.
        conn.execute(text("UPDATE alembic_version SET version_num = version_num WHERE 0 = 1"))


def locked(conn: Connection, table: Table, *where: Any, columns: tuple[Any, ...] = ()) -> Select:
    """A SELECT of ``table``'s rows matching ``where`` (of ``columns``, default all), to run next: the rows are
    locked until the transaction ends against writers that lock them too.

    PostgreSQL: ``FOR UPDATE``. SQLite has no row locks: a no-op UPDATE of those rows, run here as the first
    statement, takes the database's writer lock now (waiting up to the busy timeout), so the SELECT reads the latest
    data and no other writer changes it before the commit. Reading first instead would run on a snapshot that fails
    to upgrade to a write later.
    """
    query = select(*columns).select_from(table) if columns else select(table)
    query = query.where(*where)
    if dialect.of(conn).row_locks:
        return query.with_for_update()
    key = next(iter(table.primary_key.columns))
    conn.execute(update(table).where(*where).values({key.name: key}))
    return query
