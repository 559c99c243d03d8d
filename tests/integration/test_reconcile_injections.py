"""Reconciliation detects each failure the money-path review found, if it ever happens again (issue 12, item 3).

The code now prevents these failures; reconciliation must still *find* them when something gets around the code.
Table-driven on SQLite and PostgreSQL: each row builds the clean reconciliation ledger
(:func:`tests.integration.recon_support.build_clean_ledger`), asserts it reconciles, injects ONE failure with raw
SQL on the application's connection (sub-ledger edits, and new journal rows inserted pending then flipped to posted,
since the triggers refuse edits of posted lines), and asserts which checks report it, with which amounts and which
document named. The statements are plain INSERT/UPDATEs on the tables, bypassing every application function; money
goes through SQLAlchemy Core table statements so that it is bound with the money columns' own types.

The legitimate counterparts (two partial write-offs of one invoice, a reversed partial next to one still written
off, cash after a partial write-off) are rows too: they must stay clean.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, case, insert, select, text, update

from tests import factories
from tests.integration import recon_support as rs
from writeoffs import reconcile
from writeoffs.db.schema import (
    allowance_estimates,
    invoices,
    journal_entries,
    journal_lines,
    payment_allocations,
    payments,
    recoveries,
    writeoffs,
)
from writeoffs.reconcile import Break

AS_OF = rs.AS_OF
D = Decimal

# --- raw SQL injection helpers ------------------------------------------------------------------------------------


def raw_entry(
    conn: Connection,
    key: str,
    entity: str,
    source: str,
    day: date,
    lines: list[tuple],
    *,
    reverses: int | None = None,
) -> int:
    """A journal entry written with plain SQL: inserted pending, lines added, flipped to posted (what the triggers
    allow anyone with the application's credentials to do). ``lines``: (account, currency, debit, credit, invoice_id
    [, functional_currency, functional_debit, functional_credit])."""
    entry_id = conn.execute(
        insert(journal_entries)
        .values(
            idempotency_key=key,
            entity_code=entity,
            posting_date=day,
            period=day.strftime("%Y-%m"),
            status="pending",
            description=key,
            source_type=source,
            source_id=key,
            reverses_entry_id=reverses,
            created_by="raw-sql",
        )
        .returning(journal_entries.c.id)
    ).scalar_one()
    rows = []
    for n, ln in enumerate(lines, start=1):
        account, cur, dr, cr, inv = ln[:5]
        fcur, fdr, fcr = ln[5:] if len(ln) > 5 else (cur, dr, cr)
        rows.append(
            {
                "entry_id": entry_id,
                "line_no": n,
                "entity_code": entity,
                "account_code": account,
                "currency": cur,
                "debit": D(dr),
                "credit": D(cr),
                "functional_currency": fcur,
                "functional_debit": D(fdr),
                "functional_credit": D(fcr),
                "invoice_id": inv,
            }
        )
    conn.execute(insert(journal_lines), rows)
    conn.execute(
        text("UPDATE journal_entries SET status = 'posted', posted_at = CURRENT_TIMESTAMP WHERE id = :id"),
        {"id": entry_id},
    )
    return entry_id


def raw_payment(
    conn: Connection, customer_id: int, inv: int, amount: str, day: date, *, kind: str = "regular", cur: str = "USD"
) -> str:
    entity = "EU01" if cur in ("EUR", "GBP") else "US01"
    ref = f"RAW-{kind}-{inv}-{day.isoformat()}-{amount}"
    pid = conn.execute(
        insert(payments)
        .values(
            entity_code=entity,
            payment_ref=ref,
            customer_id=customer_id,
            payment_date=day,
            currency=cur,
            amount=D(amount),
            source="raw",
        )
        .returning(payments.c.id)
    ).scalar_one()
    conn.execute(
        insert(payment_allocations).values(
            payment_id=pid, invoice_id=inv, amount=D(amount), allocated_on=day, kind=kind
        )
    )
    return ref


def raw_writeoff(
    conn: Connection,
    inv: int,
    amount: str,
    *,
    key: str,
    selected: date = AS_OF,
    posted: date = AS_OF,
    debit_account: str = "6100",
    entity: str = "US01",
    cur: str = "USD",
    subledger: bool = True,
) -> tuple[int, int]:
    """A posted write-off as posting would leave it: entry Dr expense-or-allowance / Cr AR, a posted ``writeoffs``
    row linked to it (no batch), and the invoice's open balance down / written_off_amount up. Returns (row, entry)."""
    entry_id = raw_entry(
        conn,
        key,
        entity,
        "writeoff",
        posted,
        [(debit_account, cur, amount, "0", inv), ("1100", cur, "0", amount, inv)],
    )
    wid = _writeoff_row(conn, inv, amount, key=key, selected=selected, cur=cur, entry_id=entry_id)
    if subledger:
        left = invoices.c.open_balance - D(amount)
        conn.execute(
            update(invoices)
            .where(invoices.c.id == inv)
            .values(
                open_balance=left,
                written_off_amount=invoices.c.written_off_amount + D(amount),
                written_off_date=posted,
                status=case((left == 0, "written_off"), else_=invoices.c.status),
            )
        )
    return wid, entry_id


def _writeoff_row(
    conn: Connection,
    inv: int,
    amount: str,
    *,
    key: str,
    selected: date,
    cur: str,
    entry_id: int,
    reason: str = "uncollectible_after_collections",
) -> int:
    return conn.execute(
        insert(writeoffs)
        .values(
            invoice_id=inv,
            as_of_date=selected,
            currency=cur,
            amount=D(amount),
            reason_code=reason,
            rule="raw",
            tier="controller",
            policy_version="test",
            # A recorded policy per row (distinct hashes keep the per-(date, policy, invoice) key unique): its reason
            # map is what the writeoff_lines check holds the entry to.
            policy_hash=factories.record_policy(
                conn, hashlib.sha256(key.encode()).hexdigest()[:16], version="test"
            ).content_hash,
            status="posted",
            idempotency_key=key,
            journal_entry_id=entry_id,
        )
        .returning(writeoffs.c.id)
    ).scalar_one()


def set_invoice(conn: Connection, inv: int, **values: object) -> None:
    """A plain UPDATE of sub-ledger columns (money as Decimal through the table's column types)."""
    conn.execute(
        update(invoices)
        .where(invoices.c.id == inv)
        .values(**{k: D(v) if isinstance(v, str) and k != "status" else v for k, v in values.items()})
    )


def customer_of(conn: Connection, inv: int) -> int:
    return conn.execute(text("SELECT customer_id FROM invoices WHERE id = :i"), {"i": inv}).scalar_one()


# --- the failures -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What a row must produce: the exact set of checks that break; for ``check``, its first break's entity,
    currency, expected and actual (None: not asserted), and a string that must appear in its documents or message."""

    fires: frozenset[str]
    check: str | None = None
    entity: str | None = None
    currency: str | None = None
    expected: str | None = None
    actual: str | None = None
    names: str | None = None


def paid_before_posting(engine: Engine, s: rs.Scenario) -> None:
    """Selected on AS_OF-3, the customer pays in full on AS_OF-1, the write-off is posted on AS_OF anyway."""
    with engine.begin() as conn:
        raw_payment(conn, customer_of(conn, s.open_usd), s.open_usd, "1000.00", AS_OF - timedelta(days=1))
        raw_writeoff(conn, s.open_usd, "1000.00", key="raw:wo:paid", selected=AS_OF - timedelta(days=3))
        # The ERP's payment reduced nothing here: open balance goes to 0 through the write-off alone.


def paid_after_full_writeoff_as_regular_cash(engine: Engine, s: rs.Scenario) -> None:
    """Cash arrives on a fully written-off invoice and is applied as a regular payment (status 'paid'): the invoice
    is paid AND written off. written_off_amount > 0 still counts as written off whatever the status says."""
    with engine.begin() as conn:
        raw_payment(conn, customer_of(conn, s.eur_wo), s.eur_wo, "3000.00", AS_OF + timedelta(days=2), cur="EUR")
        conn.execute(text("UPDATE invoices SET status = 'paid' WHERE id = :i"), {"i": s.eur_wo})


def recovery_cash_not_booked(engine: Engine, s: rs.Scenario) -> None:
    """A 'recovery' allocation of EUR 150 on the allowance invoice; nothing booked in the GL."""
    with engine.begin() as conn:
        raw_payment(
            conn, customer_of(conn, s.eur_recovered), s.eur_recovered, "150.00", AS_OF, kind="recovery", cur="EUR"
        )


def unapplied_cash_not_booked(engine: Engine, s: rs.Scenario) -> None:
    """$20,000 recovery cash on the worked example with $15,000 left to recover: the $15,000 is booked as a
    recovery, the $5,000 excess is never booked as unapplied cash."""
    with engine.begin() as conn:
        ref = raw_payment(conn, customer_of(conn, s.worked), s.worked, "20000.00", AS_OF, kind="recovery")
        pid = conn.execute(text("SELECT id FROM payments WHERE payment_ref = :r"), {"r": ref}).scalar_one()
        key = f"rec:US01:{ref}:{s.worked}"
        eid = raw_entry(
            conn,
            key,
            "US01",
            "recovery",
            AS_OF,
            [("1000", "USD", "15000.00", "0", s.worked), ("4900", "USD", "0", "15000.00", s.worked)],
        )
        conn.execute(
            insert(recoveries).values(
                invoice_id=s.worked,
                payment_id=pid,
                recovery_date=AS_OF,
                currency="USD",
                amount=D("15000.00"),
                idempotency_key=key,
                journal_entry_id=eid,
            )
        )
        set_invoice(conn, s.worked, recovered_amount="45000.00", status="recovered")


def cash_booked_without_receipt(engine: Engine, s: rs.Scenario) -> None:
    """An unapplied-cash entry (Dr Cash / Cr Unapplied Cash) for EUR 250 that no payment stands behind."""
    with engine.begin() as conn:
        raw_entry(
            conn,
            f"unapplied:EU01:GHOST:{s.eur_recovered}",
            "EU01",
            "unapplied_cash",
            AS_OF,
            [("1000", "EUR", "250.00", "0", s.eur_recovered), ("2100", "EUR", "0", "250.00", s.eur_recovered)],
        )


def _new_eur_invoice(conn: Connection, ref: str, amount: str) -> int:
    cid = conn.execute(text("SELECT id FROM customers WHERE customer_ref = 'C-EU-1'")).scalar_one()
    inv = factories.invoice(conn, cid, entity_code="EU01", ref=ref, amount=amount, currency="EUR", days_past_due=500)
    raw_entry(
        conn,
        f"inv:{ref}",
        "EU01",
        "invoice",
        date(2025, 9, 15),
        [("1100", "EUR", amount, "0", inv), ("2990", "EUR", "0", amount, inv)],
    )
    return inv


def allowance_debit_balance(engine: Engine, s: rs.Scenario) -> None:
    """An allowance-method write-off of EUR 2,000 against a reserve holding EUR 1,400: debit balance EUR 600."""
    with engine.begin() as conn:
        inv = _new_eur_invoice(conn, "INV-EU-2000", "2000.00")
        raw_writeoff(conn, inv, "2000.00", key="raw:wo:eu2000", debit_account="1190", entity="EU01", cur="EUR")


def allowance_below_estimate(engine: Engine, s: rs.Scenario) -> None:
    """The 2026-10-31 estimate requires EUR 6,000; its true-up entry only brought the reserve to EUR 5,000."""
    with engine.begin() as conn:
        conn.execute(
            insert(allowance_estimates).values(
                as_of_date=date(2026, 10, 31),
                entity_code="EU01",
                currency="EUR",
                bucket="365+",
                open_balance=D("6000.00"),
                loss_rate=D("1"),
                required_allowance=D("6000.00"),
            )
        )


def two_entries_for_one_row(engine: Engine, s: rs.Scenario) -> None:
    """A retried posting books the EUR 3,000 write-off row again under another key: two entries, one row."""
    with engine.begin() as conn:
        raw_entry(
            conn,
            "wo:eu3000:retry",
            "EU01",
            "writeoff",
            AS_OF,
            [("1190", "EUR", "3000.00", "0", s.eur_wo), ("1100", "EUR", "0", "3000.00", s.eur_wo)],
        )


def partials_above_invoice_amount(engine: Engine, s: rs.Scenario) -> None:
    """Two posted partial write-offs of $600 each on the $1,000 invoice, each with its own entry: together they
    exceed the invoice (the sub-ledger was only told about the first)."""
    with engine.begin() as conn:
        raw_writeoff(conn, s.open_usd, "600.00", key="raw:wo:part1")
        raw_writeoff(conn, s.open_usd, "600.00", key="raw:wo:part2", subledger=False)


def two_legit_partials(engine: Engine, s: rs.Scenario) -> None:
    """Legitimate: two partial write-offs ($300 then $200) of the $1,000 open invoice, each with its own entry."""
    with engine.begin() as conn:
        raw_writeoff(conn, s.open_usd, "300.00", key="raw:wo:p1", selected=AS_OF - timedelta(days=30))
        raw_writeoff(conn, s.open_usd, "200.00", key="raw:wo:p2")


def cash_after_partial(engine: Engine, s: rs.Scenario) -> None:
    """Legitimate: $300 of the $1,000 invoice written off on AS_OF-10; the customer pays the other $700 later."""
    with engine.begin() as conn:
        day = AS_OF - timedelta(days=10)
        raw_writeoff(conn, s.open_usd, "300.00", key="raw:wo:p1", selected=day - timedelta(days=1), posted=day)
        raw_payment(conn, customer_of(conn, s.open_usd), s.open_usd, "700.00", AS_OF)
        set_invoice(conn, s.open_usd, open_balance="0", status="paid")
        # The payment through AR sync (the ERP's side of AR): Dr Suspense / Cr AR.
        raw_entry(
            conn,
            "ar-sync:raw:pay700",
            "US01",
            "ar_sync",
            AS_OF,
            [("2990", "USD", "700.00", "0", s.open_usd), ("1100", "USD", "0", "700.00", s.open_usd)],
        )


def reversed_row_reactivated(engine: Engine, s: rs.Scenario) -> None:
    """The reversed $500 write-off is flipped back to 'posted' and the invoice written off again in the sub-ledger,
    without a new entry: the row's entry stays reversed."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE writeoffs SET status = 'posted' WHERE invoice_id = :i AND status = 'reversed'"),
            {"i": s.reversed_inv},
        )
        set_invoice(conn, s.reversed_inv, status="written_off", written_off_amount="500.00", open_balance="0")


def posted_while_on_hold(engine: Engine, s: rs.Scenario) -> None:
    """A dispute hold on the $1,000 invoice since AS_OF-5, still active; a write-off posted on AS_OF."""
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO holds (customer_id, invoice_id, hold_type, start_date) VALUES (:c, :i, 'dispute', :d)"),
            {"c": customer_of(conn, s.open_usd), "i": s.open_usd, "d": AS_OF - timedelta(days=5)},
        )
        raw_writeoff(conn, s.open_usd, "1000.00", key="raw:wo:held")


def hold_after_posting(engine: Engine, s: rs.Scenario) -> None:
    """Legitimate: a dispute opened after the worked example was written off."""
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO holds (customer_id, invoice_id, hold_type, start_date) VALUES (:c, :i, 'dispute', :d)"),
            {"c": customer_of(conn, s.worked), "i": s.worked, "d": AS_OF + timedelta(days=1)},
        )


def child_paid_by_parent(engine: Engine, s: rs.Scenario) -> None:
    """A child's invoice whose balance went to the parent; the parent paid $400 of it; the child's $600 is
    written off anyway."""
    with engine.begin() as conn:
        parent = customer_of(conn, s.worked)
        child = factories.customer(conn, ref="C-CHILD", parent_id=parent)
        inv = factories.invoice(conn, child, ref="INV-CHILD-1000", amount="1000.00", transferred_to_parent=True)
        raw_entry(
            conn,
            "inv:INV-CHILD-1000",
            "US01",
            "invoice",
            date(2025, 9, 15),
            [("1100", "USD", "1000.00", "0", inv), ("2990", "USD", "0", "1000.00", inv)],
        )
        raw_payment(conn, parent, inv, "400.00", AS_OF - timedelta(days=20))
        raw_entry(
            conn,
            "ar-sync:raw:child400",
            "US01",
            "ar_sync",
            AS_OF - timedelta(days=20),
            [("2990", "USD", "400.00", "0", inv), ("1100", "USD", "0", "400.00", inv)],
        )
        set_invoice(conn, inv, open_balance="600.00")
        raw_writeoff(conn, inv, "600.00", key="raw:wo:child")


def ar_functional_residue(engine: Engine, s: rs.Scenario) -> None:
    """A EUR invoice of the USD entity raised at 15.05 USD and written off at 15.04 USD (half-even instead of
    half-up): the EUR receivable is gone, USD 0.01 stays on AR control."""
    with engine.begin() as conn:
        inv = factories.invoice(
            conn, customer_of(conn, s.worked), ref="INV-EUR-10", amount="10.03", currency="EUR", fx_rate="1.5"
        )
        raw_entry(
            conn,
            "inv:INV-EUR-10",
            "US01",
            "invoice",
            date(2025, 9, 15),
            [
                ("1100", "EUR", "10.03", "0", inv, "USD", "15.05", "0"),
                ("2990", "EUR", "0", "10.03", inv, "USD", "0", "15.05"),
            ],
        )
        entry = raw_entry(
            conn,
            "raw:wo:eur10",
            "US01",
            "writeoff",
            AS_OF,
            [
                ("6120", "EUR", "10.03", "0", inv, "USD", "15.04", "0"),
                ("1100", "EUR", "0", "10.03", inv, "USD", "0", "15.04"),
            ],
        )
        _writeoff_row(
            conn, inv, "10.03", key="raw:wo:eur10", selected=AS_OF, cur="EUR", entry_id=entry, reason="small_balance"
        )
        set_invoice(
            conn, inv, open_balance="0", written_off_amount="10.03", written_off_date=AS_OF, status="written_off"
        )


CASES: dict[str, tuple[Callable[[Engine, rs.Scenario], None], Expect]] = {
    # A paid invoice written off.
    "paid_before_posting": (
        paid_before_posting,
        Expect(
            frozenset({"paid_after_selection"}),
            "paid_after_selection",
            "US01",
            "USD",
            "0.0000",
            "1000.0000",
            "INV-OPEN-1000",
        ),
    ),
    "paid_after_full_writeoff_as_regular_cash": (
        paid_after_full_writeoff_as_regular_cash,
        Expect(
            frozenset({"paid_after_selection"}),
            "paid_after_selection",
            "EU01",
            "EUR",
            "0.0000",
            "3000.0000",
            "INV-EU-3000",
        ),
    ),
    # Cash received vs cash booked.
    "recovery_cash_not_booked": (
        recovery_cash_not_booked,
        Expect(frozenset({"recovery_cash"}), "recovery_cash", "EU01", "EUR", "350.0000", "200.0000", "INV-EU-800"),
    ),
    "unapplied_cash_not_booked": (
        unapplied_cash_not_booked,
        Expect(
            frozenset({"recovery_cash"}), "recovery_cash", "US01", "USD", "50000.0000", "45000.0000", "INV-WORKED-45000"
        ),
    ),
    "cash_booked_without_receipt": (
        cash_booked_without_receipt,
        Expect(frozenset({"recovery_cash"}), "recovery_cash", "EU01", "EUR", "200.0000", "450.0000", "INV-EU-800"),
    ),
    # Allowance sign and adequacy.
    "allowance_debit_balance": (
        allowance_debit_balance,
        Expect(frozenset({"allowance_sign"}), "allowance_sign", "EU01", "EUR", "0.0000", "-600.0000", "1190"),
    ),
    "allowance_below_estimate": (
        allowance_below_estimate,
        Expect(frozenset({"allowance_sign"}), "allowance_sign", "EU01", "EUR", "6000.0000", "5000.0000", "2026-10-31"),
    ),
    # Duplicate postings vs legitimate partials.
    "two_entries_for_one_row": (
        two_entries_for_one_row,
        Expect(
            frozenset({"writeoff_entries", "subledger_vs_gl", "allowance", "allowance_sign"}),
            "writeoff_entries",
            "EU01",
            "EUR",
            "3000.0000",
            "6000.0000",
            "wo:eu3000:retry",
        ),
    ),
    "partials_above_invoice_amount": (
        partials_above_invoice_amount,
        Expect(
            frozenset({"writeoff_entries", "subledger_vs_gl"}),
            "writeoff_entries",
            "US01",
            "USD",
            "1000.0000",
            "1200.0000",
            "exceed",
        ),
    ),
    "two_legit_partials": (two_legit_partials, Expect(frozenset())),
    "cash_after_partial": (cash_after_partial, Expect(frozenset())),
    "hold_after_posting": (hold_after_posting, Expect(frozenset())),
    # Reversed write-off re-posted, hold, parent/child, AR-sync residue.
    "reversed_row_reactivated": (
        reversed_row_reactivated,
        Expect(
            frozenset({"writeoff_entries", "approved_vs_posted", "subledger_vs_gl"}),
            "writeoff_entries",
            "US01",
            "USD",
            None,
            None,
            "INV-REV-500",
        ),
    ),
    "posted_while_on_hold": (
        posted_while_on_hold,
        Expect(frozenset({"posting_rules"}), "posting_rules", "US01", "USD", "0.0000", "1000.0000", "hold"),
    ),
    "child_paid_by_parent": (
        child_paid_by_parent,
        Expect(frozenset({"posting_rules"}), "posting_rules", "US01", "USD", "0.0000", "600.0000", "INV-CHILD-1000"),
    ),
    "ar_functional_residue": (
        ar_functional_residue,
        Expect(frozenset({"ar_functional"}), "ar_functional", "US01", "EUR", "0.0000", "0.0100", "INV-EUR-10"),
    ),
}


def _run(engine: Engine, tmp_path: Path, key: str) -> reconcile.ReconResult:
    return reconcile.reconcile(engine, AS_OF, run_key=key, report_dir=tmp_path)


def _by_check(result: reconcile.ReconResult) -> dict[str, list[Break]]:
    out: dict[str, list[Break]] = {}
    for b in result.breaks:
        out.setdefault(b.check, []).append(b)
    return out


def _details(b: Break) -> str:
    return f"{b.message} {b.account} " + json.dumps([dict(d) for d in b.documents], default=str)


@pytest.mark.parametrize("case", list(CASES))
def test_injected_failure_is_reported(ledger: Engine, tmp_path: Path, case: str) -> None:
    inject, want = CASES[case]
    s = rs.build_clean_ledger(ledger)
    clean = _run(ledger, tmp_path, f"before:{case}")
    assert clean.breaks == [], [b.message for b in clean.breaks]
    inject(ledger, s)
    result = _run(ledger, tmp_path, f"after:{case}")
    fired = _by_check(result)
    assert set(fired) == want.fires, {k: [b.message for b in v] for k, v in fired.items()}
    if want.check is None:
        return
    # The break that names the document (a check may report several kinds), with its amounts.
    named = [b for b in fired[want.check] if want.names in _details(b)]
    assert named, [_details(b) for b in fired[want.check]]
    b = named[0]
    assert (b.entity, b.currency) == (want.entity, want.currency), b
    if want.expected is not None:
        assert str(b.expected) == want.expected, b
    if want.actual is not None:
        assert str(b.actual) == want.actual, b
    # Stored with the run, and in the report.
    report = Path(result.report_path).read_text()
    assert want.check in report and want.names in report


def test_reversing_one_of_two_partials_reconciles(ledger: Engine, tmp_path: Path) -> None:
    """Two partial write-offs ($300, $200) of the $1,000 invoice; the $200 one is reversed through the real reversal
    code. The invoice is 'reversed' (held back from selection) yet $300 stays written off with its one active entry:
    reconciliation judges it by written_off_amount, not by status, and stays clean."""
    from tests.factories import PLAIN_TIERS
    from writeoffs.reversal import reverse_writeoff

    s = rs.build_clean_ledger(ledger)
    two_legit_partials(ledger, s)
    with ledger.begin() as conn:
        second = conn.execute(text("SELECT id FROM writeoffs WHERE idempotency_key = 'raw:wo:p2'")).scalar_one()
        reverse_writeoff(
            conn,
            reason="dispute_resolved",
            requested_by="ar_clerk",
            approved_by="controller",
            posting_date=AS_OF,
            writeoff_id=second,
            tiers=PLAIN_TIERS,  # raw rows have no batch, hence no recorded policy
        )
        inv = conn.execute(
            select(invoices.c.status, invoices.c.open_balance, invoices.c.written_off_amount).where(
                invoices.c.id == s.open_usd
            )
        ).one()
    assert (inv.status, inv.open_balance, inv.written_off_amount) == ("reversed", D("700"), D("300"))
    result = _run(ledger, tmp_path, "after:partial-reversal")
    assert result.breaks == [], [b.message for b in result.breaks]
    # ...and reversing the other one too leaves nothing written off and no active entry: still clean.
    with ledger.begin() as conn:
        first = conn.execute(text("SELECT id FROM writeoffs WHERE idempotency_key = 'raw:wo:p1'")).scalar_one()
        reverse_writeoff(
            conn,
            reason="posted_in_error",
            requested_by="ar_clerk",
            approved_by="controller",
            posting_date=AS_OF,
            writeoff_id=first,
            tiers=PLAIN_TIERS,
        )
    result = _run(ledger, tmp_path, "after:both-reversed")
    assert result.breaks == [], [b.message for b in result.breaks]
