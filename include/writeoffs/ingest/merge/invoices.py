"""Invoices of a staged batch: changed rows updated (never those in a status the ledger owns; net of what was
written off), new rows inserted, and the rows the ledger's state protected counted.

The update and the counts are ``sql/invoices_*.sql``; the insert is SQLAlchemy Core (:func:`_insert`: one column
mapping, three ways to tell a new invoice). The columns a source sets (insert and update alike): ``customer_id``
(the customer's id), ``invoice_date``, ``due_date``, ``currency``, ``amount``, ``open_balance``, ``fx_rate``,
``status`` ('paid' at a zero open balance, else 'open'), ``balance_transferred_to_parent`` and ``description``, and
``source``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    column,
    exists,
    insert,
    select,
    table,
    text,
    true,
    tuple_,
)

from writeoffs.db import dialect
from writeoffs.db.schema import customers, invoices
from writeoffs.ingest.merge.common import _sql, log, statement
from writeoffs.ingest.tables import stg_invoices

#: The staged invoice ``s`` and its customer ``c``, as the insert reads them.
_S, _C = stg_invoices.alias("s"), customers.alias("c")
#: The new keys listed before the insert (PostgreSQL, see :func:`_new_invoices`).
_NEW_LISTED = table("merge_new_invoices", column("entity"), column("invoice_ref"), schema="pg_temp")


def _merge_invoices(conn: Connection, p: dict[str, Any], *, bulk_mode: bool = False) -> dict[str, int]:
    # Update first, then insert what is new: a plain INSERT with an anti-join is markedly cheaper than
    # INSERT ... ON CONFLICT for a million new rows, and the table lock (PostgreSQL) / single writer (SQLite)
    # means no other transaction can insert the same key in between. Unchanged rows are not rewritten.
    updated = _update_invoices(conn, p)
    inserted = _insert(conn, p, _new_invoices(conn, p, bulk_mode=bulk_mode))
    n = updated + inserted
    protected = conn.execute(statement(conn, "invoices_protected"), {"b": p["b"]}).scalar_one()
    return {
        "invoices_inserted": inserted,
        "invoices_updated": updated,
        "invoices_inserted_or_changed": n,
        "invoices_protected_by_ledger_state": protected,
    }


def _update_invoices(conn: Connection, p: dict[str, Any]) -> int:
    """Staged invoices that changed, updated in place; returns the row count.

    A partly written-off invoice is still open here, but the source does not know our write-off (this ledger is
    the book of record for write-offs): its open balance is the source's minus what we wrote off (``CASE WHEN
    s.open_balance > invoices.written_off_amount ...`` in the statement), or the write-off's reduction would be
    undone and the sub-ledger would no longer tie to the GL. Its status becomes 'paid' at a zero net balance, keeps
    a status the ledger declared (charged_off, reversed) while open, else 'open'. A row is updated only when a
    column differs (``IS DISTINCT FROM``, null-safe: ``sql/invoices_update.sql``).
    """
    return _sql(conn, "invoices_update", p)


def _insert(conn: Connection, p: dict[str, Any], is_new: ColumnElement[bool]) -> int:
    """Insert the staged invoices of the batch for which ``is_new`` holds (see the module doc for the columns)."""
    s, c = _S, _C
    rows = (
        select(
            s.c.entity,
            s.c.invoice_ref,
            bindparam("src"),
            c.c.id,
            s.c.invoice_date,
            s.c.due_date,
            s.c.currency,
            s.c.amount,
            s.c.open_balance,
            s.c.fx_rate,
            case((s.c.open_balance == 0, "paid"), else_="open"),
            s.c.transferred_to_parent,
            s.c.description,
        )
        .select_from(s.join(c, and_(c.c.entity_code == s.c.entity, c.c.customer_ref == s.c.customer_ref)))
        .where(s.c.batch_id == bindparam("b"), is_new)
    )
    names = ["entity_code", "invoice_ref", "source", "customer_id", "invoice_date", "due_date", "currency", "amount"]
    names += ["open_balance", "fx_rate", "status", "balance_transferred_to_parent", "description"]
    stmt = insert(invoices).from_select(names, rows).execution_options(preserve_rowcount=True)
    n = conn.execute(stmt, p).rowcount
    log.debug("%d invoices inserted", n)
    return n


def _new_invoices(conn: Connection, p: dict[str, Any], *, bulk_mode: bool) -> ColumnElement[bool]:
    """The condition on the staged invoice ``s`` that it is not in the ledger yet.

    By default the anti-join ``NOT EXISTS`` on the invoice's key decides, inside the INSERT.
    """
    s, i = _S, invoices.alias("i")
    d = dialect.of(conn)
    if d.row_locks and not conn.execute(text("SELECT EXISTS (SELECT 1 FROM invoices)")).scalar():
        # An empty table (the ledger's first load; merge() holds invoices SHARE ROW EXCLUSIVE, so no other writer
        # can add a row until the commit): every staged key is new, and probing the unique index for each row of a
        # million - an index this statement fills as it goes - was 5.3 s of the 17 s insert (EXPLAIN ANALYZE at
        # 1,000,000 invoices, BENCHMARKS.md). A key staged twice still fails on the unique constraint, as before.
        return true()
    if d.statistics and not bulk_mode:
        # Which staged rows are new is decided before the first one is inserted. Probed inside the INSERT, the
        # anti-join also visits the index entries of the rows this very statement has inserted so far (invisible
        # to it, but still in the index): on a small or empty table the planner may take the (entity_code, status)
        # index for the probe, and each probe then walks every row inserted before it -- quadratic. Measured at a
        # first load of 40,000 invoices: 22.7 s for the INSERT, 24.5 s the merge (20,000: 6.3 s). The bulk path
        # has no such index during the load (dropped, rebuilt after). The new keys go to a temporary table
        # (analyzed, for the planner) that the insert reads.
        conn.execute(text("DROP TABLE IF EXISTS pg_temp.merge_new_invoices"))
        conn.execute(statement(conn, "invoices_new_listed"), p)
        conn.execute(text("ANALYZE pg_temp.merge_new_invoices"))
        return tuple_(s.c.entity, s.c.invoice_ref).in_(select(_NEW_LISTED.c.entity, _NEW_LISTED.c.invoice_ref))
    return ~exists().where(i.c.entity_code == s.c.entity, i.c.invoice_ref == s.c.invoice_ref)
