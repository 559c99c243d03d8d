"""writeoffs.db.money: the one home of how amounts are stored (integer ten-thousandths on SQLite, NUMERIC on PG)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from sqlalchemy import Column, MetaData, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from writeoffs.db.money import (
    SQLITE_MAX,
    ExactMoney,
    decode_scaled,
    encode_scaled,
    from_db,
    rate_from_db,
    to_db,
)
from writeoffs.db.schema import MONEY, journal_lines
from writeoffs.errors import InvalidAmount
from writeoffs.money import MAX_AMOUNT


@pytest.mark.parametrize(
    "amount",
    ["0", "0.0001", "-0.0001", "19.99", "99999999999999.99", "922337203685477.5807", "-922337203685477.5807"],
)
def test_sqlite_encoding_round_trips_exactly(amount: str) -> None:
    scaled = encode_scaled(D(amount))
    assert isinstance(scaled, int)
    assert decode_scaled(scaled) == D(amount)
    assert from_db("sqlite", to_db("sqlite", D(amount))) == D(amount)


def test_max_amount_fits_and_is_stored_as_its_digits() -> None:
    assert MAX_AMOUNT < SQLITE_MAX
    assert encode_scaled(MAX_AMOUNT) == 999999999999999900


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_more_than_four_decimals_is_refused_not_rounded(dialect: str) -> None:
    with pytest.raises(InvalidAmount, match="more than 4 decimals"):
        to_db(dialect, D("1.00005"))
    assert to_db(dialect, D("1.00010")) in (D("1.0001"), 10001)  # trailing zeros are not decimals


def test_beyond_int64_is_refused_on_sqlite_only() -> None:
    huge = D("9999999999999999.99")  # the example
    with pytest.raises(InvalidAmount, match="beyond what the SQLite ledger stores exactly"):
        to_db("sqlite", huge)
    assert to_db("postgresql", huge) == huge  # NUMERIC(20, 4) holds it


@pytest.mark.parametrize("bad", [0.1, True, "abc", D("NaN")])
def test_non_amounts_are_refused(bad: object) -> None:
    with pytest.raises(InvalidAmount):
        to_db("sqlite", bad)


def test_a_real_read_from_sqlite_is_never_taken_for_money() -> None:
    with pytest.raises(InvalidAmount, match="as float"):
        from_db("sqlite", 1e16)
    assert from_db("sqlite", None) is None
    assert from_db("sqlite", D("1.5")) == D("1.5")  # already decoded by a typed column
    assert from_db("postgresql", D("1.5000")) == D("1.5")


def test_rates_read_back_as_the_decimal_that_was_stored() -> None:
    assert rate_from_db("sqlite", 1.0856) == D("1.0856")
    assert rate_from_db("postgresql", D("1.0856000000")) == D("1.0856")
    assert rate_from_db("sqlite", 1 / 3) == D("0.3333333333")


def test_money_expressions_keep_the_money_type() -> None:
    """Sums and differences of money decode as money; a literal compared with money is encoded like it."""
    jl = journal_lines.c
    assert isinstance(func.sum(jl.debit - jl.credit).type, ExactMoney)
    assert isinstance(func.coalesce(func.sum(jl.credit), 0).type, ExactMoney)
    assert isinstance((jl.debit + jl.credit).type, ExactMoney)
    stmt = select(jl.entry_id).where(jl.debit > D("12.5"), jl.credit == 0)
    compiled = stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    assert "debit > 125000" in str(compiled) and "credit = 0" in str(compiled)
    pg = stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    assert "debit > 12.5" in str(pg)


def test_the_ddl_is_numeric_20_4_on_both_databases() -> None:
    t = Table("t", MetaData(), Column("amount", MONEY))
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        assert t.c.amount.type.compile(dialect=dialect) == "NUMERIC(20, 4)"


def test_money_is_not_divided_in_sql() -> None:
    """SQLite would divide the integers and truncate: the expression is refused when it is built."""
    with pytest.raises(InvalidAmount, match="not divided in SQL"):
        journal_lines.c.debit / 3
