"""Reconciliation checks: the sub-ledger ties to the general ledger, and each ledger to itself.

``subledger_vs_gl`` (open AR = AR control), ``entries_balanced`` (every entry balances), ``ar_functional`` (no
functional residue on a zero AR balance), ``movements`` (the movements add up to every invoice's open balance) and
``checkpoints`` (every recent sub-ledger checkpoint equals its movements).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, func, select, text

from writeoffs.accounting.chart import posted_lines_joins
from writeoffs.db.schema import accounts, invoices
from writeoffs.money import money_str
from writeoffs.reconcile.model import (
    _JE,
    _JL,
    MAX_DOCUMENTS,
    MAX_FINDINGS,
    Break,
    Tolerances,
    _capped,
    _count,
    _dec,
    _group,
    _listed_break,
    _posted_lines_of_role,
    _sub_vs_gl,
    _sum,
    _tol_cte,
)

_POSTED_AR_LINES = f"""
    SELECT l.entity_code, l.currency, l.account_code, l.invoice_id, l.debit, l.credit
    FROM journal_lines l
    {posted_lines_joins("ar_control")}
"""


def check_subledger_vs_gl(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Open AR per entity and currency (sum of invoice open balances) = posted balance of the AR control account."""
    tol_sql, params = _tol_cte(conn, tolerance)
    rows = conn.execute(
        text(
            _sub_vs_gl(
                f"""{tol_sql},
                sub AS (SELECT entity_code, currency, SUM(open_balance) AS amount, COUNT(*) AS n
                        FROM invoices GROUP BY entity_code, currency),
                gl AS (SELECT entity_code, currency, MIN(account_code) AS account_code,
                              SUM(debit - credit) AS amount,
                              SUM(CASE WHEN invoice_id IS NULL THEN 1 ELSE 0 END) AS untagged
                       FROM ({_POSTED_AR_LINES}) ar GROUP BY entity_code, currency)""",
                columns=""", COALESCE(gl.untagged, 0) AS untagged,
                   (SELECT a.code FROM accounts a WHERE a.entity_code = k.entity_code AND a.role = 'ar_control')
                       AS ar_account""",
            )
        ),
        params,
    ).all()
    out = []
    for r in rows:
        docs: list[dict[str, Any]] = []
        hint = ""
        if r.untagged == 0:
            # Every AR line names its invoice: the difference can be pinned to invoices, so list them.
            docs = [
                {
                    "type": "invoice",
                    "id": d.id,
                    "ref": d.invoice_ref,
                    "open_balance": money_str(_dec(conn, d.expected)),
                    "gl_balance": money_str(_dec(conn, d.actual)),
                }
                for d in conn.execute(
                    text(
                        f"""
                        SELECT i.id, i.invoice_ref, i.open_balance AS expected, COALESCE(g.amount, 0) AS actual
                        FROM invoices i
                        LEFT JOIN (SELECT invoice_id, SUM(debit - credit) AS amount FROM ({_POSTED_AR_LINES}) ar
                                   WHERE entity_code = :e AND currency = :c GROUP BY invoice_id) g
                               ON g.invoice_id = i.id
                        WHERE i.entity_code = :e AND i.currency = :c
                          AND ROUND(i.open_balance - COALESCE(g.amount, 0), 4) <> 0
                        ORDER BY i.id LIMIT {MAX_DOCUMENTS}
                        """
                    ),
                    {"e": r.entity_code, "c": r.currency},
                )
            ]
        else:
            hint = f"; {r.untagged} AR lines carry no invoice, so the difference cannot be pinned to invoices"
        expected, actual = _dec(conn, r.expected), _dec(conn, r.actual)
        out.append(
            Break(
                check="subledger_vs_gl",
                entity=r.entity_code,
                currency=r.currency,
                account=r.account_code or r.ar_account,
                expected=expected,
                actual=actual,
                documents=tuple(docs),
                message=(
                    f"open AR {money_str(expected)} {r.currency} on {r.n} invoices of {r.entity_code} differs from "
                    f"the GL AR control balance {money_str(actual)} by {money_str(actual - expected)}{hint}"
                ),
            )
        )
    return out


def check_entries_balanced(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Every journal entry balances per transaction currency and per functional currency; posted ones have 2+ lines.

    No tolerance: the database refuses unbalanced entries, so any imbalance here means someone got around it.
    """
    rows = conn.execute(
        text(
            """
            SELECT x.entry_id, x.kind, x.currency, x.dr, x.cr, e.idempotency_key, e.entity_code, e.status,
                   e.source_type
            FROM (
                SELECT entry_id, 'transaction' AS kind, currency, SUM(debit) AS dr, SUM(credit) AS cr
                FROM journal_lines GROUP BY entry_id, currency
                HAVING ROUND(SUM(debit) - SUM(credit), 4) <> 0
                UNION ALL
                SELECT entry_id, 'functional' AS kind, functional_currency, SUM(functional_debit),
                       SUM(functional_credit)
                FROM journal_lines GROUP BY entry_id, functional_currency
                HAVING ROUND(SUM(functional_debit) - SUM(functional_credit), 4) <> 0
            ) x
            JOIN journal_entries e ON e.id = x.entry_id
            UNION ALL
            SELECT e.id, 'lines', NULL, NULL, NULL, e.idempotency_key, e.entity_code, e.status, e.source_type
            FROM journal_entries e
            WHERE e.status = 'posted' AND (SELECT COUNT(*) FROM journal_lines l WHERE l.entry_id = e.id) < 2
            ORDER BY 7, 3, 1
            """
        )
    ).all()
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        groups[(r.entity_code, r.kind, r.currency)].append(r)
    out = []
    for (entity, kind, currency), items in groups.items():
        docs = [
            {
                "type": "journal_entry",
                "id": r.entry_id,
                "key": r.idempotency_key,
                "status": r.status,
                "source_type": r.source_type,
                "debit": None if r.dr is None else money_str(_dec(conn, r.dr)),
                "credit": None if r.cr is None else money_str(_dec(conn, r.cr)),
            }
            for r in items
        ]
        if kind == "lines":
            out.append(
                _listed_break(
                    check="entries_balanced",
                    entity=entity,
                    documents=docs,
                    message=f"{len(items)} posted journal entr(y/ies) of {entity} with fewer than two lines",
                )
            )
            continue
        dr = _sum(conn, (r.dr for r in items))
        cr = _sum(conn, (r.cr for r in items))
        out.append(
            _listed_break(
                check="entries_balanced",
                entity=entity,
                currency=currency,
                expected=dr,
                actual=cr,
                documents=docs,
                message=(
                    f"{len(items)} journal entr(y/ies) of {entity} do not balance in {kind} currency {currency}: "
                    f"debits {money_str(dr)}, credits {money_str(cr)}"
                ),
            )
        )
    return out


def check_ar_functional(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """No functional-currency residue on AR control: where the AR balance in a transaction currency is zero (per
    entity and currency, or per invoice whose AR lines net to zero), its functional balance is zero too (e.g. an
    invoice raised at 15.05 and written off at 15.04 leaves 0.01 behind). Expected 0; actual the functional
    residue, in the entity's functional currency (tolerance of that currency)."""
    ln, e, a = _JL.alias("l"), _JE.alias("e"), accounts.alias("a")
    ar = _posted_lines_of_role(ln, e, a, "ar_control")
    txn = func.sum(ln.c.debit - ln.c.credit)
    fun = func.sum(ln.c.functional_debit - ln.c.functional_credit)
    cols = (
        ln.c.entity_code,
        ln.c.currency,
        func.min(ln.c.functional_currency).label("functional_currency"),
        func.min(ln.c.account_code).label("account_code"),
        fun.label("residue"),
    )
    totals = conn.execute(
        select(*cols)
        .select_from(ar)
        .group_by(ln.c.entity_code, ln.c.currency)
        .having(and_(func.round(txn, 4) == 0, func.round(fun, 4) != 0))
    ).all()
    ref = invoices.alias("ref")
    per_invoice = conn.execute(
        select(*cols, ln.c.invoice_id, func.min(ref.c.invoice_ref).label("invoice_ref"))
        .select_from(ar.join(ref, ref.c.id == ln.c.invoice_id))
        .group_by(ln.c.entity_code, ln.c.currency, ln.c.invoice_id)
        .having(and_(func.round(txn, 4) == 0, func.round(fun, 4) != 0))
        .order_by(ln.c.entity_code, ln.c.currency, ln.c.invoice_id)
    ).all()
    docs = _group(per_invoice, lambda r: (r.entity_code, r.currency))
    found: dict[tuple, tuple[Decimal, str, str]] = {}
    for r in totals:
        found[(r.entity_code, r.currency)] = (_dec(conn, r.residue), r.functional_currency, r.account_code)
    for k, items in docs.items():
        if k not in found:
            found[k] = (_sum(conn, (r.residue for r in items)), items[0].functional_currency, items[0].account_code)
    out = []
    for (entity, currency), (residue, fcur, account) in sorted(found.items()):
        if abs(residue) <= tolerance.for_currency(fcur):
            continue
        items = docs.get((entity, currency), [])
        out.append(
            Break(
                check="ar_functional",
                entity=entity,
                currency=currency,
                account=account,
                expected=_dec(conn, 0),
                actual=residue,
                documents=_capped(
                    [
                        {
                            "type": "invoice",
                            "id": r.invoice_id,
                            "ref": r.invoice_ref,
                            "functional_residue": money_str(_dec(conn, r.residue)),
                        }
                        for r in items
                    ]
                ),
                message=(
                    f"AR control {account} of {entity}: {currency} balance is zero but {money_str(residue)} {fcur} "
                    f"remains in functional currency ({len(items)} cleared invoice(s) carry a residue)"
                ),
            )
        )
    return out


def check_movements(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """The sub-ledger's history explains its balances: per invoice, the movements (``invoice_movements``, migration
    0013) add up to the current open balance. They can only disagree if the triggers that write them were bypassed
    (a superuser's replica session, a dropped trigger), which is exactly when the as-of answers would be wrong.
    Structural: no tolerance."""
    rows = conn.execute(
        text(
            f"""
            SELECT i.entity_code, i.currency, i.id, i.invoice_ref, i.open_balance AS expected,
                   COALESCE(m.total, 0) AS actual
            FROM invoices i
            LEFT JOIN (SELECT invoice_id, SUM(balance_change) AS total FROM invoice_movements GROUP BY invoice_id) m
                   ON m.invoice_id = i.id
            WHERE ROUND(i.open_balance - COALESCE(m.total, 0), 4) <> 0
            ORDER BY i.entity_code, i.currency, i.id
            LIMIT {MAX_FINDINGS}
            """
        )
    ).all()
    out = []
    for (entity, currency), items in sorted(_group(rows, lambda r: (r.entity_code, r.currency)).items()):
        expected = _sum(conn, (r.expected for r in items))
        actual = _sum(conn, (r.actual for r in items))
        out.append(
            Break(
                check="movements",
                entity=entity,
                currency=currency,
                account=None,
                expected=expected,
                actual=actual,
                documents=_capped(
                    [
                        {
                            "type": "invoice",
                            "id": r.id,
                            "ref": r.invoice_ref,
                            "open_balance": money_str(_dec(conn, r.expected)),
                            "movements_total": money_str(_dec(conn, r.actual)),
                        }
                        for r in items
                    ]
                ),
                message=(
                    f"{_count(len(items), len(rows))} invoice(s) of {entity} {currency}: "
                    "the sub-ledger movements do not add up to the open balance (the history was bypassed)"
                ),
            )
        )
    return out
