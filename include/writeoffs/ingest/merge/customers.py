"""Customers of a staged batch: upserted from the invoices (name, segment, bankruptcy), created from the references
seen only as payers, in activities or as parents, and linked to their parents.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from writeoffs.ingest.merge.common import _sql


def _merge_customers(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    distinct = "IS DISTINCT FROM" if conn.dialect.name == "postgresql" else "IS NOT"
    bankruptcy_date = (
        "CASE WHEN excluded.bankruptcy_flag THEN COALESCE(customers.bankruptcy_date, excluded.bankruptcy_date) END"
    )
    changes = {
        "name": "excluded.name",
        "segment": "excluded.segment",
        "bankruptcy_flag": "excluded.bankruptcy_flag",
        "bankruptcy_date": bankruptcy_date,
        "source": "excluded.source",
    }
    # Unchanged customers are not rewritten (a daily load repeats nearly all of them). PostgreSQL still row-locks
    # every conflicting customer, changed or not, which the bulk path relies on (see _merge_batch).
    upserted = _sql(
        conn,
        f"""
        INSERT INTO customers (entity_code, customer_ref, name, segment, bankruptcy_flag, bankruptcy_date, source)
        SELECT entity, customer_ref, MAX(COALESCE(customer_name, customer_ref)), COALESCE(MAX(segment), 'default'),
               MAX(CASE WHEN bankrupt THEN 1 ELSE 0 END) = 1,
               CASE WHEN MAX(CASE WHEN bankrupt THEN 1 ELSE 0 END) = 1 THEN :d END, :src
        FROM stg_invoices WHERE batch_id = :b
        GROUP BY entity, customer_ref
        ON CONFLICT (entity_code, customer_ref) DO UPDATE SET
            {", ".join(f"{col} = {expr}" for col, expr in changes.items())}
        WHERE {" OR ".join(f"customers.{col} {distinct} {expr}" for col, expr in changes.items())}
        """,
        p,
    )
    # Customers only seen as payers, in activities or as parents: created with their reference as name.
    others = 0
    for select_refs in (
        "SELECT DISTINCT entity AS e, parent_customer_ref AS ref FROM stg_invoices"
        " WHERE batch_id = :b AND parent_customer_ref IS NOT NULL",
        "SELECT DISTINCT entity AS e, customer_ref AS ref FROM stg_payments WHERE batch_id = :b",
        "SELECT DISTINCT entity AS e, customer_ref AS ref FROM stg_activities WHERE batch_id = :b",
    ):
        # "WHERE true": SQLite needs it to parse INSERT ... SELECT ... ON CONFLICT unambiguously.
        others += _sql(
            conn,
            f"""
            INSERT INTO customers (entity_code, customer_ref, name, source)
            SELECT r.e, r.ref, r.ref, :src FROM ({select_refs}) AS r WHERE true
            ON CONFLICT (entity_code, customer_ref) DO NOTHING
            """,
            p,
        )
    parents = _sql(
        conn,
        """
        UPDATE customers SET parent_id = m.parent_id
        FROM (SELECT DISTINCT s.entity, s.customer_ref, par.id AS parent_id
              FROM stg_invoices s
              JOIN customers par ON par.entity_code = s.entity AND par.customer_ref = s.parent_customer_ref
              WHERE s.batch_id = :b AND s.parent_customer_ref IS NOT NULL AND s.parent_customer_ref <> s.customer_ref
             ) AS m
        WHERE customers.entity_code = m.entity AND customers.customer_ref = m.customer_ref
          AND (customers.parent_id IS NULL OR customers.parent_id <> m.parent_id)
        """,
        p,
    )
    return {"customers_upserted": upserted, "customers_created_from_refs": others, "parent_links_set": parents}
