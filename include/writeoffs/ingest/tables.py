"""Staging, lineage and quarantine tables of the ingestion (migration 0003), on the ledger's shared ``metadata``.

- ``ingest_batches``: one row per (source, as-of date). Re-ingesting replaces that batch's staged rows in one
  transaction (``load_no`` counts the loads), so a batch is never duplicated and a failed load leaves the previous
  good one in place.
- ``stg_invoices`` / ``stg_payments`` / ``stg_activities``: typed canonical rows, each with its lineage
  (batch, source file, source row; unique by construction, not indexed: an index over text on a million-row
  COPY costs more than it protects). UNLOGGED on PostgreSQL (created so by the migration): they are re-creatable
  from the source, and the merge refuses a batch whose staged row count no longer matches what was recorded.
- ``ingest_quarantine``: rows that failed validation, with the field and reason, and the raw record.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

from writeoffs.db.schema import CODE, ID, MONEY, RATE, REF, metadata

BATCH_STATUSES = ("staged", "merged")

ingest_batches = Table(
    "ingest_batches",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("source", REF, nullable=False),
    Column("as_of_date", Date, nullable=False),
    Column("status", String(16), nullable=False),
    Column("load_no", Integer, nullable=False),
    Column("config_hash", String(64), nullable=True),
    Column("rows_read", Integer, nullable=False),
    Column("rows_accepted", Integer, nullable=False),
    Column("rows_quarantined", Integer, nullable=False),
    Column("details", Text, nullable=False),  # JSON: per dataset counts and totals
    Column("files", Text, nullable=False),  # JSON: files / pages / queries read, with sha256
    Column("control", Text, nullable=True),  # JSON: control totals shipped with the export, verbatim
    Column("staged_at", DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()),
    Column("merged_load_no", Integer, nullable=True),
    Column("merged_at", DateTime(timezone=True), nullable=True),
    Column("merge_summary", Text, nullable=True),  # JSON
    UniqueConstraint("source", "as_of_date"),
)

_LINEAGE = (
    lambda: Column("batch_id", ID, ForeignKey("ingest_batches.id"), nullable=False),
    lambda: Column("source_row", Integer, nullable=False),
    lambda: Column("source_file", String(300), nullable=False),
)

stg_invoices = Table(
    "stg_invoices",
    metadata,
    *(make() for make in _LINEAGE),
    Column("entity", CODE, nullable=False),
    Column("invoice_ref", REF, nullable=False),
    Column("customer_ref", REF, nullable=False),
    Column("customer_name", String(200), nullable=True),
    Column("parent_customer_ref", REF, nullable=True),
    Column("segment", String(32), nullable=True),
    Column("invoice_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("open_balance", MONEY, nullable=False),
    Column("fx_rate", RATE, nullable=False),
    Column("disputed", Boolean, nullable=False),
    Column("dispute_since", Date, nullable=True),
    Column("payment_plan", Boolean, nullable=False),
    Column("bankrupt", Boolean, nullable=False),
    Column("transferred_to_parent", Boolean, nullable=False),
    Column("description", String(200), nullable=True),
    Index("ix_stg_invoices_batch_id", "batch_id"),
)

stg_payments = Table(
    "stg_payments",
    metadata,
    *(make() for make in _LINEAGE),
    Column("entity", CODE, nullable=False),
    Column("payment_ref", REF, nullable=False),
    Column("customer_ref", REF, nullable=False),
    Column("payment_date", Date, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("invoice_ref", REF, nullable=True),
    Column("applied_amount", MONEY, nullable=True),
    Index("ix_stg_payments_batch_id", "batch_id"),
)

stg_activities = Table(
    "stg_activities",
    metadata,
    *(make() for make in _LINEAGE),
    Column("entity", CODE, nullable=False),
    Column("customer_ref", REF, nullable=False),
    Column("invoice_ref", REF, nullable=True),
    Column("activity_type", String(24), nullable=False),
    Column("activity_date", Date, nullable=False),
    Column("end_date", Date, nullable=True),
    Column("outcome", String(64), nullable=True),
    Index("ix_stg_activities_batch_id", "batch_id"),
)

ingest_quarantine = Table(
    "ingest_quarantine",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("batch_id", ID, ForeignKey("ingest_batches.id"), nullable=False),
    Column("dataset", String(16), nullable=False),
    Column("source_file", String(300), nullable=False),
    Column("source_row", Integer, nullable=True),
    Column("field", String(64), nullable=True),
    Column("reason", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("raw", Text, nullable=True),
    Index("ix_ingest_quarantine_batch_id", "batch_id"),
)

STAGING = {"invoices": stg_invoices, "payments": stg_payments, "activities": stg_activities}
