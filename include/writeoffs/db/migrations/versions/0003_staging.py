"""ingestion staging, lineage and quarantine tables

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Staging tables are UNLOGGED on PostgreSQL: a bulk COPY of a million rows then skips the write-ahead log. They are
re-creatable from the source; the merge checks the staged row count against ``ingest_batches`` so a crash that
empties them cannot go unnoticed. The table definitions live in ``writeoffs.ingest.tables``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(precision=20, scale=4)
RATE = sa.Numeric(precision=20, scale=10)


def _lineage() -> list[sa.Column]:
    return [
        sa.Column("batch_id", ID, nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("source_file", sa.String(length=300), nullable=False),
    ]


def _staging(name: str, *columns: sa.Column) -> None:
    prefixes = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    op.create_table(
        name,
        *_lineage(),
        *columns,
        sa.ForeignKeyConstraint(["batch_id"], ["ingest_batches.id"], name=op.f(f"fk_{name}_batch_id_ingest_batches")),
        prefixes=prefixes,
    )
    op.create_index(f"ix_{name}_batch_id", name, ["batch_id"])


def upgrade() -> None:
    op.create_table(
        "ingest_batches",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("load_no", sa.Integer(), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=True),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_accepted", sa.Integer(), nullable=False),
        sa.Column("rows_quarantined", sa.Integer(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("control", sa.Text(), nullable=True),
        sa.Column(
            "staged_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.Column("merged_load_no", sa.Integer(), nullable=True),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("merge_summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_batches")),
        sa.UniqueConstraint("source", "as_of_date", name=op.f("uq_ingest_batches_source_as_of_date")),
    )
    _staging(
        "stg_invoices",
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("invoice_ref", sa.String(length=64), nullable=False),
        sa.Column("customer_ref", sa.String(length=64), nullable=False),
        sa.Column("customer_name", sa.String(length=200), nullable=True),
        sa.Column("parent_customer_ref", sa.String(length=64), nullable=True),
        sa.Column("segment", sa.String(length=32), nullable=True),
        sa.Column("invoice_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("open_balance", MONEY, nullable=False),
        sa.Column("fx_rate", RATE, nullable=False),
        sa.Column("disputed", sa.Boolean(), nullable=False),
        sa.Column("dispute_since", sa.Date(), nullable=True),
        sa.Column("payment_plan", sa.Boolean(), nullable=False),
        sa.Column("bankrupt", sa.Boolean(), nullable=False),
        sa.Column("transferred_to_parent", sa.Boolean(), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
    )
    _staging(
        "stg_payments",
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("payment_ref", sa.String(length=64), nullable=False),
        sa.Column("customer_ref", sa.String(length=64), nullable=False),
        sa.Column("payment_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("invoice_ref", sa.String(length=64), nullable=True),
        sa.Column("applied_amount", MONEY, nullable=True),
    )
    _staging(
        "stg_activities",
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("customer_ref", sa.String(length=64), nullable=False),
        sa.Column("invoice_ref", sa.String(length=64), nullable=True),
        sa.Column("activity_type", sa.String(length=24), nullable=False),
        sa.Column("activity_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=True),
    )
    op.create_table(
        "ingest_quarantine",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("batch_id", ID, nullable=False),
        sa.Column("dataset", sa.String(length=16), nullable=False),
        sa.Column("source_file", sa.String(length=300), nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=True),
        sa.Column("field", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["ingest_batches.id"], name=op.f("fk_ingest_quarantine_batch_id_ingest_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_quarantine")),
    )
    op.create_index("ix_ingest_quarantine_batch_id", "ingest_quarantine", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_ingest_quarantine_batch_id", table_name="ingest_quarantine")
    for name in ("stg_activities", "stg_payments", "stg_invoices"):
        op.drop_index(f"ix_{name}_batch_id", table_name=name)
    for name in ("ingest_quarantine", "stg_activities", "stg_payments", "stg_invoices", "ingest_batches"):
        op.drop_table(name)
