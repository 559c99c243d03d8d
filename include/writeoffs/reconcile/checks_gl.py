"""Reconciliation checks: the sub-ledger ties to the general ledger, and each ledger to itself.

``subledger_vs_gl`` (open AR = AR control), ``entries_balanced`` (every entry balances), ``ar_functional`` (no
functional residue on a zero AR balance), ``movements`` (the movements add up to every invoice's open balance) and
``checkpoints`` (every recent sub-ledger checkpoint equals its movements).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
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


#: How far back (days before the run's date) reconciliation recomputes the sub-ledger's balance checkpoints.
CHECKPOINT_RECHECK_DAYS = 62


def check_checkpoints(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Every sub-ledger checkpoint (migration 0016) is what the movements say: per invoice, the sum of the movements
    effective on or before its date up to its high-water mark; and its marks are true (no movement it claims to cover
    is missing, none was recorded after its ``recorded_through``). A checkpoint is derived data the as-of answers
    start from, so one that was edited or forged would make them wrong: one statement per checkpoint recomputes it.
    Structural: no tolerance.

    Bounded cost: only the checkpoints of the last ``CHECKPOINT_RECHECK_DAYS`` before the run's date are recomputed
    (each costs about one pass over the movements: seconds at 1M invoices, so all of a year's would cost minutes a
    run). An older checkpoint was recomputed by every daily run of its first two months, and no role the DAGs use
    can change one afterwards (the runtime role may only insert and read them; tests/integration/test_pg_roles.py)."""
    from writeoffs.subledger import checkpoints

    day = "CAST(:d AS DATE)" if conn.dialect.name == "postgresql" else ":d"
    out = []
    since = as_of - timedelta(days=CHECKPOINT_RECHECK_DAYS)
    for cp in (cp for cp in checkpoints(conn) if cp.as_of >= since):
        params = {"cp": cp.id, "d": cp.as_of.isoformat(), "hw": cp.movements_through, "ahw": cp.attributes_through}
        out += _checkpoint_marks(conn, cp, params)
        rows = _checkpoint_balances(conn, cp, params, day) + _checkpoint_attributes(conn, cp, params)
        out += rows
        if not rows:  # the rows are what the movements and invoices say: then the summary must be what they say
            out += _checkpoint_summary(conn, cp, params)
    return out


def _false_checkpoint(cp: Any, what: str, documents: list[dict[str, Any]], **fields: Any) -> Break:
    """A break for a checkpoint found false in ``what`` (its first :data:`MAX_DOCUMENTS` ``documents`` listed): it was
    edited or forged, and the way out is to build it again."""
    return Break(
        check="checkpoints",
        message=f"checkpoint of {cp.as_of}: {what} (edited or forged; delete it and build it again)",
        documents=_capped(documents),
        **fields,
    )


def _checkpoint_marks(conn: Connection, cp: Any, params: dict[str, Any]) -> list[Break]:
    """A break if the checkpoint's high-water marks are false (a movement it claims to cover is missing, or was
    recorded after its ``recorded_through``; an attribute change it claims to know of is missing)."""
    top, covered = conn.execute(
        text("SELECT MAX(id), MAX(CASE WHEN id <= :hw THEN recorded_at END) FROM invoice_movements"), params
    ).one()
    attributes_top = conn.execute(text("SELECT MAX(id) FROM invoice_attribute_changes")).scalar()
    if (
        cp.movements_through > (top or 0)
        or (covered or "") > cp.recorded_through
        or cp.attributes_through > (attributes_top or 0)
    ):
        return [
            Break(
                check="checkpoints",
                message=(
                    f"checkpoint of {cp.as_of}: its marks are false (covers movements up to id "
                    f"{cp.movements_through} recorded by {cp.recorded_through} and attribute changes up to id "
                    f"{cp.attributes_through}; the movements go up to id {top}, those covered were recorded up to "
                    f"{covered}, the attribute changes go up to id {attributes_top})"
                ),
                documents=({"type": "checkpoint", "id": cp.id, "as_of": cp.as_of.isoformat()},),
            )
        ]
    return []


def _checkpoint_balances(conn: Connection, cp: Any, params: dict[str, Any], day: str) -> list[Break]:
    """Per entity and currency, the invoices whose checkpoint balance differs from their movements (one statement
    recomputes the checkpoint)."""
    out = []
    rows = conn.execute(
        text(
            f"""
            SELECT i.entity_code, i.currency, x.invoice_id, i.invoice_ref, x.expected, x.actual
            FROM (SELECT u.invoice_id, SUM(u.expected) AS expected, SUM(u.actual) AS actual FROM (
                    SELECT m.invoice_id, m.balance_change AS expected, 0 AS actual FROM invoice_movements m
                    WHERE m.effective_date <= {day} AND m.id <= :hw
                    UNION ALL
                    SELECT b.invoice_id, 0, b.balance FROM balance_checkpoint_rows b
                    WHERE b.checkpoint_id = :cp) u
                  GROUP BY u.invoice_id HAVING SUM(u.expected) <> SUM(u.actual)) x
            LEFT JOIN invoices i ON i.id = x.invoice_id
            ORDER BY i.entity_code, i.currency, x.invoice_id
            LIMIT {MAX_FINDINGS}
            """
        ),
        params,
    ).all()
    for (entity, currency), items in sorted(_group(rows, lambda r: (r.entity_code or "", r.currency or "")).items()):
        out.append(
            _false_checkpoint(
                cp,
                f"{_count(len(items), len(rows))} invoice balance(s) of {entity or '?'} {currency or '?'} differ from "
                "the movements",
                [
                    {
                        "type": "invoice",
                        "id": r.invoice_id,
                        "ref": r.invoice_ref,
                        "checkpoint": cp.as_of.isoformat(),
                        "movements_total": money_str(_dec(conn, r.expected)),
                        "checkpoint_balance": money_str(_dec(conn, r.actual)),
                    }
                    for r in items
                ],
                entity=entity or None,
                currency=currency or None,
                expected=_sum(conn, (r.expected for r in items)),
                actual=_sum(conn, (r.actual for r in items)),
            )
        )
    return out


def _checkpoint_attributes(conn: Connection, cp: Any, params: dict[str, Any]) -> list[Break]:
    """A break if a checkpoint row's copy of its invoice's attributes (migration 0017: what the as-of aging reads
    from the checkpoint instead of the invoice) differs from the invoice while no change of them was recorded after
    the checkpoint was built: the copy is false (edited or forged), so the aging from it would bucket or group the
    invoice wrongly."""
    from writeoffs.subledger.checkpoint import CHECKPOINT_ATTRIBUTES

    differs = " OR ".join(f"b.{a} <> i.{a}" for a in CHECKPOINT_ATTRIBUTES)
    rows = conn.execute(
        text(
            f"""
            SELECT i.entity_code, i.currency, b.invoice_id, i.invoice_ref
            FROM balance_checkpoint_rows b JOIN invoices i ON i.id = b.invoice_id
            WHERE b.checkpoint_id = :cp AND ({differs})
              AND NOT EXISTS (SELECT 1 FROM invoice_attribute_changes a WHERE a.invoice_id = b.invoice_id
                                                                        AND a.id > :ahw)
            ORDER BY b.invoice_id
            LIMIT :cap
            """
        ),
        params | {"cap": MAX_FINDINGS},
    ).all()
    if not rows:
        return []
    return [
        _false_checkpoint(
            cp,
            f"{_count(len(rows))} invoice(s) whose copied entity, currency, customer or dates differ from the invoice "
            "with no recorded change",
            [
                {"type": "invoice", "id": r.invoice_id, "ref": r.invoice_ref, "checkpoint": cp.as_of.isoformat()}
                for r in rows
            ],
        )
    ]


def _checkpoint_summary(conn: Connection, cp: Any, params: dict[str, Any]) -> list[Break]:
    """A break if the checkpoint's summary (migration 0017: what the as-of aging buckets) is not the sum of its own
    positive rows per entity, currency, invoice date and due date."""
    from writeoffs.subledger.checkpoint import SUMMARY_GROUPS

    groups = ", ".join(SUMMARY_GROUPS)
    rows = conn.execute(
        text(
            f"""
            SELECT {", ".join(f"g.{c}" for c in SUMMARY_GROUPS)}, SUM(g.n) AS n FROM (
                SELECT {groups}, invoice_count AS n, balance AS amount FROM balance_checkpoint_summary
                WHERE checkpoint_id = :cp
                UNION ALL
                SELECT {groups}, -COUNT(*), -SUM(balance) FROM balance_checkpoint_rows
                WHERE checkpoint_id = :cp AND balance > 0 GROUP BY {groups}
            ) g
            GROUP BY {", ".join(f"g.{c}" for c in SUMMARY_GROUPS)}
            HAVING SUM(g.n) <> 0 OR SUM(g.amount) <> 0
            ORDER BY {", ".join(f"g.{c}" for c in SUMMARY_GROUPS)}
            LIMIT :cap
            """
        ),
        params | {"cap": MAX_FINDINGS},
    ).all()
    if not rows:
        return []
    return [
        _false_checkpoint(
            cp,
            f"{_count(len(rows))} line(s) of its summary differ from its rows",
            [
                {
                    "type": "checkpoint_summary",
                    "entity": r.entity_code,
                    "currency": r.currency,
                    "invoice_date": str(r.invoice_date),
                    "due_date": str(r.due_date),
                    "checkpoint": cp.as_of.isoformat(),
                }
                for r in rows
            ],
        )
    ]
