"""Post an approved write-off batch to the general ledger exactly once.

Entries (one per write-off, linked to the invoice by its lines, to the batch by ``batch_id``, to the approvals via
the batch and the description, to the policy by ``policy_version``):

- direct method:    Dr Bad Debt Expense (account of the reason)   / Cr Accounts Receivable (control)
- allowance method: Dr Allowance for Doubtful Accounts            / Cr Accounts Receivable (control)

in the invoice currency, and in the entity's functional currency at the invoice's booked ``fx_rate``.

Exactly once, by construction rather than by care:

- every write-off has a unique ``idempotency_key`` (``wo:<as_of>:<policy_hash>:<invoice_id>``) and its journal entry
  carries the same key (:func:`writeoffs.accounting.keys.writeoff_entry`, unique in ``journal_entries``), so the
  database refuses a second entry whatever the caller does;
- the batch is posted in chunks, each chunk ONE transaction holding the batch row lock (``SELECT ... FOR UPDATE`` on
  PostgreSQL, the single writer lock on SQLite): entries, invoice sub-ledger and write-off rows commit together or
  not at all, and a concurrent run waits, then finds the chunk already posted;
- a chunk only ever picks write-offs still ``approved``; a killed run leaves whole chunks only, a re-run continues.

Before posting, inside the chunk's transaction (invoices locked), every item is re-checked against the live
sub-ledger: status, holds, payments after the as-of date, balance changes, another write-off of the same invoice
posted since selection (or twice in one batch), and the parent/child rule (a child invoice whose transferred balance
the parent paid in part). An item that changed is not posted but marked ``skipped`` with the reason.

Accounts come from the policy version recorded on the batch (:func:`writeoffs.accounting.chart.accounts_for_batch`),
never from the policy file in force at posting time. Allowance method: a chunk whose write-offs exceed the
allowance's credit balance is refused, or the shortfall is funded first, as that policy's ``allowance_shortfall``
says (an allowance never goes into a debit balance).
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    Engine,
    Integer,
    Select,
    String,
    and_,
    any_,
    case,
    cast,
    column,
    exists,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
    values,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import bindparam

from writeoffs import approvals, audit, ledger, subledger
from writeoffs.accounting import entries, keys
from writeoffs.accounting.chart import Accounts, Role, accounts_for_batch, batch_policy
from writeoffs.accounting.status import POSTABLE_INVOICE_STATUSES
from writeoffs.db.schema import (
    aging_snapshots,
    currencies,
    customers,
    holds,
    invoices,
    journal_entries,
    journal_lines,
    payment_allocations,
    payments,
    writeoff_batches,
    writeoffs,
)
from writeoffs.errors import ApprovalError, LedgerError
from writeoffs.journal import JournalEntry
from writeoffs.money import money_str, round_money
from writeoffs.tiers import AUTO_TIER, Tier

ChunkHook = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class SkippedItem:
    writeoff_id: int
    invoice_ref: str
    reason: str


@dataclass
class PostingReport:
    batch_id: int
    status: str
    posted: int = 0  # posted by this call
    skipped: int = 0  # skipped by this call
    already_posted: int = 0  # posted before this call (idempotent replay)
    chunks: int = 0
    amounts: dict[str, Decimal] = field(default_factory=dict)  # currency -> amount posted by this call
    skipped_items: list[SkippedItem] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON/XCom-safe summary (money as strings)."""
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "posted": self.posted,
            "skipped": self.skipped,
            "already_posted": self.already_posted,
            "chunks": self.chunks,
            "amounts": {k: money_str(v) for k, v in sorted(self.amounts.items())},
            "skipped_items": [
                {"writeoff_id": s.writeoff_id, "invoice_ref": s.invoice_ref, "reason": s.reason}
                for s in self.skipped_items[:100]
            ],
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


@dataclass(frozen=True, slots=True)
class _Context:
    batch_id: int
    batch_key: str
    entity: str
    method: str
    functional_currency: str
    as_of: date
    posting_date: date
    accts: Accounts
    approval_ref: str
    actor: str
    allowance_shortfall: str = "refuse"  # the batch policy's switch (allowance method only)
    policy: Any = None  # the batch's recorded policy (parent/child rules at posting)
    #: The items still to post as they were when the approval was verified (id -> invoice, amount, reason): every
    #: chunk must equal them, with its rows locked, or the batch stops (approval binds the items, not a moment).
    approved: dict[int, tuple[int, Decimal, str]] = field(default_factory=dict)
    already_posted: int = 0  # items of the batch posted (or reversed) before this call, as _already counts them

    @property
    def ar_account(self) -> str:
        return self.accts.role(Role.AR_CONTROL)


@dataclass(frozen=True, slots=True)
class _PeriodProbe:
    """What :func:`ledger.check_periods_open` needs, before any entry exists."""

    entity: str
    posting_date: date


def lock_batch(conn: Connection, batch_id: int):
    """Serialise posters of one batch: row lock on PostgreSQL, the database write lock on SQLite."""
    if conn.dialect.name == "postgresql":
        row = conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == batch_id).with_for_update()).first()
    else:
        # SQLite: a no-op write as the first statement takes the writer lock now (waiting on the busy timeout),
        # instead of a read snapshot that would fail to upgrade later.
        conn.execute(update(writeoff_batches).where(writeoff_batches.c.id == batch_id).values(id=writeoff_batches.c.id))
        row = conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == batch_id)).first()
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
    accts.role(Role.AR_CONTROL)
    if accts.method == "allowance":
        accts.role(Role.ALLOWANCE)
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
    for reason in sorted(r[0] for r in per_reason):
        accts.writeoff_debit(reason)  # raises for a reason the batch's policy does not map
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


@dataclass(slots=True)
class _Item:
    """One item of a chunk, as :func:`skip_reason` re-checks it against the live sub-ledger.

    The sub-ledger columns come from the locking read; the findings (payment after the as-of date, hold, balance
    changed since the as-of snapshot, another write-off posted, parent/child) default to "nothing found" and are set
    by :func:`_findings` for the few items where something was found.
    """

    id: int
    invoice_id: int
    amount: Decimal
    currency: str
    reason_code: str
    idempotency_key: str
    policy_version: str
    created_at: Any
    invoice_ref: str
    open_balance: Decimal
    invoice_status: str
    invoice_currency: str
    entity_code: str
    fx_rate: Decimal
    invoice_amount: Decimal
    transferred: bool
    customer_id: int
    as_of_date: date
    late_payment: bool = False
    on_hold: bool = False
    asof_balance: Decimal | None = None  # the as-of snapshot's balance, set only where it differs from open_balance
    other_posted_at: Any = None
    parent_id: int | None = None
    segment: str | None = None  # the customer's segment, read for child accounts (the only ones that need it)
    parent_paid: bool = False


def _recheck_rows(conn: Connection, ctx: _Context, chunk_size: int) -> list[_Item]:
    """The next chunk of approved items (rows locked) with everything needed to re-check them against the live
    sub-ledger: one locking read of the items and their invoices, then one set-wise query for the findings."""
    w, i = writeoffs, invoices
    # The chunk's ids first, then the wide row: sorting every remaining approved item's joined row to keep the first
    # chunk_size spilled to disk (measured: 0.11 s of a chunk's 0.15 s at 50,000 items).
    chunk = writeoffs.alias("chunk")
    next_ids = (
        select(chunk.c.id)
        .where(chunk.c.batch_id == ctx.batch_id, chunk.c.status == "approved")
        .order_by(chunk.c.id)
        .limit(chunk_size)
    )
    q = (
        select(
            w.c.id,
            w.c.invoice_id,
            w.c.amount,
            w.c.currency,
            w.c.reason_code,
            w.c.idempotency_key,
            w.c.policy_version,
            w.c.created_at,
            i.c.invoice_ref,
            i.c.open_balance,
            i.c.status,
            i.c.currency,
            i.c.entity_code,
            i.c.fx_rate,
            i.c.amount,
            i.c.balance_transferred_to_parent,
            i.c.customer_id,
            w.c.as_of_date,
        )
        .select_from(w.join(i, i.c.id == w.c.invoice_id))
        .where(w.c.id.in_(next_ids))
        .order_by(w.c.id)
    )
    if conn.dialect.name == "postgresql":
        # Lock the invoices (a payment or another write-off touching them waits until this chunk commits) and the
        # items (checked against the approval below, then read again by the set-wise SQL: nobody may edit them in
        # between).
        q = q.with_for_update(of=[i, w])
    items = [_Item(*r) for r in conn.execute(q).all()]  # fetchall: row-by-row fetching costs more than the query
    if items:
        _findings(conn, ctx, items)
    return items


# What a row of the findings query says about its item (column ``kind``).
_LATE_PAYMENT, _ON_HOLD, _ASOF_BALANCE, _OTHER_POSTED, _CHILD, _PARENT_PAID = range(1, 7)
#: The chunk's columns the findings query needs, sent as PostgreSQL arrays (see :func:`_findings_query`).
_CHUNK_ARRAYS = (
    ("id", BigInteger),
    ("invoice_id", BigInteger),
    ("customer_id", BigInteger),
    ("as_of_date", Date),
    ("open_balance", invoices.c.open_balance.type),
)


@functools.lru_cache(maxsize=8)
def _findings_query(dialect: str):
    """The findings statement (built once per dialect; parameters: the chunk, ``posting_date``).

    The chunk comes from the locking read: on PostgreSQL as one array literal per column (``'{1,2,3}'::BIGINT[]``,
    unnested), so that no join depends on the statistics of ``writeoffs`` (stale while a batch changes status under
    posting: a join of the chunk with "posted" write-offs estimated at one row ran 14 s per chunk); on SQLite (single
    writer lock held) as the chunk's id range, ids outside the chunk being ignored by the caller. The other write-offs
    of an invoice are looked up per item through their invoice index, for the same reason.
    """
    if dialect == "postgresql":
        arrays = (
            func.unnest(
                *(
                    cast(bindparam(f"chunk_{name}", type_=String), ARRAY(getattr(type_, "impl", type_)))
                    for name, type_ in _CHUNK_ARRAYS
                )
            )
            .table_valued(*(column(name, type_) for name, type_ in _CHUNK_ARRAYS))
            .render_derived(name="chunk")
        )
        c = select(*arrays.c).cte("chunk_items")
    else:
        w, i = writeoffs, invoices
        c = (
            select(w.c.id, w.c.invoice_id, i.c.customer_id, w.c.as_of_date, i.c.open_balance)
            .select_from(w.join(i, i.c.id == w.c.invoice_id))
            .where(w.c.batch_id == bindparam("batch_id"), w.c.id.between(bindparam("lo"), bindparam("hi")))
            .cte("chunk_items")
        )

    def found(kind: int, source=c, *, money=None, stamp=None, parent=None, segment=None) -> list:
        # The same columns with the same types in every branch: typed NULLs (PostgreSQL would type a column that
        # starts with untyped NULLs as text; SQLAlchemy types the result from the first branch).
        def typed(value, col):
            return cast(null(), col.type) if value is None else value

        return [
            source.c.id,
            literal_column(str(kind), Integer).label("kind"),
            typed(money, aging_snapshots.c.open_balance).label("money"),
            typed(stamp, writeoffs.c.posted_at).label("stamp"),
            typed(parent, customers.c.parent_id).label("parent_id"),
            typed(segment, customers.c.segment).label("segment"),
        ]

    pa = payment_allocations
    late = exists(
        select(1)
        .select_from(pa.join(payments, payments.c.id == pa.c.payment_id))
        .where(
            pa.c.invoice_id == c.c.invoice_id,
            pa.c.kind == "regular",
            or_(payments.c.payment_date > c.c.as_of_date, pa.c.allocated_on > c.c.as_of_date),
        )
    )
    active = or_(holds.c.end_date.is_(None), holds.c.end_date >= bindparam("posting_date", type_=Date))
    invoice_hold = exists(select(1).where(holds.c.invoice_id == c.c.invoice_id, active))
    customer_hold = exists(
        select(1).where(holds.c.invoice_id.is_(None), holds.c.customer_id == c.c.customer_id, active)
    )
    snap = aging_snapshots
    other = writeoffs.alias("other")
    other_posted = (
        select(
            c.c.id,
            select(func.max(other.c.posted_at))
            .where(other.c.invoice_id == c.c.invoice_id, other.c.id != c.c.id, other.c.status == "posted")
            .scalar_subquery()
            .label("stamp"),
        )
        .select_from(c)
        .subquery("other_posted")
    )
    cust = customers.alias("cust")
    payer = payments.alias("payer")
    parent_paid = exists(
        select(1)
        .select_from(pa.join(payer, payer.c.id == pa.c.payment_id))
        .where(pa.c.invoice_id == c.c.invoice_id, pa.c.kind == "regular", payer.c.customer_id == cust.c.parent_id)
    )
    child = c.join(cust, cust.c.id == c.c.customer_id)
    return union_all(
        select(*found(_LATE_PAYMENT)).select_from(c).where(late),
        select(*found(_ON_HOLD)).select_from(c).where(invoice_hold),
        select(*found(_ON_HOLD)).select_from(c).where(customer_hold),
        select(*found(_ASOF_BALANCE, money=snap.c.open_balance))
        .select_from(c.join(snap, and_(snap.c.as_of_date == c.c.as_of_date, snap.c.invoice_id == c.c.invoice_id)))
        .where(snap.c.open_balance != c.c.open_balance),
        select(*found(_OTHER_POSTED, other_posted, stamp=other_posted.c.stamp)).where(
            other_posted.c.stamp.is_not(None)
        ),
        select(*found(_CHILD, parent=cust.c.parent_id, segment=cust.c.segment))
        .select_from(child)
        .where(cust.c.parent_id.is_not(None)),
        select(*found(_PARENT_PAID)).select_from(child).where(cust.c.parent_id.is_not(None), parent_paid),
    )


def _findings(conn: Connection, ctx: _Context, items: list[_Item]) -> None:
    """Set on ``items`` what the live sub-ledger says against posting them: ONE set-wise query, run after the chunk's
    rows are locked (it sees everything committed before the locks were granted), that returns only the items it
    finds something for: a payment allocated after the as-of date, an active hold on the invoice or its customer, an
    as-of snapshot balance that differs from the open balance, the latest posting of another write-off of the invoice,
    and for child accounts the parent, the segment and whether the parent paid part of the invoice.
    """
    by_id = {it.id: it for it in items}
    params: dict[str, Any] = {"posting_date": ctx.posting_date}
    if conn.dialect.name == "postgresql":
        # One array literal per column: the driver's per-element adaptation of 5,000-element lists costs more than
        # the query. ``str`` of these ints, dates and Decimals is valid PostgreSQL input; none is NULL (NOT NULL
        # columns) or needs quoting.
        for name, _ in _CHUNK_ARRAYS:
            params[f"chunk_{name}"] = "{" + ",".join(map(str, map(attrgetter(name), items))) + "}"
    else:
        params |= {"batch_id": ctx.batch_id, "lo": items[0].id, "hi": items[-1].id}
    for wid, kind, money, stamp, parent, segment in conn.execute(_findings_query(conn.dialect.name), params).all():
        it = by_id.get(wid)
        if it is None:
            continue
        if kind == _LATE_PAYMENT:
            it.late_payment = True
        elif kind == _ON_HOLD:
            it.on_hold = True
        elif kind == _ASOF_BALANCE:
            it.asof_balance = money
        elif kind == _OTHER_POSTED:
            it.other_posted_at = stamp
        elif kind == _CHILD:
            it.parent_id, it.segment = parent, segment
        else:
            it.parent_paid = True


def _naive_utc(value):
    """A timestamp as naive UTC (PostgreSQL returns aware values, SQLite naive ones; both are stored in UTC)."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    return datetime.fromisoformat(str(value))


def skip_reason(row, ctx: _Context) -> str | None:
    """Why an approved item must not be posted now (None: post it). Order: the most fundamental reason first.

    Runs inside the chunk's transaction with the invoices locked (PostgreSQL) or the single writer lock (SQLite).
    """
    if row.entity_code != ctx.entity:
        return f"invoice belongs to entity {row.entity_code}, the batch to {ctx.entity}"
    if row.invoice_currency != row.currency:
        return f"write-off currency {row.currency} differs from invoice currency {row.invoice_currency}"
    if row.invoice_status not in POSTABLE_INVOICE_STATUSES:
        return f"invoice status is {row.invoice_status!r} since approval"
    if row.on_hold:
        return "invoice or customer is on a dispute/payment-plan hold"
    if row.late_payment:
        return f"payment received after the as-of date {ctx.as_of}"
    if row.asof_balance is not None and row.asof_balance != row.open_balance:
        was, now = money_str(row.asof_balance), money_str(row.open_balance)
        return f"open balance changed since the as-of date ({was} -> {now})"
    if row.amount > row.open_balance:
        return f"amount {money_str(row.amount)} exceeds the open balance {money_str(row.open_balance)}"
    if row.other_posted_at is not None and (
        row.created_at is None or _naive_utc(row.other_posted_at) >= _naive_utc(row.created_at)
    ):
        return "another write-off of this invoice was posted since selection"
    if row.parent_id is not None and ctx.policy is not None:
        rules = ctx.policy.rules_for(row.entity_code, row.segment).parent_child
        if rules.exclude_if_parent_paid_transferred and row.transferred and row.parent_paid:
            return "child invoice whose balance went to the parent, and the parent has paid part of it"
        if rules.child_full_only and (row.amount != row.invoice_amount):
            return "child-account invoices are written off for their full invoice amount only"
    return None


def _skips(rows, ctx: _Context) -> list[tuple[object, str]]:
    """Per-row reasons plus the batch-level one: two items of the same invoice in one posting, the later skipped."""
    seen: set[int] = set()
    out = []
    for r in rows:
        reason = skip_reason(r, ctx)
        if reason is None and r.invoice_id in seen:
            reason = "another write-off of this invoice is in the same posting"
        if reason is None:
            seen.add(r.invoice_id)
        else:
            out.append((r, reason))
    return out


def _entries(rows, ctx: _Context) -> list[JournalEntry]:
    return [
        entries.writeoff(
            ctx.accts,
            writeoff_key=r.idempotency_key,
            writeoff_id=r.id,
            posting_date=ctx.posting_date,
            invoice_id=r.invoice_id,
            invoice_ref=r.invoice_ref,
            currency=r.currency,
            amount=r.amount,
            fx_rate=r.fx_rate,
            reason_code=r.reason_code,
            policy_version=r.policy_version,
            batch_key=ctx.batch_key,
            approval_ref=ctx.approval_ref,
        )
        for r in rows
    ]


def _journal_sources(ctx: _Context, writeoff_ids: Sequence[int]) -> tuple[Select, Select]:
    """The chunk's entries and lines as SELECTs over writeoffs/invoices (PostgreSQL's set-wise posting path).

    Column for column what :func:`writeoffs.accounting.entries.writeoff` produces, computed by the database: the rows
    never travel through Python, which at 50,000 write-offs costs more than writing them. Amounts are rounded like
    ``money.round_money``: ``ROUND(numeric, minor_unit)`` rounds half away from zero, which is half-up for the
    positive amounts of a write-off (``amount > 0`` is a CHECK on writeoffs); minor units come from ``currencies``,
    seeded from ``money.MINOR_UNITS``; the functional amount is rounded once, from the rounded transaction amount.
    Not for SQLite, whose ROUND works in binary floating point. tests/integration/test_posting_setwise.py proves
    the rows equal the Python path's.
    """
    w, i = writeoffs, invoices
    cur, fcur = currencies.alias("cur"), currencies.alias("fcur")
    side = values(column("line_no", Integer), name="side").data([(1,), (2,)])
    amount = func.round(w.c.amount, cur.c.minor_unit)
    functional = func.round(amount * i.c.fx_rate, fcur.c.minor_unit)
    if ctx.method == "allowance":
        debit_account = literal(ctx.accts.role(Role.ALLOWANCE), String)
    else:
        # _context refused any reason of the batch that the policy does not map; NULL would fail NOT NULL anyway.
        debit_account = case(dict(ctx.accts.reasons), value=w.c.reason_code, else_=null())
    source = (
        w.join(i, i.c.id == w.c.invoice_id)
        .join(cur, cur.c.code == w.c.currency)
        .join(fcur, fcur.c.code == literal(ctx.functional_currency))
    )
    in_chunk = w.c.id == any_(literal(list(writeoff_ids), ARRAY(BigInteger)))
    key = w.c.idempotency_key.label("idempotency_key")  # keys.writeoff_entry: already wo:-prefixed (_context)
    description = (
        literal("Write-off ")
        + i.c.invoice_ref
        + literal(" (")
        + w.c.reason_code
        + literal(f", {ctx.method} method); batch {ctx.batch_key}; {ctx.approval_ref}; policy ")
        + w.c.policy_version
    )
    entries = (
        select(
            key,
            literal(ctx.entity).label("entity_code"),
            literal(ctx.posting_date, Date).label("posting_date"),
            literal(ledger.period_of(ctx.posting_date)).label("period"),
            func.left(description, 400).label("description"),
            literal("writeoff").label("source_type"),
            cast(w.c.id, String).label("source_id"),
            cast(null(), BigInteger).label("reverses_entry_id"),
            w.c.policy_version.label("policy_version"),
        )
        .select_from(source)
        .where(in_chunk)
        .order_by(w.c.id)
    )
    debit_side = side.c.line_no == 1
    lines = (
        select(
            key,
            side.c.line_no,
            literal(ctx.entity).label("entity_code"),
            case((debit_side, debit_account), else_=literal(ctx.ar_account)).label("account_code"),
            w.c.currency.label("currency"),
            case((debit_side, amount), else_=0).label("debit"),
            case((debit_side, 0), else_=amount).label("credit"),
            literal(ctx.functional_currency).label("functional_currency"),
            case((debit_side, functional), else_=0).label("functional_debit"),
            case((debit_side, 0), else_=functional).label("functional_credit"),
            w.c.invoice_id.label("invoice_id"),
            func.left(literal("write-off ") + i.c.invoice_ref + literal(" ") + w.c.reason_code, 200).label("memo"),
        )
        .select_from(source.join(side, literal(True)))
        .where(in_chunk)
        .order_by(w.c.id, side.c.line_no)
    )
    return entries, lines


def allowance_balance(conn: Connection, accts: Accounts, currency: str) -> tuple[Decimal, Decimal]:
    """Credit balance (credit - debit) of the entity's allowance account in ``currency``: (transaction, functional)."""
    jl, je = journal_lines, journal_entries
    row = conn.execute(
        select(
            func.coalesce(func.sum(jl.c.credit - jl.c.debit), 0),
            func.coalesce(func.sum(jl.c.functional_credit - jl.c.functional_debit), 0),
        )
        .select_from(jl.join(je, je.c.id == jl.c.entry_id))
        .where(
            je.c.status == "posted",
            jl.c.entity_code == accts.entity,
            jl.c.account_code == accts.role(Role.ALLOWANCE),
            jl.c.currency == currency,
        )
    ).one()
    return (
        round_money(Decimal(str(row[0])), currency),
        round_money(Decimal(str(row[1])), accts.functional_currency),
    )


def _cover_allowance(conn: Connection, ctx: _Context, rows) -> None:
    """An allowance-method chunk never takes the allowance into a debit balance: refuse, or fund the shortfall.

    Which of the two is the batch policy's ``allowance_shortfall``. Funding posts ``Dr Bad Debt Expense / Cr
    Allowance`` for exactly the shortfall, in the chunk's transaction, before the write-offs.
    """
    currency = rows[0].currency
    fc = ctx.functional_currency
    need = sum((round_money(r.amount, currency) for r in rows), Decimal(0))
    need_f = sum((entries.functional(round_money(r.amount, currency), r.fx_rate, fc) for r in rows), Decimal(0))
    have, have_f = allowance_balance(conn, ctx.accts, currency)
    if need <= have:
        return
    short, short_f = need - have, max(need_f - have_f, Decimal(0))
    if ctx.allowance_shortfall != "fund":
        raise LedgerError(
            f"batch {ctx.batch_id}: the allowance of {ctx.entity} holds {money_str(have)} {currency}, these write-offs "
            f"need {money_str(need)}; posting refused (estimate the allowance first, or set allowance_shortfall: fund "
            "in the policy)"
        )
    entry = entries.allowance_adjustment(
        ctx.accts,
        key=keys.allowance_funding(ctx.batch_id, rows[0].id),
        posting_date=ctx.posting_date,
        currency=currency,
        change=short,
        functional_change=short_f,
        description=(
            f"Allowance funded before write-offs of batch {ctx.batch_key}: held {money_str(have)}, needed "
            f"{money_str(need)} {currency}"
        ),
        memo=f"allowance funding batch {ctx.batch_id}",
        source_type="allowance",
        source_id=f"batch:{ctx.batch_id}",
    )
    ledger.post_entries(conn, [entry], created_by=ctx.actor, batch_id=ctx.batch_id)
    audit.append(
        conn,
        actor=ctx.actor,
        action="allowance.funded",
        object_type="writeoff_batch",
        object_id=ctx.batch_id,
        details={"currency": currency, "held": have, "needed": need, "funded": short, "entry_key": entry.key},
    )


def _post_chunk(conn: Connection, ctx: _Context, rows, report: PostingReport, now: datetime) -> None:
    t0 = time.perf_counter()
    skipped = _skips(rows, ctx)
    skipped_ids = {r.id for r, _ in skipped}
    ok = [r for r in rows if r.id not in skipped_ids]
    if skipped:
        conn.execute(
            update(writeoffs)
            .where(writeoffs.c.id == bindparam("wid"), writeoffs.c.status == "approved")
            .values(status="skipped", skip_reason=bindparam("reason")),
            [{"wid": r.id, "reason": reason[:200]} for r, reason in skipped],
        )
    if ok and ctx.method == "allowance":
        _cover_allowance(conn, ctx, ok)
    t1 = time.perf_counter()
    if not ok:
        t2 = t1
    elif conn.dialect.name == "postgresql":
        sources = _journal_sources(ctx, [r.id for r in ok])
        t2 = time.perf_counter()
        ledger.post_selected(conn, *sources, created_by=ctx.actor, batch_id=ctx.batch_id)
    else:
        built = _entries(ok, ctx)
        t2 = time.perf_counter()
        ledger.post_entries(conn, built, created_by=ctx.actor, batch_id=ctx.batch_id)
    t3 = time.perf_counter()
    if ok:
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
    t4 = time.perf_counter()
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
