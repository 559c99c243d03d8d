"""Ledger schema (SQLAlchemy 2 Core tables), identical on SQLite and PostgreSQL.

Money columns are ``MONEY`` (:class:`writeoffs.db.money.ExactMoney`): ``NUMERIC(20, 4)`` on PostgreSQL, integer
ten-thousandths on SQLite (exact there too), always ``Decimal`` in Python; the 4 decimals cover every ISO 4217 minor
unit. Raw SQL that reads or writes money goes through ``writeoffs.db.money.from_db`` / ``to_db``.
Statuses are short strings with CHECK constraints (portable, readable in raw SQL and in audit reports).
The invariants that must hold even against raw SQL (balanced entries, immutable posted entries and audit rows,
closed periods) are enforced by triggers created in the migrations, see ``migrations/versions``.

One ``metadata`` (:mod:`.base`) holds every table, whichever submodule defines it; Alembic and everything else import
it from here. Submodules, by area: :mod:`.base` (the metadata, column types, status vocabularies),
:mod:`.receivables` (customers, invoices, payments, activities, holds), :mod:`.subledger` (invoice movements,
balance checkpoints, aging), :mod:`.reference` (chart of accounts, fiscal periods, policy versions), :mod:`.batches`
(write-off batches and items, the selection trail, approvals), :mod:`.journal` (journal entries and lines,
recoveries), :mod:`.controls` (allowance estimates, validation and reconciliation runs, the audit log).
"""

from __future__ import annotations

# isort: off
# Imported in definition order: the metadata lists its tables in the order they are defined.
from writeoffs.db.schema.base import (
    metadata,
    ID,
    MONEY,
    RATE,
    CODE,
    REF,
    INVOICE_STATUSES,
    ACTIVITY_TYPES,
    HOLD_TYPES,
    ACCOUNT_TYPES,
    ACCOUNT_ROLES,
    ENTRY_STATUSES,
    BATCH_STATUSES,
    WRITEOFF_STATUSES,
)
from writeoffs.db.schema.receivables import (
    currencies,
    legal_entities,
    customers,
    invoices,
    payments,
    payment_allocations,
    collection_activities,
    holds,
)
from writeoffs.db.schema.subledger import (
    MOVEMENT_KINDS,
    invoice_movements,
    balance_checkpoints,
    balance_checkpoint_rows,
    balance_checkpoint_summary,
    invoice_attribute_changes,
    aging_runs,
    aging_snapshots,
)
from writeoffs.db.schema.reference import (
    accounts,
    fiscal_periods,
    policy_versions,
)
from writeoffs.db.schema.batches import (
    writeoff_batches,
    writeoffs,
    DECISION_OUTCOMES,
    selection_runs,
    selection_decisions,
    approvals,
)
from writeoffs.db.schema.journal import (
    journal_entries,
    journal_lines,
    recoveries,
)
from writeoffs.db.schema.controls import (
    allowance_estimates,
    validation_runs,
    recon_runs,
    recon_breaks,
    audit_log,
)
# isort: on

__all__ = [
    "ACCOUNT_ROLES",
    "ACCOUNT_TYPES",
    "ACTIVITY_TYPES",
    "BATCH_STATUSES",
    "CODE",
    "DECISION_OUTCOMES",
    "ENTRY_STATUSES",
    "HOLD_TYPES",
    "ID",
    "INVOICE_STATUSES",
    "MONEY",
    "MOVEMENT_KINDS",
    "RATE",
    "REF",
    "WRITEOFF_STATUSES",
    "accounts",
    "aging_runs",
    "aging_snapshots",
    "allowance_estimates",
    "approvals",
    "audit_log",
    "balance_checkpoint_rows",
    "balance_checkpoint_summary",
    "balance_checkpoints",
    "collection_activities",
    "currencies",
    "customers",
    "fiscal_periods",
    "holds",
    "invoice_attribute_changes",
    "invoice_movements",
    "invoices",
    "journal_entries",
    "journal_lines",
    "legal_entities",
    "metadata",
    "payment_allocations",
    "payments",
    "policy_versions",
    "recon_breaks",
    "recon_runs",
    "recoveries",
    "selection_decisions",
    "selection_runs",
    "validation_runs",
    "writeoff_batches",
    "writeoffs",
]
