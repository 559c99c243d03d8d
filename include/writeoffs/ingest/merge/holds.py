"""Holds derived from the invoices' dispute and payment-plan flags: opened for flagged invoices, closed when the flag
goes (only the holds this ingestion opened), and disputes on paid invoices closed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from writeoffs.db import stats
from writeoffs.ingest.merge.common import _sql

#: Holds derived from invoice flags: (hold type, flag column, start date expression).
_HOLD_FLAGS = (("dispute", "disputed", "s.dispute_since"), ("payment_plan", "payment_plan", ":d"))


def _merge_holds(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    note = f"ingest:{p['src']}"
    # Without fresh statistics the planner takes holds for empty and anti-joins thousands of new holds against it
    # in a nested loop (measured: 12 s on a re-run of a million invoices instead of 0.3 s).
    stats.analyze(conn, ("holds",))

    def open_ingest_holds() -> dict[str, int]:
        # Only holds this ingestion opened are closed by it; holds set by people stay until people end them.
        return dict(
            conn.execute(
                text(
                    "SELECT hold_type, COUNT(*) FROM holds WHERE end_date IS NULL AND note = :note GROUP BY hold_type"
                ),
                {"note": note},
            ).all()
        )

    before = open_ingest_holds()
    flagged = " UNION ALL ".join(
        f"SELECT s.entity, s.invoice_ref, '{ht}' AS hold_type, COALESCE({since}, :d) AS start_date"
        f" FROM stg_invoices s WHERE s.batch_id = :b AND s.{flag}"
        for ht, flag, since in _HOLD_FLAGS
    )
    # Both hold types in one statement: the invoices (a million fresh rows on a first load) are joined once.
    # The open holds are read once, before the first insert (MATERIALIZED): a NOT EXISTS probing holds directly
    # would re-read the pages this very statement is filling, once per new hold (quadratic: 3.7 s for 30k holds).
    # Hold types and flag columns are constants of this module, never data.
    _sql(
        conn,
        f"""
        WITH open_holds AS MATERIALIZED (
            SELECT invoice_id, hold_type FROM holds WHERE end_date IS NULL AND invoice_id IS NOT NULL
        )
        INSERT INTO holds (customer_id, invoice_id, hold_type, start_date, note)
        SELECT i.customer_id, i.id, f.hold_type, f.start_date, :note
        FROM ({flagged}) AS f
        JOIN invoices i ON i.entity_code = f.entity AND i.invoice_ref = f.invoice_ref
        WHERE NOT EXISTS (SELECT 1 FROM open_holds h WHERE h.invoice_id = i.id AND h.hold_type = f.hold_type)
          AND (f.hold_type <> 'dispute' OR i.status <> 'paid')
        """,
        {**p, "note": note},
    )
    # The insert only adds open ingestion holds, and the invoices lock keeps other merges out: the difference is
    # exactly what it opened.
    after = open_ingest_holds()
    for hold_type, flag, _since in _HOLD_FLAGS:
        out[f"{hold_type}_holds_opened"] = after.get(hold_type, 0) - before.get(hold_type, 0)
        # Counted before the insert: the holds it opened are on flagged invoices, never the ones to close.
        if not before.get(hold_type):
            out[f"{hold_type}_holds_closed"] = 0
            continue
        stats.analyze(conn, ("holds",))  # a few rows against a million: the planner must know it
        out[f"{hold_type}_holds_closed"] = _sql(
            conn,
            f"""
            UPDATE holds SET end_date = CASE WHEN holds.start_date > :d THEN holds.start_date ELSE :d END
            FROM invoices i, stg_invoices s
            WHERE holds.invoice_id = i.id AND s.entity = i.entity_code AND s.invoice_ref = i.invoice_ref
              AND s.batch_id = :b AND NOT s.{flag}
              AND holds.hold_type = :ht AND holds.end_date IS NULL AND holds.note = :note
            """,
            {**p, "ht": hold_type, "note": note},
        )
    # A dispute on an invoice that is paid in full is over, whoever opened the hold: it is closed here (set-wise,
    # counted in the merge summary that the ingest.merged audit row records) and none is opened above, so an
    # export that keeps flagging a paid invoice disputed does not open and close a hold every day. Payment-plan
    # holds and holds on written-off invoices are left to people (their end is a resolution someone records).
    out["dispute_holds_closed_on_paid"] = _sql(
        conn,
        """
        UPDATE holds SET end_date = CASE WHEN holds.start_date > :d THEN holds.start_date ELSE :d END
        WHERE holds.end_date IS NULL AND holds.hold_type = 'dispute' AND holds.invoice_id IS NOT NULL
          AND EXISTS (SELECT 1 FROM invoices i WHERE i.id = holds.invoice_id AND i.status = 'paid')
        """,
        p,
    )
    return out
