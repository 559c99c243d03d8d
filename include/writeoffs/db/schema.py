"""Ledger schema (SQLAlchemy 2 Core tables), identical on SQLite and PostgreSQL.

Money columns are ``MONEY`` (:class:`writeoffs.db.money.ExactMoney`): ``NUMERIC(20, 4)`` on PostgreSQL, integer
ten-thousandths on SQLite (exact there too), always ``Decimal`` in Python; the 4 decimals cover every ISO 4217 minor
unit. Raw SQL that reads or writes money goes through ``writeoffs.db.money.from_db`` / ``to_db``.
Statuses are short strings with CHECK constraints (portable, readable in raw SQL and in audit reports).
The invariants that must hold even against raw SQL (balanced entries, immutable posted entries and audit rows,
closed periods) are enforced by triggers created in the migrations, see ``migrations/versions``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)

from writeoffs.db.money import ExactMoney

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Surrogate keys: BIGINT on Postgres; INTEGER on SQLite so that it aliases the rowid and autoincrements.
ID = BigInteger().with_variant(Integer(), "sqlite")
MONEY = ExactMoney()
RATE = Numeric(20, 10, asdecimal=True)
CODE = String(16)
REF = String(64)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


INVOICE_STATUSES = (
    "open",  # receivable on the books, collectable
    "paid",  # open balance reached zero through payments
    "charged_off",  # declared unlikely to be collected; still on the books
    "written_off",  # removed from AR (fully, or the written-off part of a partial write-off)
    "partially_recovered",  # money arrived after write-off, less than written off
    "recovered",  # everything written off was recovered
    "reversed",  # write-off undone: receivable reinstated (open balance restored)
)
ACTIVITY_TYPES = (
    "contact_attempt",
    "demand_letter",
    "agency_placement",
    "legal_action",
)
HOLD_TYPES = ("dispute", "payment_plan")
ACCOUNT_TYPES = ("asset", "contra_asset", "liability", "equity", "income", "expense")
ACCOUNT_ROLES = (
    "ar_control",
    "bad_debt_expense",
    "allowance",
    "recovery_income",
    "cash",
    "suspense",
)
ENTRY_STATUSES = ("pending", "posted")
BATCH_STATUSES = (
    "proposed",
    "awaiting_approval",
    "approved",
    "confirmed",
    "rejected",
    "expired",
    "posted",
    "partially_posted",
)
WRITEOFF_STATUSES = (
    "candidate",
    "excluded",
    "approved",
    "rejected",
    "expired",
    "posted",
    "skipped",
    "reversed",
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

#: Why an invoice's open balance or status moved (migration 0013). ``opening``: the balance the ledger held when the
#: sub-ledger history began; ``direct``: a change made outside the ledger's functions (raw SQL), recorded all the same.
MOVEMENT_KINDS = ("opening", "ingest", "charge_off", "writeoff", "recovery", "reversal", "reversal_cleared", "direct")

# The point-in-time sub-ledger (migration 0013): one immutable row per change of an invoice's open balance or status,
# written by the database itself (triggers on invoices) in the statement that changes it; see writeoffs.subledger.
# No foreign key on purpose (a per-row trigger per movement at ingest scale); the only writer is the invoices
# trigger, which writes ids of rows it has just seen.
invoice_movements = Table(
    "invoice_movements",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("invoice_id", ID, nullable=False),
    Column("effective_date", Date, nullable=False),  # the business date of the change
    Column("recorded_at", String(32), nullable=False),  # when the ledger learned it: UTC 'YYYY-MM-DD HH:MM:SS.ffffff'
    Column("kind", String(16), nullable=False),
    Column("balance_change", MONEY, nullable=False),  # signed change of open_balance (the first movement: all of it)
    Column("status", String(24), nullable=False),  # the invoice's status after the change
    Column("ref", String(200), nullable=True),  # the document or run that moved it (ingest load, batch, recovery key)
    CheckConstraint(_in("kind", MOVEMENT_KINDS), name="kind"),
    Index("ix_invoice_movements_invoice_id_effective_date", "invoice_id", "effective_date"),
    Index("ix_invoice_movements_effective_date", "effective_date"),
)

#: Balance checkpoints (migration 0016): derived from ``invoice_movements``, never a source of truth. A checkpoint of
#: ``as_of_date`` holds, per invoice, the sum of the movements effective on or before that date with an id up to
#: ``movements_through`` (the high-water mark when it was built); every movement up to that id was recorded by
#: ``recorded_through``. Only non-zero balances are stored. See ``writeoffs.subledger`` ("checkpoints").
balance_checkpoints = Table(
    "balance_checkpoints",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("as_of_date", Date, nullable=False),
    Column("movements_through", ID, nullable=False),  # highest invoice_movements.id covered
    Column("recorded_through", String(32), nullable=False),  # every covered movement was recorded by then (UTC text)
    UniqueConstraint("as_of_date"),
)

balance_checkpoint_rows = Table(
    "balance_checkpoint_rows",
    metadata,
    Column("checkpoint_id", ID, ForeignKey("balance_checkpoints.id"), primary_key=True),
    Column("invoice_id", ID, primary_key=True),
    Column("balance", MONEY, nullable=False),
)

aging_runs = Table(
    "aging_runs",
    metadata,
    Column("as_of_date", Date, primary_key=True),
    Column("basis", String(16), nullable=False, server_default="due_date"),
    Column("bucket_spec", Text, nullable=False),
    Column("invoice_count", Integer, nullable=False),
    Column(
        "computed_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.current_timestamp(),
    ),
    CheckConstraint(_in("basis", ("due_date", "invoice_date")), name="basis"),
)

aging_snapshots = Table(
    "aging_snapshots",
    metadata,
    Column("as_of_date", Date, primary_key=True),
    Column("invoice_id", ID, ForeignKey("invoices.id"), primary_key=True),
    Column("entity_code", CODE, nullable=False),
    Column("customer_id", ID, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("days_past_due", Integer, nullable=False),
    Column("bucket", String(16), nullable=False),
    Column("open_balance", MONEY, nullable=False),
    Index(
        "ix_aging_snapshots_as_of_entity_currency",
        "as_of_date",
        "entity_code",
        "currency",
    ),
)

accounts = Table(
    "accounts",
    metadata,
    Column("entity_code", CODE, ForeignKey("legal_entities.code"), primary_key=True),
    Column("code", CODE, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("account_type", String(16), nullable=False),
    Column("role", String(24), nullable=True),  # the default account for a posting role
    CheckConstraint(_in("account_type", ACCOUNT_TYPES), name="type"),
    CheckConstraint(f"role IS NULL OR {_in('role', ACCOUNT_ROLES)}", name="role"),
    UniqueConstraint("entity_code", "role"),
)

fiscal_periods = Table(
    "fiscal_periods",
    metadata,
    Column("entity_code", CODE, ForeignKey("legal_entities.code"), primary_key=True),
    Column("period", String(7), primary_key=True),  # YYYY-MM
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("status", String(8), nullable=False, server_default="open"),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("closed_by", REF, nullable=True),
    CheckConstraint(_in("status", ("open", "closed")), name="status"),
    CheckConstraint("end_date >= start_date", name="dates"),
)

policy_versions = Table(
    "policy_versions",
    metadata,
    Column("content_hash", String(64), primary_key=True),
    Column("version", String(32), nullable=False),
    Column("content", Text, nullable=False),
    Column(
        "loaded_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.current_timestamp(),
    ),
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
