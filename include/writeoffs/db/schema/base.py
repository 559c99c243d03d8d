"""The shared ``metadata``, the column types and the status vocabularies the tables check."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Integer,
    MetaData,
    Numeric,
    String,
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
