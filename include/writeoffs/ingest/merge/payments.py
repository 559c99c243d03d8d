"""Payments of a staged batch and their allocations, split into 'regular' cash and 'recovery' cash on what was
written off (:func:`_merge_allocations`).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, text

from writeoffs.accounting.status import RECOVERY_STATUSES, sql_list
from writeoffs.ingest.merge.common import _PROTECTED_SQL, _sql, log


def _merge_payments(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    pays = _sql(
        conn,
        """
        INSERT INTO payments (entity_code, payment_ref, customer_id, payment_date, currency, amount, source)
        SELECT s.entity, s.payment_ref, MIN(c.id), MIN(s.payment_date), MIN(s.currency), MAX(s.amount), :src
        FROM stg_payments s JOIN customers c ON c.entity_code = s.entity AND c.customer_ref = s.customer_ref
        WHERE s.batch_id = :b
        GROUP BY s.entity, s.payment_ref
        ON CONFLICT (entity_code, payment_ref) DO NOTHING
        """,
        p,
    )
    inserted = _merge_allocations(conn, p)
    unmatched, on_protected = conn.execute(
        text(
            f"""
            SELECT COALESCE(SUM(CASE WHEN i.id IS NULL THEN 1 ELSE 0 END), 0),
                   COALESCE(SUM(CASE WHEN i.status IN {_PROTECTED_SQL} THEN 1 ELSE 0 END), 0)
            FROM stg_payments s
            LEFT JOIN invoices i ON i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref
            WHERE s.batch_id = :b AND s.invoice_ref IS NOT NULL
            """
        ),
        {"b": p["b"]},
    ).one()
    return {
        "payments_inserted": pays,
        "allocations_inserted": inserted["regular"] + inserted["recovery"],
        "allocations_regular_inserted": inserted["regular"],
        "allocations_recovery_inserted": inserted["recovery"],
        "allocations_unmatched_invoice": int(unmatched),
        "payments_on_written_off_invoices": int(on_protected),
    }


_RECOVERY_SQL = sql_list(RECOVERY_STATUSES)


# Long: one INSERT ... SELECT whose CTEs are the allocation rule (room, regular, recovery), kept whole to be read as one
def _merge_allocations(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    """Staged (payment, invoice, applied amount) rows become allocations, split into 'regular' and 'recovery'.

    - Invoice written off (status written_off / partially_recovered / recovered): all of it is 'recovery'.
    - Invoice partly written off and still (partly) on the books: the part that was never written off takes the
      cash first - room = amount - written_off_amount - regular allocations already recorded on the invoice,
      consumed by this load's new payments in (payment date, payment ref) order - and only the excess is
      'recovery'. The room is derived from the allocation history, not from ``open_balance``: the source's open
      balance is authoritative and has already been merged, i.e. it may already reflect this very payment.
    - Any other invoice (open, paid, charged_off, reversed): 'regular'. A charged-off invoice is still a receivable:
      its cash is a payment (the source's open balance shows it), never recovery income.

    Neither kind touches ``open_balance`` (the source's balance is authoritative for open invoices; a recovery is
    booked by :mod:`writeoffs.recoveries_pending`, which moves ``recovered_amount``).

    Only (payment, invoice) pairs with no allocation yet are classified: sources resend their payment history
    every day, and a payment recorded as 'regular' before the invoice was written off must not turn into recovery
    income when it shows up again afterwards. Re-runs insert nothing (and the unique key (payment_id, invoice_id,
    kind) would refuse a duplicate anyway).
    """
    # Money arithmetic here is exact on both databases (NUMERIC(20, 4) on PostgreSQL, integer ten-thousandths on
    # SQLite, see writeoffs.db.money): no rounding needed, only + and - of amounts. The regular allocations
    # already recorded are aggregated once (prior), not looked up per row: the statement inserts into the table it
    # reads, and a per-row subquery would rescan the rows it has just added (quadratic on a first load).
    ctes = f"""
        staged AS (
            SELECT pm.id AS payment_id, pm.payment_ref, i.id AS invoice_id, MIN(s.payment_date) AS paid_on,
                   SUM(COALESCE(s.applied_amount, s.amount)) AS applied
            FROM stg_payments s
            JOIN payments pm ON pm.entity_code = s.entity AND pm.payment_ref = s.payment_ref
            JOIN invoices i ON i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref
            WHERE s.batch_id = :b
            GROUP BY pm.id, pm.payment_ref, i.id
        ),
        fresh AS (
            SELECT st.* FROM staged st
            WHERE st.applied > 0
              AND NOT EXISTS (SELECT 1 FROM payment_allocations a
                              WHERE a.payment_id = st.payment_id AND a.invoice_id = st.invoice_id)
        ),
        prior AS (
            SELECT a.invoice_id, SUM(a.amount) AS paid FROM payment_allocations a
            WHERE a.kind = 'regular' AND a.invoice_id IN (SELECT invoice_id FROM fresh)
            GROUP BY a.invoice_id
        ),
        roomy AS (
            SELECT f.payment_id, f.invoice_id, f.paid_on, f.applied, i.status,
                   CASE WHEN i.status IN {_RECOVERY_SQL} THEN 0
                        WHEN i.written_off_amount = 0 THEN f.applied
                        ELSE i.amount - i.written_off_amount - COALESCE(pr.paid, 0)
                             - COALESCE(SUM(f.applied) OVER (PARTITION BY f.invoice_id
                                                             ORDER BY f.paid_on, f.payment_ref, f.payment_id
                                                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                   END AS room
            FROM fresh f JOIN invoices i ON i.id = f.invoice_id LEFT JOIN prior pr ON pr.invoice_id = f.invoice_id
        ),
        split AS (
            SELECT payment_id, invoice_id, paid_on, status, applied,
                   CASE WHEN room <= 0 THEN 0 WHEN room >= applied THEN applied ELSE room END AS regular
            FROM roomy
        )
    """
    rows = f"""
        SELECT payment_id, invoice_id, regular, paid_on, 'regular' FROM split
        WHERE regular > 0 AND status NOT IN {_PROTECTED_SQL}
        UNION ALL
        SELECT payment_id, invoice_id, applied - regular, paid_on, 'recovery' FROM split
        WHERE applied - regular > 0
    """
    insert = "INSERT INTO payment_allocations (payment_id, invoice_id, amount, allocated_on, kind)"
    conflict = "ON CONFLICT (payment_id, invoice_id, kind) DO NOTHING RETURNING kind"
    t0 = time.perf_counter()
    if conn.dialect.name == "postgresql":
        # Counted in the database: a first load can insert a million allocations.
        got = conn.execute(
            text(f"WITH {ctes}, ins AS ({insert} {rows} {conflict}) SELECT kind, COUNT(*) FROM ins GROUP BY kind"),
            {"b": p["b"]},
        ).all()
        counts = {kind: int(n) for kind, n in got}
    else:
        counts = {}
        for kind in conn.execute(text(f"WITH {ctes} {insert} {rows} {conflict}"), {"b": p["b"]}).scalars():
            counts[kind] = counts.get(kind, 0) + 1
    log.debug("%.2fs allocations %s", time.perf_counter() - t0, counts)
    return {"regular": counts.get("regular", 0), "recovery": counts.get("recovery", 0)}
