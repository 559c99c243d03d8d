"""Invoices of a staged batch: changed rows updated (never those in a status the ledger owns; net of what was
written off), new rows inserted, and the rows the ledger's state protected counted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from writeoffs.ingest.merge.common import _KEPT_WHILE_OPEN_SQL, _PROTECTED_SQL, _sql


def _merge_invoices(conn: Connection, p: dict[str, Any], *, bulk_mode: bool = False) -> dict[str, int]:
    values = {
        "customer_id": "c.id",
        "invoice_date": "s.invoice_date",
        "due_date": "s.due_date",
        "currency": "s.currency",
        "amount": "s.amount",
        "open_balance": "s.open_balance",
        "fx_rate": "s.fx_rate",
        "status": "CASE WHEN s.open_balance = 0 THEN 'paid' ELSE 'open' END",
        "balance_transferred_to_parent": "s.transferred_to_parent",
        "description": "s.description",
    }
    # Update first, then insert what is new: a plain INSERT with an anti-join is markedly cheaper than
    # INSERT ... ON CONFLICT for a million new rows, and the table lock (PostgreSQL) / single writer (SQLite)
    # means no other transaction can insert the same key in between. Unchanged rows are not rewritten.
    updated = _update_invoices(conn, p, values)
    is_new = _new_invoice_condition(conn, p, bulk_mode=bulk_mode)
    inserted = _sql(
        conn,
        f"""
        INSERT INTO invoices (entity_code, invoice_ref, source, {", ".join(values)})
        SELECT s.entity, s.invoice_ref, :src, {", ".join(values.values())}
        FROM stg_invoices s
        JOIN customers c ON c.entity_code = s.entity AND c.customer_ref = s.customer_ref
        WHERE s.batch_id = :b AND {is_new}
        """,
        p,
    )
    n = updated + inserted
    protected = conn.execute(
        text(
            "SELECT COUNT(*) FROM stg_invoices s"
            " JOIN invoices i ON i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref "
            f"WHERE s.batch_id = :b AND i.status IN {_PROTECTED_SQL}"
        ),
        {"b": p["b"]},
    ).scalar_one()
    return {
        "invoices_inserted": inserted,
        "invoices_updated": updated,
        "invoices_inserted_or_changed": n,
        "invoices_protected_by_ledger_state": protected,
    }


def _update_invoices(conn: Connection, p: dict[str, Any], values: dict[str, str]) -> int:
    """Staged invoices that changed, updated in place (``values``: column -> expression); returns the row count."""
    distinct = "IS DISTINCT FROM" if conn.dialect.name == "postgresql" else "IS NOT"
    # A partly written-off invoice is still open here, but the source does not know our write-off (this ledger is
    # the book of record for write-offs): its open balance is the source's minus what we wrote off, or the
    # write-off's reduction would be undone and the sub-ledger would no longer tie to the GL.
    net_open = (
        "CASE WHEN s.open_balance > invoices.written_off_amount"
        " THEN s.open_balance - invoices.written_off_amount ELSE 0 END"
    )
    updates = {
        **values,
        "open_balance": net_open,
        "status": (
            f"CASE WHEN ({net_open}) = 0 THEN 'paid' "
            f"WHEN invoices.status IN {_KEPT_WHILE_OPEN_SQL} THEN invoices.status ELSE 'open' END"
        ),
    }
    updated = _sql(
        conn,
        f"""
        UPDATE invoices SET {", ".join(f"{col} = {expr}" for col, expr in updates.items())}, source = :src
        FROM stg_invoices s JOIN customers c ON c.entity_code = s.entity AND c.customer_ref = s.customer_ref
        WHERE s.batch_id = :b AND invoices.entity_code = s.entity AND invoices.invoice_ref = s.invoice_ref
          AND invoices.status NOT IN {_PROTECTED_SQL}
          AND ({" OR ".join(f"invoices.{col} {distinct} {expr}" for col, expr in updates.items())})
        """,
        p,
    )
    return updated


def _new_invoice_condition(conn: Connection, p: dict[str, Any], *, bulk_mode: bool) -> str:
    """The SQL condition on staged row ``s`` that selects the invoices not in the ledger yet."""
    is_new = "NOT EXISTS (SELECT 1 FROM invoices i WHERE i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref)"
    if conn.dialect.name == "postgresql" and not conn.execute(text("SELECT EXISTS (SELECT 1 FROM invoices)")).scalar():
        # An empty table (the ledger's first load; merge() holds invoices SHARE ROW EXCLUSIVE, so no other writer
        # can add a row until the commit): every staged key is new, and probing the unique index for each row of a
        # million - an index this statement fills as it goes - was 5.3 s of the 17 s insert (EXPLAIN ANALYZE at
        # 1,000,000 invoices, BENCHMARKS.md). A key staged twice still fails on the unique constraint, as before.
        is_new = "TRUE"
    elif conn.dialect.name == "postgresql" and not bulk_mode:
        # Which staged rows are new is decided before the first one is inserted. Probed inside the INSERT, the
        # anti-join also visits the index entries of the rows this very statement has inserted so far (invisible
        # to it, but still in the index): on a small or empty table the planner may take the (entity_code, status)
        # index for the probe, and each probe then walks every row inserted before it -- quadratic. Measured at a
        # first load of 40,000 invoices: 22.7 s for the INSERT, 24.5 s the merge (20,000: 6.3 s). The bulk path
        # has no such index during the load (dropped, rebuilt after).
        conn.execute(text("DROP TABLE IF EXISTS pg_temp.merge_new_invoices"))
        conn.execute(
            text(
                "CREATE TEMPORARY TABLE merge_new_invoices ON COMMIT DROP AS "
                f"SELECT s.entity, s.invoice_ref FROM stg_invoices s WHERE s.batch_id = :b AND {is_new}"
            ),
            p,
        )
        conn.execute(text("ANALYZE pg_temp.merge_new_invoices"))
        is_new = "(s.entity, s.invoice_ref) IN (SELECT entity, invoice_ref FROM pg_temp.merge_new_invoices)"
    return is_new
