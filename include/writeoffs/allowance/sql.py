"""SQL helpers shared by the allowance queries: portable inline tables, the aging subquery, exact sums."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from sqlalchemy import (
    CTE,
    Connection,
    Date,
    Numeric,
    String,
    Subquery,
    bindparam,
    cast,
    column,
    false,
    literal,
    null,
    select,
    text,
    type_coerce,
    union_all,
)
from sqlalchemy.types import NullType, TypeEngine

from writeoffs import subledger
from writeoffs.db import dialect
from writeoffs.db.dialect import Dialect
from writeoffs.db.money import from_db_or_zero

_Q4 = Decimal("0.0001")

#: The columns of the inline tables: (entity, currency) pairs and loss rates per entity and bucket.
PAIR_COLUMNS: tuple[tuple[str, TypeEngine], ...] = (("entity_code", String(16)), ("currency", String(3)))
RATE_COLUMNS: tuple[tuple[str, TypeEngine], ...] = (
    ("entity_code", String(16)),
    ("bucket", String(16)),
    ("rate", Numeric(9, 6)),
)
#: What :func:`subledger.aged_invoices_sql` selects.
_AGED_COLUMNS = ("invoice_id", "entity_code", "currency", "customer_id", "days_past_due", "bucket", "open_balance")


def _dec(value: object) -> Decimal:
    """A typed money value (already Decimal) at the ledger's 4 decimals; NULL is 0."""
    return Decimal(0).quantize(_Q4) if value is None else Decimal(str(value)).quantize(_Q4)


def _union_rows(name: str, columns: Sequence[tuple[str, TypeEngine]], rows: Sequence[Sequence[object]]) -> CTE:
    """A portable inline table (``SELECT CAST(:p AS t) AS a, ... UNION ALL ...``) as the CTE ``name``; SQLite lacks
    ``VALUES ... AS t(a, b)``. Values are bind parameters; the columns come back as stored (read by ``db.money``)."""

    def col(value: object, cname: str, sql_type: TypeEngine) -> object:
        return type_coerce(cast(value, sql_type), NullType()).label(cname)

    selects = [select(*(col(literal(v), c, t) for (c, t), v in zip(columns, row, strict=True))) for row in rows] or [
        select(*(col(null(), c, t) for c, t in columns)).where(false())
    ]
    return (selects[0] if len(selects) == 1 else union_all(*selects)).cte(name)


def _aged(conn: Connection, as_of: date) -> Subquery:
    """The invoices' aging as of ``:d`` from movements (one home: writeoffs.subledger), as the subquery ``s``."""
    basis, buckets = subledger.aging_spec(conn, as_of)
    aged = text(subledger.aged_invoices_sql(dialect.of(conn), basis=basis, buckets=buckets))
    aged = aged.bindparams(bindparam("d", type_=Date))
    return aged.columns(*(column(c) for c in _AGED_COLUMNS)).subquery("s")


def _money_sum(d: Dialect, value: object) -> Decimal:
    return from_db_or_zero(d, value).quantize(_Q4)
