"""One ledger-wide lock per purpose, held to the end of the caller's transaction.

PostgreSQL: a transaction-level advisory lock keyed by (purpose, schema), so ledgers in other schemas of the same
database never wait for, or deadlock with, this one. SQLite: the database's single writer lock, taken by a no-op
write. pysqlite begins a transaction only at the first write, so without it a read that comes first (e.g. the audit
chain's last row) runs outside any transaction, and two processes could both read the same row and append after it.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

#: Purposes, one key each (any int4 not used by another purpose).
AUDIT_APPEND = 7_311_001
ALLOWANCE_ESTIMATE = 7_311_007
SAMPLE_SEED = 7_311_017


def ledger_lock(conn: Connection, purpose: int) -> None:
    """Serialise ``purpose`` within this ledger until the transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:k AS integer), hashtext(current_schema()))"), {"k": purpose}
        )
    else:
        # A write statement that changes nothing: it begins the transaction and takes the writer lock now (waiting up
        # to the busy timeout), so what the caller reads next is the latest data and stays so until the commit.
        conn.execute(text("UPDATE alembic_version SET version_num = version_num WHERE 0 = 1"))
