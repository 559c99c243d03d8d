"""Reconciliation of the sub-ledger's balance checkpoints (migrations 0016, 0017): every checkpoint is what the
movements say, its marks are true, its copied attributes are its invoices' (or a change was recorded since), and its
summary is the sum of its rows."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, Date, bindparam, func, literal_column, or_, select, text, union_all

from writeoffs.db.schema import (
    balance_checkpoint_rows,
    balance_checkpoint_summary,
    invoice_attribute_changes,
    invoices,
)
from writeoffs.db.sqlfiles import sql
from writeoffs.money import money_str
from writeoffs.reconcile.model import (
    MAX_FINDINGS,
    Break,
    Tolerances,
    _capped,
    _count,
    _dec,
    _group,
    _sum,
)

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

    out = []
    since = as_of - timedelta(days=CHECKPOINT_RECHECK_DAYS)
    recent = [cp for cp in checkpoints(conn) if cp.as_of >= since]
    if not recent:
        return out
    # The tops of both logs are the same for every checkpoint: read once.
    tops = (
        conn.execute(text("SELECT MAX(id) FROM invoice_movements")).scalar() or 0,
        conn.execute(text("SELECT MAX(id) FROM invoice_attribute_changes")).scalar() or 0,
    )
    for cp in recent:
        params = {"cp": cp.id, "d": cp.as_of, "hw": cp.movements_through, "ahw": cp.attributes_through}
        out += _checkpoint_marks(conn, cp, params, tops)
        rows = _checkpoint_balances(conn, cp, params) + _checkpoint_attributes(conn, cp, params)
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


def _checkpoint_marks(conn: Connection, cp: Any, params: dict[str, Any], tops: tuple[int, int]) -> list[Break]:
    """A break if the checkpoint's high-water marks are false (a movement it claims to cover is missing, or was
    recorded after its ``recorded_through``; an attribute change it claims to know of is missing). ``tops``: the
    highest movement and attribute-change ids."""
    top, attributes_top = tops
    covered = conn.execute(text("SELECT MAX(recorded_at) FROM invoice_movements WHERE id <= :hw"), params).scalar()
    if cp.movements_through > top or (covered or "") > cp.recorded_through or cp.attributes_through > attributes_top:
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


def _checkpoint_balances(conn: Connection, cp: Any, params: dict[str, Any]) -> list[Break]:
    """Per entity and currency, the invoices whose checkpoint balance differs from their movements (one statement
    recomputes the checkpoint; ``sql/checkpoint_balances.sql``, its date bound as a date)."""
    out = []
    rows = conn.execute(
        sql(__package__, "checkpoint_balances").bindparams(bindparam("d", type_=Date)), params | {"cap": MAX_FINDINGS}
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

    b, i, a = balance_checkpoint_rows.alias("b"), invoices.alias("i"), invoice_attribute_changes.alias("a")
    changed_since = select(literal_column("1")).where(a.c.invoice_id == b.c.invoice_id, a.c.id > bindparam("ahw"))
    rows = conn.execute(
        select(i.c.entity_code, i.c.currency, b.c.invoice_id, i.c.invoice_ref)
        .select_from(b.join(i, i.c.id == b.c.invoice_id))
        .where(
            b.c.checkpoint_id == bindparam("cp"),
            or_(*(b.c[x] != i.c[x] for x in CHECKPOINT_ATTRIBUTES)),
            ~changed_since.exists(),
        )
        .order_by(b.c.invoice_id)
        .limit(MAX_FINDINGS),
        params,
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

    sm, b = balance_checkpoint_summary, balance_checkpoint_rows
    g = union_all(
        select(*(sm.c[c] for c in SUMMARY_GROUPS), sm.c.invoice_count.label("n"), sm.c.balance.label("amount")).where(
            sm.c.checkpoint_id == bindparam("cp")
        ),
        select(*(b.c[c] for c in SUMMARY_GROUPS), -func.count(), -func.sum(b.c.balance))
        .where(b.c.checkpoint_id == bindparam("cp"), b.c.balance > literal_column("0"))
        .group_by(*(b.c[c] for c in SUMMARY_GROUPS)),
    ).subquery("g")
    groups = [g.c[c] for c in SUMMARY_GROUPS]
    rows = conn.execute(
        select(*groups, func.sum(g.c.n).label("n"))
        .group_by(*groups)
        .having(or_(func.sum(g.c.n) != literal_column("0"), func.sum(g.c.amount) != literal_column("0")))
        .order_by(*groups)
        .limit(MAX_FINDINGS),
        params,
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
