"""Collection activities of a staged batch: keyed by occurrence (the k-th identical activity of a customer, invoice,
type and date), updated when their end date or outcome changed, inserted when new.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from writeoffs.ingest.merge.common import _sql


def _merge_activities(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    # No natural key in the source: the k-th identical activity of a (customer, invoice, type, date) is its key,
    # so a re-load inserts nothing while two calls on the same day stay two calls. Both statements
    # (sql/activities_update.<dialect>.sql: end date or outcome differ, null-safe; sql/activities_insert.sql: no
    # activity with the key yet) read the staged activities ranked the same way:
    # partitioned by the ledger's ids, not the source's references: the same partitions ((entity, customer ref)
    # is one customer id; an invoice ref is one invoice id, and a row whose ref matches no invoice is dropped by
    # the WHERE of the ranking; no ref is NULL either way), so the same occurrence numbers, but the sort of a first load
    # (1.85M activities at 1M invoices, spilled to disk) compares integers instead of text and carries only the
    # columns used (measured: BENCHMARKS.md).
    updated = _sql(conn, "activities_update", p)
    inserted = _sql(conn, "activities_insert", p)
    unmatched = conn.execute(
        text(
            "SELECT COUNT(*) FROM stg_activities s LEFT JOIN invoices i ON i.entity_code = s.entity "
            "AND i.invoice_ref = s.invoice_ref WHERE s.batch_id = :b AND s.invoice_ref IS NOT NULL AND i.id IS NULL"
        ),
        {"b": p["b"]},
    ).scalar_one()
    return {"activities_inserted": inserted, "activities_updated": updated, "activities_unmatched_invoice": unmatched}
