"""Aging as of a past date, from movements (and checkpoints); today's aging without a snapshot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Connection, func, select, text

from writeoffs.aging import Basis, days_since, summarise
from writeoffs.buckets import DEFAULT_BUCKETS, Bucket, bucket_case, bucket_case_text
from writeoffs.db import bulk, dialect
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


def _check_basis(basis: str) -> None:
    if basis not in ("due_date", "invoice_date"):
        raise ValueError(f"aging basis must be due_date or invoice_date, not {basis!r}")


def aged_invoices_sql(
    d: dialect.Dialect,
    *,
    basis: Basis = "due_date",
    buckets: Sequence[Bucket] = DEFAULT_BUCKETS,
    known: bool = False,
) -> str:
    """The one home of "an invoice's aging as of a past date": SQL selecting, per invoice raised on or before ``:d``
    (a DATE parameter) with an open balance at the end of that day, ``invoice_id, entity_code, currency,
    customer_id, days_past_due, bucket, open_balance``; with ``known``, only what was recorded up to ``:known`` (a
    ``recorded_at`` text). Used by the allowance estimate and the reconciliation (the aggregate of
    :func:`aging_as_of` may start from a checkpoint instead, :func:`_checkpoint_aging_sql`); money comes back as
    stored (read it with ``writeoffs.db.money.from_db``)."""
    _check_basis(basis)
    dpd, day = d.days_text(f"i.{basis}"), d.date(":d")
    return f"""
        SELECT i.id AS invoice_id, i.entity_code, i.currency, i.customer_id, {dpd} AS days_past_due,
               {bucket_case_text(dpd, buckets)} AS bucket, i.open_balance - COALESCE(x.later, 0) AS open_balance
        FROM invoices i
        LEFT JOIN ({later_movements_sql(known=known, day=day)}) x ON x.invoice_id = i.id
        WHERE i.invoice_date <= {day} AND (i.open_balance > 0 OR x.invoice_id IS NOT NULL)
          AND i.open_balance - COALESCE(x.later, 0) > 0
    """


def _checkpoint_aging_sql(d: dialect.Dialect, *, basis: Basis, buckets: Sequence[Bucket], known: bool) -> str:
    """The aging of ``:d`` per entity, currency and bucket (``entity_code, currency, bucket, invoices, balance``)
    from a checkpoint, reading neither every invoice nor every checkpoint row.

    The checkpoint's summary (migration 0017: its positive balances per entity, currency, invoice date and due date)
    is what the aging would be if no invoice had changed since; ``t`` are those that did: moved between the
    checkpoint and the date (``x``, :func:`checkpoint_moves_sql`), or had their entity, currency, customer or dates
    changed after the build (``invoice_attribute_changes`` above the checkpoint's mark). Each of those takes its
    checkpoint contribution out (as the summary counted it: its checkpoint row, when positive and raised by the
    date) and puts its balance on the date in (read from ``invoices``, as the aging from the movements alone reads
    it). Same answer (``test_subledger_checkpoints.py``, ``test_subledger_replay.py``)."""
    _check_basis(basis)
    day = d.date(":d")
    bucket = bucket_case_text(d.days_text("p.basis_date"), buckets)
    return f"""
        WITH x AS ({checkpoint_moves_sql(d, known=known)}),
        t AS (SELECT x.invoice_id FROM x
              UNION SELECT a.invoice_id FROM invoice_attribute_changes a WHERE a.id > :ahw),
        p AS (
            SELECT s.entity_code, s.currency, s.{basis} AS basis_date, s.invoice_count AS n, s.balance
            FROM balance_checkpoint_summary s WHERE s.checkpoint_id = :cp AND s.invoice_date <= {day}
            UNION ALL
            SELECT b.entity_code, b.currency, b.{basis}, -1, -b.balance
            FROM t JOIN balance_checkpoint_rows b ON b.checkpoint_id = :cp AND b.invoice_id = t.invoice_id
            WHERE b.balance > 0 AND b.invoice_date <= {day}
            UNION ALL
            SELECT i.entity_code, i.currency, i.{basis}, 1, COALESCE(b.balance, 0) + COALESCE(x.change, 0)
            FROM t JOIN invoices i ON i.id = t.invoice_id
            LEFT JOIN x ON x.invoice_id = t.invoice_id
            LEFT JOIN balance_checkpoint_rows b ON b.checkpoint_id = :cp AND b.invoice_id = t.invoice_id
            WHERE i.invoice_date <= {day} AND COALESCE(b.balance, 0) + COALESCE(x.change, 0) > 0
        )
        SELECT p.entity_code, p.currency, {bucket} AS bucket, SUM(p.n), SUM(p.balance)
        FROM p GROUP BY p.entity_code, p.currency, {bucket} HAVING SUM(p.n) <> 0
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
    """Parameters of the as-of queries, dates bound as text (``'YYYY-MM-DD'`` is what both databases store): of
    :func:`aged_invoices_sql`, and with ``checkpoint`` of :func:`_checkpoint_aging_sql` (all of them) and
    :func:`checkpoint_balances_sql` (all but ``ahw``: balances read no copied attribute)."""
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
    if cp is not None:
        sql = _checkpoint_aging_sql(dialect.of(conn), basis=basis, buckets=buckets, known=known is not None)
    else:
        aged = aged_invoices_sql(dialect.of(conn), basis=basis, buckets=buckets, known=known is not None)
        sql = (
            f"SELECT a.entity_code, a.currency, a.bucket, COUNT(*), SUM(a.open_balance) FROM ({aged}) a "
            "GROUP BY a.entity_code, a.currency, a.bucket"
        )
    bulk.set_local_work_mem(conn)  # the per-invoice sums of the movements read: hashed in memory, not spilled
    rows = conn.execute(text(sql), aged_params(as_of, known, cp)).all()
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
