"""Aging as of a past date, from movements (and checkpoints); today's aging without a snapshot."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import Connection, func, select, text

from writeoffs.aging import Basis, days_since, summarise
from writeoffs.buckets import DEFAULT_BUCKETS, Bucket, bucket_case, bucket_case_text
from writeoffs.db import bulk
from writeoffs.db.money import from_db
from writeoffs.db.schema import aging_runs, invoices
from writeoffs.subledger.checkpoint import Checkpoint, checkpoint_moves_sql, choose_checkpoint
from writeoffs.subledger.common import Known, known_param


def later_movements_sql(*, known: bool = False, day: str = ":d") -> str:
    """The movements a balance as of ``:d`` leaves out: dated after it, or (``known``) recorded after ``:known``.

    Why "current balance minus what came later" rather than "sum of everything up to the date": both are equal (the
    triggers write every change; reconciliation's ``movements`` check verifies it), but the current balances are
    materialised and the movements after a recent date are few (an index range on ``effective_date``), so a month
    end just passed costs about what today's aging costs, instead of aggregating the whole history per invoice.
    """
    recorded = " OR m.recorded_at > :known" if known else ""
    return f"""SELECT m.invoice_id, SUM(m.balance_change) AS later FROM invoice_movements m
               WHERE m.effective_date > {day}{recorded} GROUP BY m.invoice_id"""


def aged_invoices_sql(
    dialect: str,
    *,
    basis: Basis = "due_date",
    buckets: Sequence[Bucket] = DEFAULT_BUCKETS,
    known: bool = False,
    checkpoint: bool = False,
) -> str:
    """The one home of "an invoice's aging as of a past date": SQL selecting, per invoice raised on or before ``:d``
    (a DATE parameter) with an open balance at the end of that day, ``invoice_id, entity_code, currency,
    customer_id, days_past_due, bucket, open_balance``; with ``known``, only what was recorded up to ``:known`` (a
    ``recorded_at`` text). ``checkpoint``: from a checkpoint (:func:`choose_checkpoint`; its parameters come from
    :func:`aged_params`) instead of the current balances. Used by :func:`aging_as_of`, the allowance estimate and the
    reconciliation; money comes back as stored (read it with ``writeoffs.db.money.from_db``)."""
    if basis not in ("due_date", "invoice_date"):
        raise ValueError(f"aging basis must be due_date or invoice_date, not {basis!r}")
    day = "CAST(:d AS DATE)" if dialect == "postgresql" else ":d"

    def aged(alias: str) -> str:  # days past due and bucket of the row ``alias`` (an invoice or a checkpoint row)
        if dialect == "postgresql":
            dpd = f"(CAST(:d AS DATE) - {alias}.{basis})"
        else:
            dpd = f"CAST(julianday(:d) - julianday({alias}.{basis}) AS INTEGER)"
        return f"{dpd} AS days_past_due, {bucket_case_text(dpd, buckets)} AS bucket"

    if checkpoint:
        return _checkpoint_aged_sql(dialect, aged, day, known=known)
    return f"""
        SELECT i.id AS invoice_id, i.entity_code, i.currency, i.customer_id, {aged("i")},
               i.open_balance - COALESCE(x.later, 0) AS open_balance
        FROM invoices i
        LEFT JOIN ({later_movements_sql(known=known, day=day)}) x ON x.invoice_id = i.id
        WHERE i.invoice_date <= {day} AND (i.open_balance > 0 OR x.invoice_id IS NOT NULL)
          AND i.open_balance - COALESCE(x.later, 0) > 0
    """


def _checkpoint_aged_sql(dialect: str, aged: Callable[[str], str], day: str, *, known: bool) -> str:
    """:func:`aged_invoices_sql` from a checkpoint, without reading every invoice.

    ``x``: the invoices the movements since (or before) the checkpoint change; ``t``: those plus the invoices whose
    attributes changed after the build (``invoice_attribute_changes`` above the checkpoint's mark). Every other
    invoice with a balance on the date is a checkpoint row as it stands, attributes included (migration 0017): read
    from the checkpoint alone. The invoices of ``t`` are read from ``invoices`` with their checkpoint balance and
    their change, as before. The two parts are disjoint, and together the same rows as the invoices joined to the
    checkpoint (``test_subledger_checkpoints.py``, ``test_subledger_replay.py``)."""
    return f"""
        WITH x AS ({checkpoint_moves_sql(dialect, known=known)}),
        t AS (SELECT x.invoice_id FROM x
              UNION SELECT a.invoice_id FROM invoice_attribute_changes a WHERE a.id > :ahw)
        SELECT b.invoice_id, b.entity_code, b.currency, b.customer_id, {aged("b")}, b.balance AS open_balance
        FROM balance_checkpoint_rows b
        WHERE b.checkpoint_id = :cp AND b.invoice_date <= {day} AND b.balance > 0
          AND NOT EXISTS (SELECT 1 FROM t WHERE t.invoice_id = b.invoice_id)
        UNION ALL
        SELECT i.id, i.entity_code, i.currency, i.customer_id, {aged("i")},
               COALESCE(b.balance, 0) + COALESCE(x.change, 0)
        FROM t JOIN invoices i ON i.id = t.invoice_id
        LEFT JOIN x ON x.invoice_id = t.invoice_id
        LEFT JOIN balance_checkpoint_rows b ON b.checkpoint_id = :cp AND b.invoice_id = t.invoice_id
        WHERE i.invoice_date <= {day} AND COALESCE(b.balance, 0) + COALESCE(x.change, 0) > 0
    """


def aging_spec(conn: Connection, as_of: date) -> tuple[Basis, tuple[Bucket, ...]]:
    """The basis and buckets the pipeline ages with: those of the latest aging run on or before ``as_of`` (the
    ingest's configuration, stored with each run), else due date and the default buckets."""
    r = conn.execute(
        select(aging_runs.c.basis, aging_runs.c.bucket_spec)
        .where(aging_runs.c.as_of_date <= as_of)
        .order_by(aging_runs.c.as_of_date.desc())
        .limit(1)
    ).first()
    if r is None:
        return "due_date", tuple(DEFAULT_BUCKETS)
    spec = json.loads(r.bucket_spec)
    return r.basis, tuple(
        Bucket(b["label"], int(b["low"]), None if b["high"] is None else int(b["high"])) for b in spec
    )


def aged_params(as_of: date, known: Known = None, checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    """Parameters of :func:`aged_invoices_sql` (and :func:`checkpoint_balances_sql` with ``checkpoint``), dates bound
    as text (``'YYYY-MM-DD'`` is what both databases store)."""
    out = {"d": as_of.isoformat()} | ({} if known is None else {"known": known_param(known)})
    if checkpoint is not None:
        lo, hi = sorted((checkpoint.as_of, as_of))
        out |= {
            "cp": checkpoint.id,
            "c": checkpoint.as_of.isoformat(),
            "hw": checkpoint.movements_through,
            "ahw": checkpoint.attributes_through,
            "lo": lo.isoformat(),
            "hi": hi.isoformat(),
        }
    return out


def aging_as_of(
    conn: Connection,
    as_of: date,
    *,
    basis: Basis = "due_date",
    buckets: Sequence[Bucket] = DEFAULT_BUCKETS,
    known: Known = None,
    use_checkpoints: bool = True,
) -> dict[str, Any]:
    """The aging of ``as_of`` from movements (the same shape as :func:`writeoffs.aging.summary`): one query.

    Each invoice raised on or before the date with an open balance at the end of it, bucketed by days past due (or
    since invoice date) on that date. Nothing is stored: a past month end needs no snapshot taken on the day; a
    checkpoint near the date (:func:`choose_checkpoint`) only makes it cheaper (``use_checkpoints=False``: without).
    """
    cp = choose_checkpoint(conn, as_of, known) if use_checkpoints else None
    aged = aged_invoices_sql(
        conn.dialect.name, basis=basis, buckets=buckets, known=known is not None, checkpoint=cp is not None
    )
    bulk.set_local_work_mem(conn)  # the per-invoice sums of the movements read: hashed in memory, not spilled
    rows = conn.execute(
        text(
            f"SELECT a.entity_code, a.currency, a.bucket, COUNT(*), SUM(a.open_balance) FROM ({aged}) a "
            "GROUP BY a.entity_code, a.currency, a.bucket"
        ),
        aged_params(as_of, known, cp),
    ).all()
    return summarise([(e, c, b, n, from_db(conn, s)) for e, c, b, n, s in rows], as_of, buckets)


def aging_current(
    conn: Connection, as_of: date, *, basis: Basis = "due_date", buckets: Sequence[Bucket] = DEFAULT_BUCKETS
) -> dict[str, Any]:
    """Today's balances aged on ``as_of`` (what a snapshot taken now would hold), without storing anything."""
    i = invoices.c
    dpd = days_since(conn, as_of, i[basis])
    bucket = bucket_case(dpd, buckets).label("bucket")
    q = (
        select(i.entity_code, i.currency, bucket, func.count(), func.sum(i.open_balance))
        .where(i.open_balance > 0, i.invoice_date <= as_of)
        .group_by(i.entity_code, i.currency, bucket)
    )
    return summarise(conn.execute(q).all(), as_of, buckets)
