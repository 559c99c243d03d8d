"""Collection activities of a staged batch: keyed by occurrence (the k-th identical activity of a customer, invoice,
type and date), updated when their end date or outcome changed, inserted when new.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from writeoffs.ingest.merge.common import _sql


def _merge_activities(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    # No natural key in the source: the k-th identical activity of a (customer, invoice, type, date) is its key,
    # so a re-load inserts nothing while two calls on the same day stay two calls.
    distinct = "IS DISTINCT FROM" if conn.dialect.name == "postgresql" else "IS NOT"
    # Partitioned by the ledger's ids, not the source's references: the same partitions ((entity, customer ref)
    # is one customer id; an invoice ref is one invoice id, and a row whose ref matches no invoice is dropped by
    # the WHERE below; no ref is NULL either way), so the same occurrence numbers, but the sort of a first load
    # (1.85M activities at 1M invoices, spilled to disk) compares integers instead of text and carries only the
    # columns used (measured: BENCHMARKS.md).
    ranked = """
        SELECT s.activity_type, s.activity_date, s.end_date, s.outcome, c.id AS customer_id, i.id AS invoice_id,
               CAST(ROW_NUMBER() OVER (PARTITION BY c.id, i.id, s.activity_type, s.activity_date
                                       ORDER BY s.source_file, s.source_row)
                    AS VARCHAR(12)) AS occurrence
        FROM stg_activities s
        JOIN customers c ON c.entity_code = s.entity AND c.customer_ref = s.customer_ref
        LEFT JOIN invoices i ON i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref
        WHERE s.batch_id = :b AND (s.invoice_ref IS NULL OR i.id IS NOT NULL)
    """
    same = """a.customer_id = r.customer_id AND a.source = :src AND a.activity_type = r.activity_type
              AND a.activity_date = r.activity_date AND a.source_ref = r.occurrence
              AND (a.invoice_id = r.invoice_id OR (a.invoice_id IS NULL AND r.invoice_id IS NULL))"""
    updated = _sql(
        conn,
        f"""
        UPDATE collection_activities SET end_date = r.end_date, outcome = r.outcome
        FROM ({ranked}) AS r
        WHERE collection_activities.customer_id = r.customer_id AND collection_activities.source = :src
          AND collection_activities.activity_type = r.activity_type
          AND collection_activities.activity_date = r.activity_date
          AND collection_activities.source_ref = r.occurrence
          AND (collection_activities.invoice_id = r.invoice_id
               OR (collection_activities.invoice_id IS NULL AND r.invoice_id IS NULL))
          AND (collection_activities.end_date {distinct} r.end_date
               OR collection_activities.outcome {distinct} r.outcome)
        """,
        p,
    )
    inserted = _sql(
        conn,
        f"""
        INSERT INTO collection_activities (customer_id, invoice_id, activity_type, activity_date, end_date, outcome,
                                           source, source_ref)
        SELECT r.customer_id, r.invoice_id, r.activity_type, r.activity_date, r.end_date, r.outcome,
               CAST(:src AS VARCHAR(64)), r.occurrence
        FROM ({ranked}) AS r
        WHERE NOT EXISTS (SELECT 1 FROM collection_activities a WHERE {same})
        """,
        p,
    )
    unmatched = conn.execute(
        text(
            "SELECT COUNT(*) FROM stg_activities s LEFT JOIN invoices i ON i.entity_code = s.entity "
            "AND i.invoice_ref = s.invoice_ref WHERE s.batch_id = :b AND s.invoice_ref IS NOT NULL AND i.id IS NULL"
        ),
        {"b": p["b"]},
    ).scalar_one()
    return {"activities_inserted": inserted, "activities_updated": updated, "activities_unmatched_invoice": unmatched}
