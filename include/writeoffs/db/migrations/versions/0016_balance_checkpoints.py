"""sub-ledger balance checkpoints: per-invoice balances at period ends, derived from the movements

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

Issue 19. "As of D" from the movements costs the movements between D and today (current balance minus what came
later), so a date two months back re-aggregates two months of history. A checkpoint holds, for one date C (a month
end), every invoice's balance from the movements effective on or before C, and the as-of query starts from the
checkpoint nearest D and adds or subtracts at most about a month of movements (``writeoffs.subledger``).

**Derived data, never a second source of truth.** A checkpoint is built by ONE ``INSERT ... SELECT`` over
``invoice_movements`` (``writeoffs.subledger.build_checkpoint``) and records the movement high-water mark it covers
(``movements_through``: the highest movement id; ``recorded_through``: the database's clock when it was built, by
which every covered movement had been recorded). Movements that arrive later (a late extract effective before C)
have higher ids and are added at query time, so a checkpoint never goes stale; a question it cannot answer exactly
("as known" before it was built) falls back to the movements alone.

**Immutable; rebuilt by deletion.** Nobody updates a checkpoint: the runtime role may only INSERT and SELECT
(``writeoffs.db.roles``), and a build of a date that has one does nothing. Reconciliation's ``checkpoints`` check
recomputes every checkpoint from the movements; a checkpoint it flags is deleted by the owner (rows, then header)
and built again by the next ingest (or ``build_checkpoint``). Dropping both tables loses nothing but speed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from writeoffs.db.money import ExactMoney

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ident = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "balance_checkpoints",
        sa.Column("id", ident, primary_key=True, autoincrement=True),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("movements_through", ident, nullable=False),
        sa.Column("recorded_through", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_balance_checkpoints"),
        sa.UniqueConstraint("as_of_date", name="uq_balance_checkpoints_as_of_date"),
    )
    op.create_table(
        "balance_checkpoint_rows",
        sa.Column("checkpoint_id", ident, nullable=False),
        sa.Column("invoice_id", ident, nullable=False),
        sa.Column("balance", ExactMoney(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["balance_checkpoints.id"],
            name="fk_balance_checkpoint_rows_checkpoint_id_balance_checkpoints",
        ),
        sa.PrimaryKeyConstraint("checkpoint_id", "invoice_id", name="pk_balance_checkpoint_rows"),
    )


def downgrade() -> None:
    op.drop_table("balance_checkpoint_rows")
    op.drop_table("balance_checkpoints")
