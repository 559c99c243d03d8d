"""Receivables: currencies, legal entities, customers, invoices, payments and allocations, activities, holds."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)

from writeoffs.db.schema.base import (
    ACTIVITY_TYPES,
    CODE,
    HOLD_TYPES,
    ID,
    INVOICE_STATUSES,
    MONEY,
    RATE,
    REF,
    _in,
    metadata,
)

currencies = Table(
    "currencies",
    metadata,
    Column("code", String(3), primary_key=True),
    Column("minor_unit", Integer, nullable=False),
)

legal_entities = Table(
    "legal_entities",
    metadata,
    Column("code", CODE, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("functional_currency", String(3), ForeignKey("currencies.code"), nullable=False),
    Column("writeoff_method", String(16), nullable=False, server_default="direct"),
    CheckConstraint(_in("writeoff_method", ("direct", "allowance")), name="method"),
)

customers = Table(
    "customers",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("entity_code", CODE, ForeignKey("legal_entities.code"), nullable=False),
    Column("customer_ref", REF, nullable=False),
    Column("name", String(200), nullable=False),
    Column("parent_id", ID, ForeignKey("customers.id"), nullable=True),
    Column("segment", String(32), nullable=False, server_default="default"),
    Column("bankruptcy_flag", Boolean, nullable=False, server_default="0"),
    Column("bankruptcy_date", Date, nullable=True),
    Column("dissolved", Boolean, nullable=False, server_default="0"),
    Column("source", REF, nullable=True),
    UniqueConstraint("entity_code", "customer_ref"),
    Index("ix_customers_parent_id", "parent_id"),
)

invoices = Table(
    "invoices",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("entity_code", CODE, ForeignKey("legal_entities.code"), nullable=False),
    Column("invoice_ref", REF, nullable=False),
    Column("customer_id", ID, ForeignKey("customers.id"), nullable=False),
    Column("source", REF, nullable=True),
    Column("invoice_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("currency", String(3), ForeignKey("currencies.code"), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("open_balance", MONEY, nullable=False),
    # Functional-currency units per one unit of the invoice currency, as booked when the invoice was raised.
    Column("fx_rate", RATE, nullable=False, server_default="1"),
    Column("status", String(24), nullable=False, server_default="open"),
    Column("written_off_amount", MONEY, nullable=False, server_default="0"),
    Column("recovered_amount", MONEY, nullable=False, server_default="0"),
    Column("charged_off_date", Date, nullable=True),
    Column("written_off_date", Date, nullable=True),
    # Parent/child: the child's balance was transferred to (billed through) the parent account.
    Column("balance_transferred_to_parent", Boolean, nullable=False, server_default="0"),
    Column("description", String(200), nullable=True),
    UniqueConstraint("entity_code", "invoice_ref"),
    CheckConstraint("amount >= 0", name="amount_nonneg"),
    CheckConstraint("open_balance >= 0 AND open_balance <= amount", name="open_balance_range"),
    CheckConstraint(
        "written_off_amount >= 0 AND written_off_amount <= amount",
        name="written_off_range",
    ),
    CheckConstraint(
        "recovered_amount >= 0 AND recovered_amount <= written_off_amount",
        name="recovered_range",
    ),
    CheckConstraint("due_date >= invoice_date", name="due_after_invoice"),
    CheckConstraint("fx_rate > 0", name="fx_rate_pos"),
    CheckConstraint(_in("status", INVOICE_STATUSES), name="status"),
    Index("ix_invoices_customer_id", "customer_id"),
    Index("ix_invoices_entity_status", "entity_code", "status"),
    Index("ix_invoices_status_due_date", "status", "due_date"),
)

payments = Table(
    "payments",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("entity_code", CODE, ForeignKey("legal_entities.code"), nullable=False),
    Column("payment_ref", REF, nullable=False),
    Column("customer_id", ID, ForeignKey("customers.id"), nullable=False),  # the payer
    Column("payment_date", Date, nullable=False),
    Column("currency", String(3), ForeignKey("currencies.code"), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("source", REF, nullable=True),
    UniqueConstraint("entity_code", "payment_ref"),
    CheckConstraint("amount > 0", name="amount_pos"),
    Index("ix_payments_customer_id", "customer_id"),
)

payment_allocations = Table(
    "payment_allocations",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("payment_id", ID, ForeignKey("payments.id"), nullable=False),
    Column("invoice_id", ID, ForeignKey("invoices.id"), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("allocated_on", Date, nullable=False),
    # 'regular' reduces the open balance; 'recovery' is cash received on a written-off amount.
    Column("kind", String(16), nullable=False, server_default="regular"),
    UniqueConstraint("payment_id", "invoice_id", "kind"),
    CheckConstraint("amount > 0", name="amount_pos"),
    CheckConstraint(_in("kind", ("regular", "recovery")), name="kind"),
    Index("ix_payment_allocations_invoice_id", "invoice_id"),
)

collection_activities = Table(
    "collection_activities",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("customer_id", ID, ForeignKey("customers.id"), nullable=False),
    Column("invoice_id", ID, ForeignKey("invoices.id"), nullable=True),  # null: account-level activity
    Column("activity_type", String(24), nullable=False),
    Column("activity_date", Date, nullable=False),
    Column("end_date", Date, nullable=True),  # agency placement / legal action: when it ended
    Column("outcome", String(64), nullable=True),
    Column("source", REF, nullable=True),
    Column("source_ref", REF, nullable=True),
    CheckConstraint(_in("activity_type", ACTIVITY_TYPES), name="type"),
    CheckConstraint("end_date IS NULL OR end_date >= activity_date", name="dates"),
    Index("ix_collection_activities_invoice_id", "invoice_id"),
    Index("ix_collection_activities_customer_id", "customer_id"),
)

holds = Table(
    "holds",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("customer_id", ID, ForeignKey("customers.id"), nullable=False),
    Column("invoice_id", ID, ForeignKey("invoices.id"), nullable=True),  # null: whole account
    Column("hold_type", String(16), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=True),  # null: still active
    Column("resolution", String(16), nullable=True),  # dispute: won / lost / withdrawn; plan: completed / broken
    Column("note", String(200), nullable=True),
    CheckConstraint(_in("hold_type", HOLD_TYPES), name="type"),
    CheckConstraint("end_date IS NULL OR end_date >= start_date", name="dates"),
    Index("ix_holds_invoice_id", "invoice_id"),
    Index("ix_holds_customer_id", "customer_id"),
)
