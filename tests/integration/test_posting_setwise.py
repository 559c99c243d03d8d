"""PostgreSQL's set-wise posting path builds exactly the rows the Python path builds.

On PostgreSQL ``post_batch`` has the database build each chunk's entries and lines (INSERT ... SELECT over
writeoffs and invoices, ``posting._journal_sources``); SQLite, and every other poster, builds ``JournalEntry``
objects (``posting._entries`` / ``build_entry``) and rounds with ``money.round_money``. These tests prove the two
agree: the rounding (PostgreSQL's ``ROUND(numeric, n)`` rounds half away from zero, equal to half-up for the
positive amounts of a write-off) and every column of every entry and line, across currencies, FX rates, methods
and account maps.
"""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select, text, update

from tests import factories as f
from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from writeoffs import posting
from writeoffs.approvals import ApprovalSummary
from writeoffs.db.engine import make_engine
from writeoffs.db.migrate import upgrade
from writeoffs.db.schema import journal_entries, journal_lines, writeoffs
from writeoffs.money import MINOR_UNITS, round_money

D = Decimal

#: Values at the scale of the money columns (4 decimals), many of them exactly half a minor unit.
HALVES = ["0.005", "0.015", "0.025", "2.675", "1.0050", "0.0005", "0.0015", "12.345", "0.5", "1.5", "2.5", "1234.5"]


def test_round_matches_round_money_on_halves_and_every_minor_unit(pg_ledger: Engine) -> None:
    cases = [(D(v), cur) for v in HALVES for cur in ("USD", "JPY", "KWD", "EUR")]
    rng = random.Random(20261124)
    cases += [(D(rng.randrange(1, 10**12)).scaleb(-4), rng.choice(sorted(MINOR_UNITS))) for _ in range(3000)]
    with pg_ledger.connect() as conn:
        got = conn.execute(
            text(
                "SELECT ROUND(v, c.minor_unit) FROM unnest(CAST(:v AS numeric[]), CAST(:c AS varchar[]))"
                " WITH ORDINALITY AS t(v, code, n) JOIN currencies c ON c.code = t.code ORDER BY t.n"
            ),
            {"v": [v for v, _ in cases], "c": [c for _, c in cases]},
        ).scalars()
        assert list(got) == [round_money(v, c) for v, c in cases]


def test_functional_amount_matches_on_random_amounts_and_rates(pg_ledger: Engine) -> None:
    """Round the transaction amount, multiply by the booked rate (10 decimals), round once in functional."""
    rng = random.Random(7)
    cases = [
        (
            D(rng.randrange(1, 10**11)).scaleb(-4),  # up to 10,000,000.0000
            rng.choice(["USD", "EUR", "JPY", "KWD", "GBP"]),
            D(rng.randrange(1, 5 * 10**10)).scaleb(-10),  # 0.0000000001 .. 5
            rng.choice(["USD", "EUR", "JPY", "KWD"]),
        )
        for _ in range(3000)
    ] + [(D("100.01"), "EUR", D("1.08333"), "USD"), (D("0.05"), "EUR", D("1.1"), "USD")]
    with pg_ledger.connect() as conn:
        got = conn.execute(
            text(
                "SELECT ROUND(ROUND(a, c.minor_unit) * r, fc.minor_unit)"
                " FROM unnest(CAST(:a AS numeric[]), CAST(:c AS varchar[]), CAST(:r AS numeric[]),"
                "             CAST(:fc AS varchar[])) WITH ORDINALITY AS t(a, cur, r, fcur, n)"
                " JOIN currencies c ON c.code = t.cur JOIN currencies fc ON fc.code = t.fcur ORDER BY t.n"
            ),
            {
                "a": [c[0] for c in cases],
                "c": [c[1] for c in cases],
                "r": [c[2] for c in cases],
                "fc": [c[3] for c in cases],
            },
        ).scalars()
        assert list(got) == [round_money(round_money(a, c) * r, fc) for a, c, r, fc in cases]


#: (invoice currency, fx_rate to USD, amounts written off). Amounts carry up to 4 decimals like the column.
ITEMS: dict[str, tuple[str, list[str]]] = {
    "USD": ("1", ["45000.00", "0.01", "12.345", "99999999.9999", "10.005"]),
    "EUR": ("1.0833300000", ["100.01", "0.05", "2.675", "1234567.89"]),
    "JPY": ("0.0067000000", ["1000", "1234.5", "7", "0.5"]),
    "KWD": ("3.2512345678", ["12.345", "0.0005", "1.0015", "250000.125"]),
}
REASONS = ["uncollectible_after_collections", "bankruptcy", "small_balance", "settlement_remainder", "dispute_lost"]


@pytest.mark.parametrize(
    ("method", "account_map"),
    [
        ("direct", None),
        ("direct", {"bankruptcy": "6130", "small_balance": "6100"}),
        ("allowance", None),
    ],
    ids=["direct-default-map", "direct-policy-map", "allowance"],
)
def test_setwise_rows_equal_the_python_entries(pg_ledger: Engine, method: str, account_map) -> None:
    rng = random.Random(method + str(account_map))
    with pg_ledger.begin() as conn:
        f.entity(conn, method=method)
        cid = f.customer(conn)
        batches = []
        for currency, (rate, amounts) in ITEMS.items():
            # plus random amounts and rates at the columns' full scale
            extra = [str(D(rng.randrange(10**4, 10**9)).scaleb(-4)) for _ in range(40)]  # >= 1: never rounds to 0
            items = []
            for n, amount in enumerate(amounts + extra):
                fx = rate if n < len(amounts) else str(D(rng.randrange(1, 4 * 10**10)).scaleb(-10))
                inv = f.invoice(conn, cid, amount=amount, currency=currency, fx_rate=fx, days_past_due=400)
                items.append((inv, amount, REASONS[n % len(REASONS)]))
            batches.append(make_batch(conn, items, currency=currency, reasons=account_map))
        conn.execute(update(writeoffs).values(status="approved"))

    summary = ApprovalSummary(0, "controller", False, "cfo", "cfo", 11, 12, None, None, 0, "h" * 64, "v1")
    compared = 0
    with pg_ledger.begin() as conn:
        for batch_id in batches:
            batch = posting.lock_batch(conn, batch_id)
            ctx = posting._context(conn, batch, summary, date(2026, 11, 26), "tester")
            rows = posting._recheck_rows(conn, ctx, 10_000)
            python = posting._entries(rows, ctx)
            entry_sql, line_sql = posting._journal_sources(ctx, [r.id for r in rows])
            sql_entries = conn.execute(entry_sql).mappings().all()
            sql_lines = conn.execute(line_sql).mappings().all()

            assert [dict(r) for r in sql_entries] == [
                {
                    "idempotency_key": e.key,
                    "entity_code": e.entity,
                    "posting_date": e.posting_date,
                    "period": "2026-11",
                    "description": e.description[:400],
                    "source_type": e.source_type,
                    "source_id": e.source_id,
                    "reverses_entry_id": None,
                    "policy_version": e.meta["policy_version"],
                }
                for e in python
            ]
            expected_lines = [
                {
                    "idempotency_key": e.key,
                    "line_no": n,
                    "entity_code": e.entity,
                    "account_code": ln.account,
                    "currency": ln.currency,
                    "debit": ln.debit,
                    "credit": ln.credit,
                    "functional_currency": ln.functional_currency,
                    "functional_debit": ln.functional_debit,
                    "functional_credit": ln.functional_credit,
                    "invoice_id": ln.invoice_id,
                    "memo": ln.memo[:200],
                }
                for e in python
                for n, ln in enumerate(e.lines, start=1)
            ]
            assert [dict(r) for r in sql_lines] == expected_lines

            # Decimal equality ignores the exponent: the amounts must also print the same (at the minor unit).
            def printed(rows) -> list[tuple[str, str]]:
                side = {1: ("debit", "functional_debit"), 2: ("credit", "functional_credit")}
                return [tuple(str(r[c]) for c in side[r["line_no"]]) for r in rows]

            assert printed(sql_lines) == printed(expected_lines)
            compared += len(python)
    assert compared == sum(len(a) + 40 for _, a in ITEMS.values())


def test_setwise_posting_writes_the_python_rows(pg_ledger: Engine, tmp_path) -> None:
    """End to end: the same batch posted on PostgreSQL (set-wise) and on SQLite (objects) gives identical lines."""
    lite = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    upgrade(lite)
    cases = [("100.01", "1.08333", "bankruptcy"), ("0.05", "1.1", "small_balance"), ("45000", "1", "statute_expired")]
    results = []
    for engine in (pg_ledger, lite):
        with engine.begin() as conn:
            f.entity(conn)
            cid = f.customer(conn)
            items = [
                (f.invoice(conn, cid, ref=f"INV-{n}", amount=a, currency="EUR", fx_rate=r, days_past_due=400), a, why)
                for n, (a, r, why) in enumerate(cases)
            ]
            batch = make_batch(conn, items, currency="EUR")
        approve(engine, batch)
        report = posting.post_batch(engine, batch, actor="tester", tiers=TIERS, posting_date=AS_OF)
        assert report.posted == 3
        with engine.connect() as conn:
            cols = [c for c in journal_lines.c if c.name not in ("id", "entry_id")]
            query = (
                select(journal_entries.c.source_type, journal_entries.c.policy_version, *cols)
                .join(journal_lines, journal_lines.c.entry_id == journal_entries.c.id)
                .order_by(journal_entries.c.id, journal_lines.c.line_no)
            )
            results.append(conn.execute(query).all())
    lite.dispose()
    pg_rows, lite_rows = results
    assert pg_rows == lite_rows
    ar_credits = [(r.functional_currency, r.credit, r.functional_credit) for r in pg_rows if r.account_code == "1100"]
    assert ar_credits == [("USD", D("100.01"), D("108.34")), ("USD", D("0.05"), D("0.06")), ("USD", D(45000), D(45000))]
