"""Controls: allowance estimates, validation runs, reconciliation runs and breaks, the audit log."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

from writeoffs.db.schema.base import (
    CODE,
    ID,
    MONEY,
    REF,
    metadata,
)

allowance_estimates = Table(
    "allowance_estimates",
    metadata,
    Column("as_of_date", Date, primary_key=True),
    Column("entity_code", CODE, primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("bucket", String(16), primary_key=True),
    Column("open_balance", MONEY, nullable=False),
    Column("loss_rate", Numeric(9, 6), nullable=False),
    Column("required_allowance", MONEY, nullable=False),
)

validation_runs = Table(
    "validation_runs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("run_key", String(250), nullable=False),
    Column("as_of_date", Date, nullable=False),
    Column("source", REF, nullable=True),
    Column("suite", String(64), nullable=False),
    Column("evaluated", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("blocking_failed", Integer, nullable=False),
    Column("rows_quarantined", Integer, nullable=False),
    Column("report_path", String(500), nullable=True),
    Column("details", Text, nullable=True),  # JSON per expectation
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.current_timestamp(),
    ),
    UniqueConstraint("run_key", "suite"),
)

recon_runs = Table(
    "recon_runs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("run_key", String(250), nullable=False, unique=True),
    Column("as_of_date", Date, nullable=False),
    Column("checks_run", Integer, nullable=False),
    Column("break_count", Integer, nullable=False),
    Column("report_path", String(500), nullable=True),
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.current_timestamp(),
    ),
)

recon_breaks = Table(
    "recon_breaks",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("run_id", ID, ForeignKey("recon_runs.id"), nullable=False),
    Column("check_name", String(64), nullable=False),
    Column("entity_code", CODE, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("account_code", CODE, nullable=True),
    Column("expected", MONEY, nullable=True),
    Column("actual", MONEY, nullable=True),
    Column("difference", MONEY, nullable=True),
    Column("documents", Text, nullable=True),  # JSON list of affected documents
    Column("message", Text, nullable=False),
    Index("ix_recon_breaks_run_id", "run_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("recorded_at", String(32), nullable=False),  # ISO-8601 UTC text: hashed exactly as stored
    Column("actor", REF, nullable=False),
    Column("action", String(64), nullable=False),
    Column("object_type", String(32), nullable=False),
    Column("object_id", String(200), nullable=True),
    Column("details", Text, nullable=False),  # canonical JSON
    Column("prev_hash", String(64), nullable=False),
    Column("row_hash", String(64), nullable=False, unique=True),
)
