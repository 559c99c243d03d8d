"""Allowance for Doubtful Accounts on both databases: exact estimate from a hand-built aging, the adjustment entry
up then down, idempotent re-runs, closed periods and date order refused, reconciliation clean afterwards.

The hand-built aging of EU01 (allowance method, functional EUR) as of 2026-11-24, default loss rates:

| invoice | bucket | open | rate | required |
|---|---|---:|---:|---:|
| EUR not yet due | current | 10,000.00 | 0.5 % | 50.00 |
| EUR 16 days | 1-30 | 5,000.00 | 2 % | 100.00 |
| EUR 40 days | 31-60 | 3,333.33 | 5 % | 166.67 (166.6665 rounded half-up) |
| EUR 100 days | 91-120 | 1,000.00 | 20 % | 200.00 |
| EUR 400 days | 365+ | 2,000.00 | 90 % | 1,800.00 |
| GBP 200 days at fx 1.15 | 181-365 | GBP 1,200.00 | 60 % | GBP 720.00 = EUR 828.00 |

EUR total 2,316.67. US01 (direct method) has open AR too and must not be estimated.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from tests import factories as f
from tests.integration import recon_support as rs
from tests.integration.posting_support import TIERS, approve, make_batch
from writeoffs import audit, reconcile, subledger
from writeoffs import ledger as gl
from writeoffs.aging import compute_aging
from writeoffs.allowance import default_config, entry_key, estimate_allowance, parse_config
from writeoffs.db.schema import allowance_estimates, audit_log, invoices, journal_entries, journal_lines
from writeoffs.errors import ClosedPeriod, ConfigError, LedgerError
from writeoffs.posting import post_batch

D = Decimal
AS_OF = date(2026, 11, 24)
LATER = date(2026, 11, 30)
CONFIG = default_config()


def build_aging(engine: Engine) -> dict[str, int]:
    with engine.begin() as conn:
        f.entity(conn, "EU01", "EUR", "allowance")
        f.entity(conn, "US01", "USD", "direct")
        cid = f.customer(conn, "EU01", "C-EU")
        ids = {
            "current": f.invoice(conn, cid, entity_code="EU01", currency="EUR", amount="10000.00", days_past_due=-20),
            "1-30": f.invoice(conn, cid, entity_code="EU01", currency="EUR", amount="5000.00", days_past_due=16),
            "31-60": f.invoice(conn, cid, entity_code="EU01", currency="EUR", amount="3333.33", days_past_due=40),
            "91-120": f.invoice(conn, cid, entity_code="EU01", currency="EUR", amount="1000.00", days_past_due=100),
            "365+": f.invoice(conn, cid, entity_code="EU01", currency="EUR", amount="2000.00", days_past_due=400),
            "gbp": f.invoice(
                conn, cid, entity_code="EU01", currency="GBP", amount="1200.00", fx_rate="1.15", days_past_due=200
            ),
        }
        f.invoice(conn, f.customer(conn, "US01"), amount="9999.00", days_past_due=400)
        compute_aging(conn, AS_OF)
    return ids


def estimates(engine: Engine, as_of: date) -> dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]]:
    a = allowance_estimates.c
    with engine.connect() as conn:
        rows = conn.execute(select(allowance_estimates).where(a.as_of_date == as_of)).all()
    return {
        (r.currency, r.bucket): (
            D(str(r.open_balance)).quantize(D("0.01")),
            D(str(r.loss_rate)).quantize(D("0.000001")),
            D(str(r.required_allowance)).quantize(D("0.01")),
        )
        for r in rows
    }


def allowance_lines(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                journal_entries.c.idempotency_key,
                journal_lines.c.account_code,
                journal_lines.c.currency,
                journal_lines.c.debit,
                journal_lines.c.credit,
                journal_lines.c.functional_debit,
                journal_lines.c.functional_credit,
            )
            .select_from(journal_lines.join(journal_entries, journal_entries.c.id == journal_lines.c.entry_id))
            .where(journal_entries.c.source_type == "allowance", journal_entries.c.status == "posted")
            .order_by(journal_entries.c.id, journal_lines.c.line_no)
        ).all()
    return [(r[0], r[1], r[2], *(D(str(v)).quantize(D("0.01")) for v in r[3:])) for r in rows]


def run(engine: Engine, as_of: date, config=CONFIG):
    with engine.begin() as conn:
        return estimate_allowance(conn, as_of, config=config, actor="controller")


def balance(engine: Engine, currency: str | None) -> Decimal:
    with engine.connect() as conn:
        return -gl.account_balance(conn, "EU01", "1190", currency)  # credit balance


def test_estimate_is_exact_per_bucket_and_posts_the_increase(ledger: Engine) -> None:
    build_aging(ledger)

    result = run(ledger, AS_OF)

    rows = estimates(ledger, AS_OF)
    assert rows[("EUR", "current")] == (D("10000.00"), D("0.005000"), D("50.00"))
    assert rows[("EUR", "1-30")] == (D("5000.00"), D("0.020000"), D("100.00"))
    assert rows[("EUR", "31-60")] == (D("3333.33"), D("0.050000"), D("166.67"))
    assert rows[("EUR", "61-90")] == (D("0.00"), D("0.100000"), D("0.00"))
    assert rows[("EUR", "91-120")] == (D("1000.00"), D("0.200000"), D("200.00"))
    assert rows[("EUR", "365+")] == (D("2000.00"), D("0.900000"), D("1800.00"))
    assert rows[("GBP", "181-365")] == (D("1200.00"), D("0.600000"), D("720.00"))
    assert len(rows) == 16  # every configured bucket for both currencies, zeros included; nothing for US01
    assert sum(v[2] for (cur, _), v in rows.items() if cur == "EUR") == D("2316.67")

    assert {(p.entity, p.currency): (p.status, p.required, p.adjustment) for p in result.pairs} == {
        ("EU01", "EUR"): ("posted", D("2316.67"), D("2316.67")),
        ("EU01", "GBP"): ("posted", D("720.00"), D("720.00")),
    }
    assert allowance_lines(ledger) == [
        (entry_key("EU01", "EUR", AS_OF), "6100", "EUR", D("2316.67"), D("0"), D("2316.67"), D("0")),
        (entry_key("EU01", "EUR", AS_OF), "1190", "EUR", D("0"), D("2316.67"), D("0"), D("2316.67")),
        (entry_key("EU01", "GBP", AS_OF), "6100", "GBP", D("720.00"), D("0"), D("828.00"), D("0")),
        (entry_key("EU01", "GBP", AS_OF), "1190", "GBP", D("0"), D("720.00"), D("0"), D("828.00")),
    ]
    assert balance(ledger, None) == D("3144.67")  # functional EUR: 2,316.67 + 828.00
    with ledger.connect() as conn:
        assert audit.verify(conn) == []
        actions = conn.execute(select(audit_log.c.action)).scalars().all()
    assert actions.count("allowance.estimate") == 1


def test_second_date_releases_only_the_delta_and_reruns_post_nothing(ledger: Engine) -> None:
    ids = build_aging(ledger)
    run(ledger, AS_OF)
    with ledger.begin() as conn:
        # The 400-day invoice is paid in full: 1,800.00 of reserve is no longer needed.
        # The source reports it paid: the ingest's change, dated its extract (writeoffs.subledger).
        with subledger.movement(conn, "ingest", LATER):
            conn.execute(
                update(invoices).where(invoices.c.id == ids["365+"]).values(open_balance=D("0"), status="paid")
            )
        compute_aging(conn, LATER)

    result = run(ledger, LATER)

    got = {(p.currency, p.status, p.adjustment) for p in result.pairs}
    assert got == {("EUR", "posted", D("-1800.00")), ("GBP", "no_change", D("0.00"))}
    assert allowance_lines(ledger)[-2:] == [
        (entry_key("EU01", "EUR", LATER), "1190", "EUR", D("1800.00"), D("0"), D("1800.00"), D("0")),
        (entry_key("EU01", "EUR", LATER), "6100", "EUR", D("0"), D("1800.00"), D("0"), D("1800.00")),
    ]
    assert balance(ledger, "EUR") == D("516.67")
    assert balance(ledger, "GBP") == D("720.00")

    with ledger.connect() as conn:
        entries_before = conn.execute(select(func.count()).select_from(journal_entries)).scalar_one()
        audit_before = audit.count(conn)
    again = [run(ledger, LATER), run(ledger, AS_OF)]
    with ledger.connect() as conn:
        assert conn.execute(select(func.count()).select_from(journal_entries)).scalar_one() == entries_before
        assert audit.count(conn) == audit_before
    assert {p.status for r in again for p in r.pairs} == {"already"}
    assert {(p.currency, p.required) for p in again[0].pairs} == {("EUR", D("516.67")), ("GBP", D("720.00"))}
    assert balance(ledger, "EUR") == D("516.67")


def test_closed_period_is_refused_and_nothing_is_stored(ledger: Engine) -> None:
    build_aging(ledger)
    with ledger.begin() as conn:
        gl.close_period(conn, "EU01", "2026-11", actor="controller")

    with pytest.raises(ClosedPeriod, match=r"fiscal period 2026-11 of entity EU01 is closed"):
        run(ledger, AS_OF)
    assert estimates(ledger, AS_OF) == {}
    assert allowance_lines(ledger) == []


def test_an_earlier_date_after_a_later_estimate_is_refused(ledger: Engine) -> None:
    build_aging(ledger)
    with ledger.begin() as conn:
        compute_aging(conn, LATER)
        compute_aging(conn, date(2026, 11, 27))
    run(ledger, LATER)
    with pytest.raises(LedgerError, match=r"later estimate is already booked.*date order"):
        run(ledger, date(2026, 11, 27))


def test_no_snapshot_is_needed_and_a_missing_rate_is_a_clear_error(ledger: Engine) -> None:
    """Issue 19: the estimate ages the sub-ledger's movements as of its date; a date nobody aged is estimated too,
    with the figures an aging of that date holds."""
    build_aging(ledger)
    no_snapshot = date(2026, 11, 25)
    run(ledger, no_snapshot)
    with ledger.connect() as conn:
        aged = subledger.aging_as_of(conn, no_snapshot)["by_entity_currency"]["EU01/EUR"]["buckets"]
    rows = estimates(ledger, no_snapshot)
    assert {b: v["open_balance"] for b, v in aged.items()} == {
        b: str(v[0]) for (cur, b), v in rows.items() if cur == "EUR" and v[0]
    }
    assert rows[("EUR", "365+")] == (D("2000.00"), D("0.900000"), D("1800.00"))
    partial = parse_config({"version": "x", "loss_rates": {"current": "1%", "1-30": "2%"}}, source="partial.yaml")
    with pytest.raises(ConfigError, match=r"partial.yaml: loss_rates has no rate for aging bucket.*EU01: '31-60'"):
        run(ledger, date(2026, 11, 26), partial)


def test_per_entity_rates_override_the_defaults(ledger: Engine) -> None:
    build_aging(ledger)
    cfg = parse_config(
        {
            "version": "2026.11-eu",
            "loss_rates": {
                b: v
                for b, v in (
                    ("current", "0.5%"),
                    ("1-30", "2%"),
                    ("31-60", "5%"),
                    ("61-90", "10%"),
                    ("91-120", "20%"),
                    ("121-180", "35%"),
                    ("181-365", "60%"),
                    ("365+", "90%"),
                )
            },
            "entities": {"EU01": {"loss_rates": {"365+": "100%"}}},
        }
    )
    result = run(ledger, AS_OF, cfg)
    assert {p.currency: p.required for p in result.pairs}["EUR"] == D("2516.67")


def test_reconciliation_stays_clean_after_estimates_and_an_allowance_write_off(ledger: Engine, tmp_path: Path) -> None:
    s = rs.build_clean_ledger(ledger)
    with ledger.begin() as conn:
        compute_aging(conn, AS_OF)
    first = run(ledger, AS_OF)
    # EUR: nothing open any more, the 1,400.00 left in the reserve (5,000 - 3,000 - 800 + 200) is released;
    # GBP 1,200.00 not yet due: 0.5 % = 6.00 GBP = 6.90 EUR at the booked 1.15.
    assert {(p.currency, p.required, p.adjustment, p.functional_adjustment) for p in first.pairs} == {
        ("EUR", D("0"), D("-1400.00"), D("-1400.00")),
        ("GBP", D("6.00"), D("6.00"), D("6.90")),
    }
    assert _breaks(ledger, tmp_path, "after-estimate") == []

    # An allowance-method write-off (Dr Allowance / Cr AR) of an invoice raised through the GL.
    with ledger.begin() as conn:
        cid = f.customer(conn, "EU01", "C-EU-2")
        iid = f.invoice(
            conn, cid, entity_code="EU01", ref="INV-EU-700", amount="700.00", currency="EUR", days_past_due=400
        )
        rs.post(conn, rs._invoice_entry("EU01", iid, "INV-EU-700", "EUR", "700.00", "EUR"))
        compute_aging(conn, AS_OF)
        batch = make_batch(
            conn,
            [(iid, "700.00", "uncollectible_after_collections")],
            entity="EU01",
            currency="EUR",
            allowance_shortfall="fund",
        )
    approve(ledger, batch)
    report = post_batch(ledger, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF)
    assert report.posted == 1
    # The reserve held nothing: the policy says fund first (700 Dr Bad Debt / Cr Allowance), never a debit balance.
    assert balance(ledger, "EUR") == D("0.00")
    assert _breaks(ledger, tmp_path, "after-writeoff") == []

    with ledger.begin() as conn:
        compute_aging(conn, LATER)
    second = run(ledger, LATER)
    # EUR: nothing open and a zero reserve, out of scope; GBP unchanged.
    assert {(p.currency, p.status, p.adjustment) for p in second.pairs} == {("GBP", "no_change", D("0.00"))}
    assert balance(ledger, "EUR") == D("0.00")
    assert _breaks(ledger, tmp_path, "after-second-estimate") == []
    assert s.gbp_open  # the GBP invoice is the one carrying the GBP reserve


def _breaks(engine: Engine, tmp_path: Path, key: str) -> list[str]:
    result = reconcile.reconcile(engine, AS_OF, run_key=key, report_dir=tmp_path)
    return [b.message for b in result.breaks]
