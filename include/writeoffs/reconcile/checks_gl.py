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

from sqlalchemy import Connection, and_, bindparam, case, func, select

from writeoffs.accounting.chart import posted_lines_join
from writeoffs.db.schema import accounts, invoices
from writeoffs.db.sqlfiles import sql
from writeoffs.money import money_str
from writeoffs.reconcile.model import (
    _JE,
    _JL,
    _ONE,
    _ZERO,
    MAX_DOCUMENTS,
    MAX_FINDINGS,
    Break,
    Tolerances,
    _capped,
    _count,
    _dec,
    _group,
    _listed_break,
    _round4,
    _sub_vs_gl,
    _sum,
    _tol,
)


def _posted_ar_lines() -> Any:
    """The posted lines of the AR control accounts (entity, currency, account, invoice, debit, credit): a subquery."""
    ln, e, a = _JL.alias("l"), _JE.alias("e"), accounts.alias("a")
    cols = (ln.c.entity_code, ln.c.currency, ln.c.account_code, ln.c.invoice_id, ln.c.debit, ln.c.credit)
    return select(*cols).select_from(posted_lines_join(ln, e, a, "ar_control")).subquery("ar")


def check_subledger_vs_gl(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Open AR per entity and currency (sum of invoice open balances) = posted balance of the AR control account."""
    tol, tol_amount = _tol(conn, tolerance)
    i = invoices
    sub = (
        select(i.c.entity_code, i.c.currency, func.sum(i.c.open_balance).label("amount"), func.count().label("n"))
        .group_by(i.c.entity_code, i.c.currency)
        .cte("sub")
    )
    ar = _posted_ar_lines()
    gl = (
        select(
            ar.c.entity_code,
            ar.c.currency,
            func.min(ar.c.account_code).label("account_code"),
            func.sum(ar.c.debit - ar.c.credit).label("amount"),
            func.sum(case((ar.c.invoice_id.is_(None), _ONE), else_=_ZERO)).label("untagged"),
        )
        .group_by(ar.c.entity_code, ar.c.currency)
        .cte("gl")
    )

    def more(k: Any) -> tuple[list, list]:
        a = accounts.alias("a")
        ar_account = select(a.c.code).where(a.c.entity_code == k.c.entity_code, a.c.role == "ar_control")
        return [
            func.coalesce(gl.c.untagged, _ZERO).label("untagged"),
            ar_account.scalar_subquery().label("ar_account"),
        ], []

    rows = conn.execute(_sub_vs_gl(tol, tol_amount, sub, gl, more)).all()
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
                for d in conn.execute(_invoices_off_gl(), {"e": r.entity_code, "c": r.currency})
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


def _invoices_off_gl() -> Any:
    """The invoices of entity ``:e`` and currency ``:c`` whose open balance differs from their posted AR lines (the
    first :data:`MAX_DOCUMENTS`)."""
    ar, i = _posted_ar_lines(), invoices.alias("i")
    g = (
        select(ar.c.invoice_id, func.sum(ar.c.debit - ar.c.credit).label("amount"))
        .where(ar.c.entity_code == bindparam("e"), ar.c.currency == bindparam("c"))
        .group_by(ar.c.invoice_id)
        .subquery("g")
    )
    actual = func.coalesce(g.c.amount, _ZERO)
    return (
        select(i.c.id, i.c.invoice_ref, i.c.open_balance.label("expected"), actual.label("actual"))
        .select_from(i.outerjoin(g, g.c.invoice_id == i.c.id))
        .where(
            i.c.entity_code == bindparam("e"),
            i.c.currency == bindparam("c"),
            _round4(i.c.open_balance - actual) != _ZERO,
        )
        .order_by(i.c.id)
        .limit(MAX_DOCUMENTS)
    )


def check_entries_balanced(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Every journal entry balances per transaction currency and per functional currency; posted ones have 2+ lines.

    No tolerance: the database refuses unbalanced entries, so any imbalance here means someone got around it.
    """
    rows = conn.execute(sql(__package__, "entries_balanced")).all()
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
    ar = posted_lines_join(ln, e, a, "ar_control")
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
    rows = conn.execute(sql(__package__, "movements"), {"cap": MAX_FINDINGS}).all()
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
