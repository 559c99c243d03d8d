"""Reconciliation on both databases: a clean ledger has no breaks; each injected break is found, stored, reported.

Table-driven over the four breaks of the issue (edited GL line, missing posting, double posting, over-recovery):
for each, the checks that must fire and the document that must be named.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text, update

from tests.integration import recon_support as rs
from writeoffs import audit, reconcile
from writeoffs.db.schema import invoices, recon_breaks, recon_runs
from writeoffs.reconcile import CHECKS, Break, Check, Tolerances

AS_OF = rs.AS_OF


def run(engine: Engine, tmp_path: Path, key: str = "test:run", **kw) -> reconcile.ReconResult:
    return reconcile.reconcile(engine, AS_OF, run_key=key, report_dir=tmp_path, **kw)


def by_check(result: reconcile.ReconResult) -> dict[str, list[Break]]:
    out: dict[str, list[Break]] = {}
    for b in result.breaks:
        out.setdefault(b.check, []).append(b)
    return out


def test_clean_ledger_has_no_breaks(ledger: Engine, tmp_path: Path) -> None:
    rs.build_clean_ledger(ledger)
    result = run(ledger, tmp_path)
    assert result.breaks == [], [b.message for b in result.breaks]
    assert [o.check.name for o in result.outcomes] == [c.name for c in CHECKS]
    with ledger.connect() as conn:
        row = conn.execute(select(recon_runs).where(recon_runs.c.id == result.run_id)).one()
        assert (row.checks_run, row.break_count, row.as_of_date) == (len(CHECKS), 0, AS_OF)
        assert conn.execute(select(func.count()).select_from(recon_breaks)).scalar_one() == 0
        assert audit.verify(conn) == []
    report = Path(row.report_path)
    assert report == tmp_path / "reports" / "reconciliation" / f"{AS_OF}-test_run.md"
    assert "**CLEAN**" in report.read_text()


def _edited(engine: Engine, s: rs.Scenario) -> str:
    rs.inject_edited_gl_line(engine, s)
    return "wo:worked"


def _missing(engine: Engine, s: rs.Scenario) -> str:
    rs.inject_posted_without_entry(engine, s)
    return "INV-OPEN-1000"


def _double(engine: Engine, s: rs.Scenario) -> str:
    rs.inject_double_posting(engine, s)
    return "wo:worked:retry-2"


def _over(engine: Engine, s: rs.Scenario) -> str:
    rs.inject_over_recovery(engine, s)
    return "INV-WORKED-45000"


#: injector -> (checks that must break, {check: (entity, currency, expected, actual)} for the key amounts)
CASES: dict[str, tuple[Callable[[Engine, rs.Scenario], str], set[str], dict[str, tuple]]] = {
    "edited_gl_line": (
        _edited,
        {"entries_balanced", "subledger_vs_gl", "writeoff_entries", "writeoff_lines"},
        {
            # AR credit cut from 45,000 to 40,000: the GL shows 5,000 more AR than the invoices.
            "subledger_vs_gl": ("US01", "USD", "3000.0000", "8000.0000"),
            "entries_balanced": ("US01", "USD", "45000.0000", "40000.0000"),
            "writeoff_entries": ("US01", "USD", "45000.0000", "40000.0000"),
            # ... and the entry no longer credits what the item approved
            "writeoff_lines": ("US01", "USD", "45000.0000", "40000.0000"),
        },
    ),
    "posted_without_entry": (
        _missing,
        {"approved_vs_posted", "subledger_vs_gl", "writeoff_entries"},
        {
            "subledger_vs_gl": ("US01", "USD", "2000.0000", "3000.0000"),
            # approved 45,000 + 500 (posted, later reversed) + 1,000; accounted for: the two with entries.
            "approved_vs_posted": ("US01", "USD", "46500.0000", "45500.0000"),
            "writeoff_entries": ("US01", "USD", "1000.0000", "0.0000"),
        },
    ),
    "double_posting": (
        _double,
        {"subledger_vs_gl", "writeoff_entries"},
        {
            "subledger_vs_gl": ("US01", "USD", "3000.0000", "-42000.0000"),
            "writeoff_entries": ("US01", "USD", "45000.0000", "90000.0000"),
        },
    ),
    "over_recovery": (
        _over,
        {"recoveries"},
        {"recoveries": ("US01", "USD", "45000.0000", "50000.0000")},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_injected_break_is_detected_stored_and_reported(ledger: Engine, tmp_path: Path, case: str) -> None:
    inject, must_fire, amounts = CASES[case]
    s = rs.build_clean_ledger(ledger)
    document = inject(ledger, s)
    result = run(ledger, tmp_path, key=f"test:{case}")
    fired = by_check(result)
    assert set(fired) == must_fire, {k: [b.message for b in v] for k, v in fired.items()}
    for check, (entity, currency, expected, actual) in amounts.items():
        b = fired[check][0]
        assert (b.entity, b.currency, str(b.expected), str(b.actual)) == (entity, currency, expected, actual), b
        assert b.difference == Decimal(actual) - Decimal(expected)
    # The affected document is named in the breaks (not only an aggregate number).
    assert any(document in json.dumps([dict(d) for d in b.documents]) for b in result.breaks)
    with ledger.connect() as conn:
        rows = conn.execute(select(recon_breaks).where(recon_breaks.c.run_id == result.run_id)).all()
        run_row = conn.execute(select(recon_runs).where(recon_runs.c.id == result.run_id)).one()
    assert len(rows) == result.break_count == run_row.break_count > 0
    stored = {r.check_name for r in rows}
    assert stored == must_fire
    for r in rows:
        assert r.difference == (r.actual - r.expected if r.expected is not None else None)
        json.loads(r.documents)  # valid JSON
    assert any(document in r.documents for r in rows)
    report = Path(run_row.report_path).read_text()
    assert f"{result.break_count} BREAK(S)" in report and document in report


def test_edited_line_names_the_entry_and_line_amounts(pg_ledger: Engine, tmp_path: Path) -> None:
    s = rs.build_clean_ledger(pg_ledger)
    rs.inject_edited_gl_line(pg_ledger, s)
    # The trigger is back on: the edit cannot be repaired by another edit.
    with pytest.raises(Exception, match="immutable"), pg_ledger.begin() as conn:
        conn.execute(text("UPDATE journal_lines SET credit = 45000 WHERE credit = 40000"))
    b = by_check(run(pg_ledger, tmp_path))["entries_balanced"][0]
    (doc,) = b.documents
    assert (doc["key"], doc["debit"], doc["credit"]) == ("wo:worked", "45000.0000", "40000.0000")


def test_rerun_with_the_same_key_replaces_its_breaks(ledger: Engine, tmp_path: Path) -> None:
    s = rs.build_clean_ledger(ledger)
    rs.inject_over_recovery(ledger, s)
    first = run(ledger, tmp_path, key="same")
    second = run(ledger, tmp_path, key="same")
    assert first.run_id == second.run_id
    with ledger.connect() as conn:
        assert conn.execute(select(func.count()).select_from(recon_runs)).scalar_one() == 1
        n = conn.execute(select(func.count()).select_from(recon_breaks)).scalar_one()
    assert n == second.break_count == first.break_count > 0


@pytest.mark.parametrize(
    ("tolerance", "breaks"),
    [
        (Tolerances(), 1),
        (Tolerances.parse("USD=0.01"), 0),
        (Tolerances.parse("EUR=0.01"), 1),
        (Tolerances.parse("default=0.01"), 0),
        (Tolerances.parse("USD=0.009"), 1),
    ],
)
def test_tolerance_per_currency(ledger: Engine, tmp_path: Path, tolerance: Tolerances, breaks: int) -> None:
    s = rs.build_clean_ledger(ledger)
    with ledger.begin() as conn:  # a one-cent rounding difference on the sub-ledger side
        conn.execute(update(invoices).where(invoices.c.id == s.open_usd).values(open_balance=Decimal("999.99")))
    result = run(ledger, tmp_path, tolerance=tolerance)
    assert [b.check for b in result.breaks] == ["subledger_vs_gl"] * breaks
    if breaks:
        assert result.breaks[0].difference == Decimal("0.0100")


def test_structural_checks_ignore_tolerance(ledger: Engine, tmp_path: Path) -> None:
    s = rs.build_clean_ledger(ledger)
    rs.inject_double_posting(ledger, s)
    result = run(ledger, tmp_path, tolerance=Tolerances.parse("default=1000000"))
    assert "writeoff_entries" in {b.check for b in result.breaks}  # two active entries is wrong at any size


def test_unexplained_allowance_movement_and_direct_entity_charged_to_allowance(ledger: Engine, tmp_path: Path) -> None:
    rs.build_clean_ledger(ledger)
    with ledger.begin() as conn:
        rs.post(
            conn,
            rs._entry(
                "manual:alw",
                "EU01",
                "manual",
                rs._line("1190", "EUR", dr="750.00"),
                rs._line("6100", "EUR", cr="750.00"),
            ),
        )
    breaks = by_check(run(ledger, tmp_path))
    assert set(breaks) == {"allowance"}
    (b,) = breaks["allowance"]
    assert (b.entity, b.currency, b.account, str(b.expected), str(b.actual)) == (
        "EU01",
        "EUR",
        "1190",
        "1400.0000",
        "650.0000",
    )
    assert b.documents[0]["key"] == "manual:alw"


def test_writeoff_charged_to_allowance_must_match_subledger(ledger: Engine, tmp_path: Path) -> None:
    s = rs.build_clean_ledger(ledger)
    with ledger.begin() as conn:  # a direct-method entity's write-off wrongly hitting the allowance account
        rs.post(
            conn,
            rs._entry(
                "wo:wrong",
                "US01",
                "writeoff",
                rs._line("1190", "USD", dr="10.00", inv=s.paid_part),
                rs._line("6100", "USD", cr="10.00", inv=s.paid_part),
            ),
        )
    breaks = by_check(run(ledger, tmp_path))
    # The direct entity's (unfunded) allowance account is now in debit: allowance_sign reports that too.
    assert set(breaks) == {"allowance", "writeoff_entries", "allowance_sign"}
    assert str(breaks["allowance_sign"][0].actual) == "-10.0000"
    (b,) = breaks["allowance"]
    assert (b.entity, b.currency, str(b.expected), str(b.actual)) == ("US01", "USD", "0.0000", "10.0000")
    assert "direct-method" in b.message
    # ...and an active write-off entry on an invoice that is not written off is an orphan.
    assert any("not written off" in b.message for b in breaks["writeoff_entries"])


def test_a_check_that_cannot_run_is_a_break_and_the_others_still_run(ledger: Engine, tmp_path: Path) -> None:
    rs.build_clean_ledger(ledger)

    def broken(conn, as_of: date, tolerance: Tolerances) -> list[Break]:
        conn.execute(text("SELECT no_such_column FROM invoices"))
        return []

    checks = (Check("broken", "always fails", broken), *CHECKS)
    result = run(ledger, tmp_path, checks=checks)
    assert [b.check for b in result.breaks] == ["broken"]
    assert "could not run" in result.breaks[0].message
    assert [o.error is None for o in result.outcomes] == [False] + [True] * len(CHECKS)


def test_clean_after_real_posting(ledger: Engine, tmp_path: Path) -> None:
    """The posting module's own output reconciles (batch approved, confirmed, posted through posting.post_batch)."""
    posting = pytest.importorskip("writeoffs.posting")
    from tests.integration.posting_support import TIERS, approve, make_batch

    rs.build_clean_ledger(ledger)
    with ledger.begin() as conn:
        cid = conn.execute(text("SELECT id FROM customers WHERE customer_ref = 'C-NORTHWIND'")).scalar_one()
        from tests import factories

        inv = factories.invoice(conn, cid, ref="INV-POSTED-700", amount="700.00", days_past_due=500)
        rs.post(conn, rs._invoice_entry("US01", inv, "INV-POSTED-700", "USD", "700.00", "USD"))
        batch = make_batch(conn, [(inv, "700.00", "uncollectible_after_collections")])
    approve(ledger, batch)
    report = posting.post_batch(ledger, batch, actor="test", tiers=TIERS, posting_date=AS_OF)
    assert report.posted == 1
    result = run(ledger, tmp_path)
    assert result.breaks == [], [b.message for b in result.breaks]


def _edit_posted_line(engine: Engine, sql: str) -> None:
    """An edit of a posted journal line with the guards out of the way (a superuser, or whoever holds the file)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE journal_lines DISABLE TRIGGER trg_jl_guard"))
            conn.execute(text(sql))
            conn.execute(text("ALTER TABLE journal_lines ENABLE TRIGGER trg_jl_guard"))
        else:
            ddl = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'trg_jl_posted_no_update'")
            ).scalar_one()
            conn.execute(text("DROP TRIGGER trg_jl_posted_no_update"))
            conn.execute(text(sql))
            conn.execute(text(ddl))


_WORKED_EXPENSE_LINE = (
    "(SELECT l.id FROM journal_lines l JOIN journal_entries e ON e.id = l.entry_id"
    " WHERE e.idempotency_key = 'wo:worked' AND l.account_code = '6100')"
)
#: name -> (tampering, the kind of writeoff_lines break it must give, expected account or amounts)
LINE_TAMPERING: dict[str, tuple[Callable[[Engine, rs.Scenario], None], str]] = {
    # Issue 14: the expense moved to another expense account; the entry still balances and AR is untouched.
    "expense line moved to another expense account": (
        lambda e, s: _edit_posted_line(
            e, f"UPDATE journal_lines SET account_code = '6130' WHERE id = {_WORKED_EXPENSE_LINE}"
        ),
        "debited another account",
    ),
    # What the runtime role may do (it updates write-off items): the item's reason or amount no longer match.
    "item's reason changed after posting": (
        lambda e, s: _sql(e, f"UPDATE writeoffs SET reason_code = 'bankruptcy' WHERE invoice_id = {s.worked}"),
        "debited another account",
    ),
    "item's amount changed after posting": (
        lambda e, s: _sql(
            e, f"UPDATE writeoffs SET amount = amount + amount / 45000 * 1000 WHERE invoice_id = {s.worked}"
        ),
        "moved another amount",
    ),
}


def _sql(engine: Engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql))


@pytest.mark.parametrize("case", sorted(LINE_TAMPERING))
def test_posted_writeoff_lines_must_equal_the_approved_item(ledger: Engine, tmp_path: Path, case: str) -> None:
    tamper, message = LINE_TAMPERING[case]
    s = rs.build_clean_ledger(ledger)
    assert by_check(run(ledger, tmp_path, key="before")) == {}
    tamper(ledger, s)
    fired = by_check(run(ledger, tmp_path, key="after"))
    assert "writeoff_lines" in fired, fired
    (brk,) = fired["writeoff_lines"]
    assert message in brk.message and (brk.entity, brk.currency) == ("US01", "USD")
    (doc,) = brk.documents
    assert doc["invoice_ref"] == "INV-WORKED-45000"
    if case.startswith("expense line moved"):
        assert set(fired) == {"writeoff_lines"}  # nothing else notices it
        assert (doc["expected_account"], doc["debited_account"]) == ("6100", "6130")
    if case.startswith("item's amount"):
        assert (brk.expected, brk.actual) == (Decimal("46000.0000"), Decimal("45000.0000"))


def test_a_closed_period_is_sealed_and_a_change_after_the_close_is_a_break(ledger: Engine, tmp_path: Path) -> None:
    from writeoffs import ledger as gl

    rs.build_clean_ledger(ledger)
    with ledger.begin() as conn:
        gl.close_period(conn, "US01", "2026-11", actor="controller")
    assert by_check(run(ledger, tmp_path, key="sealed")) == {}
    # After the close, whoever gets around the triggers moves the write-off's expense to another account.
    _edit_posted_line(ledger, f"UPDATE journal_lines SET account_code = '6130' WHERE id = {_WORKED_EXPENSE_LINE}")
    fired = by_check(run(ledger, tmp_path, key="moved"))
    assert set(fired) == {"writeoff_lines", "period_seals"}
    (brk,) = fired["period_seals"]
    assert "closed period 2026-11 of US01 no longer matches its seal on 2" in brk.message
    assert {(d["account"], d["currency"]) for d in brk.documents} == {("6100", "USD"), ("6130", "USD")}
    moved_from = next(d for d in brk.documents if d["account"] == "6100")
    assert moved_from["sealed"]["debit"] == "45500.0000" and moved_from["now"]["debit"] == "500.0000"


def test_a_period_closed_outside_close_period_has_no_seal(ledger: Engine, tmp_path: Path) -> None:
    rs.build_clean_ledger(ledger)
    with ledger.begin() as conn:
        conn.execute(
            text("UPDATE fiscal_periods SET status = 'closed' WHERE entity_code = 'EU01' AND period = '2026-09'")
        )
    fired = by_check(run(ledger, tmp_path))
    assert set(fired) == {"period_seals"}
    assert (
        fired["period_seals"][0].message == "closed period 2026-09 of EU01 has no seal (closed outside close_period?)"
    )


def test_a_consistent_change_of_an_approved_amount_breaks_the_approval_digest(ledger: Engine, tmp_path: Path) -> None:
    """Issue 14: +1,000 on the write-off item, both lines of its entry, the invoice and its opening AR entry: every
    amount agrees with every other, so only the digest the approval recorded (in the keyed audit log) tells."""
    from writeoffs.db.money import to_db

    s = rs.build_clean_ledger(ledger)
    plus = to_db(ledger.dialect, Decimal("1000"))
    bump = ", ".join(
        f"{side} = CASE WHEN {side} > 0 THEN {side} + :k ELSE {side} END"
        for side in ("debit", "credit", "functional_debit", "functional_credit")
    )
    entries = "(SELECT id FROM journal_entries WHERE idempotency_key IN ('wo:worked', 'inv:INV-WORKED-45000'))"
    _edit_posted_line(ledger, f"UPDATE journal_lines SET {bump} WHERE entry_id IN {entries}".replace(":k", str(plus)))
    _sql(ledger, f"UPDATE writeoffs SET amount = amount + {plus} WHERE invoice_id = {s.worked}")
    _sql(
        ledger,
        f"UPDATE invoices SET amount = amount + {plus}, written_off_amount = written_off_amount + {plus}"
        f" WHERE id = {s.worked}",
    )
    fired = by_check(run(ledger, tmp_path))
    assert set(fired) == {"approval_digests"}, {k: [b.message for b in v] for k, v in fired.items()}
    (brk,) = fired["approval_digests"]
    assert "items no longer hash to the digest its approval recorded" in brk.message
    assert {"invoice_ref": "INV-WORKED-45000", "amount": "46000.0000", "reason": "uncollectible_after_collections"} in (
        brk.documents
    )
