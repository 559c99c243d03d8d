"""unapplied cash account: every entity gets 2100 Unapplied Cash (liability)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Cash received beyond what can be applied to an invoice (e.g. more than remains written off) is booked
``Dr Cash / Cr Unapplied Cash`` (to be applied or refunded) instead of staying outside the GL. The account joins
the default chart (``writeoffs.accounting.chart.DEFAULT_CHART``); this migration adds it to entities created before.
It plays the role ``unapplied_cash`` through ``ROLE_DEFAULT_CODES`` (the ``accounts.role`` CHECK of 0001 is left as
it is: widening it would rebuild the table on SQLite).
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "INSERT INTO accounts (entity_code, code, name, account_type, role) "
        "SELECT e.code, '2100', 'Unapplied Cash', 'liability', NULL FROM legal_entities e "
        "WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.entity_code = e.code AND a.code = '2100')"
    )


def downgrade() -> None:
    op.execute(
        "DELETE FROM accounts WHERE code = '2100' AND name = 'Unapplied Cash' AND NOT EXISTS "
        "(SELECT 1 FROM journal_lines l WHERE l.entity_code = accounts.entity_code AND l.account_code = '2100')"
    )
