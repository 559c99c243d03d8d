"""The posting run: :func:`post_batch` verifies the approval once under the batch lock, then posts chunk after
chunk, each ONE transaction (:func:`_post_chunk`: skips, allowance cover, journal entries, sub-ledger, write-off
rows, audit), and finishes the batch (:func:`_finish`). The top of the package: it imports the other modules.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, and_, case, func, select, update
from sqlalchemy.sql import bindparam

from writeoffs import approvals, audit, ledger, subledger
from writeoffs.db import dialect
from writeoffs.db.schema import invoices, journal_entries, writeoff_batches, writeoffs
from writeoffs.errors import ApprovalError, LedgerError
from writeoffs.posting.allowance_cover import _cover_allowance
from writeoffs.posting.batch import _check_all_done, _check_bound, _context, lock_batch
from writeoffs.posting.build import _entries, _journal_sources
from writeoffs.posting.model import ChunkHook, PostingReport, SkippedItem, _Context, _PeriodProbe
from writeoffs.posting.recheck import _recheck_rows
from writeoffs.posting.skips import _skips
from writeoffs.tiers import AUTO_TIER, Tier


def _post_chunk(conn: Connection, ctx: _Context, rows, report: PostingReport, now: datetime) -> None:
    t0 = time.perf_counter()
    skipped = _skips(rows, ctx)
    skipped_ids = {r.id for r, _ in skipped}
    ok = [r for r in rows if r.id not in skipped_ids]
    if skipped:
        _mark_skipped(conn, skipped)
    if ok and ctx.method == "allowance":
        _cover_allowance(conn, ctx, ok)
    t1 = time.perf_counter()
    t2 = _post_journal(conn, ctx, ok) if ok else t1
    t3 = time.perf_counter()
    if ok:
        _apply_to_subledger(conn, ctx, rows, ok, now)
    t4 = time.perf_counter()
    amounts = _audit_chunk(conn, ctx, ok, skipped, report, now)
    t5 = time.perf_counter()
    report.posted += len(ok)
    report.skipped += len(skipped)
    report.chunks += 1
    for cur, amt in amounts.items():
        report.amounts[cur] = report.amounts.get(cur, Decimal(0)) + amt
    report.skipped_items += [SkippedItem(r.id, r.invoice_ref, reason) for r, reason in skipped]
    for name, dt in (
        ("recheck", t1 - t0),
        ("build", t2 - t1),
        ("journal", t3 - t2),
        ("subledger", t4 - t3),
        ("audit", t5 - t4),
    ):
        report.timings[name] = report.timings.get(name, 0.0) + dt


def _mark_skipped(conn: Connection, skipped) -> None:
    """Mark the chunk's skipped items ``skipped``, with their reason."""
    conn.execute(
        update(writeoffs)
        .where(writeoffs.c.id == bindparam("wid"), writeoffs.c.status == "approved")
        .values(status="skipped", skip_reason=bindparam("reason")),
        [{"wid": r.id, "reason": reason[:200]} for r, reason in skipped],
    )


def _post_journal(conn: Connection, ctx: _Context, ok) -> float:
    """Post the journal entries of the items to post; returns when building them ended (``time.perf_counter``)."""
    if dialect.of(conn).arrays:  # the set-wise path: the entries' sources as arrays, unnested by one INSERT
        sources = _journal_sources(ctx, [r.id for r in ok])
        built_at = time.perf_counter()
        ledger.post_selected(conn, *sources, created_by=ctx.actor, batch_id=ctx.batch_id)
    else:
        built = _entries(ok, ctx)
        built_at = time.perf_counter()
        ledger.post_entries(conn, built, created_by=ctx.actor, batch_id=ctx.batch_id)
    return built_at


def _apply_to_subledger(conn: Connection, ctx: _Context, rows, ok, now: datetime) -> None:
    """Reduce the posted invoices' balances (a declared ``writeoff`` movement) and link the write-offs to entries."""
    lo, hi = rows[0].id, rows[-1].id
    w, i, je = writeoffs, invoices, journal_entries
    in_chunk = and_(
        w.c.batch_id == ctx.batch_id,
        w.c.id.between(lo, hi),
        w.c.status == "approved",
        je.c.idempotency_key == w.c.idempotency_key,  # keys.writeoff_entry
        je.c.status == "posted",
    )
    new_balance = i.c.open_balance - w.c.amount
    with subledger.movement(conn, "writeoff", ctx.posting_date, f"batch:{ctx.batch_id}"):
        res = conn.execute(
            update(i)
            .where(w.c.invoice_id == i.c.id, in_chunk)
            .values(
                open_balance=new_balance,
                written_off_amount=i.c.written_off_amount + w.c.amount,
                written_off_date=ctx.posting_date,
                status=case(
                    (new_balance == 0, "written_off"),
                    (i.c.status == "reversed", "open"),
                    else_=i.c.status,
                ),
            )
        )
    if res.rowcount != len(ok):
        raise LedgerError(f"batch {ctx.batch_id}: sub-ledger update touched {res.rowcount} of {len(ok)} invoices")
    res = conn.execute(
        update(w).where(in_chunk).values(status="posted", journal_entry_id=je.c.id, posted_at=now, skip_reason=None)
    )
    if res.rowcount != len(ok):
        raise LedgerError(f"batch {ctx.batch_id}: linked {res.rowcount} of {len(ok)} write-offs to entries")


def _audit_chunk(
    conn: Connection, ctx: _Context, ok, skipped, report: PostingReport, now: datetime
) -> dict[str, Decimal]:
    """Audit the chunk (``writeoff.post_chunk``); returns the posted amounts per currency."""
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    for r in ok:
        amounts[r.currency] += r.amount
    digest = hashlib.sha256(",".join(str(r.id) for r in ok).encode()).hexdigest()
    audit.append(
        conn,
        actor=ctx.actor,
        action="writeoff.post_chunk",
        object_type="writeoff_batch",
        object_id=ctx.batch_id,
        details={
            "chunk": report.chunks + 1,
            "posted": len(ok),
            "skipped": len(skipped),
            "amounts": dict(amounts),
            "posting_date": ctx.posting_date,
            "writeoff_ids_sha256": digest,
            "skip_reasons": dict(Counter(reason.split(" (")[0] for _, reason in skipped)),
        },
        now=now,
    )
    return amounts


def _finish(conn: Connection, ctx: _Context, report: PostingReport, now: datetime) -> str:
    counts = dict(
        conn.execute(
            select(writeoffs.c.status, func.count())
            .where(writeoffs.c.batch_id == ctx.batch_id)
            .group_by(writeoffs.c.status)
        ).all()
    )
    # 'posted': every item that was approved is in the GL; 'partially_posted': at least one was skipped.
    status = "partially_posted" if counts.get("skipped", 0) else "posted"
    conn.execute(update(writeoff_batches).where(writeoff_batches.c.id == ctx.batch_id).values(status=status))
    audit.append(
        conn,
        actor=ctx.actor,
        action=f"batch.{status}",
        object_type="writeoff_batch",
        object_id=ctx.batch_id,
        details={"counts": counts, "posting_date": ctx.posting_date, "approval": ctx.approval_ref},
        now=now,
    )
    return status


def _already(conn: Connection, batch_id: int) -> int:
    return int(
        conn.execute(
            select(func.count()).where(writeoffs.c.batch_id == batch_id, writeoffs.c.status.in_(("posted", "reversed")))
        ).scalar_one()
    )


def post_batch(
    engine: Engine,
    batch_id: int,
    *,
    actor: str,
    tiers: Sequence[Tier],
    posting_date: date,
    chunk_size: int = 5000,
    on_chunk: ChunkHook | None = None,
) -> PostingReport:
    """Post every approved write-off of the batch; safe to retry, re-run or run concurrently.

    ``on_chunk(stage, n)`` is called with ``("written", n)`` inside chunk n's transaction just before it commits,
    and ``("committed", n)`` after; operational code passes nothing (tests use it to kill a run mid-chunk).
    Raises :class:`ApprovalError` (approval missing/invalid) or :class:`ClosedPeriod` before posting anything.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    started = time.perf_counter()
    now = datetime.now(UTC)
    with engine.begin() as conn:
        # Status check, auto-approval and the full approval re-check under the batch lock, so that a run racing
        # a finishing run sees either "confirmed and valid" or "already posted", never a half state.
        batch = lock_batch(conn, batch_id)
        if batch.status in ("posted", "partially_posted"):
            # Duplicate trigger or re-run after completion: nothing to do, report what is there.
            return PostingReport(batch_id, batch.status, already_posted=_already(conn, batch_id))
        if batch.tier == AUTO_TIER:
            approvals.auto_approve(conn, batch_id, tiers, actor=actor)
            batch = lock_batch(conn, batch_id)
        summary = approvals.verify_batch_approval(conn, batch_id, tiers)
        ledger.check_periods_open(conn, [_PeriodProbe(batch.entity_code, posting_date)])
        ctx = _context(conn, batch, summary, posting_date, actor)
        report = PostingReport(batch_id, batch.status, already_posted=ctx.already_posted)
    report.timings["verify"] = time.perf_counter() - started
    while True:
        with engine.begin() as conn:
            current = lock_batch(conn, batch_id)
            if current.status in ("posted", "partially_posted"):
                report.status = current.status  # a concurrent run finished the batch
                break
            if current.status != "confirmed":
                raise ApprovalError(f"batch {batch_id} became {current.status!r} while posting; stopped")
            t_fetch = time.perf_counter()
            rows = _recheck_rows(conn, ctx, chunk_size)
            report.timings["fetch"] = report.timings.get("fetch", 0.0) + time.perf_counter() - t_fetch
            if not rows:
                _check_all_done(conn, ctx)
                report.status = _finish(conn, ctx, report, now)
                break
            _check_bound(rows, ctx)
            _post_chunk(conn, ctx, rows, report, now)
            if on_chunk:
                on_chunk("written", report.chunks)
        if on_chunk:
            on_chunk("committed", report.chunks)
    report.timings["total"] = time.perf_counter() - started
    return report
