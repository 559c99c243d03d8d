"""One ledger-wide lock per purpose, held to the end of the caller's transaction.

PostgreSQL: a transaction-level advisory lock keyed by (purpose, schema), so ledgers in other schemas of the same
database never wait for, or deadlock with, this one. SQLite: nothing to do; a writing transaction already holds the
database's single writer lock.
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
