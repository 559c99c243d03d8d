"""The batch under posting: its lock (:func:`lock_batch`), the context resolved once under it (accounts, approval
reference, the items the verified approval binds: :func:`_context`), and the checks that every chunk still equals
that approval (:func:`_check_bound`) and that the batch ends with every approved item posted or skipped
(:func:`_check_all_done`).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Connection, case, func, or_, select

from writeoffs import approvals
from writeoffs.accounting import keys
from writeoffs.accounting.chart import accounts_for_batch, batch_policy, check_postable
from writeoffs.db.locks import locked
from writeoffs.db.schema import writeoff_batches, writeoffs
from writeoffs.errors import ApprovalError, LedgerError
from writeoffs.money import money_str
from writeoffs.posting.model import _Context


def lock_batch(conn: Connection, batch_id: int):
    """Serialise posters of one batch: row lock on PostgreSQL, the database write lock on SQLite."""
    row = conn.execute(locked(conn, writeoff_batches, writeoff_batches.c.id == batch_id)).first()
    if row is None:
        raise LedgerError(f"write-off batch {batch_id} does not exist")
    return row


def _context(
    conn: Connection,
    batch,
    summary: approvals.ApprovalSummary,
    posting_date: date,
    actor: str,
) -> _Context:
    """Everything a chunk needs, resolved once under the batch lock; refuses what cannot post (fail closed)."""
    policy = batch_policy(conn, batch)
    accts = accounts_for_batch(conn, batch, policy)
    # One pass over the batch's items: its reasons, the keys off the scheme, the items already posted.
    bad_key = or_(
        ~writeoffs.c.idempotency_key.startswith(keys.WRITEOFF_PREFIX),
        func.length(writeoffs.c.idempotency_key) > 200,
    )
    per_reason = conn.execute(
        select(
            writeoffs.c.reason_code,
            func.count(case((bad_key, 1))),
            func.count(case((writeoffs.c.status.in_(("posted", "reversed")), 1))),
        )
        .where(writeoffs.c.batch_id == batch.id)
        .group_by(writeoffs.c.reason_code)
    ).all()
    check_postable(accts, (r[0] for r in per_reason))
    bad_keys = sum(r[1] for r in per_reason)
    if bad_keys:
        raise LedgerError(
            f"batch {batch.id}: {bad_keys} write-off keys do not follow the scheme "
            f"{keys.WRITEOFF_PREFIX}<as_of>:<policy>:<invoice> (or exceed 200 characters); posting refused"
        )
    approval_ref = (
        f"auto-approved (tolerance {summary.limit_amount})"
        if summary.auto
        else f"approval #{summary.approve_id} by {summary.approver}, confirmation #{summary.confirm_id} by "
        f"{summary.confirmer}"
    )
    return _Context(
        batch_id=batch.id,
        batch_key=batch.batch_key,
        entity=batch.entity_code,
        method=accts.method,
        functional_currency=accts.functional_currency,
        as_of=batch.as_of_date,
        posting_date=posting_date,
        accts=accts,
        approval_ref=approval_ref,
        actor=actor,
        allowance_shortfall=policy.model.allowance_shortfall,
        policy=policy,
        approved=summary.to_post,  # exactly the items whose digest the approval check just verified
        already_posted=sum(r[2] for r in per_reason),
    )


def _check_all_done(conn: Connection, ctx: _Context) -> None:
    """Before a batch is reported complete: every verified item was posted or skipped with a reason (none taken out
    of the batch or deleted between chunks). Read from the database, so concurrent posters agree."""
    done = set(
        conn.execute(
            select(writeoffs.c.id).where(
                writeoffs.c.batch_id == ctx.batch_id, writeoffs.c.status.in_(("posted", "skipped"))
            )
        ).scalars()
    )
    missing = sorted(set(ctx.approved) - done)
    if missing:
        raise ApprovalError(
            f"batch {ctx.batch_id}: {len(missing)} approved item(s) {missing[:5]} left the batch while posting "
            "(neither posted nor skipped); posting stopped"
        )


def _check_bound(rows, ctx: _Context) -> None:
    """Refuse a chunk whose items differ from what the verified approval covers (edited between chunks)."""
    changed = []
    for r in rows:
        want = ctx.approved.get(r.id)
        have = (r.invoice_id, r.amount, r.reason_code)
        if want is None:
            changed.append(f"write-off {r.id} ({r.invoice_ref}) was not among the approved items")
        elif have != want:
            changed.append(
                f"write-off {r.id} ({r.invoice_ref}): {money_str(r.amount)} {r.reason_code} "
                f"!= approved {money_str(want[1])} {want[2]}"
            )
    if changed:
        more = f" (+{len(changed) - 5} more)" if len(changed) > 5 else ""
        raise ApprovalError(
            f"batch {ctx.batch_id}: items changed since the approval was verified; posting stopped: "
            + "; ".join(changed[:5])
            + more
        )
