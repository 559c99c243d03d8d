"""Posting approved write-offs to the built-in SQL ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, insert, select, text, update

from tests import factories as f
from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from writeoffs import audit
from writeoffs import ledger as gl
from writeoffs.db.money import to_db
from writeoffs.db.schema import (
    approvals,
    audit_log,
    invoices,
    journal_entries,
    journal_lines,
    writeoff_batches,
    writeoffs,
)
from writeoffs.errors import ApprovalError, ClosedPeriod, ConfigError, LedgerError
from writeoffs.ledger import close_period
from writeoffs.posting import post_batch

D = Decimal


def lines_of(conn, batch_id: int) -> list[tuple]:
    return [
        tuple(r)
        for r in conn.execute(
            select(
                journal_lines.c.account_code,
                journal_lines.c.currency,
                journal_lines.c.debit,
                journal_lines.c.credit,
                journal_lines.c.functional_currency,
                journal_lines.c.functional_debit,
                journal_lines.c.functional_credit,
            )
            .select_from(journal_lines.join(journal_entries, journal_entries.c.id == journal_lines.c.entry_id))
            .where(journal_entries.c.batch_id == batch_id)
            .order_by(journal_entries.c.id, journal_lines.c.line_no)
        )
    ]


def post(engine: Engine, batch_id: int, **kw):
    kw.setdefault("posting_date", AS_OF)
    return post_batch(engine, batch_id, actor="airflow:writeoff_posting", tiers=TIERS, **kw)


def entry_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(journal_entries)).scalar_one()


def test_worked_example_posts_exactly_bad_debt_45000(ledger: Engine) -> None:
    with ledger.begin() as conn:
        ids = f.worked_example(conn)
        batch = make_batch(conn, [(ids["invoice_id"], "45000.00", "uncollectible_after_collections")])
    approve(ledger, batch)

    report = post(ledger, batch)

    assert (report.posted, report.skipped, report.status) == (1, 0, "posted")
    assert report.amounts == {"USD": D("45000")}
    with ledger.connect() as conn:
        assert lines_of(conn, batch) == [
            ("6100", "USD", D("45000.0000"), D("0.0000"), "USD", D("45000.0000"), D("0.0000")),
            ("1100", "USD", D("0.0000"), D("45000.0000"), "USD", D("0.0000"), D("45000.0000")),
        ]
        entry = conn.execute(select(journal_entries)).one()
        assert (entry.status, entry.source_type, entry.batch_id, entry.policy_version) == (
            "posted",
            "writeoff",
            batch,
            "2026.11-test",
        )
        assert "approval #" in entry.description and "INV-WORKED-45000" in entry.description
        inv = conn.execute(select(invoices).where(invoices.c.id == ids["invoice_id"])).one()
        assert (inv.status, inv.open_balance, inv.written_off_amount, inv.written_off_date) == (
            "written_off",
            D("0"),
            D("45000"),
            AS_OF,
        )
        wo = conn.execute(select(writeoffs)).one()
        assert (wo.status, wo.journal_entry_id) == ("posted", entry.id)
        assert wo.posted_at is not None
        assert conn.execute(select(writeoff_batches.c.status)).scalar_one() == "posted"
        assert ledger_balance(conn, "6100") == D("45000") and ledger_balance(conn, "1100") == D("-45000")
        assert audit.verify(conn) == []


def ledger_balance(conn, account: str) -> Decimal:
    return gl.account_balance(conn, "US01", account, "USD")


def test_retry_and_duplicate_trigger_post_nothing_twice(ledger: Engine) -> None:
    with ledger.begin() as conn:
        ids = f.worked_example(conn)
        batch = make_batch(conn, [(ids["invoice_id"], "45000.00", "uncollectible_after_collections")])
    approve(ledger, batch)
    post(ledger, batch)

    again = post(ledger, batch)

    assert (again.posted, again.already_posted, again.status) == (0, 1, "posted")
    assert entry_count(ledger) == 1
    with ledger.connect() as conn:
        assert conn.execute(select(invoices.c.open_balance)).scalar_one() == D("0")


def _allowance_batch(ledger: Engine, **policy_top) -> int:
    with ledger.begin() as conn:
        f.entity(conn, "DE01", "EUR", method="allowance")
        cid = f.customer(conn, "DE01")
        inv = f.invoice(conn, cid, entity_code="DE01", currency="EUR", amount="1200.00", days_past_due=400)
        batch = make_batch(conn, [(inv, "1200.00", "bankruptcy")], entity="DE01", currency="EUR", **policy_top)
    approve(ledger, batch)
    return batch


def test_allowance_method_refuses_an_unfunded_allowance(ledger: Engine) -> None:
    """The attack: write off 1,200 against an allowance that holds nothing (it would carry a debit balance)."""
    batch = _allowance_batch(ledger)

    with pytest.raises(LedgerError, match=r"allowance of DE01 holds 0.00 EUR, these write-offs need 1200.00"):
        post(ledger, batch)

    with ledger.connect() as conn:
        assert lines_of(conn, batch) == []
        assert conn.execute(select(writeoffs.c.status).where(writeoffs.c.batch_id == batch)).scalar_one() == "approved"


def test_allowance_method_hits_the_allowance_funded_first_by_policy(ledger: Engine) -> None:
    batch = _allowance_batch(ledger, allowance_shortfall="fund")

    post(ledger, batch)

    with ledger.connect() as conn:
        assert [(a, d, c) for a, _, d, c, *_ in lines_of(conn, batch)] == [
            ("6100", D("1200"), D("0")),  # funding: Dr Bad Debt Expense / Cr Allowance, for exactly the shortfall
            ("1190", D("0"), D("1200")),
            ("1190", D("1200"), D("0")),  # the write-off: Dr Allowance / Cr AR
            ("1100", D("0"), D("1200")),
        ]
        assert gl.account_balance(conn, "DE01", "1190", "EUR") == D("0")


def test_foreign_currency_posts_functional_amounts_at_the_booked_rate(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        inv = f.invoice(conn, cid, currency="EUR", amount="100.01", fx_rate="1.08333", days_past_due=400)
        batch = make_batch(conn, [(inv, "100.01", "dispute_lost")], currency="EUR")
    approve(ledger, batch)

    post(ledger, batch)

    with ledger.connect() as conn:
        # 100.01 EUR x 1.08333 = 108.3438 USD, rounded half-up once to the cent; both sides use the same figure.
        assert lines_of(conn, batch) == [
            ("6130", "EUR", D("100.01"), D("0"), "USD", D("108.34"), D("0")),
            ("1100", "EUR", D("0"), D("100.01"), "USD", D("0"), D("108.34")),
        ]


def test_reason_accounts_come_from_the_policy_recorded_on_the_batch(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        a = f.invoice(conn, cid, amount="10.00", days_past_due=400)
        c = f.invoice(conn, cid, amount="30.00", days_past_due=400)
        first = make_batch(conn, [(a, "10.00", "bankruptcy")])
        second = make_batch(conn, [(c, "30.00", "bankruptcy")], reasons={"bankruptcy": "6130"})
    approve(ledger, first)
    approve(ledger, second)

    post(ledger, first)
    post(ledger, second)

    with ledger.connect() as conn:
        debits = [(acc, d) for acc, _, d, *_ in lines_of(conn, first) + lines_of(conn, second) if d]
    assert debits == [("6110", D("10")), ("6130", D("30"))]


def test_unknown_reason_or_unrecorded_policy_is_refused(ledger: Engine) -> None:
    """Fail closed: a reason outside the batch policy's map has no account; a batch whose policy is not recorded (or
    whose recorded text was edited) has no accounts at all. Nothing falls back to a default expense account."""
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        a = f.invoice(conn, cid, amount="10.00", days_past_due=400)
        b = f.invoice(conn, cid, amount="20.00", days_past_due=400)
        unknown = make_batch(conn, [(a, "10.00", "some_new_reason")])
        edited = make_batch(conn, [(b, "20.00", "bankruptcy")])
    approve(ledger, unknown)
    approve(ledger, edited)
    with pytest.raises(LedgerError, match="reason 'some_new_reason' has no expense account"):
        post(ledger, unknown)
    with ledger.begin() as conn:
        h = conn.execute(select(writeoff_batches.c.policy_hash).where(writeoff_batches.c.id == edited)).scalar_one()
        conn.execute(
            text("UPDATE policy_versions SET content = replace(content, '6110', '6100') WHERE content_hash = :h"),
            {"h": h},
        )
    with pytest.raises(ConfigError, match="hashes to"):
        post(ledger, edited)
    with ledger.connect() as conn:
        assert lines_of(conn, unknown) == lines_of(conn, edited) == []


def test_partial_writeoff_leaves_the_rest_open(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        inv = f.invoice(conn, cid, amount="1000.00", days_past_due=200)
        batch = make_batch(conn, [(inv, "400.00", "settlement_remainder")])
    approve(ledger, batch)

    post(ledger, batch)

    with ledger.connect() as conn:
        row = conn.execute(select(invoices)).one()
    assert (row.status, row.open_balance, row.written_off_amount, row.written_off_date) == (
        "open",
        D("600"),
        D("400"),
        AS_OF,
    )


def test_items_that_changed_since_approval_are_skipped_with_a_reason(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        other = f.customer(conn)
        fine = f.invoice(conn, cid, amount="100.00", days_past_due=400)
        paid_late = f.invoice(conn, cid, amount="100.00", days_past_due=400)
        disputed = f.invoice(conn, cid, amount="100.00", days_past_due=400)
        shrunk = f.invoice(conn, cid, amount="100.00", days_past_due=400)
        held_account = f.invoice(conn, other, amount="100.00", days_past_due=400)
        batch = make_batch(
            conn,
            [
                (i, "100.00", "uncollectible_after_collections")
                for i in (fine, paid_late, disputed, shrunk, held_account)
            ],
        )
    approve(ledger, batch)
    with ledger.begin() as conn:  # the world moves on between approval and posting
        f.payment(conn, cid, paid_late, "10.00", date(2026, 11, 25))
        conn.execute(update(invoices).where(invoices.c.id == paid_late).values(open_balance=D("90")))
        f.hold(conn, cid, disputed, "dispute", start_date=date(2026, 11, 25))
        f.hold(conn, other, None, "payment_plan", start_date=date(2026, 11, 25))  # whole account
        conn.execute(update(invoices).where(invoices.c.id == shrunk).values(open_balance=D("60")))

    report = post(ledger, batch, posting_date=date(2026, 11, 26))

    assert (report.posted, report.skipped, report.status) == (1, 4, "partially_posted")
    with ledger.connect() as conn:
        got = dict(conn.execute(select(writeoffs.c.invoice_id, writeoffs.c.skip_reason)).all())
        statuses = dict(conn.execute(select(writeoffs.c.invoice_id, writeoffs.c.status)).all())
        balances = dict(conn.execute(select(invoices.c.id, invoices.c.open_balance)).all())
    assert statuses == {
        fine: "posted",
        paid_late: "skipped",
        disputed: "skipped",
        shrunk: "skipped",
        held_account: "skipped",
    }
    assert got[fine] is None
    assert "payment received after the as-of date" in got[paid_late]
    assert "hold" in got[disputed] and "hold" in got[held_account]
    assert "exceeds the open balance 60" in got[shrunk]
    assert balances == {fine: D("0"), paid_late: D("90"), disputed: D("100"), shrunk: D("60"), held_account: D("100")}
    assert entry_count(ledger) == 1


def test_balance_changed_since_aging_snapshot_is_skipped(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        inv = f.invoice(conn, cid, amount="100.00", open_balance="80.00", days_past_due=400)
        conn.execute(
            text(
                "INSERT INTO aging_snapshots (as_of_date, invoice_id, entity_code, customer_id, currency, "
                "days_past_due, bucket, open_balance) VALUES (:d, :i, 'US01', :c, 'USD', 400, '365+', :bal)"
            ),
            {"d": AS_OF, "i": inv, "c": cid, "bal": to_db(conn, Decimal("70"))},
        )
        batch = make_batch(conn, [(inv, "50.00", "settlement_remainder")])
    approve(ledger, batch)

    report = post(ledger, batch)

    assert report.posted == 0
    assert report.skipped_items[0].reason == "open balance changed since the as-of date (70.0000 -> 80.0000)"


def test_closed_period_is_refused_and_nothing_moves(ledger: Engine) -> None:
    with ledger.begin() as conn:
        ids = f.worked_example(conn)
        batch = make_batch(conn, [(ids["invoice_id"], "45000.00", "uncollectible_after_collections")])
    approve(ledger, batch)
    with ledger.begin() as conn:
        close_period(conn, "US01", "2026-11", actor="controller")

    with pytest.raises(ClosedPeriod, match="2026-11 of entity US01 is closed"):
        post(ledger, batch)

    assert entry_count(ledger) == 0
    with ledger.connect() as conn:
        assert conn.execute(select(writeoffs.c.status)).scalar_one() == "approved"
        assert conn.execute(select(writeoff_batches.c.status)).scalar_one() == "confirmed"
        assert conn.execute(select(invoices.c.open_balance)).scalar_one() == D("45000")


def test_status_flipped_by_raw_sql_without_approval_is_refused(ledger: Engine) -> None:
    with ledger.begin() as conn:
        ids = f.worked_example(conn)
        batch = make_batch(conn, [(ids["invoice_id"], "45000.00", "uncollectible_after_collections")])
        conn.execute(update(writeoff_batches).values(status="confirmed"))
        conn.execute(update(writeoffs).values(status="approved"))

    with pytest.raises(ApprovalError, match="no 'approve' decision recorded; no 'confirm' decision recorded"):
        post(ledger, batch)
    assert entry_count(ledger) == 0


def test_approval_rows_forged_by_raw_sql_are_refused(ledger: Engine) -> None:
    """Rows inserted around the app (right names, right hash) have no witness in the hash-chained audit log."""
    with ledger.begin() as conn:
        ids = f.worked_example(conn)
        batch = make_batch(conn, [(ids["invoice_id"], "45000.00", "uncollectible_after_collections")])
        digest = conn.execute(select(writeoff_batches.c.batch_hash)).scalar_one()
        for step, decision in (("approve", "approved"), ("confirm", "confirmed")):
            conn.execute(
                insert(approvals).values(
                    batch_id=batch,
                    step=step,
                    tier="controller",
                    approver="controller",
                    decision=decision,
                    policy_version="2026.11-test",
                    batch_hash=digest,
                )
            )
        conn.execute(update(writeoff_batches).values(status="confirmed"))
        conn.execute(update(writeoffs).values(status="approved"))

    with pytest.raises(ApprovalError, match="no matching record in the audit log"):
        post(ledger, batch)
    assert entry_count(ledger) == 0


def test_item_amount_changed_after_approval_is_refused(ledger: Engine) -> None:
    with ledger.begin() as conn:
        ids = f.worked_example(conn)
        batch = make_batch(conn, [(ids["invoice_id"], "40000.00", "uncollectible_after_collections")])
    approve(ledger, batch)
    with ledger.begin() as conn:
        conn.execute(update(writeoffs).values(amount=D("45000")))

    with pytest.raises(ApprovalError, match="items changed since approval"):
        post(ledger, batch)
    assert entry_count(ledger) == 0


def test_auto_tier_posts_without_humans_but_audited(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        small = [f.invoice(conn, cid, amount="12.50", days_past_due=400) for _ in range(3)]
        batch = make_batch(conn, [(i, "12.50", "small_balance") for i in small], tier="auto")

    report = post(ledger, batch)

    assert (report.posted, report.status) == (3, "posted")
    with ledger.connect() as conn:
        acts = list(conn.execute(select(audit_log.c.action, audit_log.c.details).order_by(audit_log.c.id)))
        assert {ln[0] for ln in lines_of(conn, batch) if ln[2]} == {"6120"}
    auto = [d for a, d in acts if a == "approval.auto"]
    assert len(auto) == 1 and "auto-approved under small-balance tolerance" in auto[0]


def test_auto_tier_above_tolerance_is_refused(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        inv = f.invoice(conn, cid, amount="5000.00", days_past_due=400)
        batch = make_batch(conn, [(inv, "5000.00", "small_balance")], tier="auto")  # tier set wrongly

    with pytest.raises(ApprovalError, match="exceeds tier 'auto' item limit 100"):
        post(ledger, batch)
    assert entry_count(ledger) == 0


def test_many_chunks_post_everything_once(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        invs = [f.invoice(conn, cid, amount=f"{n}.00", days_past_due=400) for n in range(1, 24)]
        batch = make_batch(conn, [(i, f"{n}.00", "uncollectible_after_collections") for n, i in enumerate(invs, 1)])
    approve(ledger, batch)

    report = post(ledger, batch, chunk_size=5)

    assert (report.posted, report.chunks) == (23, 5)
    assert report.amounts == {"USD": D(sum(range(1, 24)))}
    with ledger.connect() as conn:
        assert ledger_balance(conn, "1100") == -D(sum(range(1, 24)))
        assert conn.execute(select(func.sum(invoices.c.open_balance))).scalar_one() == 0


@pytest.mark.parametrize("edit", ["amount", "reason", "new_item", "dropped_item"])
def test_items_edited_between_chunks_stop_the_batch(ledger: Engine, edit: str) -> None:
    """The attack: approval checked once at the start, then items edited between chunks posted at 100, 1000, 1000,
    1000 against an approval of 4 x 100. Each chunk must equal what the approval covers, or posting stops."""
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        ids = [f.invoice(conn, cid, amount="1000.00", days_past_due=400) for _ in range(4)]
        batch = make_batch(conn, [(i, "100.00", "uncollectible_after_collections") for i in ids])
        extra = f.invoice(conn, cid, amount="900.00", days_past_due=400)
    approve(ledger, batch)

    def tamper(stage: str, n: int) -> None:
        if (stage, n) != ("committed", 1):
            return
        with ledger.begin() as conn:  # the app's own connection, raw SQL, between chunk 1 and chunk 2
            if edit == "amount":
                conn.execute(text("UPDATE writeoffs SET amount = 1000 WHERE status = 'approved'"))
            elif edit == "reason":
                conn.execute(text("UPDATE writeoffs SET reason_code = 'bankruptcy' WHERE status = 'approved'"))
            elif edit == "dropped_item":  # an approved item quietly taken out of what gets posted
                last = conn.execute(select(func.max(writeoffs.c.id)).where(writeoffs.c.status == "approved")).scalar()
                conn.execute(text("UPDATE writeoffs SET status = 'excluded' WHERE id = :i"), {"i": last})
            else:
                row = conn.execute(select(writeoffs).where(writeoffs.c.status == "approved").limit(1)).one()
                values = {k: v for k, v in row._mapping.items() if k != "id"}
                values |= {"invoice_id": extra, "amount": D("900"), "idempotency_key": f"{row.idempotency_key}x"}
                conn.execute(insert(writeoffs).values(**values))

    stopped = (
        "left the batch while posting" if edit == "dropped_item" else "items changed since the approval was verified"
    )
    with pytest.raises(ApprovalError, match=f"{stopped}.*posting stopped"):
        post(ledger, batch, chunk_size=1, on_chunk=tamper)

    with ledger.connect() as conn:
        posted = conn.execute(
            select(writeoffs.c.amount).where(writeoffs.c.batch_id == batch, writeoffs.c.status == "posted")
        ).all()
        expense = gl.account_balance(conn, "US01", "6100", "USD")
    # Edited items: chunk 1 only. A smuggled-in item: the four approved ones, never the newcomer. A dropped item:
    # the three others, and the batch is not reported complete.
    n = {"new_item": 4, "dropped_item": 3}.get(edit, 1)
    assert [p.amount for p in posted] == [D("100")] * n
    assert expense == D("100") * n and entry_count(ledger) == n


def test_posting_rechecks_find_exactly_the_changed_items(ledger: Engine) -> None:
    """The chunk's re-checks run set-wise (one query returning only the items something was found for): each finding
    reaches its item and only its item, and what does not count (an expired hold, a payment before the as-of date, a
    snapshot that still matches, a child written off in full, a paid parent of a balance not transferred) posts."""
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        parent = f.customer(conn)
        child = f.customer(conn, parent_id=parent)
        inv = {
            name: f.invoice(conn, child if name.startswith("child") else cid, amount="100.00", days_past_due=400)
            for name in (
                "fine",
                "expired_hold",
                "paid_before",
                "snapshot_same",
                "child_full",
                "child_partial",
                "child_parent_paid",
                "child_untransferred_parent_paid",
                "posted_since",
            )
        }
        f.hold(conn, cid, inv["expired_hold"], "dispute", start_date=date(2026, 10, 1), end_date=date(2026, 11, 1))
        f.payment(conn, cid, inv["paid_before"], "10.00", date(2026, 11, 1))
        conn.execute(
            text(
                "INSERT INTO aging_snapshots (as_of_date, invoice_id, entity_code, customer_id, currency, "
                "days_past_due, bucket, open_balance) VALUES (:d, :i, 'US01', :c, 'USD', 400, '365+', :bal)"
            ),
            {"d": AS_OF, "i": inv["snapshot_same"], "c": cid, "bal": to_db(conn, Decimal("100"))},
        )
        conn.execute(
            update(invoices).where(invoices.c.id == inv["child_parent_paid"]).values(balance_transferred_to_parent=True)
        )
        first = make_batch(conn, [(inv["posted_since"], "40.00", "settlement_remainder")])
        amounts = {"child_partial": "40.00", "posted_since": "30.00"}
        batch = make_batch(
            conn, [(i, amounts.get(name, "100.00"), "uncollectible_after_collections") for name, i in inv.items()]
        )
    approve(ledger, first)
    approve(ledger, batch)
    with ledger.begin() as conn:  # after selection: the parent pays part of two child invoices
        f.payment(conn, parent, inv["child_parent_paid"], "5.00", AS_OF)
        f.payment(conn, parent, inv["child_untransferred_parent_paid"], "5.00", AS_OF)
    assert post(ledger, first).posted == 1  # another write-off of an invoice of `batch`, posted after its selection

    report = post(ledger, batch, chunk_size=4)

    by_invoice = {v: k for k, v in inv.items()}
    with ledger.connect() as conn:
        skipped = {
            by_invoice[r.invoice_id]: r.skip_reason
            for r in conn.execute(
                select(writeoffs.c.invoice_id, writeoffs.c.skip_reason).where(
                    writeoffs.c.batch_id == batch, writeoffs.c.status == "skipped"
                )
            )
        }
    assert skipped == {
        "child_partial": "child-account invoices are written off for their full invoice amount only",
        "child_parent_paid": "child invoice whose balance went to the parent, and the parent has paid part of it",
        "posted_since": "another write-off of this invoice was posted since selection",
    }
    assert (report.posted, report.skipped, report.status) == (6, 3, "partially_posted")
