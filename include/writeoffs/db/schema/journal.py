"""The general ledger: journal entries and lines; recoveries."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    func,
)

from writeoffs.db.schema.base import (
    CODE,
    ENTRY_STATUSES,
    ID,
    MONEY,
    REF,
    _in,
    metadata,
)

# PostgreSQL keeps half of each page free (fillfactor 50, migration 0012): the flip pending -> posted then updates the
# row in place (HOT), without writing the five indexes.
journal_entries = Table(
    "journal_entries",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("entity_code", CODE, ForeignKey("legal_entities.code"), nullable=False),
    Column("posting_date", Date, nullable=False),
    Column("period", String(7), nullable=False),
    Column("status", String(8), nullable=False, server_default="pending"),
    Column("description", String(400), nullable=False, server_default=""),
    Column("source_type", String(32), nullable=False),  # writeoff | recovery | allowance | reversal | manual
    Column("source_id", String(64), nullable=True),
    Column(
        "reverses_entry_id",
        ID,
        ForeignKey("journal_entries.id"),
        nullable=True,
        unique=True,
    ),
    Column("batch_id", ID, ForeignKey("writeoff_batches.id"), nullable=True),
    Column("policy_version", String(32), nullable=True),
    Column("created_by", REF, nullable=True),
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.current_timestamp(),
    ),
    Column("posted_at", DateTime(timezone=True), nullable=True),
    CheckConstraint(_in("status", ENTRY_STATUSES), name="status"),
    ForeignKeyConstraint(
        ["entity_code", "period"],
        ["fiscal_periods.entity_code", "fiscal_periods.period"],
    ),
    Index("ix_journal_entries_batch_id", "batch_id"),
    Index("ix_journal_entries_entity_posting_date", "entity_code", "posting_date"),
)

journal_lines = Table(
    "journal_lines",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("entry_id", ID, ForeignKey("journal_entries.id"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("entity_code", CODE, nullable=False),
    Column("account_code", CODE, nullable=False),
    Column("currency", String(3), ForeignKey("currencies.code"), nullable=False),
    Column("debit", MONEY, nullable=False, server_default="0"),
    Column("credit", MONEY, nullable=False, server_default="0"),
    Column("functional_currency", String(3), nullable=False),
    Column("functional_debit", MONEY, nullable=False, server_default="0"),
    Column("functional_credit", MONEY, nullable=False, server_default="0"),
    Column("invoice_id", ID, ForeignKey("invoices.id"), nullable=True),
    Column("memo", String(200), nullable=True),
    # Its index also serves every look-up by entry_id (migration 0012 dropped a separate entry_id index).
    UniqueConstraint("entry_id", "line_no"),
    ForeignKeyConstraint(["entity_code", "account_code"], ["accounts.entity_code", "accounts.code"]),
    CheckConstraint(
        "debit >= 0 AND credit >= 0 AND functional_debit >= 0 AND functional_credit >= 0",
        name="nonneg",
    ),
    CheckConstraint("(debit = 0) <> (credit = 0)", name="one_side"),
    Index("ix_journal_lines_account", "entity_code", "account_code", "currency"),
    Index("ix_journal_lines_invoice_id", "invoice_id"),
)

recoveries = Table(
    "recoveries",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("invoice_id", ID, ForeignKey("invoices.id"), nullable=False),
    Column("payment_id", ID, ForeignKey("payments.id"), nullable=True),
    Column("recovery_date", Date, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("journal_entry_id", ID, ForeignKey("journal_entries.id"), nullable=True),
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.current_timestamp(),
    ),
    CheckConstraint("amount > 0", name="amount_pos"),
    Index("ix_recoveries_invoice_id", "invoice_id"),
)
