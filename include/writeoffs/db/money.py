"""How money is stored: the one home of encoding and decoding amounts for each database.

- PostgreSQL: ``NUMERIC(20, 4)``, exact; values travel as ``Decimal`` both ways (nothing changes there).
- SQLite: it has no decimal type (a NUMERIC column stores a REAL, so ``99999999999999.99`` came back as
  ``99999999999999.9844`` and sums drifted). Amounts are stored as INTEGER ten-thousandths (``12.34`` -> ``123400``):
  exact to store, to compare and to ``SUM`` (SQLite sums integers exactly and raises ``integer overflow`` instead of
  losing digits). The column keeps its declared ``NUMERIC(20, 4)`` (NUMERIC affinity leaves integers as they are), so
  the schema is the same on both databases and no table had to be rebuilt (migration 0007 converted the values).

Encoding fails closed, never rounds: an amount with more than 4 decimals (on both databases: PostgreSQL would round
it to the column's scale), a float, or on SQLite one beyond what an int64 holds at scale 4 (about 922 trillion)
raises :class:`~writeoffs.errors.InvalidAmount`. Decoding refuses a REAL read from
SQLite (a column left unconverted, or SQL arithmetic such as ``amount * fx_rate`` that left the integers).

Typed SQLAlchemy columns (``schema.MONEY``) encode and decode by themselves, also through ``SUM``/``COALESCE`` and
``+``/``-`` of two money expressions. Raw SQL (``text()``) that reads money must decode with :func:`from_db` (or
type its columns with ``.columns(x=MONEY)``), and raw SQL that writes money must bind :func:`to_db`. Never multiply a
money column by a rate or a percentage in SQL on SQLite: compute that in Python with ``Decimal``.
"""

from __future__ import annotations

import operator
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, Numeric
from sqlalchemy.sql import operators
from sqlalchemy.types import TypeDecorator

from writeoffs.db import dialect as db_dialect
from writeoffs.errors import InvalidAmount
from writeoffs.money import DB_SCALE, decimal_places, to_decimal

#: SQLite stores ``amount * SCALE_FACTOR`` as an integer.
SCALE_FACTOR = 10**DB_SCALE
#: Integer cents to SQLite's ten-thousandths (bulk loaders of amounts already held as integer cents).
SCALED_PER_CENT = SCALE_FACTOR // 100
_INT64_MAX = 2**63 - 1
#: Largest absolute amount SQLite can hold at scale 4 (int64): 922,337,203,685,477.5807.
SQLITE_MAX = Decimal(_INT64_MAX).scaleb(-DB_SCALE)
_QUANTUM = Decimal(1).scaleb(-DB_SCALE)
#: Operators whose other operand is an amount too (compared with, added to or subtracted from money).
_MONEY_OPERANDS = frozenset(
    {
        operator.add,
        operator.sub,
        operators.eq,
        operators.ne,
        operators.lt,
        operators.le,
        operators.gt,
        operators.ge,
        operators.between_op,
        operators.not_between_op,
        operators.in_op,
        operators.not_in_op,
    }
)


def _is_sqlite(bind: Any) -> bool:
    """Amounts are stored as integers where the database has no exact decimal type (SQLite)."""
    return db_dialect.money_as_integers(bind)


def _too_many_decimals(dec: Decimal) -> InvalidAmount:
    return InvalidAmount(
        f"amount {format(dec, 'f')} has more than {DB_SCALE} decimals; the ledger stores {DB_SCALE} (never rounds)"
    )


def encode_scaled(value: object) -> int:
    """An amount as SQLite's integer ten-thousandths, exactly, or :class:`InvalidAmount`."""
    dec = to_decimal(value)  # refuses floats, NaN, non-numbers
    if decimal_places(dec) > DB_SCALE:
        raise _too_many_decimals(dec)
    if abs(dec) > SQLITE_MAX:
        raise InvalidAmount(
            f"amount {format(dec, 'f')} is beyond what the SQLite ledger stores exactly ({format(SQLITE_MAX, 'f')}); "
            "use PostgreSQL for such amounts"
        )
    return int(dec.scaleb(DB_SCALE))


def decode_scaled(value: object) -> Decimal:
    """SQLite's integer ten-thousandths back to a ``Decimal`` with 4 decimals; a REAL is refused (not exact)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(
            f"money read from SQLite as {type(value).__name__} {value!r}, expected integer ten-thousandths "
            "(unconverted column, or SQL arithmetic on money: compute it in Python)"
        )
    return Decimal(value).scaleb(-DB_SCALE).quantize(_QUANTUM)


def to_db(dialect: Any, value: object) -> object:
    """The value to bind for a money column in raw SQL (``dialect``: a Dialect, Connection, Engine or name)."""
    if value is None:
        return None
    if _is_sqlite(dialect):
        return encode_scaled(value)
    dec = to_decimal(value)
    if decimal_places(dec) > DB_SCALE:  # NUMERIC(20, 4) would round it silently
        raise _too_many_decimals(dec)
    return dec


def from_db(dialect: Any, value: object) -> Decimal | None:
    """A money value read by raw SQL (a column or a SUM of money columns) as ``Decimal``; None stays None."""
    if value is None:
        return None
    if isinstance(value, Decimal):  # already decoded by a typed column (sqlite3 itself never returns a Decimal)
        return value
    if _is_sqlite(dialect):
        return decode_scaled(value)
    return to_decimal(str(value))


def from_db_or_zero(dialect: Any, value: object) -> Decimal:
    """:func:`from_db` with NULL (the SUM of no rows) read as zero."""
    out = from_db(dialect, value)
    return Decimal(0) if out is None else out


class _Comparator(TypeDecorator.Comparator):
    """Arithmetic on money in SQL: ``+``/``-``/unary minus and ``money * integer`` stay money (same scale).

    Division would truncate SQLite's integers silently: it is refused when the expression is built (divide in Python
    with ``Decimal``). ``money * rate`` is typed money too, and its decoding refuses the REAL it yields on SQLite.
    """

    def _adapt_expression(self, op, other_comparator):  # type: ignore[override]
        if op in (operator.truediv, operator.floordiv, operator.mod):
            raise InvalidAmount("money is not divided in SQL (SQLite would truncate): divide in Python with Decimal")
        return op, self.type


class _SqliteStorage(Numeric):
    """DDL ``NUMERIC(20, 4)`` on SQLite, but the integers pass through untouched (no float conversion)."""

    def bind_processor(self, dialect):
        return None

    def result_processor(self, dialect, coltype):
        return None


class ExactMoney(TypeDecorator):
    """A money column: ``NUMERIC(20, 4)`` on PostgreSQL, integer ten-thousandths on SQLite; ``Decimal`` in Python."""

    impl = Numeric(20, DB_SCALE, asdecimal=True)
    cache_ok = True
    comparator_factory = _Comparator

    def load_dialect_impl(self, dialect):
        if _is_sqlite(dialect):
            return dialect.type_descriptor(_SqliteStorage(20, DB_SCALE, asdecimal=False))
        return dialect.type_descriptor(Numeric(20, DB_SCALE, asdecimal=True))

    def process_bind_param(self, value, dialect):
        return to_db(dialect, value)

    def process_literal_param(self, value, dialect):
        encoded = to_db(dialect, value)
        return "NULL" if encoded is None else str(encoded)

    def process_result_value(self, value, dialect):
        return from_db(dialect, value)

    def result_processor(self, dialect, coltype):
        if _is_sqlite(dialect):
            return super().result_processor(dialect, coltype)
        # PostgreSQL hands NUMERIC back as Decimal, which from_db returns unchanged: use the driver's own processing
        # (none for NUMERIC, a conversion for anything else) instead of a Python call per value (0.2 s per 50,000
        # posted items, measured).
        return dialect.type_descriptor(Numeric(20, DB_SCALE, asdecimal=True)).result_processor(dialect, coltype)

    def coerce_compared_value(self, op, value):
        # ``money_col > 0``, ``money_col == Decimal('1.50')``, ``money_col - Decimal('1')``: the literal is money,
        # encoded like the column. A factor (``money_col * 2``) is a plain number, not ten-thousandths.
        if op in _MONEY_OPERANDS:
            return self
        return Integer() if isinstance(value, int) else Numeric(asdecimal=True)

    @property
    def python_type(self) -> type:
        return Decimal


#: Rates (``RATE``, NUMERIC(20, 10)) keep 10 decimals.
RATE_SCALE = 10
_RATE_QUANTUM = Decimal(1).scaleb(-RATE_SCALE)


def rate_from_db(dialect: Any, value: object) -> Decimal | None:
    """An FX or loss rate read by raw SQL, as ``Decimal`` with at most 10 decimals.

    Rates are ratios, not amounts: SQLite keeps them as REAL (NUMERIC affinity), which is exact for the up to
    15 significant digits a booked rate has; the shortest decimal that reads back as the float is that rate.
    Multiply money by a rate in Python (``Decimal``), never in SQLite's SQL.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidAmount(f"rate {value!r} is not a number")
    if isinstance(value, float):
        dec = Decimal(repr(value))
    elif isinstance(value, Decimal):
        dec = value
    else:
        dec = to_decimal(value if isinstance(value, int) else str(value))
    if not dec.is_finite():
        raise InvalidAmount(f"rate {value!r} is not finite")
    return dec.quantize(_RATE_QUANTUM) if decimal_places(dec) > RATE_SCALE else dec


def sqlite_decimal_text_sql(expr: str) -> str:
    """SQLite SQL turning a money column (integer ten-thousandths) into its exact decimal text (``-12.3400``).

    For SQL that must render amounts itself (e.g. a staged row as JSON for the quarantine). A value that is not an
    integer (unconverted or corrupt) is passed through unchanged, so it stays visible as it is.
    """
    return (
        f"CASE WHEN typeof({expr}) = 'integer' THEN "
        f"(CASE WHEN {expr} < 0 THEN '-' ELSE '' END) || (abs({expr}) / {SCALE_FACTOR}) || '.' || "
        f"substr('{'0' * DB_SCALE}' || (abs({expr}) % {SCALE_FACTOR}), -{DB_SCALE}) ELSE {expr} END"
    )
