"""write-off batches remember who routed them for approval (four eyes)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

``writeoff_batches.routed_by``: the authenticated user who triggered the approval run that claimed the batch, or
the approval system for scheduled/asset-triggered runs. Like the preparer, that person may answer neither step of
the batch; the ledger refuses it when the decision is recorded and again at posting.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("writeoff_batches", sa.Column("routed_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("writeoff_batches") as batch:
        batch.drop_column("routed_by")
