"""Collection activities of a staged batch: keyed by occurrence (the k-th identical activity of a customer, invoice,
type and date), updated when their end date or outcome changed, inserted when new.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, String, and_, bindparam, cast, column, exists, insert, or_, select, text, update
from sqlalchemy.sql.expression import Subquery

from writeoffs.db.schema import collection_activities
from writeoffs.ingest.merge.common import statement

#: What ``sql/activities_staged.sql`` selects: a staged activity with the ledger's ids and its occurrence number.
_STAGED_COLUMNS = (
    "activity_type",
    "activity_date",
    "end_date",
    "outcome",
    "customer_id",
    "invoice_id",
    "occurrence",
)


def _staged(conn: Connection) -> Subquery:
    """The batch's activities ranked into occurrences (``r``), the one home of the key both statements use.

    No natural key in the source: the k-th identical activity of a (customer, invoice, type, date) is its key, so a
    re-load inserts nothing while two calls on the same day stay two calls. Partitioned by the ledger's ids, not the
    source's references: the same partitions ((entity, customer ref) is one customer id; an invoice ref is one
    invoice id, and a row whose ref matches no invoice is dropped by the WHERE of the ranking; no ref is NULL either
    way), so the same occurrence numbers, but the sort of a first load (1.85M activities at 1M invoices, spilled to
    disk) compares integers instead of text and carries only the columns used (measured: BENCHMARKS.md)."""
    ranked = statement(conn, "activities_staged").columns(*(column(c) for c in _STAGED_COLUMNS))
    return ranked.subquery("r")


def _same_activity(a: Any, r: Subquery) -> Any:
    """The stored activity ``a`` is the staged occurrence ``r`` of this source (null-safe on the invoice)."""
    return and_(
        a.c.customer_id == r.c.customer_id,
        a.c.source == bindparam("src"),
        a.c.activity_type == r.c.activity_type,
        a.c.activity_date == r.c.activity_date,
        a.c.source_ref == r.c.occurrence,
        or_(a.c.invoice_id == r.c.invoice_id, and_(a.c.invoice_id.is_(None), r.c.invoice_id.is_(None))),
    )


def _merge_activities(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    """Update the stored occurrences whose end date or outcome differ (null-safe), then insert the new ones."""
    ca = collection_activities
    r = _staged(conn)
    changed = or_(ca.c.end_date.is_distinct_from(r.c.end_date), ca.c.outcome.is_distinct_from(r.c.outcome))
    updated = conn.execute(
        update(ca).values(end_date=r.c.end_date, outcome=r.c.outcome).where(_same_activity(ca, r), changed), p
    ).rowcount
    a, r = ca.alias("a"), _staged(conn)
    columns = ["customer_id", "invoice_id", "activity_type", "activity_date", "end_date", "outcome", "source"]
    new = select(
        r.c.customer_id,
        r.c.invoice_id,
        r.c.activity_type,
        r.c.activity_date,
        r.c.end_date,
        r.c.outcome,
        cast(bindparam("src"), String(64)),
        r.c.occurrence,
    ).where(~exists().where(_same_activity(a, r)))
    inserted = conn.execute(
        insert(ca).from_select([*columns, "source_ref"], new).execution_options(preserve_rowcount=True), p
    ).rowcount
    unmatched = conn.execute(
        text(
            "SELECT COUNT(*) FROM stg_activities s LEFT JOIN invoices i ON i.entity_code = s.entity "
            "AND i.invoice_ref = s.invoice_ref WHERE s.batch_id = :b AND s.invoice_ref IS NOT NULL AND i.id IS NULL"
        ),
        {"b": p["b"]},
    ).scalar_one()
    return {"activities_inserted": inserted, "activities_updated": updated, "activities_unmatched_invoice": unmatched}
