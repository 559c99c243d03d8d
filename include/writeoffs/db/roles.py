"""Least privilege on PostgreSQL: the ledger's owner role and the runtime role the DAGs and the CLI connect as.

- The **owner** runs the migrations (``python -m writeoffs init-db``): it owns the tables, the triggers and the guard
  functions, so only it (or a superuser) can alter, disable or drop them.
- The **runtime** role (``python -m writeoffs db-roles RUNTIME_ROLE``, run as the owner after every migration) can
  read every ledger table and insert into them, update only the tables whose rows have a lifecycle (and, on
  ``journal_entries`` and ``fiscal_periods``, only the lifecycle columns), and delete only from the work tables a run
  replaces (staging, quarantine, run details). It gets no DDL (no ``CREATE`` on the schema, it owns nothing), no
  ``TRUNCATE``, no ``TRIGGER``, and no UPDATE or DELETE at all on ``journal_lines`` and ``audit_log``. What it may
  update is still bound by the ledger's triggers (posted entries and closed periods are final).

Every table the migrations create must be classified below (``tests/unit/test_db_roles.py`` enforces it), so that a
new table is a decision, not an accident. The grants are re-applied from scratch each time (REVOKE ALL first).
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from sqlalchemy import Connection, text

from writeoffs.db import dialect
from writeoffs.errors import WriteoffError

#: Tables the runtime role may UPDATE: ``None`` = any column, else only these columns.
RUNTIME_UPDATE: dict[str, tuple[str, ...] | None] = {
    "journal_entries": ("status", "posted_at"),  # pending -> posted, once; the triggers refuse anything else
    "fiscal_periods": ("status", "closed_at", "closed_by"),  # open -> closed, once (migration 0009)
    "writeoffs": None,
    "writeoff_batches": None,
    "invoices": None,
    "customers": None,
    "holds": None,
    "collection_activities": None,
    "ingest_batches": None,
    "selection_runs": None,
    "recon_runs": None,
}
#: Work tables whose rows a run replaces: the runtime role may DELETE from these only.
RUNTIME_DELETE: frozenset[str] = frozenset(
    {
        "aging_runs",
        "aging_snapshots",
        "ingest_quarantine",
        "stg_invoices",
        "stg_payments",
        "stg_activities",
        "writeoff_batches",
        "selection_decisions",
        "recon_breaks",
        "validation_runs",
    }
)
#: Insert-and-read only: the books of record and the audit trail.
APPEND_ONLY: frozenset[str] = frozenset(
    {
        "journal_lines",
        "audit_log",
        "invoice_movements",
        "invoice_attribute_changes",  # written by the invoices trigger (migration 0017), like the movements
        # Derived from the movements (migration 0016): built, never changed; reconciliation recomputes them.
        "balance_checkpoints",
        "balance_checkpoint_rows",
        "balance_checkpoint_summary",
    }
)
#: Insert-and-read only as well: reference data and records that are never changed once written.
INSERT_ONLY: frozenset[str] = frozenset(
    {
        "accounts",
        "allowance_estimates",
        "approvals",
        "currencies",
        "legal_entities",
        "payment_allocations",
        "payments",
        "policy_versions",
        "recoveries",
    }
)
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class RoleError(WriteoffError):
    """The runtime role cannot be set up (bad name, not PostgreSQL, or the owner lacks a privilege)."""


def ledger_tables() -> list[str]:
    from writeoffs.db.migrate import full_metadata

    return sorted(full_metadata().tables)


def grant_statements(schema: str, role: str) -> list[str]:
    """The statements that give ``role`` exactly the runtime privileges on the ledger in ``schema``."""
    if not _ROLE_NAME.match(role):
        raise RoleError(f"db-roles: role name {role!r} must be lower-case letters, digits and _ (max 63)")
    s = '"' + schema.replace('"', '""') + '"'
    out = [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {role}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM {role}",
        f"REVOKE ALL ON SCHEMA {s} FROM {role}",
        f"GRANT USAGE ON SCHEMA {s} TO {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {role}",
    ]
    tables = ledger_tables()
    unclassified = set(tables) - set(RUNTIME_UPDATE) - RUNTIME_DELETE - APPEND_ONLY - INSERT_ONLY
    if unclassified:
        raise RoleError(f"db-roles: tables without a runtime privilege decision: {', '.join(sorted(unclassified))}")
    for table in tables:
        out.append(f"GRANT INSERT ON {s}.{table} TO {role}")
        if table in RUNTIME_UPDATE:
            cols = RUNTIME_UPDATE[table]
            columns = f" ({', '.join(cols)})" if cols else ""
            out.append(f"GRANT UPDATE{columns} ON {s}.{table} TO {role}")
        if table in RUNTIME_DELETE:
            out.append(f"GRANT DELETE ON {s}.{table} TO {role}")
    return out


def grant_runtime(conn: Connection, role: str, *, create: bool = False, password: str | None = None) -> int:
    """Apply the runtime grants to ``role`` on the ledger in the connection's current schema; returns statements run.

    ``create`` also creates the role (LOGIN, no other attribute; needs CREATEROLE) when it does not exist.
    Run as the owner of the ledger's tables (the role that ran the migrations).
    """
    if not dialect.of(conn).roles:
        raise RoleError("db-roles: database roles exist on PostgreSQL only; an SQLite ledger is protected by its file")
    statements = grant_statements(conn.execute(text("SELECT current_schema()")).scalar_one(), role)
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar()
    if not exists:
        if not create:
            raise RoleError(f"db-roles: role {role} does not exist (pass --create, or create it as a superuser)")
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT")
    if password is not None:
        conn.execute(text(f"ALTER ROLE {role} PASSWORD :p"), {"p": password})
    for stmt in statements:
        conn.exec_driver_sql(stmt)
    return len(statements)


# --- CLI ------------------------------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """``python -m writeoffs db-roles RUNTIME_ROLE [--create] [--password-env VAR]`` (run as the ledger owner)."""
    p = subparsers.add_parser("db-roles", help="grant the PostgreSQL runtime role its least privileges (as owner)")
    p.add_argument("runtime_role")
    p.add_argument("--create", action="store_true", help="create the role (LOGIN) if it does not exist")
    p.add_argument("--password-env", help="set the role's password from this environment variable")
    p.set_defaults(func=_cmd_roles)


def _cmd_roles(args: argparse.Namespace) -> int:
    import os

    from writeoffs.db.engine import open_ledger

    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            raise RoleError(f"db-roles: environment variable {args.password_env} is empty")
    engine = open_ledger(args.ledger_url)
    with engine.begin() as conn:
        n = grant_runtime(conn, args.runtime_role, create=args.create, password=password)
    print(f"db-roles: {args.runtime_role} granted the runtime privileges ({n} statements)")
    return 0
