"""exact money on SQLite: amounts become integer ten-thousandths; balance trigger compares integers

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

SQLite has no decimal type: a NUMERIC(20, 4) column stored each amount as a REAL, so large amounts lost digits
(``99999999999999.99`` read back as ``99999999999999.9844``) and sums drifted. From this revision SQLite stores every
money column as an INTEGER of ten-thousandths (see ``writeoffs.db.money``). The declared column types do not change
(NUMERIC affinity keeps integers as integers), so no table is rebuilt; this migration

- converts the existing values of every money column (a REAL is read as the shortest decimal that round-trips the
  float, i.e. the amount that was meant, and kept to 4 decimals; an INTEGER is multiplied exactly);
- recreates ``trg_je_post_check`` so that an entry balances when the integer sums are equal (no ROUND of floats);
- leaves the immutability triggers as they were (``trg_jl_posted_no_update`` is dropped for the conversion of posted
  lines and recreated identical).

PostgreSQL keeps NUMERIC(20, 4), already exact: nothing to do there. Downgrade converts back to REAL (lossy above
15 significant digits, as the old storage was) and restores the old trigger.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: Every money column at this revision (frozen here: a later schema change must not change what 0007 converts).
MONEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "invoices": ("amount", "open_balance", "written_off_amount", "recovered_amount"),
    "payments": ("amount",),
    "payment_allocations": ("amount",),
    "aging_snapshots": ("open_balance",),
    "writeoff_batches": ("total_amount",),
    "writeoffs": ("amount",),
    "approvals": ("limit_amount",),
    "journal_lines": ("debit", "credit", "functional_debit", "functional_credit"),
    "recoveries": ("amount",),
    "allowance_estimates": ("open_balance", "required_allowance"),
    "recon_breaks": ("expected", "actual", "difference"),
    "stg_invoices": ("amount", "open_balance"),
    "stg_payments": ("amount", "applied_amount"),
}
_SCALE = 4
_FACTOR = 10**_SCALE
_QUANTUM = Decimal(1).scaleb(-_SCALE)
_INT64_MAX = 2**63 - 1
_CHUNK = 5000

_POSTED_NO_UPDATE = """CREATE TRIGGER trg_jl_posted_no_update BEFORE UPDATE ON journal_lines
        WHEN (SELECT status FROM journal_entries WHERE id = OLD.entry_id) = 'posted'
          OR (SELECT status FROM journal_entries WHERE id = NEW.entry_id) = 'posted'
        BEGIN SELECT RAISE(ABORT, 'ledger: posted journal entry is immutable; post a reversal'); END"""

_POST_CHECK = """CREATE TRIGGER trg_je_post_check BEFORE UPDATE ON journal_entries
        WHEN OLD.status = 'pending' AND NEW.status = 'posted' AND (
            (SELECT COUNT(*) FROM journal_lines l WHERE l.entry_id = NEW.id) < 2
            OR EXISTS (SELECT 1 FROM journal_lines l WHERE l.entry_id = NEW.id
                GROUP BY l.currency HAVING {debit} <> {credit})
            OR EXISTS (SELECT 1 FROM journal_lines l WHERE l.entry_id = NEW.id
                GROUP BY l.functional_currency HAVING {fdebit} <> {fcredit}))
        BEGIN SELECT RAISE(ABORT, 'ledger: unbalanced journal entry refused'); END"""
#: Integer ten-thousandths: the sums are exact, equal or not. (typeof() guards against a REAL slipping in by raw SQL:
#: such a line never balances, so the entry cannot be posted.)
_POST_CHECK_EXACT = _POST_CHECK.format(
    debit="SUM(l.debit) + SUM(typeof(l.debit) <> 'integer' OR typeof(l.credit) <> 'integer')",
    credit="SUM(l.credit)",
    fdebit=(
        "SUM(l.functional_debit)"
        " + SUM(typeof(l.functional_debit) <> 'integer' OR typeof(l.functional_credit) <> 'integer')"
    ),
    fcredit="SUM(l.functional_credit)",
)
#: As migration 0002 created it (REAL amounts, compared after rounding to 4 decimals).
_POST_CHECK_FLOAT = _POST_CHECK.format(
    debit="ROUND(SUM(l.debit) - SUM(l.credit), 4)",
    credit="0",
    fdebit="ROUND(SUM(l.functional_debit) - SUM(l.functional_credit), 4)",
    fcredit="0",
)


def _to_scaled(value: object, where: str) -> int:
    if isinstance(value, int):
        dec = Decimal(value)
    elif isinstance(value, float):
        # repr(): the shortest decimal that reads back as this float, i.e. the amount that was stored.
        dec = Decimal(repr(value))
    else:  # a number stored as TEXT (raw SQL into a NUMERIC column can leave one)
        dec = Decimal(str(value).strip())
    if not dec.is_finite():
        raise ValueError(f"0007: {where}: {value!r} is not an amount")
    scaled = int(dec.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN).scaleb(_SCALE))
    if abs(scaled) > _INT64_MAX:
        raise ValueError(f"0007: {where}: {value!r} is beyond what SQLite stores exactly at 4 decimals")
    return scaled


def _from_scaled(value: object, where: str) -> float:
    if not isinstance(value, int):
        raise ValueError(f"0007 downgrade: {where}: {value!r} is not integer ten-thousandths")
    return float(Decimal(value).scaleb(-_SCALE))


def _convert(conn: sa.Connection, convert) -> None:
    """Every money column of a row in one UPDATE: CHECKs across columns (open_balance <= amount) hold throughout."""
    tables = set(sa.inspect(conn).get_table_names())
    for table, columns in MONEY_COLUMNS.items():
        if table not in tables:
            continue
        cols = ", ".join(columns)
        sets = ", ".join(f"{c} = :{c}" for c in columns)
        last = 0
        while True:
            rows = conn.execute(
                sa.text(f"SELECT rowid, {cols} FROM {table} WHERE rowid > :last ORDER BY rowid LIMIT {_CHUNK}"),
                {"last": last},
            ).all()
            if not rows:
                break
            conn.execute(
                sa.text(f"UPDATE {table} SET {sets} WHERE rowid = :id"),
                [
                    {"id": row[0]}
                    | {
                        c: None if v is None else convert(v, f"{table}.{c} rowid {row[0]}")
                        for c, v in zip(columns, row[1:], strict=True)
                    }
                    for row in rows
                ],
            )
            last = rows[-1][0]


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    conn.execute(sa.text("DROP TRIGGER IF EXISTS trg_jl_posted_no_update"))
    conn.execute(sa.text("DROP TRIGGER IF EXISTS trg_je_post_check"))
    _convert(conn, _to_scaled)
    conn.execute(sa.text(_POSTED_NO_UPDATE))
    conn.execute(sa.text(_POST_CHECK_EXACT))


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    conn.execute(sa.text("DROP TRIGGER IF EXISTS trg_jl_posted_no_update"))
    conn.execute(sa.text("DROP TRIGGER IF EXISTS trg_je_post_check"))
    _convert(conn, _from_scaled)
    conn.execute(sa.text(_POSTED_NO_UPDATE))
    conn.execute(sa.text(_POST_CHECK_FLOAT))
