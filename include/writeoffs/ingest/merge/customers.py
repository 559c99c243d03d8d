"""Customers of a staged batch: upserted from the invoices (name, segment, bankruptcy), created from the references
seen only as payers, in activities or as parents, and linked to their parents.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from writeoffs.ingest.merge.common import _sql


def _merge_customers(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    # Unchanged customers are not rewritten (a daily load repeats nearly all of them): the upsert's DO UPDATE has a
    # null-safe "differs" condition on every column it sets (IS DISTINCT FROM: sql/customers_upsert.sql).
    # PostgreSQL still row-locks every conflicting customer, changed or not, which the bulk path relies on (see
    # _merge_batch).
    upserted = _sql(conn, "customers_upsert", p)
    # Customers only seen as payers, in activities or as parents: created with their reference as name.
    # "WHERE true" in these statements: SQLite needs it to parse INSERT ... SELECT ... ON CONFLICT unambiguously.
    others = 0
    for name in ("customers_from_parents", "customers_from_payments", "customers_from_activities"):
        others += _sql(conn, name, p)
    parents = _sql(conn, "customers_parent_links", p)
    return {"customers_upserted": upserted, "customers_created_from_refs": others, "parent_links_set": parents}
