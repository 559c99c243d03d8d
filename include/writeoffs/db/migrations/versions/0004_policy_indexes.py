"""policy indexes: open invoices by aging date (charge-off)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

``ix_invoices_status_due_date`` serves the charge-off UPDATE, whose predicate is ``status = 'open' AND due_date <=
as_of - <lowest charge_off_days>``: once the first run has moved every old invoice to ``charged_off``, a daily run
reads only the invoices that crossed the threshold since (an index range), not the whole invoice table.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_invoices_status_due_date", "invoices", ["status", "due_date"])


def downgrade() -> None:
    op.drop_index("ix_invoices_status_due_date", table_name="invoices")
