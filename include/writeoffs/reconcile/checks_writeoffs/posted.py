"""Every approved write-off ended in the books once: ``approved_vs_posted`` (each item of a posted batch is posted,
skipped with a reason or excluded) and ``writeoff_entries`` (one active write-off entry per posted write-off)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import Connection, text

from writeoffs.money import money_str
from writeoffs.reconcile.model import (
    MAX_DOCUMENTS,
    Break,
    Tolerances,
    _dec,
    _in_list,
    _listed_break,
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
    statuses, params = _in_list("bs", POSTED_BATCH_STATUSES)
    settled, p2 = _in_list("ss", SETTLED_ITEM_STATUSES)
    params.update(p2)
    return conn.execute(
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


def _batch_totals(conn: Connection, batch_ids: list[int]) -> dict[int, Any]:
    """Per batch: the amount approved for posting, the amount posted with an entry or skipped with a reason, and
    the number of items."""
    if not batch_ids:
        return {}
    ids, p3 = _in_list("b", batch_ids)
    return {
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


_ACTIVE_WRITEOFF_ENTRIES = """
    SELECT e.id, e.idempotency_key FROM journal_entries e
    WHERE e.status = 'posted' AND e.source_type = 'writeoff'
      AND NOT EXISTS (SELECT 1 FROM journal_entries r WHERE r.reverses_entry_id = e.id AND r.status = 'posted')
"""

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
    tol_sql, params = _tol_cte(conn, tolerance)
    return conn.execute(
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


def _active_entries_of(conn: Connection, listed: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The active write-off entries of the listed invoices (id and idempotency key), for the break's documents."""
    entries: dict[int, list[dict[str, Any]]] = defaultdict(list)
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
