"""The point-in-time sub-ledger: invoice balances, aging and changes for any past date, from immutable movements.

``invoices`` holds the current balances (materialised: selection, posting and today's aging read them);
``invoice_movements`` holds every change of an invoice's open balance or status, written by the database in the
statement that changes the invoice (migration 0013). Two dates per movement:

- ``effective_date``: the business date of the change (an ingest load's as-of date, a write-off's posting date, a
  recovery's date, a reversal's posting date; an invoice's first movement is dated its invoice date);
- ``recorded_at``: when the ledger learned it (the database's UTC clock).

So "as of 31 March, as known today" sums the movements effective on or before 31 March; "as known on 31 March" also
leaves out what was recorded after that day: an extract of 31 March loaded on 3 April (late) shows in the first and
not in the second.

Why a balance moved is declared once per change, by the function that makes it, with :func:`movement` (one home per
rule: merge, charge-off, write-off posting, recovery, reversal, clearing a reversal). A change nobody declared (raw
SQL) is still recorded, as kind ``direct`` dated the day it was made.

Every question below is ONE query (set-wise, ``GROUP BY``), on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, func, literal, or_, select, text

from writeoffs.aging import Basis, days_since, summarise
from writeoffs.buckets import DEFAULT_BUCKETS, Bucket, bucket_case, bucket_case_text
from writeoffs.db import bulk
from writeoffs.db.money import from_db
from writeoffs.db.schema import (
    ID,
    MONEY,
    MOVEMENT_KINDS,
    aging_runs,
    balance_checkpoints,
    customers,
    invoice_movements,
    invoices,
)
from writeoffs.errors import WriteoffError

Level = Literal["invoice", "customer", "entity", "currency"]
#: "As known at": None (everything recorded), a date (by the end of that day, UTC), a moment, or a recorded_at value.
Known = date | datetime | str | None
LEVELS: tuple[str, ...] = ("invoice", "customer", "entity", "currency")
#: The SQLite table its triggers read the declared context from (migration 0013; SQLite only).
_SQLITE_CONTEXT = "invoice_movement_context"
_PG_SETTINGS = ("writeoffs.movement_kind", "writeoffs.movement_date", "writeoffs.movement_ref")


# --- declaring why a balance moves ----------------------------------------------------------------------------------


@contextmanager
def movement(conn: Connection, kind: str, effective_date: date, ref: str | None = None) -> Iterator[None]:
    """Declare, for the statements run inside, why invoices move: ``kind``, business date, document.

    The triggers of migration 0013 read it; it is cleared on the way out so that a later statement of the same
    transaction cannot borrow it. (On an error the transaction is rolled back, and the declaration with it.)
    """
    if kind not in MOVEMENT_KINDS or kind in ("opening", "direct"):
        raise WriteoffError(f"unknown movement kind {kind!r}")
    ref = None if ref is None else str(ref)[:200]
    if conn.dialect.name == "postgresql":
        _pg_set(conn, kind, effective_date.isoformat(), ref or "")
        yield
        _pg_set(conn, "", "", "")
        return
    conn.execute(text(f"DELETE FROM {_SQLITE_CONTEXT}"))
    conn.execute(
        text(f"INSERT INTO {_SQLITE_CONTEXT} (kind, effective_date, ref) VALUES (:k, :d, :r)"),
        {"k": kind, "d": effective_date.isoformat(), "r": ref},
    )
    yield
    conn.execute(text(f"DELETE FROM {_SQLITE_CONTEXT}"))


def _pg_set(conn: Connection, kind: str, day: str, ref: str) -> None:
    conn.execute(
        text("SELECT set_config(:a, :k, true), set_config(:b, :d, true), set_config(:c, :r, true)"),
        dict(zip(("a", "b", "c"), _PG_SETTINGS, strict=True)) | {"k": kind, "d": day, "r": ref},
    )


# --- the two dates ----------------------------------------------------------------------------------------------------


def recorded_text(moment: datetime) -> str:
    """A moment in ``recorded_at``'s text form, UTC (it compares as text, in time order); naive means UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _known_filter(known: Known) -> Any:
    """``recorded_at`` condition for "as known at" (see :func:`known_param`)."""
    return literal(True) if known is None else invoice_movements.c.recorded_at <= known_param(known)


def last_recorded(conn: Connection) -> str | None:
    """The newest ``recorded_at`` (a "known at" moment that includes everything recorded so far)."""
    return conn.execute(select(func.max(invoice_movements.c.recorded_at))).scalar()


# --- checkpoints ------------------------------------------------------------------------------------------------------
#
# "As of D" from the movements alone costs the movements between D and today; a checkpoint (migration 0016) holds
# every invoice's balance at a period end C, so that "as of D" costs the checkpoint plus the movements between C and D
# (at most about a month). Derived data, never a source of truth: built by ONE statement over invoice_movements,
# recorded with the high-water mark it covers, and the answer stays exact for both dates:
#
#   balance(D, known K) = Σ movements [eff <= D and recorded <= K]
#   checkpoint(C)       = Σ movements [eff <= C and id <= H]            (H: the highest id when it was built)
#
# so balance(D, K) = checkpoint(C) + Σ movements × ([eff <= D and rec <= K] - [eff <= C and id <= H]). The bracket
# is zero for every movement with id <= H outside the dates between C and D, provided every movement up to H was
# recorded by K (``recorded_through <= K``; a checkpoint built after K does not answer "as known at K": the exact
# path does). What is left: the movements dated between C and D, and those with id > H dated on or before both -
# the late ones (an extract effective before C that arrived after the build), found through the primary key.


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A built checkpoint: per invoice, the movements effective on or before ``as_of`` with an id up to
    ``movements_through``; every movement up to that id was recorded by ``recorded_through``."""

    id: int
    as_of: date
    movements_through: int
    recorded_through: str


def checkpoints(conn: Connection, as_of: date | None = None) -> list[Checkpoint]:
    """The built checkpoints, oldest first (or the one of ``as_of``)."""
    c = balance_checkpoints.c
    q = select(c.id, c.as_of_date, c.movements_through, c.recorded_through).order_by(c.as_of_date)
    if as_of is not None:
        q = q.where(c.as_of_date == as_of)
    return [Checkpoint(int(i), d, int(hw), rec) for i, d, hw, rec in conn.execute(q)]


def _day_sql(dialect: str, param: str) -> str:
    return f"CAST({param} AS DATE)" if dialect == "postgresql" else param


def build_checkpoint(conn: Connection, as_of: date) -> Checkpoint:
    """Build the checkpoint of ``as_of`` in the caller's transaction; idempotent (an existing one is returned as is).

    The header takes the high-water mark (the highest movement id, the latest ``recorded_at`` up to it), then ONE
    ``INSERT ... SELECT`` sums those movements per invoice (non-zero balances only). On PostgreSQL the writers of
    movements wait for the build (``invoices`` locked ``SHARE ROW EXCLUSIVE``: every movement is written by a trigger
    on ``invoices`` in the statement that changes it), so no movement with a lower id can commit after the mark was
    taken; on SQLite the first write holds the database's only write lock until the commit.
    """
    found = checkpoints(conn, as_of)
    if found:
        return found[0]
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE invoices IN SHARE ROW EXCLUSIVE MODE"))
        found = checkpoints(conn, as_of)  # built meanwhile by another run (the lock excludes itself)
        if found:
            return found[0]
    day = _day_sql(conn.dialect.name, ":d")
    conn.execute(
        text(
            f"""INSERT INTO balance_checkpoints (as_of_date, movements_through, recorded_through)
                SELECT {day}, COALESCE(MAX(id), 0), COALESCE(MAX(recorded_at), '') FROM invoice_movements"""
        ),
        {"d": as_of.isoformat()},
    )
    built = checkpoints(conn, as_of)
    if not built:
        raise WriteoffError(f"checkpoint of {as_of}: the header was not written")
    bulk.set_local_work_mem(conn)
    conn.execute(
        text(
            f"""INSERT INTO balance_checkpoint_rows (checkpoint_id, invoice_id, balance)
                SELECT :cp, m.invoice_id, SUM(m.balance_change) FROM invoice_movements m
                WHERE m.effective_date <= {day} AND m.id <= :hw
                GROUP BY m.invoice_id HAVING SUM(m.balance_change) <> 0"""
        ),
        {"cp": built[0].id, "d": as_of.isoformat(), "hw": built[0].movements_through},
    )
    return built[0]


def period_end_on_or_before(day: date) -> date:
    """The last month end on or before ``day`` (the date a checkpoint is kept for)."""
    return day if (day + timedelta(days=1)).month != day.month else day.replace(day=1) - timedelta(days=1)


def checkpoint_period_end(conn: Connection, as_of: date) -> Checkpoint | None:
    """After an ingest of ``as_of``: the checkpoint of the last month end on or before it, built if missing (once a
    month; later runs find it). Called by the ingest's aging step (``writeoffs.ingest.pipeline.age``).

    None for a month end on or before the ledger's first aging (its first ingest): the ledger did not exist then, so
    a checkpoint would save nothing. Every movement a first load wrote is dated after that month end only for the
    invoices issued since, which is all the exact path reads (and :func:`choose_checkpoint` prefers it there); the
    next month end's checkpoint covers the rest. At 1,000,000 invoices that is 4.4 s a first load no longer spends
    on 568,000 checkpoint rows nothing reads (BENCHMARKS.md)."""
    end = period_end_on_or_before(as_of)
    first = conn.execute(select(func.min(aging_runs.c.as_of_date))).scalar()
    if first is not None and first >= end:
        return None
    return build_checkpoint(conn, end)


def choose_checkpoint(conn: Connection, as_of: date, known: Known = None) -> Checkpoint | None:
    """The checkpoint an as-of question starts from, or None: the exact path without one (current balance minus the
    movements dated after the date) when no checkpoint covers the question or that path reads fewer days.

    Covering: for "as known at K", only a checkpoint whose covered movements were all recorded by K. Nearest by date
    (before or after ``as_of``); the movements recorded since it was built are read through the primary key.
    """
    bound = None if known is None else known_param(known)
    usable = [c for c in checkpoints(conn) if bound is None or c.recorded_through <= bound]
    if not usable:
        return None
    best = min(usable, key=lambda c: (abs((c.as_of - as_of).days), -c.movements_through))
    if known is None:  # "as known at" without a checkpoint reads every movement: any covering one is better
        last = conn.execute(select(func.max(invoice_movements.c.effective_date))).scalar()
        if last is None or (last - as_of).days <= abs((best.as_of - as_of).days):
            return None
    return best


def checkpoint_moves_sql(dialect: str, *, known: bool = False) -> str:
    """SQL of ``invoice_id, change``: per invoice, what the movements add to the checkpoint ``:cp`` (of date ``:c``,
    high-water mark ``:hw``) to reach the end of ``:d`` (see "checkpoints" above); with ``known``, only what was
    recorded up to ``:known``. Parameters from :func:`aged_params`."""
    d, c, lo, hi = (_day_sql(dialect, p) for p in (":d", ":c", ":lo", ":hi"))
    rec = " AND m.recorded_at <= :known" if known else ""
    plus = f"m.effective_date <= {d}{rec}"
    minus = f"m.effective_date <= {c} AND m.id <= :hw"
    return f"""
        SELECT u.invoice_id, SUM(u.amount) AS change FROM (
            SELECT m.invoice_id, CASE WHEN ({plus}) AND NOT ({minus}) THEN m.balance_change
                                      WHEN ({minus}) AND NOT ({plus}) THEN -m.balance_change ELSE 0 END AS amount
            FROM invoice_movements m WHERE m.effective_date > {lo} AND m.effective_date <= {hi}
            UNION ALL
            SELECT m.invoice_id, m.balance_change FROM invoice_movements m
            WHERE m.id > :hw AND m.effective_date <= {lo}{rec}
        ) u GROUP BY u.invoice_id"""


def checkpoint_join_sql(dialect: str, *, known: bool = False) -> tuple[str, str, str]:
    """How a query over ``invoices i`` reads balances at the end of ``:d`` from a checkpoint: the joins to add after
    ``FROM invoices i``, the balance expression, and the condition "may have a balance" (the checkpoint's row or a
    movement). Joined to the invoices like the later movements of the exact path: the invoices are scanned once and
    the checkpoint's rows and the movements' sums are hashed."""
    joins = f"""
        LEFT JOIN balance_checkpoint_rows b ON b.checkpoint_id = :cp AND b.invoice_id = i.id
        LEFT JOIN ({checkpoint_moves_sql(dialect, known=known)}) x ON x.invoice_id = i.id"""
    present = "(b.invoice_id IS NOT NULL OR x.invoice_id IS NOT NULL)"
    return joins, "COALESCE(b.balance, 0) + COALESCE(x.change, 0)", present


def checkpoint_balances_sql(dialect: str, *, known: bool = False) -> str:
    """SQL of ``invoice_id, balance`` at the end of ``:d`` for every invoice whose balance may be non-zero, from a
    checkpoint (:func:`checkpoint_join_sql`)."""
    joins, balance, present = checkpoint_join_sql(dialect, known=known)
    return f"SELECT i.id AS invoice_id, {balance} AS balance FROM invoices i {joins} WHERE {present}"


# --- balances ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Balance:
    entity: str  # '' at currency level
    currency: str
    key: str  # invoice ref, customer ref, entity code or currency, per level
    balance: Decimal
    invoices: int  # invoices with an open balance


def _filters(entity: str | None, currency: str | None, customer_ref: str | None, invoice_ref: str | None) -> list:
    i, c = invoices.c, customers.c
    out = []
    if entity:
        out.append(i.entity_code == entity)
    if currency:
        out.append(i.currency == currency)
    if customer_ref:
        out.append(c.customer_ref == customer_ref)
    if invoice_ref:
        out.append(i.invoice_ref == invoice_ref)
    return out


def balances_as_of(
    conn: Connection,
    as_of: date,
    *,
    level: Level = "entity",
    known: Known = None,
    entity: str | None = None,
    currency: str | None = None,
    customer_ref: str | None = None,
    invoice_ref: str | None = None,
    use_checkpoints: bool = True,
    limit: int | None = None,
) -> list[Balance]:
    """Open balances at the end of ``as_of`` per invoice, customer, entity (and currency) or currency: one query.

    Every invoice raised on or before the date counts (zero balances included, so a customer who had paid shows
    0). ``known``: only what the ledger had recorded by then (a date: by the end of that day, UTC); an invoice it
    did not know yet shows 0. ``use_checkpoints=False``: from the movements alone (the same answer, for checking).
    ``limit``: the first rows only, in the same order (a page cannot show a million invoices; the CLI has them all).
    """
    if level not in LEVELS:
        raise WriteoffError(f"balance level must be one of {', '.join(LEVELS)}, not {level!r}")
    m, i, c = invoice_movements.c, invoices.c, customers.c
    key = {"invoice": i.invoice_ref, "customer": c.customer_ref, "entity": i.entity_code, "currency": i.currency}[level]
    ent = literal("") if level == "currency" else i.entity_code
    cp = choose_checkpoint(conn, as_of, known) if use_checkpoints else None
    if cp is not None:  # from the nearest checkpoint (see "checkpoints" above)
        sql = checkpoint_balances_sql(conn.dialect.name, known=known is not None)
        moved = text(sql).bindparams(**aged_params(as_of, known, cp)).columns(invoice_id=ID, balance=MONEY).subquery()
        balance = func.coalesce(moved.c.balance, 0)
        source = invoices.outerjoin(moved, moved.c.invoice_id == i.id)
    else:  # current balance minus what came later (see later_movements_sql for why, and the invariant it relies on)
        later_when = m.effective_date > as_of
        if known is not None:
            later_when = or_(later_when, m.recorded_at > known_param(known))
        later = (
            select(m.invoice_id, func.sum(m.balance_change).label("later")).where(later_when).group_by(m.invoice_id)
        ).subquery()
        balance = i.open_balance - func.coalesce(later.c.later, 0)
        source = invoices.outerjoin(later, later.c.invoice_id == i.id)
    bulk.set_local_work_mem(conn)  # the per-invoice sums of a month's movements: hashed in memory, not spilled
    q = (
        select(ent.label("entity"), i.currency, key.label("key"), func.sum(balance), func.count().filter(balance > 0))
        .select_from(source.join(customers, customers.c.id == i.customer_id))
        .where(i.invoice_date <= as_of, *_filters(entity, currency, customer_ref, invoice_ref))
        .group_by(ent, i.currency, key)
        .order_by(ent, i.currency, key)
    )
    if limit is not None:
        q = q.limit(limit)
    return [
        Balance(e, cur, k, Decimal(0) if bal is None else bal, int(n or 0)) for e, cur, k, bal, n in conn.execute(q)
    ]


# --- aging ------------------------------------------------------------------------------------------------------------


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
    if dialect == "postgresql":
        dpd = f"(CAST(:d AS DATE) - i.{basis})"
        day = "CAST(:d AS DATE)"
    else:
        dpd = f"CAST(julianday(:d) - julianday(i.{basis}) AS INTEGER)"
        day = ":d"
    if checkpoint:
        joins, balance, present = checkpoint_join_sql(dialect, known=known)
        return f"""
        SELECT i.id AS invoice_id, i.entity_code, i.currency, i.customer_id, {dpd} AS days_past_due,
               {bucket_case_text(dpd, buckets)} AS bucket, {balance} AS open_balance
        FROM invoices i {joins}
        WHERE i.invoice_date <= {day} AND {present} AND {balance} > 0
    """
    return f"""
        SELECT i.id AS invoice_id, i.entity_code, i.currency, i.customer_id, {dpd} AS days_past_due,
               {bucket_case_text(dpd, buckets)} AS bucket, i.open_balance - COALESCE(x.later, 0) AS open_balance
        FROM invoices i
        LEFT JOIN ({later_movements_sql(known=known, day=day)}) x ON x.invoice_id = i.id
        WHERE i.invoice_date <= {day} AND (i.open_balance > 0 OR x.invoice_id IS NOT NULL)
          AND i.open_balance - COALESCE(x.later, 0) > 0
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


#: A ``:known`` bound that every ``recorded_at`` is below (text comparison).
EVERYTHING = "9999"


def known_param(known: Known) -> str:
    """The ``:known`` bound of :func:`aged_invoices_sql` for an "as known at" value (inclusive)."""
    if known is None:
        return EVERYTHING
    if isinstance(known, str):
        return known
    if isinstance(known, datetime):
        return recorded_text(known)
    # The end of that day: everything recorded before the next midnight (UTC).
    return recorded_text(datetime.combine(known + timedelta(days=1), time()) - timedelta(microseconds=1))


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


# --- what changed -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    entity: str
    currency: str
    kind: str
    movements: int
    invoices: int
    balance_change: Decimal


def changes_between(
    conn: Connection,
    start: date,
    end: date,
    *,
    known: Known = None,
    entity: str | None = None,
    currency: str | None = None,
    customer_ref: str | None = None,
    invoice_ref: str | None = None,
) -> list[Change]:
    """What moved after ``start`` up to and including ``end`` (effective dates), per entity, currency and kind.

    The balance as of ``end`` is the balance as of ``start`` plus these changes (tested): one query.
    """
    if end < start:
        raise WriteoffError(f"changes between {start} and {end}: the end is before the start")
    m, i = invoice_movements.c, invoices.c
    q = (
        select(
            i.entity_code,
            i.currency,
            m.kind,
            func.count(),
            func.count(m.invoice_id.distinct()),
            func.sum(m.balance_change),
        )
        .select_from(
            invoice_movements.join(invoices, invoices.c.id == m.invoice_id).join(
                customers, customers.c.id == i.customer_id
            )
        )
        .where(
            m.effective_date > start,
            m.effective_date <= end,
            _known_filter(known),
            *_filters(entity, currency, customer_ref, invoice_ref),
        )
        .group_by(i.entity_code, i.currency, m.kind)
        .order_by(i.entity_code, i.currency, m.kind)
    )
    return [
        Change(e, cur, k, int(n), int(ni), Decimal(0) if s is None else s) for e, cur, k, n, ni, s in conn.execute(q)
    ]


def changes_level(customer_ref: str | None, invoice_ref: str | None) -> Level:
    """The level of the balances shown at both ends of "what changed": the narrowest the filters name (an invoice,
    a customer), else per entity; so the two lists stay short whatever the ledger's size."""
    return "invoice" if invoice_ref else "customer" if customer_ref else "entity"


def invoice_history(
    conn: Connection,
    entity: str,
    invoice_ref: str,
    *,
    after: date | None = None,
    through: date | None = None,
    known: Known = None,
) -> list[dict[str, Any]]:
    """Every movement of one invoice, in order (effective date, then as recorded), with the invoice's currency.

    ``after``/``through``: only those effective after the one day up to and including the other (the dates of
    :func:`changes_between`); ``known``: only those recorded by then (as in :func:`balances_as_of`).
    """
    m, i = invoice_movements.c, invoices.c
    when = [_known_filter(known)]
    if after is not None:
        when.append(m.effective_date > after)
    if through is not None:
        when.append(m.effective_date <= through)
    rows = conn.execute(
        select(m.effective_date, m.recorded_at, m.kind, m.balance_change, m.status, m.ref, i.currency)
        .select_from(invoice_movements.join(invoices, invoices.c.id == m.invoice_id))
        .where(i.entity_code == entity, i.invoice_ref == invoice_ref, *when)
        .order_by(m.effective_date, m.id)
    ).all()
    return [
        {
            "effective_date": r.effective_date,
            "recorded_at": r.recorded_at,
            "kind": r.kind,
            "balance_change": r.balance_change,
            "currency": r.currency,
            "status": r.status,
            "ref": r.ref,
        }
        for r in rows
    ]


# --- sub-ledger vs GL at a date -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GlComparison:
    entity: str
    currency: str
    subledger: Decimal  # open AR as of the date, from movements
    gl: Decimal  # AR control: posted lines dated on or before the date
    difference: Decimal  # gl - subledger


def compare_with_gl(conn: Connection, as_of: date, *, known: Known = None) -> list[GlComparison]:
    """Sub-ledger open AR vs the GL's AR control account at the end of ``as_of``, per entity and currency: one query.

    A difference is a cut-off (or worse): e.g. an invoice raised before the date that first arrived in a later
    extract is in the sub-ledger as of its invoice date, while the AR sync entry that booked it is dated the day of
    that extract.
    """
    params = aged_params(as_of, known)
    day = "CAST(:d AS DATE)" if conn.dialect.name == "postgresql" else ":d"
    later = later_movements_sql(known=known is not None, day=day)
    bulk.set_local_work_mem(conn)
    rows = conn.execute(
        text(
            f"""
            WITH sub AS (
                SELECT i.entity_code, i.currency, SUM(i.open_balance - COALESCE(x.later, 0)) AS amount
                FROM invoices i LEFT JOIN ({later}) x ON x.invoice_id = i.id
                WHERE i.invoice_date <= {day}
                GROUP BY i.entity_code, i.currency),
            gl AS (
                SELECT l.entity_code, l.currency, SUM(l.debit - l.credit) AS amount
                FROM journal_lines l
                JOIN journal_entries e ON e.id = l.entry_id AND e.status = 'posted' AND e.posting_date <= {day}
                JOIN accounts a ON a.entity_code = l.entity_code AND a.code = l.account_code AND a.role = 'ar_control'
                GROUP BY l.entity_code, l.currency),
            k AS (SELECT entity_code, currency FROM sub UNION SELECT entity_code, currency FROM gl)
            SELECT k.entity_code, k.currency, sub.amount, gl.amount
            FROM k
            LEFT JOIN sub ON sub.entity_code = k.entity_code AND sub.currency = k.currency
            LEFT JOIN gl ON gl.entity_code = k.entity_code AND gl.currency = k.currency
            ORDER BY k.entity_code, k.currency
            """
        ),
        params,
    ).all()
    out = []
    for entity, currency, sub, gl in rows:
        s = from_db(conn, sub) or Decimal(0)
        g = from_db(conn, gl) or Decimal(0)
        out.append(GlComparison(entity, currency, s, g, g - s))
    return out
