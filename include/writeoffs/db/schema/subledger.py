"""The point-in-time sub-ledger's tables: invoice movements, balance checkpoints, aging runs and snapshots."""

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
    CODE,
    ID,
    MONEY,
    _in,
    metadata,
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
    Column("attributes_through", ID, nullable=False),  # highest invoice_attribute_changes.id when built (0017)
    UniqueConstraint("as_of_date"),
)

#: A checkpoint row copies what the aging groups by, as it was when the checkpoint was built (migration 0017); an
#: invoice whose attributes changed since (``invoice_attribute_changes``) is read from ``invoices`` instead.
balance_checkpoint_rows = Table(
    "balance_checkpoint_rows",
    metadata,
    Column("checkpoint_id", ID, ForeignKey("balance_checkpoints.id"), primary_key=True),
    Column("invoice_id", ID, primary_key=True),
    Column("balance", MONEY, nullable=False),
    Column("entity_code", CODE, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("customer_id", ID, nullable=False),
    Column("invoice_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
)

#: A checkpoint's positive balances summed per entity, currency, invoice date and due date (migration 0017): the
#: aging of any date buckets these few rows instead of every invoice. Derived from the checkpoint's rows when built.
balance_checkpoint_summary = Table(
    "balance_checkpoint_summary",
    metadata,
    Column("checkpoint_id", ID, ForeignKey("balance_checkpoints.id"), primary_key=True),
    Column("entity_code", CODE, primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("invoice_date", Date, primary_key=True),
    Column("due_date", Date, primary_key=True),
    Column("invoice_count", Integer, nullable=False),
    Column("balance", MONEY, nullable=False),
)

#: Every change of an invoice's entity, currency, customer, invoice date or due date (migration 0017), written by
#: the database in the statement that makes it; immutable. Checkpoints use it to know which of their copies still hold.
invoice_attribute_changes = Table(
    "invoice_attribute_changes",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("invoice_id", ID, nullable=False),
    Column("recorded_at", String(32), nullable=False),  # UTC 'YYYY-MM-DD HH:MM:SS.ffffff', the database's clock
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
