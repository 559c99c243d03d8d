"""Issue 19: balance checkpoints (migration 0016) are derived from the movements and checked against them.

A checkpoint is what the as-of answers start from, so one that was edited or forged would make them wrong without a
trace in the movements. Reconciliation's ``checkpoints`` check recomputes every checkpoint from the movements (one
statement each) and names what differs; on PostgreSQL the runtime role cannot edit or delete one at all
(``test_pg_roles.py``). The answers themselves are tested against an independent replay in
``test_subledger_replay.py``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import Engine, func, insert, select, text, update

from tests import factories as f
from writeoffs import subledger
from writeoffs.db.schema import (
    balance_checkpoint_rows,
    balance_checkpoint_summary,
    balance_checkpoints,
    invoices,
)
from writeoffs.ingest import config as source_config
from writeoffs.ingest.pipeline import age
from writeoffs.reconcile import Tolerances, check_checkpoints

D = Decimal
MONTH_END = date(2026, 10, 31)
AS_OF = date(2026, 11, 24)


def _ledger(engine: Engine) -> tuple[int, int]:
    with engine.begin() as conn:
        f.entity(conn)
        a = f.invoice(conn, f.customer(conn), ref="INV-A", amount="500.00", invoice_date=date(2026, 9, 1))
        b = f.invoice(conn, f.customer(conn), ref="INV-B", amount="70.00", invoice_date=date(2026, 9, 2))
        subledger.build_checkpoint(conn, MONTH_END)
    return a, b


def _balances(engine: Engine, day: date) -> dict[str, Decimal]:
    with engine.connect() as conn:
        return {b.key: b.balance for b in subledger.balances_as_of(conn, day, level="invoice")}


def test_a_tampered_checkpoint_row_is_found(ledger: Engine) -> None:
    a, _ = _ledger(ledger)
    with ledger.connect() as conn:
        assert check_checkpoints(conn, AS_OF, Tolerances()) == []
    with ledger.begin() as conn:
        conn.execute(update(balance_checkpoint_rows).where(balance_checkpoint_rows.c.invoice_id == a).values(balance=1))
    with ledger.connect() as conn:
        (found,) = check_checkpoints(conn, AS_OF, Tolerances())
    assert (found.check, found.entity, found.currency, found.expected, found.actual) == (
        "checkpoints",
        "US01",
        "USD",
        D("500"),
        D("1"),
    )
    assert [(d["ref"], d["checkpoint"]) for d in found.documents] == [("INV-A", "2026-10-31")]


def test_a_forged_checkpoint_is_found(ledger: Engine) -> None:
    """A checkpoint inserted by hand (the runtime role may insert: the build runs as it) for a date nobody built,
    claiming a balance the movements do not have and a high-water mark beyond the movements."""
    a, b = _ledger(ledger)
    with ledger.begin() as conn:
        top = conn.execute(text("SELECT MAX(id) FROM invoice_movements")).scalar_one()
        cp = conn.execute(
            insert(balance_checkpoints)
            .values(
                as_of_date=date(2026, 11, 30),
                movements_through=top + 1000,
                recorded_through="9999",
                attributes_through=0,
            )
            .returning(balance_checkpoints.c.id)
        ).scalar_one()
        copied = conn.execute(
            select(
                invoices.c.id.label("invoice_id"), *(invoices.c[a] for a in subledger.checkpoint.CHECKPOINT_ATTRIBUTES)
            )
        ).mappings()
        copies = {r["invoice_id"]: dict(r) for r in copied}
        conn.execute(
            insert(balance_checkpoint_rows),
            [
                {**copies[a], "checkpoint_id": cp, "balance": D("500")},
                {**copies[b], "checkpoint_id": cp, "balance": D("7")},
            ],
        )
    with ledger.connect() as conn:
        found = check_checkpoints(conn, AS_OF, Tolerances())
    assert [x.check for x in found] == ["checkpoints", "checkpoints"]
    assert "marks are false" in found[0].message
    assert (found[1].expected, found[1].actual, [d["ref"] for d in found[1].documents]) == (D("70"), D("7"), ["INV-B"])


def test_a_checkpoint_edited_after_the_fact_changes_no_movement(ledger: Engine) -> None:
    """Why the check exists: answers that start from a tampered checkpoint are wrong, the movements are not."""
    a, _ = _ledger(ledger)
    day = date(2026, 11, 2)  # nearer the checkpoint than the last movement: answered from it
    with ledger.begin() as conn:
        f.invoice(conn, f.customer(conn), ref="INV-C", amount="9.00", invoice_date=date(2027, 1, 4))
    assert _balances(ledger, day) == {"INV-A": D("500"), "INV-B": D("70")}
    with ledger.begin() as conn:
        assert subledger.choose_checkpoint(conn, day) is not None
        conn.execute(update(balance_checkpoint_rows).where(balance_checkpoint_rows.c.invoice_id == a).values(balance=1))
    assert _balances(ledger, day)["INV-A"] == D("1")
    with ledger.connect() as conn:
        assert [x.check for x in check_checkpoints(conn, AS_OF, Tolerances())] == ["checkpoints"]


def test_the_ingest_aging_step_builds_the_month_end_checkpoint_once(ledger: Engine) -> None:
    _ledger(ledger)
    with ledger.begin() as conn:
        conn.execute(balance_checkpoint_summary.delete())
        conn.execute(balance_checkpoint_rows.delete())
        conn.execute(balance_checkpoints.delete())
    config = source_config.load()
    first = date(2026, 10, 20)
    age(ledger, config, first)  # the ledger's first ingest: no checkpoint of a month end before the ledger existed
    with ledger.connect() as conn:
        assert subledger.checkpoints(conn) == []
        assert subledger.choose_checkpoint(conn, date(2026, 9, 30)) is None
    assert _balances(ledger, date(2026, 9, 30)) == {"INV-A": D("500"), "INV-B": D("70")}  # the exact path
    age(ledger, config, AS_OF)  # the first ingest after the ledger's first month end builds it
    age(ledger, config, AS_OF)  # idempotent: a re-run finds it
    with ledger.connect() as conn:
        (cp,) = subledger.checkpoints(conn)
        rows = conn.execute(select(func.count()).select_from(balance_checkpoint_rows)).scalar_one()
        assert check_checkpoints(conn, AS_OF, Tolerances()) == []
    assert (cp.as_of, rows) == (MONTH_END, 2)
    assert subledger.period_end_on_or_before(date(2026, 11, 30)) == date(2026, 11, 30)
    assert subledger.period_end_on_or_before(date(2026, 12, 1)) == date(2026, 11, 30)


def test_reconciliation_recomputes_only_the_checkpoints_of_its_last_two_months(ledger: Engine) -> None:
    """The check's cost is bounded (each checkpoint is a pass over the movements): a checkpoint is recomputed by the
    runs of its first CHECKPOINT_RECHECK_DAYS days, not by every run forever. The same tampered row is found by a
    run 62 days after the checkpoint's date and not looked at by a run 63 days after it."""
    from datetime import timedelta

    from writeoffs.reconcile import CHECKPOINT_RECHECK_DAYS

    a, _ = _ledger(ledger)
    with ledger.begin() as conn:
        conn.execute(update(balance_checkpoint_rows).where(balance_checkpoint_rows.c.invoice_id == a).values(balance=1))
    last_day = MONTH_END + timedelta(days=CHECKPOINT_RECHECK_DAYS)
    with ledger.connect() as conn:
        assert [b.check for b in check_checkpoints(conn, last_day, Tolerances())] == ["checkpoints"]
        assert check_checkpoints(conn, last_day + timedelta(days=1), Tolerances()) == []


def _aging(engine: Engine, day: date, **kwargs) -> dict:
    with engine.connect() as conn:
        return subledger.aging_as_of(conn, day, **kwargs)["by_entity_currency"]["US01/USD"]["buckets"]


def test_a_due_date_moved_after_the_build_is_aged_by_the_new_date(ledger: Engine) -> None:
    """A checkpoint row copies its invoice's dates (migration 0017) so the as-of aging need not read every invoice.
    An ingest that moves a due date after the build must not be aged by the stale copy: the change is recorded and
    that invoice is read from ``invoices``. Same answer as from the movements alone."""
    a, _ = _ledger(ledger)  # INV-A: 500.00 raised 2026-09-01, due 2026-10-01; INV-B: 70.00 due 2026-10-02
    day = date(2026, 11, 2)  # nearer the checkpoint than the last movement: answered from it
    with ledger.begin() as conn:
        f.invoice(conn, f.customer(conn), ref="INV-C", amount="9.00", invoice_date=date(2027, 1, 4))
        assert subledger.choose_checkpoint(conn, day) is not None
    before = _aging(ledger, day)
    assert (before["31-60"]["invoices"], before["31-60"]["open_balance"]) == (2, "570.00")
    with ledger.begin() as conn:  # the source re-issues INV-A with a later due date
        conn.execute(update(invoices).where(invoices.c.id == a).values(due_date=date(2026, 11, 30)))
    after = _aging(ledger, day)
    assert after == _aging(ledger, day, use_checkpoints=False)
    assert (after["current"]["invoices"], after["current"]["open_balance"]) == (1, "500.00")
    assert (after["31-60"]["invoices"], after["31-60"]["open_balance"]) == (1, "70.00")
    with ledger.connect() as conn:
        assert check_checkpoints(conn, AS_OF, Tolerances()) == []  # a recorded change is not a break


def test_a_false_copy_in_a_checkpoint_is_found(ledger: Engine) -> None:
    """Why the copies are checked: the aging from a checkpoint takes a moved invoice's checkpoint contribution out
    by its copy, so an edited due date there mis-buckets the aging."""
    a, _ = _ledger(ledger)
    day = date(2026, 11, 2)
    with ledger.begin() as conn:
        f.invoice(conn, f.customer(conn), ref="INV-C", amount="9.00", invoice_date=date(2027, 1, 4))
        conn.execute(
            update(balance_checkpoint_rows)
            .where(balance_checkpoint_rows.c.invoice_id == a)
            .values(due_date=date(2026, 11, 30))
        )
        with subledger.movement(conn, "ingest", date(2026, 11, 1), "load 2"):  # INV-A paid in part after the build
            conn.execute(update(invoices).where(invoices.c.id == a).values(open_balance=D("400.00")))
    exact = _aging(ledger, day, use_checkpoints=False)
    assert (exact["31-60"]["invoices"], exact["31-60"]["open_balance"]) == (2, "470.00")
    assert _aging(ledger, day) != exact
    with ledger.connect() as conn:
        (found,) = check_checkpoints(conn, AS_OF, Tolerances())
    assert found.check == "checkpoints" and "copied entity, currency, customer or dates" in found.message
    assert [(d["ref"], d["checkpoint"]) for d in found.documents] == [("INV-A", "2026-10-31")]


def test_a_false_checkpoint_summary_is_found(ledger: Engine) -> None:
    """The summary the as-of aging buckets (migration 0017) must be the sum of the checkpoint's own rows: an edited
    line changes the aging from it, and reconciliation names it."""
    _ledger(ledger)
    day = date(2026, 11, 2)
    with ledger.begin() as conn:
        f.invoice(conn, f.customer(conn), ref="INV-C", amount="9.00", invoice_date=date(2027, 1, 4))
        conn.execute(
            update(balance_checkpoint_summary)
            .where(balance_checkpoint_summary.c.due_date == date(2026, 10, 1))
            .values(balance=D("5000"))
        )
    assert _aging(ledger, day) != _aging(ledger, day, use_checkpoints=False)
    with ledger.connect() as conn:
        (found,) = check_checkpoints(conn, AS_OF, Tolerances())
    assert "summary differ from its rows" in found.message
    assert [(d["due_date"], d["checkpoint"]) for d in found.documents] == [("2026-10-01", "2026-10-31")]


def test_a_checkpoint_claiming_attribute_changes_that_do_not_exist_is_found(ledger: Engine) -> None:
    """A checkpoint whose attribute mark is beyond the recorded changes would treat later real changes as known to
    it (their invoices aged by its stale copies): its marks are false."""
    _ledger(ledger)
    with ledger.begin() as conn:
        claimed = balance_checkpoints.c.attributes_through + 5
        conn.execute(update(balance_checkpoints).values(attributes_through=claimed))
    with ledger.connect() as conn:
        (found,) = check_checkpoints(conn, AS_OF, Tolerances())
    assert "marks are false" in found.message and "attribute changes up to id 5" in found.message
