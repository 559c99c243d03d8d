"""selection decision trail: selection_runs and selection_decisions

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

Every selection run (business date + policy) records, per invoice it considered, the rule that fired or the exclusion
that stopped it (writeoffs.policy.selection.record_decisions), so ``python -m writeoffs trail`` can say why an
invoice was *not* written off. Table definitions: ``writeoffs.db.schema``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "selection_runs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("policy_hash", sa.String(length=64), nullable=False),
        sa.Column("considered", sa.Integer(), nullable=False),
        sa.Column("candidates", sa.Integer(), nullable=False),
        sa.Column("excluded", sa.Integer(), nullable=False),
        sa.Column("not_eligible", sa.Integer(), nullable=False),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_selection_runs")),
        sa.UniqueConstraint("as_of_date", "policy_hash", name=op.f("uq_selection_runs_as_of_date_policy_hash")),
    )
    op.create_table(
        "selection_decisions",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("invoice_id", ID, nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("route", sa.String(length=64), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('candidate', 'excluded', 'not_eligible')", name=op.f("ck_selection_decisions_outcome")
        ),
        sa.PrimaryKeyConstraint("run_id", "invoice_id", name=op.f("pk_selection_decisions")),
    )
    op.create_index("ix_selection_decisions_invoice_id", "selection_decisions", ["invoice_id"])


def downgrade() -> None:
    op.drop_index("ix_selection_decisions_invoice_id", table_name="selection_decisions")
    op.drop_table("selection_decisions")
    op.drop_table("selection_runs")
