"""Test data for the validation tests: an ingest batch staged directly (rows with known faults at known rows).

Rows go straight into the staging tables with plain INSERTs, the way the ingest's staging step leaves them, so
the validation is tested on exactly the tables it reads in production.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, insert, text

from writeoffs.ingest.tables import ingest_batches, stg_activities, stg_invoices, stg_payments
from writeoffs.validation.checks import Tables

AS_OF = date(2026, 11, 24)
FILE = "invoices.csv"


def invoice_row(n: int, **over: Any) -> dict[str, Any]:
    """A clean invoice row numbered ``n`` (source row n+1: the header is row 1)."""
    inv_date = AS_OF - timedelta(days=40 + n)
    row = {
        "source_row": n + 1,
        "source_file": FILE,
        "entity": "US01",
        "invoice_ref": f"INV{n:05d}",
        "customer_ref": f"C{n % 3:03d}",
        "customer_name": f"Customer {n % 3}",
        "parent_customer_ref": None,
        "segment": "default",
        "invoice_date": inv_date,
        "due_date": inv_date + timedelta(days=30),
        "currency": "USD",
        "amount": Decimal("100.00") + n,
        "open_balance": Decimal("50.00") + n,
        "fx_rate": Decimal("1"),
        "disputed": False,
        "dispute_since": None,
        "payment_plan": False,
        "bankrupt": False,
        "transferred_to_parent": False,
        "description": None,
    }
    row.update(over)
    return row


def payment_row(n: int, **over: Any) -> dict[str, Any]:
    row = {
        "source_row": n + 1,
        "source_file": "payments.csv",
        "entity": "US01",
        "payment_ref": f"PAY{n:05d}",
        "customer_ref": f"C{n % 3:03d}",
        "payment_date": AS_OF - timedelta(days=5),
        "currency": "USD",
        "amount": Decimal("20.00"),
        "invoice_ref": f"INV{n:05d}",
        "applied_amount": Decimal("20.00"),
    }
    row.update(over)
    return row


def activity_row(n: int, **over: Any) -> dict[str, Any]:
    row = {
        "source_row": n + 1,
        "source_file": "activities.csv",
        "entity": "US01",
        "customer_ref": f"C{n % 3:03d}",
        "invoice_ref": f"INV{n:05d}",
        "activity_type": "contact_attempt",
        "activity_date": AS_OF - timedelta(days=3),
        "end_date": None,
        "outcome": None,
    }
    row.update(over)
    return row


def stage(
    conn: Connection,
    *,
    invoices: list[dict[str, Any]],
    payments: list[dict[str, Any]] = (),  # type: ignore[assignment]
    activities: list[dict[str, Any]] = (),  # type: ignore[assignment]
    control: dict[str, Any] | None = None,
    source: str = "erp",
    as_of: date = AS_OF,
    tables: Tables = Tables(),
) -> int:
    """Create an ingest batch with these staged rows; returns its id. ``details`` as the ingest writes it."""
    details = {
        ds: {"read": len(rows), "accepted": len(rows), "quarantined": 0, "totals": {}}
        for ds, rows in (("invoices", invoices), ("payments", payments), ("activities", activities))
    }
    n = len(invoices) + len(payments) + len(activities)
    batch_id = conn.execute(
        insert(ingest_batches)
        .values(
            source=source,
            as_of_date=as_of,
            status="staged",
            load_no=1,
            rows_read=n,
            rows_accepted=n,
            rows_quarantined=0,
            details=json.dumps(details),
            files="[]",
            control=json.dumps(control) if control is not None else None,
        )
        .returning(ingest_batches.c.id)
    ).scalar_one()
    for table, rows, default in (
        (tables.invoices, invoices, stg_invoices),
        (tables.payments, payments, stg_payments),
        (tables.activities, activities, stg_activities),
    ):
        if not rows:
            continue
        if table == default.name:
            conn.execute(insert(default), [{**r, "batch_id": batch_id} for r in rows])
        else:  # a deliberately malformed copy: insert only the columns it has
            have = _columns(conn, table)
            names = [c for c in ["batch_id", *rows[0]] if c in have]
            conn.execute(
                text(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + c for c in names)})"),
                # raw text() has no column types: amounts go as exact strings (sqlite3 cannot bind Decimal)
                [
                    {k: str(v) if isinstance(v, Decimal) else v for k, v in {**r, "batch_id": batch_id}.items()}
                    for r in rows
                ],
            )
    return batch_id


def _columns(conn: Connection, table: str) -> set[str]:
    from sqlalchemy import inspect

    return {c["name"] for c in inspect(conn).get_columns(table)}


def quarantined(engine: Engine, batch_id: int) -> list[tuple[str, str, int]]:
    """(dataset, reason, source_row) of every quarantined row of the batch, sorted."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT dataset, reason, source_row FROM ingest_quarantine WHERE batch_id = :b"), {"b": batch_id}
        ).all()
    return sorted((r.dataset, r.reason, r.source_row) for r in rows)


def staged_rows(engine: Engine, table: str, batch_id: int) -> list[int]:
    with engine.connect() as conn:
        return sorted(
            conn.execute(text(f"SELECT source_row FROM {table} WHERE batch_id = :b"), {"b": batch_id}).scalars()
        )
