"""Reconciliation checks: every approved write-off ended in the books once, and posting kept its rules.

``approved_vs_posted`` (each item of a posted batch is posted, skipped with a reason or excluded),
``writeoff_entries`` (one active write-off entry per posted write-off), ``paid_after_selection`` and
``posting_rules`` (no posted write-off of a paid invoice, under a hold, or of a child the parent paid).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import Connection, and_, func, literal, or_, select, text, true, union_all

from writeoffs.db.schema import customers, holds, invoices, payment_allocations, payments, writeoffs
from writeoffs.money import money_str
from writeoffs.reconcile.model import (
    _JE,
    MAX_DOCUMENTS,
    Break,
    Tolerances,
    _capped,
    _dec,
    _group,
    _in_list,
    _more,
    _sum,
    _tol_cte,
    _tol_of,
)

#: Batch statuses in which posting has finished, so every item must be accounted for.
POSTED_BATCH_STATUSES: tuple[str, ...] = ("posted", "partially_posted")
#: Write-off item statuses that account for an item of a posted batch (``skipped`` additionally needs a reason;
#: ``reversed`` was posted, then undone by a reversal entry).
SETTLED_ITEM_STATUSES: tuple[str, ...] = ("posted", "skipped", "excluded", "reversed")


def check_approved_vs_posted(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Every item of a posted batch is posted (with its entry), skipped with a reason, or excluded.

    Also, anywhere: an item marked ``posted`` must point at a posted write-off journal entry that no posted entry
    reverses (a reversed write-off flipped back to 'posted' is not in the books), and a skipped item must say
    why. One break per batch (items without a batch: per entity and currency), amounts in the batch currency:
    expected = items approved for posting, actual = items posted with an entry + skipped with a reason.
    """
    statuses, params = _in_list("bs", POSTED_BATCH_STATUSES)
    settled, p2 = _in_list("ss", SETTLED_ITEM_STATUSES)
    params.update(p2)
    rows = conn.execute(
        text(
            f"""
            SELECT w.id, w.batch_id, b.batch_key, b.status AS batch_status, i.entity_code, w.currency, w.amount,
                   w.status, w.skip_reason, w.journal_entry_id, e.status AS entry_status,
                   e.source_type, i.invoice_ref
            FROM writeoffs w
            JOIN invoices i ON i.id = w.invoice_id
            LEFT JOIN writeoff_batches b ON b.id = w.batch_id
            LEFT JOIN journal_entries e ON e.id = w.journal_entry_id
            WHERE (w.status IN ('posted', 'reversed')
                   AND (e.id IS NULL OR e.status <> 'posted' OR e.source_type <> 'writeoff'))
               OR (w.status = 'posted' AND EXISTS (SELECT 1 FROM journal_entries rv
                                                  WHERE rv.reverses_entry_id = w.journal_entry_id
                                                    AND rv.status = 'posted'))
               OR (w.status = 'skipped' AND (w.skip_reason IS NULL OR TRIM(w.skip_reason) = ''))
               OR (b.status IN ({statuses}) AND w.status NOT IN ({settled}))
            ORDER BY w.batch_id, w.id
            """
        ),
        params,
    ).all()
    if not rows:
        return []
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        groups[(r.batch_id, r.entity_code, r.currency)].append(r)
    batch_ids = sorted({k[0] for k in groups if k[0] is not None})
    totals: dict[int, Any] = {}
    if batch_ids:
        ids, p3 = _in_list("b", batch_ids)
        totals = {
            t.batch_id: t
            for t in conn.execute(
                text(
                    f"""
                    SELECT w.batch_id,
                           SUM(CASE WHEN w.status <> 'excluded' THEN w.amount ELSE 0 END) AS expected,
                           SUM(CASE WHEN (w.status IN ('posted', 'reversed') AND e.status = 'posted'
                                          AND e.source_type = 'writeoff')
                                      OR (w.status = 'skipped' AND TRIM(COALESCE(w.skip_reason, '')) <> '')
                                    THEN w.amount ELSE 0 END) AS actual,
                           COUNT(*) AS n
                    FROM writeoffs w LEFT JOIN journal_entries e ON e.id = w.journal_entry_id
                    WHERE w.batch_id IN ({ids}) GROUP BY w.batch_id
                    """
                ),
                p3,
            )
        }
    out = []
    for (batch_id, entity, currency), items in groups.items():
        docs = []
        kinds: set[str] = set()
        for r in items:
            if r.status in ("posted", "reversed"):
                if r.journal_entry_id is None or r.entry_status is None:
                    kind, problem = "posted without entry", "marked posted but has no journal entry"
                elif r.status == "posted" and r.entry_status == "posted" and r.source_type == "writeoff":
                    kind = "entry reversed"
                    problem = f"marked posted but its journal entry {r.journal_entry_id} has been reversed"
                else:
                    kind = "wrong entry"
                    problem = (
                        f"journal entry {r.journal_entry_id} is {r.entry_status}/{r.source_type}, "
                        "not a posted write-off entry"
                    )
            elif r.status == "skipped":
                kind = problem = "skipped without a reason"
            else:
                kind, problem = "not posted", f"still {r.status!r} in a {r.batch_status} batch"
            kinds.add(kind)
            docs.append(
                {
                    "type": "writeoff",
                    "id": r.id,
                    "invoice_ref": r.invoice_ref,
                    "status": r.status,
                    "amount": money_str(_dec(conn, r.amount)),
                    "journal_entry_id": r.journal_entry_id,
                    "problem": problem,
                }
            )
        t = totals.get(batch_id)
        if t is not None:
            expected, actual = _dec(conn, t.expected), _dec(conn, t.actual)
            where = f"batch {items[0].batch_key} ({items[0].batch_status}, {t.n} items)"
        else:
            expected = _sum(conn, (r.amount for r in items))
            actual = _sum(conn, (r.amount for r in items if r.status == "skipped" and (r.skip_reason or "").strip()))
            where = "write-offs outside any batch"
        out.append(
            Break(
                check="approved_vs_posted",
                entity=entity,
                currency=currency,
                expected=expected,
                actual=actual,
                documents=_capped(docs),
                message=(
                    f"{where}: {len(docs)} item(s) not accounted for ({', '.join(sorted(kinds))}); approved "
                    f"{money_str(expected)} vs posted+skipped {money_str(actual)} {currency}{_more(len(docs))}"
                ),
            )
        )
    return out


_ACTIVE_WRITEOFF_ENTRIES = """
    SELECT e.id, e.idempotency_key FROM journal_entries e
    WHERE e.status = 'posted' AND e.source_type = 'writeoff'
      AND NOT EXISTS (SELECT 1 FROM journal_entries r WHERE r.reverses_entry_id = e.id AND r.status = 'posted')
"""


def check_writeoff_entries(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Each written-off invoice has one active write-off entry per posted write-off of it, crediting AR by the amount
    written off; its posted write-offs never exceed the invoice amount.

    Active = posted, ``source_type = 'writeoff'``, and not reversed by a posted entry. The entry is tied to the
    invoice by its lines' ``invoice_id``. Written off = ``written_off_amount > 0``, whatever the status says (a
    partial write-off leaves the invoice 'open'; cash after it may make it 'paid'). Two partial write-offs of one
    invoice are two ``writeoffs`` rows in status 'posted', each with its own entry: that is not a double posting;
    more active entries than posted rows (at least one) is. Conversely, an invoice not written off must have no
    active write-off entry.
    """
    tol_sql, params = _tol_cte(conn, tolerance)
    rows = conn.execute(
        text(
            f"""
            WITH {tol_sql},
            active AS ({_ACTIVE_WRITEOFF_ENTRIES}),
            gl AS (
                SELECT l.invoice_id, COUNT(DISTINCT l.entry_id) AS n_entries,
                       SUM(CASE WHEN a.role = 'ar_control' THEN l.credit - l.debit ELSE 0 END) AS ar_credit
                FROM journal_lines l
                JOIN active ON active.id = l.entry_id
                JOIN accounts a ON a.entity_code = l.entity_code AND a.code = l.account_code
                WHERE l.invoice_id IS NOT NULL
                GROUP BY l.invoice_id
            ),
            wo AS (
                SELECT invoice_id, COUNT(*) AS n_posted, SUM(amount) AS posted_total
                FROM writeoffs WHERE status = 'posted' GROUP BY invoice_id
            ),
            c AS (
                SELECT i.id, i.invoice_ref, i.entity_code, i.currency, i.status, i.written_off_amount, i.amount,
                       COALESCE(gl.n_entries, 0) AS n_entries, COALESCE(gl.ar_credit, 0) AS ar_credit,
                       COALESCE(wo.n_posted, 0) AS n_posted, COALESCE(wo.posted_total, 0) AS posted_total,
                       CASE WHEN i.written_off_amount > 0 THEN 1 ELSE 0 END AS written_off,
                       CASE WHEN ROUND(COALESCE(wo.posted_total, 0) - i.amount, 4) > 0 THEN 1 ELSE 0 END AS exceeds,
                       {_tol_of("tol")} AS tol
                FROM invoices i
                LEFT JOIN gl ON gl.invoice_id = i.id
                LEFT JOIN wo ON wo.invoice_id = i.id
                LEFT JOIN tol ON tol.currency = i.currency
                -- every finding needs one of these: skip the untouched invoices before any arithmetic
                WHERE i.written_off_amount > 0 OR gl.invoice_id IS NOT NULL OR wo.invoice_id IS NOT NULL
            )
            SELECT * FROM c
            WHERE (c.written_off = 1
                   AND (c.n_entries = 0
                        OR c.n_entries > CASE WHEN c.n_posted > 1 THEN c.n_posted ELSE 1 END
                        OR ABS(ROUND(c.ar_credit - c.written_off_amount, 4)) > c.tol))
               OR (c.written_off = 0 AND c.n_entries > 0)
               OR c.exceeds = 1
            ORDER BY c.entity_code, c.currency, c.id
            """
        ),
        params,
    ).all()
    if not rows:
        return []
    entries: dict[int, list[dict[str, Any]]] = defaultdict(list)
    listed = [r.id for r in rows if r.n_entries > 0][: MAX_DOCUMENTS * 4]
    if listed:
        ids, p2 = _in_list("inv", listed)
        for e in conn.execute(
            text(
                f"""
                SELECT DISTINCT l.invoice_id, active.id, active.idempotency_key
                FROM journal_lines l JOIN ({_ACTIVE_WRITEOFF_ENTRIES}) active ON active.id = l.entry_id
                WHERE l.invoice_id IN ({ids}) ORDER BY 1, 2
                """
            ),
            p2,
        ):
            entries[e.invoice_id].append({"id": e.id, "key": e.idempotency_key})

    def kinds(r) -> list[str]:
        found = ["over"] if r.exceeds else []
        if not r.written_off:
            return found + (["orphan"] if r.n_entries > 0 else [])
        if r.n_entries == 0:
            return [*found, "missing"]
        if r.n_entries > max(r.n_posted, 1):
            return [*found, "duplicate"]
        if abs(_dec(conn, r.ar_credit) - _dec(conn, r.written_off_amount)) > _dec(conn, r.tol):
            found.append("amount")
        return found

    texts = {
        "missing": "written off in the sub-ledger without an active write-off entry",
        "duplicate": "with more active write-off entries than posted write-offs (double posting)",
        "amount": "whose write-off entries credit AR by a different amount than written off",
        "orphan": "not written off in the sub-ledger but with an active write-off entry",
        "over": "whose posted write-offs exceed the invoice amount",
    }
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        for k in kinds(r):
            groups[(r.entity_code, r.currency, k)].append(r)
    out = []
    for (entity, currency, k), items in groups.items():
        if k == "over":
            expected = _sum(conn, (r.amount for r in items))
            actual = _sum(conn, (r.posted_total for r in items))
            amounts = f"invoice amount {money_str(expected)}, posted write-offs {money_str(actual)}"
        else:
            expected = _sum(conn, (r.written_off_amount for r in items if r.written_off))
            actual = _sum(conn, (r.ar_credit for r in items))
            amounts = f"written off {money_str(expected)}, GL AR credited {money_str(actual)}"
        docs = [
            {
                "type": "invoice",
                "id": r.id,
                "ref": r.invoice_ref,
                "status": r.status,
                "written_off_amount": money_str(_dec(conn, r.written_off_amount)),
                "gl_ar_credit": money_str(_dec(conn, r.ar_credit)),
                "posted_writeoffs": r.n_posted,
                "posted_writeoff_total": money_str(_dec(conn, r.posted_total)),
                "active_entries": entries.get(r.id, []),
            }
            for r in items
        ]
        out.append(
            Break(
                check="writeoff_entries",
                entity=entity,
                currency=currency,
                expected=expected,
                actual=actual,
                documents=_capped(docs),
                message=(f"{len(items)} invoice(s) of {entity} {texts[k]}: {amounts} {currency}{_more(len(items))}"),
            )
        )
    return out


# --- checks in SQLAlchemy Core (money columns keep their column types, whatever their storage) -------------------


def _active_posted_writeoffs():
    """``writeoffs`` rows in status 'posted' with their posted write-off entry, and their invoice."""
    w, e, i = writeoffs.alias("w"), _JE.alias("we"), invoices.alias("i")
    return (
        w,
        e,
        i,
        w.join(i, i.c.id == w.c.invoice_id).join(
            e, and_(e.c.id == w.c.journal_entry_id, e.c.status == "posted", e.c.source_type == "writeoff")
        ),
    )


def _wo_doc(conn: Connection, r: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "writeoff",
        "id": r.writeoff_id,
        "invoice_ref": r.invoice_ref,
        "amount": money_str(_dec(conn, r.amount)),
        "selected_on": str(r.selected_on),
        "posted_on": str(r.posted_on),
        **extra,
    }


def check_paid_after_selection(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """No posted write-off of an invoice that was paid: (1) a regular payment (allocation or payment date) after the
    write-off's selection date and on or before its posting date, which posting must have skipped; (2) an invoice
    whose regular cash plus ``written_off_amount`` exceeds its amount: the same money is both collected and written
    off (cash on a written-off amount is a recovery, never a regular payment). Dates are business dates, never
    timestamps. Expected 0; actual the write-off amount (1) or the excess over the invoice amount (2)."""
    w, e, i, src = _active_posted_writeoffs()
    pa, p = payment_allocations.alias("pa"), payments.alias("p")
    q1 = (
        select(
            w.c.id.label("writeoff_id"),
            w.c.amount,
            w.c.as_of_date.label("selected_on"),
            e.c.posting_date.label("posted_on"),
            i.c.invoice_ref,
            i.c.entity_code,
            i.c.currency,
            func.min(pa.c.allocated_on).label("paid_on"),
        )
        .select_from(
            src.join(pa, and_(pa.c.invoice_id == w.c.invoice_id, pa.c.kind == "regular")).join(
                p, p.c.id == pa.c.payment_id
            )
        )
        .where(
            or_(
                and_(pa.c.allocated_on > w.c.as_of_date, pa.c.allocated_on <= e.c.posting_date),
                and_(p.c.payment_date > w.c.as_of_date, p.c.payment_date <= e.c.posting_date),
            )
        )
        .group_by(w.c.id, w.c.amount, w.c.as_of_date, e.c.posting_date, i.c.invoice_ref, i.c.entity_code, i.c.currency)
        .order_by(i.c.entity_code, i.c.currency, w.c.id)
    )
    groups = _group(conn.execute(q1).all(), lambda r: (r.entity_code, r.currency, "late"))
    # Only written-off invoices, then their regular allocations by the indexed invoice_id (never all payments).
    inv = invoices.alias("inv")
    cash = func.sum(pa.c.amount)
    q2 = (
        select(
            inv.c.id,
            inv.c.invoice_ref,
            inv.c.entity_code,
            inv.c.currency,
            inv.c.amount,
            inv.c.written_off_amount,
            cash.label("cash"),
        )
        .select_from(inv.join(pa, and_(pa.c.invoice_id == inv.c.id, pa.c.kind == "regular")))
        .where(inv.c.written_off_amount > 0)
        .group_by(
            inv.c.id, inv.c.invoice_ref, inv.c.entity_code, inv.c.currency, inv.c.amount, inv.c.written_off_amount
        )
        .having(func.round(cash + inv.c.written_off_amount - inv.c.amount, 4) > 0)
        .order_by(inv.c.entity_code, inv.c.currency, inv.c.id)
    )
    for r in conn.execute(q2):
        excess = _dec(conn, r.cash) + _dec(conn, r.written_off_amount) - _dec(conn, r.amount)
        if excess > tolerance.for_currency(r.currency):
            groups[(r.entity_code, r.currency, "over")].append(r)
    out = []
    for (entity, currency, kind), items in groups.items():
        if kind == "late":
            actual = _sum(conn, (r.amount for r in items))
            docs = [_wo_doc(conn, r, paid_on=str(r.paid_on)) for r in items]
            what = "posted although a payment arrived after selection and before posting"
        else:
            actual = _sum(
                conn, (_dec(conn, r.cash) + _dec(conn, r.written_off_amount) - _dec(conn, r.amount) for r in items)
            )
            docs = [
                {
                    "type": "invoice",
                    "id": r.id,
                    "ref": r.invoice_ref,
                    "amount": money_str(_dec(conn, r.amount)),
                    "regular_cash": money_str(_dec(conn, r.cash)),
                    "written_off_amount": money_str(_dec(conn, r.written_off_amount)),
                }
                for r in items
            ]
            what = "paid and written off: regular cash plus the amount written off exceed the invoice"
        out.append(
            Break(
                check="paid_after_selection",
                entity=entity,
                currency=currency,
                expected=_dec(conn, 0),
                actual=actual,
                documents=_capped(docs),
                message=(
                    f"{len(items)} write-off(s)/invoice(s) of {entity} {what}: {money_str(actual)} {currency} "
                    f"written off that was paid{_more(len(items))}"
                ),
            )
        )
    return out


def check_posting_rules(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """No posted write-off broke a rule posting re-checks: (1) a dispute/payment-plan hold on the invoice or the
    customer active on the posting date (started on or before it, not ended before it); (2) a child invoice whose
    balance went to the parent, with a regular payment by the parent on or before the posting date (DOMAIN: such a
    child invoice cannot be written off). Expected 0; actual the amount written off."""
    w, e, i, src = _active_posted_writeoffs()
    h = holds.alias("h")
    cols = (
        w.c.id.label("writeoff_id"),
        w.c.amount,
        w.c.as_of_date.label("selected_on"),
        e.c.posting_date.label("posted_on"),
        i.c.invoice_ref,
        i.c.entity_code,
        i.c.currency,
    )
    active_hold = and_(
        h.c.start_date <= e.c.posting_date, or_(h.c.end_date.is_(None), h.c.end_date >= e.c.posting_date)
    )
    # Invoice holds and account holds as two joins on indexed keys (an OR in one join condition would scan holds).
    on_hold = union_all(
        select(*cols, h.c.start_date.label("since")).select_from(
            src.join(h, and_(h.c.invoice_id == w.c.invoice_id, active_hold))
        ),
        select(*cols, h.c.start_date).select_from(
            src.join(h, and_(h.c.customer_id == i.c.customer_id, h.c.invoice_id.is_(None), active_hold))
        ),
    ).subquery("on_hold")
    cust = customers.alias("cust")
    pa, p = payment_allocations.alias("pa"), payments.alias("p")
    parent_paid = (
        select(*cols, pa.c.allocated_on.label("since"))
        .select_from(
            src.join(cust, cust.c.id == i.c.customer_id)
            .join(
                pa,
                and_(
                    pa.c.invoice_id == w.c.invoice_id,
                    pa.c.kind == "regular",
                    pa.c.allocated_on <= e.c.posting_date,
                ),
            )
            .join(p, and_(p.c.id == pa.c.payment_id, p.c.customer_id == cust.c.parent_id))
        )
        .where(i.c.balance_transferred_to_parent == true())
        .subquery("parent_paid")
    )

    def grouped(sq: Any, kind: str) -> Any:
        keys_ = [sq.c[c.name] for c in cols]
        return select(*keys_, func.min(sq.c.since).label("since"), literal(kind).label("kind")).group_by(*keys_)

    q = union_all(grouped(on_hold, "hold"), grouped(parent_paid, "parent")).subquery("q")
    q = select(q).order_by(q.c.entity_code, q.c.currency, q.c.kind, q.c.writeoff_id)
    groups: dict[tuple, list[Any]] = defaultdict(list)
    for r in conn.execute(q):
        groups[(r.entity_code, r.currency, r.kind)].append(r)
    texts = {
        "hold": "posted while a dispute/payment-plan hold was active on the invoice or customer",
        "parent": "of child invoices whose transferred balance the parent had paid in part",
    }
    out = []
    for (entity, currency, kind), items in groups.items():
        actual = _sum(conn, (r.amount for r in items))
        docs = [
            _wo_doc(conn, r, hold_since=str(r.since))
            if kind == "hold"
            else _wo_doc(conn, r, parent_paid_on=str(r.since))
            for r in items
        ]
        out.append(
            Break(
                check="posting_rules",
                entity=entity,
                currency=currency,
                expected=_dec(conn, 0),
                actual=actual,
                documents=_capped(docs),
                message=f"{len(items)} write-off(s) of {entity} {texts[kind]}: {money_str(actual)} {currency}"
                f"{_more(len(items))}",
            )
        )
    return out
