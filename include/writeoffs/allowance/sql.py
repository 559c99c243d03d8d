"""SQL helpers shared by the allowance queries: portable inline tables, the aging subquery, exact sums."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection

from writeoffs import subledger
from writeoffs.db import dialect
from writeoffs.db.money import from_db_or_zero

_Q4 = Decimal("0.0001")


def _dec(value: object) -> Decimal:
    """A typed money value (already Decimal) at the ledger's 4 decimals; NULL is 0."""
    return Decimal(0).quantize(_Q4) if value is None else Decimal(str(value)).quantize(_Q4)


def _union_rows(prefix: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[object]]) -> tuple[str, dict]:
    """A portable inline table (``SELECT :p0 AS a, ... UNION ALL ...``); SQLite lacks ``VALUES ... AS t(a, b)``."""
    params: dict[str, object] = {}
    parts = []
    for n, row in enumerate(rows):
        cols = []
        for (name, sql_type), value in zip(columns, row, strict=True):
            key = f"{prefix}{n}_{name}"
            params[key] = value
            cols.append(f"CAST(:{key} AS {sql_type}) AS {name}")
        parts.append("SELECT " + ", ".join(cols))
    if not parts:
        nulls = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in columns)
        parts.append(f"SELECT {nulls} WHERE 1 = 0")
    return " UNION ALL ".join(parts), params


def _aged(conn: Connection, as_of: date) -> str:
    """The invoices' aging as of ``as_of`` from movements (one home: writeoffs.subledger), as an SQL subquery."""
    basis, buckets = subledger.aging_spec(conn, as_of)
    return f"({subledger.aged_invoices_sql(dialect.of(conn), basis=basis, buckets=buckets)})"


def _money_sum(dialect: str, value: object) -> Decimal:
    return from_db_or_zero(dialect, value).quantize(_Q4)
