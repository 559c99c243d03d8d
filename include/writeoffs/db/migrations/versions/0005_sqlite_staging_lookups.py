"""SQLite-only lookup indexes for the staging checks (duplicate keys, known customers).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

Validation asks, per staged row, "is there another row of this batch with the same key?" and "does this customer
arrive on an invoice of this batch?". PostgreSQL runs those correlated EXISTS as hash (anti-)joins; SQLite runs
them as nested loops over the batch, which made a 20,000-invoice demo batch take minutes. These indexes turn each
lookup into an index search on SQLite. PostgreSQL does not get them: they would slow the 1M-row COPY into staging
and its planner does not need them. Named ``ixsqlite_*`` so autogenerate comparisons skip them
(``writeoffs.db.migrate.include_object``).
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEXES = (
    ("ixsqlite_stg_invoices_key", "stg_invoices", ["batch_id", "entity", "invoice_ref"]),
    ("ixsqlite_stg_invoices_customer", "stg_invoices", ["batch_id", "entity", "customer_ref"]),
    ("ixsqlite_stg_payments_key", "stg_payments", ["batch_id", "entity", "payment_ref"]),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
