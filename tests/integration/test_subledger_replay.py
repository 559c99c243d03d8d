"""Issue 19, "Done when": a ledger built over 120 business days answers balances and aging as of every day exactly as
an independent replay of the same events does, on SQLite and PostgreSQL.

The ledger is driven through the real functions: ERP extracts staged and merged (new invoices, payments that lower
the source's balances, payments on written-off invoices booked as recoveries), write-offs approved and posted,
reversals; one extract arrives late (merged a day after its date, after that day's write-off) and one invoice first
shows up in an extract two weeks after it was raised. The replay below never calls the code under test: it keeps
its own list of (invoice, business day, step, change) from the scenario's intent and its own aging buckets.

"As known" is checked too: for every day, the balances and the aging as of that day *as the ledger knew them at the
end of that day's processing* equal the replay's events recorded by then (the late extract is missing from its own
day).

Balance checkpoints (migration 0016) are built as the pipeline builds them (the last month end, after each day's
processing) and one more at the end of the late extract's own day, before that extract arrives; the withheld invoice
arrives after the May checkpoint although it is dated before it. Every answer must still equal the replay, whether
it starts from a checkpoint or not, and each checkpoint, made to answer every day in both directions, must too.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection, Engine, func, select, text

from tests.integration.posting_support import TIERS, approve, make_batch
from tests.integration.test_recoveries_pipeline import INVOICE_HEADER, PAYMENT_HEADER
from writeoffs import subledger
from writeoffs.db import dialect
from writeoffs.db.money import from_db
from writeoffs.db.schema import invoice_movements, invoices
from writeoffs.ingest import config as source_config
from writeoffs.ingest.merge import merge
from writeoffs.ingest.sources import build_source
from writeoffs.ingest.staging import stage
from writeoffs.posting import post_batch
from writeoffs.recoveries_pending import book_pending_recoveries
from writeoffs.reversal import reverse_writeoff

D = Decimal
CENT = D("0.01")
ZERO = D(0)


def business_days(start: date, n: int) -> list[date]:
    out, d = [], start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


DAYS = business_days(date(2026, 3, 2), 120)
EXTRACT_EVERY = 5
LATE_EXTRACT = 60  # the extract of DAYS[60] is merged during DAYS[61], after that day's write-off
WITHHELD = "INV-LATE"  # raised on DAYS[62], first in the extract of DAYS[75]
WITHHELD_UNTIL = 75
WRITEOFF_DAYS = {12, 27, 33, 48, 61, 70, 88, 101}
REVERSAL_DAYS = {40, 95}
RECOVERY_DAYS = {52, 103}
CHECKPOINTS_FROM = 10

#: The replay's own aging buckets (upper bounds in days past due), written out, not imported.
BUCKETS = [
    ("current", 0),
    ("1-30", 30),
    ("31-60", 60),
    ("61-90", 90),
    ("91-120", 120),
    ("121-180", 180),
    ("181-365", 365),
    ("365+", None),
]


def bucket(days_past_due: int) -> str:
    for label, high in BUCKETS:
        if high is None or days_past_due <= high:
            return label
    raise AssertionError


def us(day: date) -> str:
    return day.strftime("%m/%d/%Y")


def money(x: Decimal) -> str:
    return f"{x:,.2f}"


@dataclass
class Inv:
    ref: str
    customer: str
    amount: Decimal
    invoice_date: date
    source_open: Decimal
    in_ledger: bool = False
    ledger_balance: Decimal = ZERO
    written_off: Decimal = ZERO  # > 0 while a write-off stands (the ledger owns the invoice)
    paid_since_writeoff: bool = False


class Replay:
    """The scenario's intent as events; balances and aging are sums over them (plain Python, no ledger code)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, date, int, Decimal]] = []
        self.step = 0

    def move(self, inv: Inv, effective: date, change: Decimal) -> None:
        self.events.append((inv.ref, effective, self.step, change))
        inv.ledger_balance += change

    def balances(self, as_of: date, step: int | None = None) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for ref, eff, st, change in self.events:
            if eff <= as_of and (step is None or st <= step):
                out[ref] = out.get(ref, D(0)) + change
        return {k: v for k, v in out.items() if v != 0}

    def aging(self, as_of: date, book: dict[str, Inv], step: int | None = None) -> dict[str, tuple[int, Decimal]]:
        out: dict[str, tuple[int, Decimal]] = {}
        for ref, bal in self.balances(as_of, step).items():
            inv = book[ref]
            if bal > 0 and inv.invoice_date <= as_of:
                label = bucket((as_of - (inv.invoice_date + timedelta(days=30))).days)
                n, s = out.get(label, (0, D(0)))
                out[label] = (n + 1, s + bal)
        return out


def extract_rows(book: dict[str, Inv], day: date) -> list[str]:
    rows = []
    for inv in book.values():
        if inv.invoice_date > day or (inv.ref == WITHHELD and day < DAYS[WITHHELD_UNTIL]):
            continue
        due = inv.invoice_date + timedelta(days=30)
        rows.append(
            f"US01,{inv.ref},{inv.customer},Customer {inv.customer},,default,{us(inv.invoice_date)},{us(due)},USD,"
            f'"{money(inv.amount)}","{money(inv.source_open)}",,No,,No,No,No,goods'
        )
    return rows


def run_ingest(engine: Engine, tmp: Path, day: date, inv_rows: list[str], pay_rows: list[str]) -> None:
    d = tmp / f"erp_{day.isoformat()}"
    d.mkdir()
    (d / "invoices.csv").write_text("\n".join([INVOICE_HEADER, *inv_rows]) + "\n")
    (d / "payments.csv").write_text("\n".join([PAYMENT_HEADER, *pay_rows]) + "\n")
    (d / "activities.csv").write_text("Company,Customer No,Invoice No,Activity,Date,End Date,Outcome\n")
    (d / "control.json").write_text(json.dumps({"as_of": day.isoformat(), "invoices": {"rows": len(inv_rows)}}))
    config = source_config.load()
    staged = stage(engine, config, build_source(config.source("erp_csv"), location=str(d)), day)
    assert staged["rows_quarantined"] == 0, staged
    merge(engine, config, [staged["batch_id"]], day)
    book_pending_recoveries(engine, day, "ingest")


def apply_extract(replay: Replay, book: dict[str, Inv], day: date, seen: dict[str, Decimal]) -> None:
    """What the merge does, in the replay's terms: a new invoice enters at its invoice date with the source's
    balance; the source's balance is authoritative for the others, except those the ledger wrote off."""
    for ref, source_open in seen.items():
        inv = book[ref]
        if not inv.in_ledger:
            inv.in_ledger = True
            replay.move(inv, inv.invoice_date, source_open)
        elif inv.written_off == 0 and source_open != inv.ledger_balance:
            replay.move(inv, day, source_open - inv.ledger_balance)


def build(engine: Engine, tmp: Path) -> tuple[Replay, dict[str, Inv], dict[date, str], dict[date, int]]:
    """Run the scenario; returns the replay, the invoices, and per day the ledger's last recorded moment and the
    replay's step at the end of that day's processing."""
    rng = random.Random(19)
    book: dict[str, Inv] = {}
    for n in range(24):
        raised = date(2025, 12, 1) + timedelta(days=rng.randrange(0, 200))
        ref = f"INV-{n:03d}"
        amount = D(rng.randrange(10_000, 500_000)) / 100
        book[ref] = Inv(ref, f"C-{n % 4}", amount, raised, amount)
    book[WITHHELD] = Inv(WITHHELD, "C-1", D("777.77"), DAYS[62], D("777.77"))
    replay = Replay()
    known: dict[date, str] = {}
    known_step: dict[date, int] = {}
    pay_rows: list[str] = []
    deferred: tuple[list[str], list[str], dict[str, Decimal]] | None = None
    pay_no = 0

    def do_extract(day: date) -> tuple[list[str], list[str], dict[str, Decimal]]:
        nonlocal pay_rows
        rows, pays = extract_rows(book, day), pay_rows
        pay_rows = []
        seen = {r.split(",")[1]: book[r.split(",")[1]].source_open for r in rows}
        return rows, pays, seen

    for idx, day in enumerate(DAYS):
        # The source: a payment on some days; on two days, cash on a written-off invoice (a recovery for the ledger).
        payable = [i for i in book.values() if i.in_ledger and i.source_open > 0 and not i.written_off]
        if idx in RECOVERY_DAYS:
            payable = [i for i in book.values() if i.written_off and not i.paid_since_writeoff]
        if payable and (idx in RECOVERY_DAYS or rng.random() < 0.25):
            inv = rng.choice(payable)
            amount = inv.source_open if rng.random() < 0.25 else (inv.source_open / 3).quantize(CENT)
            if inv.written_off:
                amount = min(amount, (inv.written_off / 2).quantize(CENT))
                inv.paid_since_writeoff = True
            if amount > 0:
                pay_no += 1
                inv.source_open -= amount
                pay_rows.append(
                    f'US01,P-{pay_no:04d},{inv.customer},{us(day)},USD,"{money(amount)}",{inv.ref},"{money(amount)}"'
                )
        # The extract of the day (the late one is held back and merged tomorrow, after tomorrow's write-off).
        if idx % EXTRACT_EVERY == 0:
            rows, pays, seen = do_extract(day)
            if idx == LATE_EXTRACT:
                deferred = (rows, pays, seen)
            else:
                replay.step += 1
                run_ingest(engine, tmp, day, rows, pays)
                apply_extract(replay, book, day, seen)
        # The ledger: write-offs of a whole open balance the source agrees with; reversals of untouched ones.
        if idx in WRITEOFF_DAYS:
            candidates = [
                i
                for i in book.values()
                if i.in_ledger and i.written_off == 0 and i.ledger_balance > 0 and i.ledger_balance == i.source_open
            ]
            inv = candidates[idx % len(candidates)]
            replay.step += 1
            with engine.begin() as conn:
                iid = conn.execute(select(invoices.c.id).where(invoices.c.invoice_ref == inv.ref)).scalar_one()
                batch = make_batch(conn, [(iid, inv.ledger_balance, "uncollectible_after_collections")], as_of=day)
            approve(engine, batch)
            report = post_batch(engine, batch, actor="airflow", tiers=TIERS, posting_date=day)
            assert report.posted == 1, report
            inv.written_off = inv.ledger_balance
            inv.paid_since_writeoff = False
            replay.move(inv, day, -inv.ledger_balance)
        if idx in REVERSAL_DAYS:
            inv = next(i for i in book.values() if i.written_off and not i.paid_since_writeoff)
            replay.step += 1
            with engine.begin() as conn:
                reverse_writeoff(
                    conn,
                    invoice_ref=inv.ref,
                    reason="posted_in_error",
                    requested_by="ar_clerk",
                    approved_by="controller",
                    posting_date=day,
                )
            replay.move(inv, day, inv.written_off)
            inv.written_off = D(0)
        if idx == LATE_EXTRACT + 1 and deferred is not None:
            rows, pays, seen = deferred
            replay.step += 1
            run_ingest(engine, tmp, DAYS[LATE_EXTRACT], rows, pays)
            apply_extract(replay, book, DAYS[LATE_EXTRACT], seen)
        with engine.begin() as conn:
            known[day] = subledger.last_recorded(conn) or ""
            # What the ingest's aging step does after every run (from the third week: February's checkpoint is
            # built late, so "as known" before then must take the other path); a checkpoint the late extract misses.
            if idx >= CHECKPOINTS_FROM:
                subledger.checkpoint_period_end(conn, day)
            if idx == LATE_EXTRACT:
                subledger.build_checkpoint(conn, day)
        known_step[day] = replay.step
        if engine.dialect.name == "sqlite":
            time.sleep(0.002)  # SQLite's clock has millisecond steps: the next day is recorded strictly later
    return replay, book, known, known_step


def _aging(conn: Connection, day: date, known: str | None = None) -> dict[str, tuple[int, Decimal]]:
    aging = subledger.aging_as_of(conn, day, known=known)["by_entity_currency"].get("US01/USD", {"buckets": {}})
    return {k: (v["invoices"], D(v["open_balance"])) for k, v in aging["buckets"].items()}


def test_balances_and_aging_as_of_every_day_equal_the_replay(ledger: Engine, tmp_path: Path) -> None:
    replay, book, known, known_step = build(ledger, tmp_path)
    late_day = DAYS[LATE_EXTRACT]
    paths: dict[str, set[bool]] = {"today": set(), "then": set()}
    with ledger.connect() as conn:
        for day in DAYS:
            paths["today"].add(subledger.choose_checkpoint(conn, day) is not None)
            paths["then"].add(subledger.choose_checkpoint(conn, day, known[day]) is not None)
            got = {b.key: b.balance for b in subledger.balances_as_of(conn, day, level="invoice") if b.balance != 0}
            assert got == replay.balances(day), day
            assert _aging(conn, day) == replay.aging(day, book), day
            # As the ledger knew it at the end of that day's processing.
            then = {
                b.key: b.balance
                for b in subledger.balances_as_of(conn, day, level="invoice", known=known[day])
                if b.balance != 0
            }
            assert then == replay.balances(day, known_step[day]), day
            assert _aging(conn, day, known[day]) == replay.aging(day, book, known_step[day]), day
    # Both ways of answering were taken, for both dates: from a checkpoint and from the movements alone.
    assert paths == {"today": {True, False}, "then": {True, False}}
    with ledger.connect() as conn:
        # Every level adds up to the same total; today's aging from movements is the materialised one.
        last = DAYS[-1]
        total = sum(replay.balances(last).values(), D(0))
        assert [(b.key, b.balance) for b in subledger.balances_as_of(conn, last, level="entity")] == [("US01", total)]
        assert [(b.key, b.balance) for b in subledger.balances_as_of(conn, last, level="currency")] == [("USD", total)]
        assert sum(b.balance for b in subledger.balances_as_of(conn, last, level="customer")) == total
        assert subledger.aging_as_of(conn, last) == subledger.aging_current(conn, last)
        # The late extract: in "as of its day, as known today", not in "as known at the end of its day".
        now = replay.balances(late_day)
        then = replay.balances(late_day, known_step[late_day])
        assert now != then
        # What changed between two days is the difference of the balances (one query, per kind).
        d1, d2 = DAYS[30], DAYS[90]
        changed = sum(c.balance_change for c in subledger.changes_between(conn, d1, d2))
        assert changed == sum(replay.balances(d2).values(), D(0)) - sum(replay.balances(d1).values(), D(0))
        kinds = {c.kind for c in subledger.changes_between(conn, DAYS[0], last)}
        assert {"ingest", "writeoff", "reversal", "recovery"} <= kinds, kinds


def test_every_checkpoint_answers_every_day_like_the_replay(ledger: Engine, tmp_path: Path) -> None:
    """Each checkpoint made to answer every day, before and after its date, as known today and as known then (where
    it covers that), through the one SQL the as-of queries use: late movements (the late extract after the checkpoint
    of its own day, the withheld invoice after May's) are counted from the movements, never lost."""
    replay, _book, known, known_step = build(ledger, tmp_path)
    with ledger.connect() as conn:
        built = subledger.checkpoints(conn)
        assert {c.as_of for c in built} == {
            date(2026, 2, 28),
            date(2026, 3, 31),
            date(2026, 4, 30),
            DAYS[LATE_EXTRACT],
            date(2026, 5, 31),
            date(2026, 6, 30),
            date(2026, 7, 31),
        }
        ids = dict(conn.execute(select(invoices.c.id, invoices.c.invoice_ref)).all())
        may = next(c for c in built if c.as_of == date(2026, 5, 31))
        # The withheld invoice (dated before May's checkpoint, recorded after it) is not in it.
        withheld = next(i for i, ref in ids.items() if ref == WITHHELD)
        first = conn.execute(
            select(func.min(invoice_movements.c.id)).where(invoice_movements.c.invoice_id == withheld)
        ).scalar_one()
        assert first > may.movements_through
        sql = {k: subledger.checkpoint_balances_sql(dialect.of(ledger), known=k) for k in (False, True)}
        answered_then = 0
        for cp in built:
            for day in DAYS:
                rows = conn.execute(text(sql[False]), subledger.aged_params(day, None, cp)).all()
                got = {ids[i]: b for i, b in _decoded(conn, rows)}
                assert got == replay.balances(day), (cp.as_of, day)
                if cp.recorded_through <= known[day]:
                    answered_then += 1
                    rows = conn.execute(text(sql[True]), subledger.aged_params(day, known[day], cp)).all()
                    got = {ids[i]: b for i, b in _decoded(conn, rows)}
                    assert got == replay.balances(day, known_step[day]), (cp.as_of, day)
        assert answered_then > len(DAYS)


def _decoded(conn: Connection, rows) -> list[tuple[int, Decimal]]:
    out = [(i, from_db(conn, b)) for i, b in rows]
    return [(i, b) for i, b in out if b]
