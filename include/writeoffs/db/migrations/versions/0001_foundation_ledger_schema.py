"""foundation ledger schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24 06:43:26.309023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "aging_runs",
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("basis", sa.String(length=16), server_default="due_date", nullable=False),
        sa.Column("bucket_spec", sa.Text(), nullable=False),
        sa.Column("invoice_count", sa.Integer(), nullable=False),
        sa.Column(
            "computed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint("basis IN ('due_date', 'invoice_date')", name=op.f("ck_aging_runs_basis")),
        sa.PrimaryKeyConstraint("as_of_date", name=op.f("pk_aging_runs")),
    )
    op.create_table(
        "allowance_estimates",
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("entity_code", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("bucket", sa.String(length=16), nullable=False),
        sa.Column("open_balance", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("loss_rate", sa.Numeric(precision=9, scale=6), nullable=False),
        sa.Column("required_allowance", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.PrimaryKeyConstraint(
            "as_of_date",
            "entity_code",
            "currency",
            "bucket",
            name=op.f("pk_allowance_estimates"),
        ),
    )
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("recorded_at", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=200), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("row_hash", name=op.f("uq_audit_log_row_hash")),
    )
    op.create_table(
        "currencies",
        sa.Column("code", sa.String(length=3), nullable=False),
        sa.Column("minor_unit", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_currencies")),
    )
    op.create_table(
        "policy_versions",
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column(
            "loaded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("content_hash", name=op.f("pk_policy_versions")),
    )
    op.create_table(
        "recon_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_key", sa.String(length=250), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("checks_run", sa.Integer(), nullable=False),
        sa.Column("break_count", sa.Integer(), nullable=False),
        sa.Column("report_path", sa.String(length=500), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_runs")),
        sa.UniqueConstraint("run_key", name=op.f("uq_recon_runs_run_key")),
    )
    op.create_table(
        "validation_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_key", sa.String(length=250), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("suite", sa.String(length=64), nullable=False),
        sa.Column("evaluated", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("blocking_failed", sa.Integer(), nullable=False),
        sa.Column("rows_quarantined", sa.Integer(), nullable=False),
        sa.Column("report_path", sa.String(length=500), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validation_runs")),
        sa.UniqueConstraint("run_key", "suite", name=op.f("uq_validation_runs_run_key_suite")),
    )
    op.create_table(
        "legal_entities",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("functional_currency", sa.String(length=3), nullable=False),
        sa.Column(
            "writeoff_method",
            sa.String(length=16),
            server_default="direct",
            nullable=False,
        ),
        sa.CheckConstraint(
            "writeoff_method IN ('direct', 'allowance')",
            name=op.f("ck_legal_entities_method"),
        ),
        sa.ForeignKeyConstraint(
            ["functional_currency"],
            ["currencies.code"],
            name=op.f("fk_legal_entities_functional_currency_currencies"),
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_legal_entities")),
    )
    op.create_table(
        "recon_breaks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "run_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("check_name", sa.String(length=64), nullable=False),
        sa.Column("entity_code", sa.String(length=16), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("account_code", sa.String(length=16), nullable=True),
        sa.Column("expected", sa.Numeric(precision=20, scale=4), nullable=True),
        sa.Column("actual", sa.Numeric(precision=20, scale=4), nullable=True),
        sa.Column("difference", sa.Numeric(precision=20, scale=4), nullable=True),
        sa.Column("documents", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["recon_runs.id"],
            name=op.f("fk_recon_breaks_run_id_recon_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recon_breaks")),
    )
    with op.batch_alter_table("recon_breaks", schema=None) as batch_op:
        batch_op.create_index("ix_recon_breaks_run_id", ["run_id"], unique=False)

    op.create_table(
        "accounts",
        sa.Column("entity_code", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("account_type", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=24), nullable=True),
        sa.CheckConstraint(
            "account_type IN ('asset', 'contra_asset', 'liability', 'equity', 'income', 'expense')",
            name=op.f("ck_accounts_type"),
        ),
        sa.CheckConstraint(
            "role IS NULL OR role IN ('ar_control', 'bad_debt_expense', 'allowance', 'recovery_income', 'cash', 'suspense')",
            name=op.f("ck_accounts_role"),
        ),
        sa.ForeignKeyConstraint(
            ["entity_code"],
            ["legal_entities.code"],
            name=op.f("fk_accounts_entity_code_legal_entities"),
        ),
        sa.PrimaryKeyConstraint("entity_code", "code", name=op.f("pk_accounts")),
        sa.UniqueConstraint("entity_code", "role", name=op.f("uq_accounts_entity_code_role")),
    )
    op.create_table(
        "customers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("entity_code", sa.String(length=16), nullable=False),
        sa.Column("customer_ref", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "parent_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("segment", sa.String(length=32), server_default="default", nullable=False),
        sa.Column("bankruptcy_flag", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("bankruptcy_date", sa.Date(), nullable=True),
        sa.Column("dissolved", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["entity_code"],
            ["legal_entities.code"],
            name=op.f("fk_customers_entity_code_legal_entities"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["customers.id"],
            name=op.f("fk_customers_parent_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint(
            "entity_code",
            "customer_ref",
            name=op.f("uq_customers_entity_code_customer_ref"),
        ),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index("ix_customers_parent_id", ["parent_id"], unique=False)

    op.create_table(
        "fiscal_periods",
        sa.Column("entity_code", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=8), server_default="open", nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_fiscal_periods_status")),
        sa.CheckConstraint("end_date >= start_date", name=op.f("ck_fiscal_periods_dates")),
        sa.ForeignKeyConstraint(
            ["entity_code"],
            ["legal_entities.code"],
            name=op.f("fk_fiscal_periods_entity_code_legal_entities"),
        ),
        sa.PrimaryKeyConstraint("entity_code", "period", name=op.f("pk_fiscal_periods")),
    )
    op.create_table(
        "writeoff_batches",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("batch_key", sa.String(length=200), nullable=False),
        sa.Column("entity_code", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("tier", sa.String(length=24), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("policy_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="proposed", nullable=False),
        sa.Column("item_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "total_amount",
            sa.Numeric(precision=20, scale=4),
            server_default="0",
            nullable=False,
        ),
        sa.Column("batch_hash", sa.String(length=64), nullable=True),
        sa.Column("prepared_by", sa.String(length=64), nullable=True),
        sa.Column("dag_run_id", sa.String(length=250), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('proposed', 'awaiting_approval', 'approved', 'confirmed', 'rejected', 'expired', 'posted', 'partially_posted')",
            name=op.f("ck_writeoff_batches_status"),
        ),
        sa.ForeignKeyConstraint(
            ["entity_code"],
            ["legal_entities.code"],
            name=op.f("fk_writeoff_batches_entity_code_legal_entities"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_writeoff_batches")),
        sa.UniqueConstraint("batch_key", name=op.f("uq_writeoff_batches_batch_key")),
    )
    op.create_table(
        "approvals",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "batch_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("tier", sa.String(length=24), nullable=False),
        sa.Column("approver", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("excluded_invoice_refs", sa.Text(), nullable=True),
        sa.Column("limit_amount", sa.Numeric(precision=20, scale=4), nullable=True),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("batch_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "decided_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint("step IN ('approve', 'confirm')", name=op.f("ck_approvals_step")),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["writeoff_batches.id"],
            name=op.f("fk_approvals_batch_id_writeoff_batches"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
        sa.UniqueConstraint("batch_id", "step", name=op.f("uq_approvals_batch_id_step")),
    )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index("ix_approvals_batch_id", ["batch_id"], unique=False)

    op.create_table(
        "invoices",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("entity_code", sa.String(length=16), nullable=False),
        sa.Column("invoice_ref", sa.String(length=64), nullable=False),
        sa.Column(
            "customer_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("invoice_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("open_balance", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column(
            "fx_rate",
            sa.Numeric(precision=20, scale=10),
            server_default="1",
            nullable=False,
        ),
        sa.Column("status", sa.String(length=24), server_default="open", nullable=False),
        sa.Column(
            "written_off_amount",
            sa.Numeric(precision=20, scale=4),
            server_default="0",
            nullable=False,
        ),
        sa.Column(
            "recovered_amount",
            sa.Numeric(precision=20, scale=4),
            server_default="0",
            nullable=False,
        ),
        sa.Column("charged_off_date", sa.Date(), nullable=True),
        sa.Column("written_off_date", sa.Date(), nullable=True),
        sa.Column(
            "balance_transferred_to_parent",
            sa.Boolean(),
            server_default="0",
            nullable=False,
        ),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'paid', 'charged_off', 'written_off', 'partially_recovered', 'recovered', 'reversed')",
            name=op.f("ck_invoices_status"),
        ),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_invoices_amount_nonneg")),
        sa.CheckConstraint("due_date >= invoice_date", name=op.f("ck_invoices_due_after_invoice")),
        sa.CheckConstraint("fx_rate > 0", name=op.f("ck_invoices_fx_rate_pos")),
        sa.CheckConstraint(
            "open_balance >= 0 AND open_balance <= amount",
            name=op.f("ck_invoices_open_balance_range"),
        ),
        sa.CheckConstraint(
            "recovered_amount >= 0 AND recovered_amount <= written_off_amount",
            name=op.f("ck_invoices_recovered_range"),
        ),
        sa.CheckConstraint(
            "written_off_amount >= 0 AND written_off_amount <= amount",
            name=op.f("ck_invoices_written_off_range"),
        ),
        sa.ForeignKeyConstraint(
            ["currency"],
            ["currencies.code"],
            name=op.f("fk_invoices_currency_currencies"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_invoices_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["entity_code"],
            ["legal_entities.code"],
            name=op.f("fk_invoices_entity_code_legal_entities"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint(
            "entity_code",
            "invoice_ref",
            name=op.f("uq_invoices_entity_code_invoice_ref"),
        ),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index("ix_invoices_customer_id", ["customer_id"], unique=False)
        batch_op.create_index("ix_invoices_entity_status", ["entity_code", "status"], unique=False)

    op.create_table(
        "journal_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("entity_code", sa.String(length=16), nullable=False),
        sa.Column("posting_date", sa.Date(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("status", sa.String(length=8), server_default="pending", nullable=False),
        sa.Column("description", sa.String(length=400), server_default="", nullable=False),
        sa.Column("source_type", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=True),
        sa.Column(
            "reverses_entry_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "batch_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("policy_version", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'posted')", name=op.f("ck_journal_entries_status")),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["writeoff_batches.id"],
            name=op.f("fk_journal_entries_batch_id_writeoff_batches"),
        ),
        sa.ForeignKeyConstraint(
            ["entity_code", "period"],
            ["fiscal_periods.entity_code", "fiscal_periods.period"],
            name=op.f("fk_journal_entries_entity_code_period_fiscal_periods"),
        ),
        sa.ForeignKeyConstraint(
            ["entity_code"],
            ["legal_entities.code"],
            name=op.f("fk_journal_entries_entity_code_legal_entities"),
        ),
        sa.ForeignKeyConstraint(
            ["reverses_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_journal_entries_reverses_entry_id_journal_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_entries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_journal_entries_idempotency_key")),
        sa.UniqueConstraint("reverses_entry_id", name=op.f("uq_journal_entries_reverses_entry_id")),
    )
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.create_index("ix_journal_entries_batch_id", ["batch_id"], unique=False)
        batch_op.create_index(
            "ix_journal_entries_entity_posting_date",
            ["entity_code", "posting_date"],
            unique=False,
        )

    op.create_table(
        "payments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("entity_code", sa.String(length=16), nullable=False),
        sa.Column("payment_ref", sa.String(length=64), nullable=False),
        sa.Column(
            "customer_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("payment_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_amount_pos")),
        sa.ForeignKeyConstraint(
            ["currency"],
            ["currencies.code"],
            name=op.f("fk_payments_currency_currencies"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_payments_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["entity_code"],
            ["legal_entities.code"],
            name=op.f("fk_payments_entity_code_legal_entities"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint(
            "entity_code",
            "payment_ref",
            name=op.f("uq_payments_entity_code_payment_ref"),
        ),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index("ix_payments_customer_id", ["customer_id"], unique=False)

    op.create_table(
        "aging_snapshots",
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column(
            "invoice_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("entity_code", sa.String(length=16), nullable=False),
        sa.Column(
            "customer_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("days_past_due", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.String(length=16), nullable=False),
        sa.Column("open_balance", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_aging_snapshots_invoice_id_invoices"),
        ),
        sa.PrimaryKeyConstraint("as_of_date", "invoice_id", name=op.f("pk_aging_snapshots")),
    )
    with op.batch_alter_table("aging_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_aging_snapshots_as_of_entity_currency",
            ["as_of_date", "entity_code", "currency"],
            unique=False,
        )

    op.create_table(
        "collection_activities",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "customer_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "invoice_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("activity_type", sa.String(length=24), nullable=False),
        sa.Column("activity_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("source_ref", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "activity_type IN ('contact_attempt', 'demand_letter', 'agency_placement', 'legal_action')",
            name=op.f("ck_collection_activities_type"),
        ),
        sa.CheckConstraint(
            "end_date IS NULL OR end_date >= activity_date",
            name=op.f("ck_collection_activities_dates"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_collection_activities_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_collection_activities_invoice_id_invoices"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_activities")),
    )
    with op.batch_alter_table("collection_activities", schema=None) as batch_op:
        batch_op.create_index("ix_collection_activities_customer_id", ["customer_id"], unique=False)
        batch_op.create_index("ix_collection_activities_invoice_id", ["invoice_id"], unique=False)

    op.create_table(
        "holds",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "customer_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "invoice_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("hold_type", sa.String(length=16), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.CheckConstraint("hold_type IN ('dispute', 'payment_plan')", name=op.f("ck_holds_type")),
        sa.CheckConstraint("end_date IS NULL OR end_date >= start_date", name=op.f("ck_holds_dates")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_holds_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_holds_invoice_id_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.create_index("ix_holds_customer_id", ["customer_id"], unique=False)
        batch_op.create_index("ix_holds_invoice_id", ["invoice_id"], unique=False)

    op.create_table(
        "journal_lines",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "entry_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("entity_code", sa.String(length=16), nullable=False),
        sa.Column("account_code", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "debit",
            sa.Numeric(precision=20, scale=4),
            server_default="0",
            nullable=False,
        ),
        sa.Column(
            "credit",
            sa.Numeric(precision=20, scale=4),
            server_default="0",
            nullable=False,
        ),
        sa.Column("functional_currency", sa.String(length=3), nullable=False),
        sa.Column(
            "functional_debit",
            sa.Numeric(precision=20, scale=4),
            server_default="0",
            nullable=False,
        ),
        sa.Column(
            "functional_credit",
            sa.Numeric(precision=20, scale=4),
            server_default="0",
            nullable=False,
        ),
        sa.Column(
            "invoice_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("memo", sa.String(length=200), nullable=True),
        sa.CheckConstraint("(debit = 0) <> (credit = 0)", name=op.f("ck_journal_lines_one_side")),
        sa.CheckConstraint(
            "debit >= 0 AND credit >= 0 AND functional_debit >= 0 AND functional_credit >= 0",
            name=op.f("ck_journal_lines_nonneg"),
        ),
        sa.ForeignKeyConstraint(
            ["currency"],
            ["currencies.code"],
            name=op.f("fk_journal_lines_currency_currencies"),
        ),
        sa.ForeignKeyConstraint(
            ["entity_code", "account_code"],
            ["accounts.entity_code", "accounts.code"],
            name=op.f("fk_journal_lines_entity_code_account_code_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_journal_lines_entry_id_journal_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_journal_lines_invoice_id_invoices"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_lines")),
        sa.UniqueConstraint("entry_id", "line_no", name=op.f("uq_journal_lines_entry_id_line_no")),
    )
    with op.batch_alter_table("journal_lines", schema=None) as batch_op:
        batch_op.create_index(
            "ix_journal_lines_account",
            ["entity_code", "account_code", "currency"],
            unique=False,
        )
        batch_op.create_index("ix_journal_lines_entry_id", ["entry_id"], unique=False)
        batch_op.create_index("ix_journal_lines_invoice_id", ["invoice_id"], unique=False)

    op.create_table(
        "payment_allocations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "payment_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "invoice_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("amount", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("allocated_on", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), server_default="regular", nullable=False),
        sa.CheckConstraint("kind IN ('regular', 'recovery')", name=op.f("ck_payment_allocations_kind")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payment_allocations_amount_pos")),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_payment_allocations_invoice_id_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.id"],
            name=op.f("fk_payment_allocations_payment_id_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_allocations")),
        sa.UniqueConstraint(
            "payment_id",
            "invoice_id",
            "kind",
            name=op.f("uq_payment_allocations_payment_id_invoice_id_kind"),
        ),
    )
    with op.batch_alter_table("payment_allocations", schema=None) as batch_op:
        batch_op.create_index("ix_payment_allocations_invoice_id", ["invoice_id"], unique=False)

    op.create_table(
        "recoveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "invoice_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "payment_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("recovery_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column(
            "journal_entry_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_recoveries_amount_pos")),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_recoveries_invoice_id_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["journal_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_recoveries_journal_entry_id_journal_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.id"],
            name=op.f("fk_recoveries_payment_id_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recoveries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_recoveries_idempotency_key")),
    )
    with op.batch_alter_table("recoveries", schema=None) as batch_op:
        batch_op.create_index("ix_recoveries_invoice_id", ["invoice_id"], unique=False)

    op.create_table(
        "writeoffs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "batch_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "invoice_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("reason_code", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("tier", sa.String(length=24), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("policy_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="candidate", nullable=False),
        sa.Column("skip_reason", sa.String(length=200), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column(
            "journal_entry_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('candidate', 'excluded', 'approved', 'rejected', 'expired', 'posted', 'skipped', 'reversed')",
            name=op.f("ck_writeoffs_status"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_writeoffs_amount_pos")),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["writeoff_batches.id"],
            name=op.f("fk_writeoffs_batch_id_writeoff_batches"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_writeoffs_invoice_id_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["journal_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_writeoffs_journal_entry_id_journal_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_writeoffs")),
        sa.UniqueConstraint(
            "as_of_date",
            "policy_hash",
            "invoice_id",
            name=op.f("uq_writeoffs_as_of_date_policy_hash_invoice_id"),
        ),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_writeoffs_idempotency_key")),
    )
    with op.batch_alter_table("writeoffs", schema=None) as batch_op:
        batch_op.create_index("ix_writeoffs_batch_id", ["batch_id"], unique=False)
        batch_op.create_index("ix_writeoffs_invoice_id", ["invoice_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("writeoffs", schema=None) as batch_op:
        batch_op.drop_index("ix_writeoffs_invoice_id")
        batch_op.drop_index("ix_writeoffs_batch_id")

    op.drop_table("writeoffs")
    with op.batch_alter_table("recoveries", schema=None) as batch_op:
        batch_op.drop_index("ix_recoveries_invoice_id")

    op.drop_table("recoveries")
    with op.batch_alter_table("payment_allocations", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_allocations_invoice_id")

    op.drop_table("payment_allocations")
    with op.batch_alter_table("journal_lines", schema=None) as batch_op:
        batch_op.drop_index("ix_journal_lines_invoice_id")
        batch_op.drop_index("ix_journal_lines_entry_id")
        batch_op.drop_index("ix_journal_lines_account")

    op.drop_table("journal_lines")
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index("ix_holds_invoice_id")
        batch_op.drop_index("ix_holds_customer_id")

    op.drop_table("holds")
    with op.batch_alter_table("collection_activities", schema=None) as batch_op:
        batch_op.drop_index("ix_collection_activities_invoice_id")
        batch_op.drop_index("ix_collection_activities_customer_id")

    op.drop_table("collection_activities")
    with op.batch_alter_table("aging_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_aging_snapshots_as_of_entity_currency")

    op.drop_table("aging_snapshots")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_customer_id")

    op.drop_table("payments")
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_journal_entries_entity_posting_date")
        batch_op.drop_index("ix_journal_entries_batch_id")

    op.drop_table("journal_entries")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("ix_invoices_entity_status")
        batch_op.drop_index("ix_invoices_customer_id")

    op.drop_table("invoices")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_approvals_batch_id")

    op.drop_table("approvals")
    op.drop_table("writeoff_batches")
    op.drop_table("fiscal_periods")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_parent_id")

    op.drop_table("customers")
    op.drop_table("accounts")
    with op.batch_alter_table("recon_breaks", schema=None) as batch_op:
        batch_op.drop_index("ix_recon_breaks_run_id")

    op.drop_table("recon_breaks")
    op.drop_table("legal_entities")
    op.drop_table("validation_runs")
    op.drop_table("recon_runs")
    op.drop_table("policy_versions")
    op.drop_table("currencies")
    op.drop_table("audit_log")
    op.drop_table("allowance_estimates")
    op.drop_table("aging_runs")
