"""Planner statistics after bulk writes (PostgreSQL): one home for the ``ANALYZE`` the ledger's own code runs.

Autovacuum analyzes a table once enough of it changed, but only after the writing transaction committed and a
naptime passed. A statement planned in between sees the table as it was when last analyzed - empty, for a new
ledger - and can pick a nested loop over what is now a million rows (the suspected cause of reconciliation's
posting-rules check running over 6.5 minutes on a ledger freshly loaded through Airflow; see BENCHMARKS.md).

- :func:`analyze` - inside the writing transaction, right after a bulk write whose rows the next statements read
  (``ANALYZE`` counts the transaction's own new rows). The merge uses it: its own changes are not yet in the
  statistics views, so it names the tables it loaded.
- :func:`analyze_stale` - at the start of a reader that must plan on fresh statistics (reconciliation): every table
  of the current schema whose committed changes since its last analysis exceed autovacuum's own rule (with a
  smaller base), and that the current role may analyze (owner or superuser; other tables are left to autovacuum).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, text

from writeoffs.db import dialect

#: Rows changed since the last analysis above which a table is stale: STALE_ROWS + STALE_FRACTION * its rows
#: (autovacuum's default is 50 + 10 %, but only after its naptime and the writer's commit).
STALE_ROWS = 1_000
STALE_FRACTION = 0.1


def analyze(conn: Connection, tables: Iterable[str]) -> list[str]:
    """``ANALYZE`` the named tables of the current schema (PostgreSQL; a no-op elsewhere). Names are the ledger's
    own table names (constants of the caller), never data."""
    if not dialect.of(conn).statistics:
        return []
    done = []
    for table in tables:
        conn.execute(text(f'ANALYZE "{table}"'))
        done.append(table)
    return done


def analyze_stale(conn: Connection) -> list[str]:
    """``ANALYZE`` the tables of the current schema whose statistics are stale (see module doc); returns them."""
    if not dialect.of(conn).statistics:
        return []
    stale = (
        conn.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid "
                "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' "
                "AND s.n_mod_since_analyze > :rows + :fraction * GREATEST(c.reltuples, 0) "
                "AND (pg_has_role(c.relowner, 'USAGE') "
                "     OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)) "
                "ORDER BY c.relname"
            ),
            {"rows": STALE_ROWS, "fraction": STALE_FRACTION},
        )
        .scalars()
        .all()
    )
    return analyze(conn, stale)
