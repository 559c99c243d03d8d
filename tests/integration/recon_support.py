"""A small, clean two-entity ledger for reconciliation tests, and one injector per kind of break.

The clean ledger is what the pipeline should leave behind: invoices raised through the GL (Dr AR / Cr Suspense per
invoice), a payment, direct and allowance-method write-offs, a reversed write-off, recoveries under both methods, an
allowance estimate, and two posted batches whose items are posted, skipped with a reason, or excluded. Every
entry goes through ``writeoffs.ledger.post_entries`` (so the database's balance/period triggers vouch for it);
sub-ledger rows are written the way posting does (open balance down, written_off_amount up, item linked).

Injectors break it the way people and bugs do: an edited GL line (triggers disabled, as a superuser could), a
write-off marked posted without its journal entry, a second write-off entry under another key, a recovery above the
amount written off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, Engine, insert, select, text, update

from tests import factories
from writeoffs import audit, ledger, subledger
from writeoffs.approvals import batch_hash_of, current_items
from writeoffs.db.schema import invoices, journal_lines, recoveries, writeoff_batches, writeoffs
from writeoffs.journal import JournalEntry, JournalLine

D = Decimal
AS_OF = date(2026, 11, 24)


@dataclass(frozen=True)
class Scenario:
    """Ids of the interesting rows."""

    worked: int  # US01 $45,000 written off (direct), $30,000 recovered
    open_usd: int  # US01 $1,000 open, never touched
    paid_part: int  # US01 $2,500 with a $1,000 payment
    reversed_inv: int  # US01 $500 written off, then the write-off reversed
    eur_wo: int  # EU01 EUR 3,000 written off against the allowance
    eur_recovered: int  # EU01 EUR 800 written off, EUR 200 recovered (allowance method)
    gbp_open: int  # EU01 GBP 1,200 open at fx 1.15 (functional EUR 1,380)
    us_batch: int
    eu_batch: int


def _line(
    account: str,
    cur: str,
    *,
    dr: str = "0",
    cr: str = "0",
    inv: int | None = None,
    fcur: str | None = None,
    rate: str = "1",
) -> JournalLine:
    fd = (D(dr) * D(rate)) if fcur and fcur != cur else None
    fc = (D(cr) * D(rate)) if fcur and fcur != cur else None
    return JournalLine(
        account=account,
        currency=cur,
        debit=D(dr),
        credit=D(cr),
        functional_currency=fcur or cur,
        functional_debit=fd,
        functional_credit=fc,
        invoice_id=inv,
    )


def _entry(
    key: str, entity: str, source: str, *lines: JournalLine, reverses: str | None = None, day: date = AS_OF
) -> JournalEntry:
    return JournalEntry(
        key=key,
        entity=entity,
        posting_date=day,
        lines=lines,
        source_type=source,
        source_id=key,
        reverses_key=reverses,
        description=key,
    )


def post(conn: Connection, *entries: JournalEntry) -> dict[str, int]:
    res = ledger.post_entries(conn, entries, created_by="test")
    return {**res.posted, **res.already}


def _invoice_entry(entity: str, inv: int, ref: str, cur: str, amount: str, fcur: str, rate: str = "1") -> JournalEntry:
    return _entry(
        f"inv:{ref}",
        entity,
        "invoice",
        _line("1100", cur, dr=amount, inv=inv, fcur=fcur, rate=rate),
        _line("2990", cur, cr=amount, inv=inv, fcur=fcur, rate=rate),
        day=date(2025, 9, 15),
    )


def _batch(conn: Connection, key: str, entity: str, cur: str, policy_hash: str, status: str = "posted") -> int:
    return conn.execute(
        insert(writeoff_batches)
        .values(
            batch_key=key,
            entity_code=entity,
            currency=cur,
            tier="controller",
            as_of_date=AS_OF,
            policy_version="test",
            policy_hash=policy_hash,
            status=status,
        )
        .returning(writeoff_batches.c.id)
    ).scalar_one()


def add_item(
    conn: Connection,
    batch: int,
    inv: int,
    cur: str,
    amount: str,
    status: str,
    *,
    entry_id: int | None = None,
    skip_reason: str | None = None,
    key: str | None = None,
) -> int:
    """A write-off item of ``batch``, under the batch's policy (its reason map is what reconciliation checks)."""
    policy_hash = conn.execute(
        select(writeoff_batches.c.policy_hash).where(writeoff_batches.c.id == batch)
    ).scalar_one()
    return conn.execute(
        insert(writeoffs)
        .values(
            batch_id=batch,
            invoice_id=inv,
            as_of_date=AS_OF,
            currency=cur,
            amount=D(amount),
            reason_code="uncollectible_after_collections",
            rule="test",
            tier="controller",
            policy_version="test",
            policy_hash=policy_hash,
            status=status,
            skip_reason=skip_reason,
            idempotency_key=key or f"test:{batch}:{inv}",
            journal_entry_id=entry_id,
        )
        .returning(writeoffs.c.id)
    ).scalar_one()


def _written_off(conn: Connection, inv: int, amount: str, status: str = "written_off") -> None:
    # The sub-ledger side of a write-off posted on AS_OF, declared as writeoffs.posting does (writeoffs.subledger).
    with subledger.movement(conn, "writeoff", AS_OF):
        conn.execute(
            update(invoices)
            .where(invoices.c.id == inv)
            .values(
                open_balance=invoices.c.open_balance - D(amount),
                written_off_amount=D(amount),
                written_off_date=AS_OF,
                status=status,
            )
        )


def build_clean_ledger(engine: Engine) -> Scenario:
    with engine.begin() as conn:
        factories.entity(conn, "US01", "USD", "direct")
        factories.entity(conn, "EU01", "EUR", "allowance")
        ids = factories.worked_example(conn)
        worked = ids["invoice_id"]
        cid = ids["customer_id"]
        open_usd = factories.invoice(conn, cid, ref="INV-OPEN-1000", amount="1000.00")
        paid_part = factories.invoice(conn, cid, ref="INV-PART-2500", amount="2500.00")
        reversed_inv = factories.invoice(conn, cid, ref="INV-REV-500", amount="500.00", days_past_due=400)
        ecid = factories.customer(conn, "EU01", "C-EU-1")
        eur_wo = factories.invoice(
            conn, ecid, entity_code="EU01", ref="INV-EU-3000", amount="3000.00", currency="EUR", days_past_due=500
        )
        eur_rec = factories.invoice(
            conn, ecid, entity_code="EU01", ref="INV-EU-800", amount="800.00", currency="EUR", days_past_due=450
        )
        gbp = factories.invoice(
            conn, ecid, entity_code="EU01", ref="INV-GB-1200", amount="1200.00", currency="GBP", fx_rate="1.15"
        )
        # Invoices raised through the GL, one entry each (so AR lines name their invoice).
        post(
            conn,
            _invoice_entry("US01", worked, "INV-WORKED-45000", "USD", "45000.00", "USD"),
            _invoice_entry("US01", open_usd, "INV-OPEN-1000", "USD", "1000.00", "USD"),
            _invoice_entry("US01", paid_part, "INV-PART-2500", "USD", "2500.00", "USD"),
            _invoice_entry("US01", reversed_inv, "INV-REV-500", "USD", "500.00", "USD"),
            _invoice_entry("EU01", eur_wo, "INV-EU-3000", "EUR", "3000.00", "EUR"),
            _invoice_entry("EU01", eur_rec, "INV-EU-800", "EUR", "800.00", "EUR"),
            _invoice_entry("EU01", gbp, "INV-GB-1200", "GBP", "1200.00", "EUR", "1.15"),
        )
        # A $1,000 payment on INV-PART-2500.
        factories.payment(conn, cid, paid_part, "1000.00", date(2026, 10, 1))
        with subledger.movement(conn, "ingest", date(2026, 10, 1)):
            conn.execute(update(invoices).where(invoices.c.id == paid_part).values(open_balance=D("1500.00")))
        post(
            conn,
            _entry(
                "pay:INV-PART-2500",
                "US01",
                "payment",
                _line("1000", "USD", dr="1000.00", inv=paid_part),
                _line("1100", "USD", cr="1000.00", inv=paid_part),
            ),
        )
        # Allowance estimate for EU01 (Dr Bad Debt Expense / Cr Allowance).
        post(
            conn,
            _entry(
                "alw:EU01:2026-10-31",
                "EU01",
                "allowance",
                _line("6100", "EUR", dr="5000.00"),
                _line("1190", "EUR", cr="5000.00"),
                day=date(2026, 10, 31),
            ),
        )

        # The policy the batches were selected under: its reason map says which account each write-off debits.
        policy_hash = factories.record_policy(conn, "recon", version="test").content_hash
        us_batch = _batch(conn, "test:US01:USD", "US01", "USD", policy_hash)
        eu_batch = _batch(conn, "test:EU01:EUR", "EU01", "EUR", policy_hash)
        # Direct write-offs: Dr Bad Debt Expense / Cr AR, lines tagged with the invoice (as writeoffs.posting does).
        e = post(
            conn,
            _entry(
                "wo:worked",
                "US01",
                "writeoff",
                _line("6100", "USD", dr="45000.00", inv=worked),
                _line("1100", "USD", cr="45000.00", inv=worked),
            ),
            _entry(
                "wo:rev500",
                "US01",
                "writeoff",
                _line("6100", "USD", dr="500.00", inv=reversed_inv),
                _line("1100", "USD", cr="500.00", inv=reversed_inv),
            ),
            _entry(
                "wo:eu3000",
                "EU01",
                "writeoff",
                _line("1190", "EUR", dr="3000.00", inv=eur_wo),
                _line("1100", "EUR", cr="3000.00", inv=eur_wo),
            ),
            _entry(
                "wo:eu800",
                "EU01",
                "writeoff",
                _line("1190", "EUR", dr="800.00", inv=eur_rec),
                _line("1100", "EUR", cr="800.00", inv=eur_rec),
            ),
        )
        add_item(conn, us_batch, worked, "USD", "45000.00", "posted", entry_id=e["wo:worked"])
        add_item(conn, us_batch, reversed_inv, "USD", "500.00", "reversed", entry_id=e["wo:rev500"])
        add_item(
            conn,
            us_batch,
            open_usd,
            "USD",
            "1000.00",
            "skipped",
            skip_reason="payment received after the as-of date 2026-11-24",
        )
        add_item(conn, us_batch, paid_part, "USD", "1500.00", "excluded")
        add_item(conn, eu_batch, eur_wo, "EUR", "3000.00", "posted", entry_id=e["wo:eu3000"])
        add_item(conn, eu_batch, eur_rec, "EUR", "800.00", "posted", entry_id=e["wo:eu800"])
        # Each batch's approval, as the approvals code audits it: the digest of the items it approved.
        for batch in (us_batch, eu_batch):
            audit.append(
                conn,
                actor="controller",
                action="approval.confirmed",
                object_type="writeoff_batch",
                object_id=batch,
                details={"batch_hash": batch_hash_of(current_items(conn, batch))},
            )
        _written_off(conn, worked, "45000.00")
        _written_off(conn, eur_wo, "3000.00")
        _written_off(conn, eur_rec, "800.00")
        # The $500 write-off was reversed: mirror entry, receivable reinstated, written_off_amount back to 0.
        rev = JournalEntry(
            key="wo:rev500",
            entity="US01",
            posting_date=AS_OF,
            lines=(
                _line("6100", "USD", dr="500.00", inv=reversed_inv),
                _line("1100", "USD", cr="500.00", inv=reversed_inv),
            ),
            source_type="writeoff",
        ).reversal("rev:wo:rev500", AS_OF)
        post(conn, rev)
        with subledger.movement(conn, "reversal", AS_OF):
            conn.execute(update(invoices).where(invoices.c.id == reversed_inv).values(status="reversed"))
        # Direct recovery of $30,000 on the worked example: Dr Cash / Cr Bad Debt Recovery income.
        r = post(
            conn,
            _entry(
                "rec:worked:1",
                "US01",
                "recovery",
                _line("1000", "USD", dr="30000.00", inv=worked),
                _line("4900", "USD", cr="30000.00", inv=worked),
            ),
        )
        add_recovery(conn, worked, "USD", "30000.00", "rec:worked:1", r["rec:worked:1"])
        with subledger.movement(conn, "recovery", AS_OF):
            conn.execute(
                update(invoices)
                .where(invoices.c.id == worked)
                .values(recovered_amount=D("30000.00"), status="partially_recovered")
            )
        # Allowance recovery of EUR 200: reinstate (Dr AR / Cr Allowance), then collect (Dr Cash / Cr AR).
        r = post(
            conn,
            _entry(
                "rec:eu800:1",
                "EU01",
                "recovery",
                _line("1100", "EUR", dr="200.00", inv=eur_rec),
                _line("1190", "EUR", cr="200.00", inv=eur_rec),
                _line("1000", "EUR", dr="200.00", inv=eur_rec),
                _line("1100", "EUR", cr="200.00", inv=eur_rec),
            ),
        )
        add_recovery(conn, eur_rec, "EUR", "200.00", "rec:eu800:1", r["rec:eu800:1"])
        with subledger.movement(conn, "recovery", AS_OF):
            conn.execute(
                update(invoices)
                .where(invoices.c.id == eur_rec)
                .values(recovered_amount=D("200.00"), status="partially_recovered")
            )
    return Scenario(worked, open_usd, paid_part, reversed_inv, eur_wo, eur_rec, gbp, us_batch, eu_batch)


def add_recovery(conn: Connection, inv: int, cur: str, amount: str, key: str, entry_id: int | None) -> int:
    return conn.execute(
        insert(recoveries)
        .values(
            invoice_id=inv,
            recovery_date=AS_OF,
            currency=cur,
            amount=D(amount),
            idempotency_key=key,
            journal_entry_id=entry_id,
        )
        .returning(recoveries.c.id)
    ).scalar_one()


# --- injectors --------------------------------------------------------------------------------------------------


def inject_edited_gl_line(engine: Engine, s: Scenario, new_credit: str = "40000.00") -> int:
    """A superuser edits the AR credit of the worked example's posted write-off entry (triggers disabled)."""
    with engine.begin() as conn:
        line_id = conn.execute(
            text(
                "SELECT l.id FROM journal_lines l JOIN journal_entries e ON e.id = l.entry_id "
                "WHERE e.idempotency_key = 'wo:worked' AND l.account_code = '1100'"
            )
        ).scalar_one()
        if conn.dialect.name == "postgresql":
            # The guard refuses edits of posted lines; the deferred constraint trigger would refuse the unbalanced
            # result at COMMIT. Both off: exactly what someone with a superuser prompt can do.
            conn.execute(text("ALTER TABLE journal_lines DISABLE TRIGGER trg_jl_guard"))
            conn.execute(text("ALTER TABLE journal_lines DISABLE TRIGGER trg_jl_balanced"))
            conn.execute(
                update(journal_lines)
                .where(journal_lines.c.id == line_id)
                .values(credit=D(new_credit), functional_credit=D(new_credit))
            )
            conn.execute(text("ALTER TABLE journal_lines ENABLE TRIGGER trg_jl_balanced"))
            conn.execute(text("ALTER TABLE journal_lines ENABLE TRIGGER trg_jl_guard"))
        else:
            # SQLite has no DISABLE TRIGGER: drop and recreate it, as someone editing the file could.
            ddl = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'trg_jl_posted_no_update'")
            ).scalar_one()
            conn.execute(text("DROP TRIGGER trg_jl_posted_no_update"))
            conn.execute(
                update(journal_lines)
                .where(journal_lines.c.id == line_id)
                .values(credit=D(new_credit), functional_credit=D(new_credit))
            )
            conn.execute(text(ddl))
    return line_id


def inject_posted_without_entry(engine: Engine, s: Scenario) -> int:
    """The $1,000 invoice is written off in the sub-ledger and its item marked posted, but no GL entry exists."""
    with engine.begin() as conn:
        wid = conn.execute(
            select(writeoffs.c.id).where(writeoffs.c.invoice_id == s.open_usd, writeoffs.c.batch_id == s.us_batch)
        ).scalar_one()
        conn.execute(update(writeoffs).where(writeoffs.c.id == wid).values(status="posted", skip_reason=None))
        _written_off(conn, s.open_usd, "1000.00")
    return wid


def inject_double_posting(engine: Engine, s: Scenario) -> int:
    """A second write-off entry for the worked example under a different idempotency key."""
    with engine.begin() as conn:
        return post(
            conn,
            _entry(
                "wo:worked:retry-2",
                "US01",
                "writeoff",
                _line("6100", "USD", dr="45000.00", inv=s.worked),
                _line("1100", "USD", cr="45000.00", inv=s.worked),
            ),
        )["wo:worked:retry-2"]


def inject_over_recovery(engine: Engine, s: Scenario) -> int:
    """A further $20,000 recovery row on the worked example: $50,000 recovered on $45,000 written off."""
    with engine.begin() as conn:
        r = post(
            conn,
            _entry(
                "rec:worked:2",
                "US01",
                "recovery",
                _line("1000", "USD", dr="20000.00", inv=s.worked),
                _line("4900", "USD", cr="20000.00", inv=s.worked),
            ),
        )
        return add_recovery(conn, s.worked, "USD", "20000.00", "rec:worked:2", r["rec:worked:2"])


def inject_unbooked_recovery_cash(engine: Engine, s: Scenario) -> int:
    """Raw SQL: EUR 150 of cash on the written-off EUR 800 invoice, allocated as 'recovery', never booked."""
    with engine.begin() as conn:
        cid = conn.execute(select(invoices.c.customer_id).where(invoices.c.id == s.eur_recovered)).scalar_one()
        pid = conn.execute(
            text(
                "INSERT INTO payments (entity_code, payment_ref, customer_id, payment_date, currency, amount, source)"
                " VALUES ('EU01', 'RAW-REC-150', :c, :d, 'EUR', '150.00', 'raw') RETURNING id"
            ),
            {"c": cid, "d": AS_OF},
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO payment_allocations (payment_id, invoice_id, amount, allocated_on, kind)"
                " VALUES (:p, :i, '150.00', :d, 'recovery')"
            ),
            {"p": pid, "i": s.eur_recovered, "d": AS_OF},
        )
        return pid
