"""Write-off batches and their items, the selection's decision trail, approvals."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
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

from writeoffs.db.schema.base import (
    BATCH_STATUSES,
    CODE,
    ID,
    MONEY,
    REF,
    WRITEOFF_STATUSES,
    _in,
    metadata,
)

writeoff_batches = Table(
    "writeoff_batches",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("batch_key", String(200), nullable=False, unique=True),
    Column("entity_code", CODE, ForeignKey("legal_entities.code"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("tier", String(24), nullable=False),
    Column("as_of_date", Date, nullable=False),
    Column("policy_version", String(32), nullable=False),
    Column("policy_hash", String(64), nullable=False),
    Column("status", String(20), nullable=False, server_default="proposed"),
    Column("item_count", Integer, nullable=False, server_default="0"),
    Column("total_amount", MONEY, nullable=False, server_default="0"),
    Column("batch_hash", String(64), nullable=True),  # hash of the items as shown to the approver
    Column("prepared_by", REF, nullable=True),
    Column("dag_run_id", String(250), nullable=True),
    # Who triggered the approval run that claimed the batch (0008): like the preparer, they may answer no step.
    Column("routed_by", REF, nullable=True),
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.current_timestamp(),
    ),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    CheckConstraint(_in("status", BATCH_STATUSES), name="status"),
)

# PostgreSQL keeps half of each page free (fillfactor 50, migration 0012): the status changes of a write-off's life
# (approved, posted, skipped, reversed) then update the row in place (HOT), without writing the five indexes.
writeoffs = Table(
    "writeoffs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("batch_id", ID, ForeignKey("writeoff_batches.id"), nullable=True),
    Column("invoice_id", ID, ForeignKey("invoices.id"), nullable=False),
    Column("as_of_date", Date, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("reason_code", String(32), nullable=False),
    Column("rule", String(64), nullable=False),  # the policy rule that fired
    Column("evidence", Text, nullable=True),  # JSON: days past due, attempts, letters, agency days, ...
    Column("tier", String(24), nullable=False),
    Column("policy_version", String(32), nullable=False),
    Column("policy_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False, server_default="candidate"),
    Column("skip_reason", String(200), nullable=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("journal_entry_id", ID, ForeignKey("journal_entries.id"), nullable=True),
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.current_timestamp(),
    ),
    Column("posted_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("as_of_date", "policy_hash", "invoice_id"),
    CheckConstraint("amount > 0", name="amount_pos"),
    CheckConstraint(_in("status", WRITEOFF_STATUSES), name="status"),
    Index("ix_writeoffs_batch_id", "batch_id"),
    Index("ix_writeoffs_invoice_id", "invoice_id"),
)

#: Outcomes of the selection's decision per invoice (writeoffs.policy.selection).
DECISION_OUTCOMES = ("candidate", "excluded", "not_eligible")

# The decision trail (migration 0010): one row per selection run (as-of date + policy) and, per run, one compact row
# per invoice the run considered (the screened population): the rule that fired, or the exclusion that stopped the
# route that fired, or the shortfall. Invoices under every route's threshold are counted on the run, not stored.
selection_runs = Table(
    "selection_runs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("as_of_date", Date, nullable=False),
    Column("policy_version", String(32), nullable=False),
    Column("policy_hash", String(64), nullable=False),
    Column("considered", Integer, nullable=False),
    Column("candidates", Integer, nullable=False),
    Column("excluded", Integer, nullable=False),
    Column("not_eligible", Integer, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()),
    UniqueConstraint("as_of_date", "policy_hash"),
)

selection_decisions = Table(
    "selection_decisions",
    metadata,
    # No foreign keys on purpose (a per-row trigger on every considered invoice of every run); the selection checks
    # set-wise that no row is orphaned (writeoffs.policy.selection.record_decisions).
    Column("run_id", ID, primary_key=True),
    Column("invoice_id", ID, primary_key=True),
    Column("outcome", String(16), nullable=False),
    Column("rule", String(64), nullable=False),  # candidate: the route; excluded: the exclusion; else the shortfall
    Column("route", String(64), nullable=True),  # excluded: the route the exclusion stopped
    Column("evidence", Text, nullable=True),  # JSON, excluded invoices only (a candidate's is on its write-off)
    CheckConstraint(_in("outcome", DECISION_OUTCOMES), name="outcome"),
    Index("ix_selection_decisions_invoice_id", "invoice_id"),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("batch_id", ID, ForeignKey("writeoff_batches.id"), nullable=False),
    Column("step", String(16), nullable=False),  # approve | confirm
    Column("tier", String(24), nullable=False),
    Column("approver", REF, nullable=False),
    Column("decision", String(16), nullable=False),  # approved | rejected | confirmed | expired | escalated
    Column("comment", Text, nullable=True),  # internal only, never shown to customers
    Column("excluded_invoice_refs", Text, nullable=True),  # JSON list
    Column("limit_amount", MONEY, nullable=True),
    Column("policy_version", String(32), nullable=False),
    Column("batch_hash", String(64), nullable=False),
    Column(
        "decided_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.current_timestamp(),
    ),
    UniqueConstraint("batch_id", "step"),
    CheckConstraint(_in("step", ("approve", "confirm")), name="step"),
    Index("ix_approvals_batch_id", "batch_id"),
)
