"""Every approved write-off ended in the books once: ``approved_vs_posted`` (each item of a posted batch is posted,
skipped with a reason or excluded) and ``writeoff_entries`` (one active write-off entry per posted write-off)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, func, or_, select

from writeoffs.db.schema import accounts, invoices, writeoffs
from writeoffs.db.sqlfiles import sql
from writeoffs.money import money_str
from writeoffs.reconcile.model import (
    _JE,
    _JL,
    _ONE,
    _ZERO,
    MAX_DOCUMENTS,
    Break,
    Tolerances,
    _dec,
    _listed_break,
    _round4,
    _sum,
    _tol,
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
    rows = _unaccounted_items(conn)
    if not rows:
        return []
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        groups[(r.batch_id, r.entity_code, r.currency)].append(r)
    totals = _batch_totals(conn, sorted({k[0] for k in groups if k[0] is not None}))
    return [_unaccounted_break(conn, key, items, totals.get(key[0])) for key, items in groups.items()]


def _unaccounted_items(conn: Connection) -> list[Any]:
    """The write-off items not accounted for, with their batch, invoice and journal entry."""
    stmt = sql(__package__, "unaccounted_items").bindparams(
        bindparam("batch_statuses", expanding=True), bindparam("settled_statuses", expanding=True)
    )
    return conn.execute(
        stmt, {"batch_statuses": list(POSTED_BATCH_STATUSES), "settled_statuses": list(SETTLED_ITEM_STATUSES)}
    ).all()


def _batch_totals(conn: Connection, batch_ids: list[int]) -> dict[int, Any]:
    """Per batch: the amount approved for posting, the amount posted with an entry or skipped with a reason, and
    the number of items."""
    if not batch_ids:
        return {}
    stmt = sql(__package__, "batch_totals").bindparams(bindparam("batch_ids", expanding=True))
    return {t.batch_id: t for t in conn.execute(stmt, {"batch_ids": batch_ids})}


def _item_problem(r: Any) -> tuple[str, str]:
    """What is wrong with one item: its kind (grouped in the message) and the problem in words."""
    if r.status in ("posted", "reversed"):
        if r.journal_entry_id is None or r.entry_status is None:
            kind, problem = "posted without entry", "marked posted but has no journal entry"
        elif r.status == "posted" and r.entry_status == "posted" and r.source_type == "writeoff":
            kind = "entry reversed"
            problem = f"marked posted but its journal entry {r.journal_entry_id} has been reversed"
        else:
            kind = "wrong entry"
            problem = (
                f"journal entry {r.journal_entry_id} is {r.entry_status}/{r.source_type}, not a posted write-off entry"
            )
    elif r.status == "skipped":
        kind = problem = "skipped without a reason"
    else:
        kind, problem = "not posted", f"still {r.status!r} in a {r.batch_status} batch"
    return kind, problem


def _unaccounted_break(conn: Connection, key: tuple, items: list[Any], t: Any) -> Break:
    """One break for the unaccounted items of one batch (or of one entity and currency outside any batch)."""
    _batch_id, entity, currency = key
    docs = []
    kinds: set[str] = set()
    for r in items:
        kind, problem = _item_problem(r)
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
    if t is not None:
        expected, actual = _dec(conn, t.expected), _dec(conn, t.actual)
        where = f"batch {items[0].batch_key} ({items[0].batch_status}, {t.n} items)"
    else:
        expected = _sum(conn, (r.amount for r in items))
        actual = _sum(conn, (r.amount for r in items if r.status == "skipped" and (r.skip_reason or "").strip()))
        where = "write-offs outside any batch"
    return _listed_break(
        check="approved_vs_posted",
        entity=entity,
        currency=currency,
        expected=expected,
        actual=actual,
        documents=docs,
        message=(
            f"{where}: {len(docs)} item(s) not accounted for ({', '.join(sorted(kinds))}); approved "
            f"{money_str(expected)} vs posted+skipped {money_str(actual)} {currency}"
        ),
    )


def _active_writeoff_entries() -> Any:
    """The active write-off entries (posted, ``source_type = 'writeoff'``, not reversed by a posted entry): ``id`` and
    ``idempotency_key`` (a select, SQLAlchemy Core)."""
    e, rv = _JE.alias("e"), _JE.alias("r")
    reversed_ = select(_ONE).where(rv.c.reverses_entry_id == e.c.id, rv.c.status == "posted").exists()
    return select(e.c.id, e.c.idempotency_key).where(e.c.status == "posted", e.c.source_type == "writeoff", ~reversed_)


#: What each kind of ``writeoff_entries`` finding says about its invoices.
_ENTRY_FINDINGS = {
    "missing": "written off in the sub-ledger without an active write-off entry",
    "duplicate": "with more active write-off entries than posted write-offs (double posting)",
    "amount": "whose write-off entries credit AR by a different amount than written off",
    "orphan": "not written off in the sub-ledger but with an active write-off entry",
    "over": "whose posted write-offs exceed the invoice amount",
}


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
    rows = _writeoff_entry_findings(conn, tolerance)
    if not rows:
        return []
    entries = _active_entries_of(conn, [r.id for r in rows if r.n_entries > 0][: MAX_DOCUMENTS * 4])
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        for k in _entry_kinds(conn, r):
            groups[(r.entity_code, r.currency, k)].append(r)
    return [_entry_break(conn, key, items, entries) for key, items in groups.items()]


def _writeoff_entry_findings(conn: Connection, tolerance: Tolerances) -> list[Any]:
    """The invoices whose write-off entries disagree with the sub-ledger (one SQL statement)."""
    tol, tol_amount = _tol(conn, tolerance)
    c = _writeoff_entry_rows(tol, tol_amount)
    at_most = case((c.c.n_posted > _ONE, c.c.n_posted), else_=_ONE)
    return conn.execute(
        select(c)
        .where(
            or_(
                and_(
                    c.c.written_off == _ONE,
                    or_(
                        c.c.n_entries == _ZERO,
                        c.c.n_entries > at_most,
                        func.abs(_round4(c.c.ar_credit - c.c.written_off_amount)) > c.c.tol,
                    ),
                ),
                and_(c.c.written_off == _ZERO, c.c.n_entries > _ZERO),
                c.c.exceeds == _ONE,
            )
        )
        .order_by(c.c.entity_code, c.c.currency, c.c.id)
    ).all()


def _writeoff_entry_rows(tol: Any, tol_amount: Any) -> Any:
    """CTE ``c``: per invoice written off, or with an active write-off entry or a posted write-off, what its active
    entries and posted write-offs amount to, its flags and its tolerance."""
    active = _active_writeoff_entries().cte("active")
    ln, a = _JL.alias("l"), accounts.alias("a")
    gl = (
        select(
            ln.c.invoice_id,
            func.count(ln.c.entry_id.distinct()).label("n_entries"),
            func.sum(case((a.c.role == "ar_control", ln.c.credit - ln.c.debit), else_=_ZERO)).label("ar_credit"),
        )
        .select_from(
            ln.join(active, active.c.id == ln.c.entry_id).join(
                a, and_(a.c.entity_code == ln.c.entity_code, a.c.code == ln.c.account_code)
            )
        )
        .where(ln.c.invoice_id.is_not(None))
        .group_by(ln.c.invoice_id)
        .cte("gl")
    )
    w = writeoffs
    wo = (
        select(w.c.invoice_id, func.count().label("n_posted"), func.sum(w.c.amount).label("posted_total"))
        .where(w.c.status == "posted")
        .group_by(w.c.invoice_id)
        .cte("wo")
    )
    i = invoices.alias("i")
    posted_total = func.coalesce(wo.c.posted_total, _ZERO)
    return (
        select(
            i.c.id,
            i.c.invoice_ref,
            i.c.entity_code,
            i.c.currency,
            i.c.status,
            i.c.written_off_amount,
            i.c.amount,
            func.coalesce(gl.c.n_entries, _ZERO).label("n_entries"),
            func.coalesce(gl.c.ar_credit, _ZERO).label("ar_credit"),
            func.coalesce(wo.c.n_posted, _ZERO).label("n_posted"),
            posted_total.label("posted_total"),
            case((i.c.written_off_amount > _ZERO, _ONE), else_=_ZERO).label("written_off"),
            case((_round4(posted_total - i.c.amount) > _ZERO, _ONE), else_=_ZERO).label("exceeds"),
            tol_amount.label("tol"),
        )
        .select_from(
            i.outerjoin(gl, gl.c.invoice_id == i.c.id)
            .outerjoin(wo, wo.c.invoice_id == i.c.id)
            .outerjoin(tol, tol.c.currency == i.c.currency)
        )
        # every finding needs one of these: skip the untouched invoices before any arithmetic
        .where(or_(i.c.written_off_amount > _ZERO, gl.c.invoice_id.is_not(None), wo.c.invoice_id.is_not(None)))
        .cte("c")
    )


def _active_entries_of(conn: Connection, listed: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The active write-off entries of the listed invoices (id and idempotency key), for the break's documents."""
    entries: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if listed:
        active, ln = _active_writeoff_entries().subquery("active"), _JL.alias("l")
        stmt = (
            select(ln.c.invoice_id, active.c.id, active.c.idempotency_key)
            .distinct()
            .select_from(ln.join(active, active.c.id == ln.c.entry_id))
            .where(ln.c.invoice_id.in_(bindparam("invoice_ids", expanding=True)))
            .order_by(ln.c.invoice_id, active.c.id)
        )
        for e in conn.execute(stmt, {"invoice_ids": listed}):
            entries[e.invoice_id].append({"id": e.id, "key": e.idempotency_key})
    return entries


def _entry_kinds(conn: Connection, r: Any) -> list[str]:
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


def _entry_break(conn: Connection, key: tuple, items: list[Any], entries: dict[int, list[dict[str, Any]]]) -> Break:
    """One break for the invoices of one entity, currency and kind of finding."""
    entity, currency, k = key
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
    return _listed_break(
        check="writeoff_entries",
        entity=entity,
        currency=currency,
        expected=expected,
        actual=actual,
        documents=docs,
        message=f"{len(items)} invoice(s) of {entity} {_ENTRY_FINDINGS[k]}: {amounts} {currency}",
    )
