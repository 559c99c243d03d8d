"""Balance checkpoints: every invoice's balance at a period end, so that "as of D" reads a month of movements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Connection, func, select, text

from writeoffs.db import bulk, dialect
from writeoffs.db.schema import aging_runs, balance_checkpoints, invoice_movements
from writeoffs.errors import WriteoffError
from writeoffs.subledger.common import Known, known_param

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
    attributes_through: int  # the highest invoice_attribute_changes id when built: later ones are not in its rows


def checkpoints(conn: Connection, as_of: date | None = None) -> list[Checkpoint]:
    """The built checkpoints, oldest first (or the one of ``as_of``)."""
    c = balance_checkpoints.c
    q = select(c.id, c.as_of_date, c.movements_through, c.recorded_through, c.attributes_through)
    q = q.order_by(c.as_of_date)
    if as_of is not None:
        q = q.where(c.as_of_date == as_of)
    return [Checkpoint(int(i), d, int(hw), rec, int(ahw)) for i, d, hw, rec, ahw in conn.execute(q)]


#: What a checkpoint row copies from its invoice when built (migration 0017): what the aging groups and dates by.
CHECKPOINT_ATTRIBUTES = ("entity_code", "currency", "customer_id", "invoice_date", "due_date")


def build_checkpoint(conn: Connection, as_of: date) -> Checkpoint:
    """Build the checkpoint of ``as_of`` in the caller's transaction; idempotent (an existing one is returned as is).

    The header takes the high-water marks (the highest movement id, the latest ``recorded_at`` up to it, the highest
    attribute change id), then ONE ``INSERT ... SELECT`` sums those movements per invoice (non-zero balances only)
    and copies each invoice's :data:`CHECKPOINT_ATTRIBUTES`; a last one sums the positive balances per
    :data:`SUMMARY_GROUPS` (what the as-of aging buckets). On PostgreSQL the writers of movements and attribute
    changes wait for the build (``invoices`` locked ``SHARE ROW EXCLUSIVE``: both are written by a trigger on
    ``invoices`` in the statement that changes it), so none with a lower id can commit after the marks were taken
    and the copied attributes are those up to the mark; on SQLite the first write holds the database's only write
    lock until the commit.
    """
    found = checkpoints(conn, as_of)
    if found:
        return found[0]
    if dialect.of(conn).row_locks:  # SQLite: the writer lock of the transaction's first write serialises builds
        conn.execute(text("LOCK TABLE invoices IN SHARE ROW EXCLUSIVE MODE"))
        found = checkpoints(conn, as_of)  # built meanwhile by another run (the lock excludes itself)
        if found:
            return found[0]
    day = dialect.of(conn).date(":d")
    conn.execute(
        text(
            f"""INSERT INTO balance_checkpoints (as_of_date, movements_through, recorded_through, attributes_through)
                SELECT {day}, COALESCE(MAX(id), 0), COALESCE(MAX(recorded_at), ''),
                       (SELECT COALESCE(MAX(a.id), 0) FROM invoice_attribute_changes a)
                FROM invoice_movements"""
        ),
        {"d": as_of.isoformat()},
    )
    built = checkpoints(conn, as_of)
    if not built:
        raise WriteoffError(f"checkpoint of {as_of}: the header was not written")
    bulk.set_local_work_mem(conn)
    conn.execute(
        text(
            f"""INSERT INTO balance_checkpoint_rows
                    (checkpoint_id, invoice_id, balance, {", ".join(CHECKPOINT_ATTRIBUTES)})
                SELECT :cp, s.invoice_id, s.balance, {", ".join(f"i.{a}" for a in CHECKPOINT_ATTRIBUTES)}
                FROM (SELECT m.invoice_id, SUM(m.balance_change) AS balance FROM invoice_movements m
                      WHERE m.effective_date <= {day} AND m.id <= :hw
                      GROUP BY m.invoice_id HAVING SUM(m.balance_change) <> 0) s
                JOIN invoices i ON i.id = s.invoice_id"""
        ),
        {"cp": built[0].id, "d": as_of.isoformat(), "hw": built[0].movements_through},
    )
    conn.execute(text(_SUMMARY_INSERT), {"cp": built[0].id})
    return built[0]


#: A checkpoint's summary (migration 0017): its positive balances per entity, currency, invoice date and due date,
#: from its own rows. Reconciliation's ``checkpoints`` check recomputes it with the same grouping.
SUMMARY_GROUPS = ("entity_code", "currency", "invoice_date", "due_date")
_SUMMARY_INSERT = f"""
    INSERT INTO balance_checkpoint_summary (checkpoint_id, {", ".join(SUMMARY_GROUPS)}, invoice_count, balance)
    SELECT :cp, {", ".join(SUMMARY_GROUPS)}, COUNT(*), SUM(balance) FROM balance_checkpoint_rows
    WHERE checkpoint_id = :cp AND balance > 0 GROUP BY {", ".join(SUMMARY_GROUPS)}"""


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


def checkpoint_moves_sql(d: dialect.Dialect, *, known: bool = False) -> str:
    """SQL of ``invoice_id, change``: per invoice, what the movements add to the checkpoint ``:cp`` (of date ``:c``,
    high-water mark ``:hw``) to reach the end of ``:d`` (see "checkpoints" above); with ``known``, only what was
    recorded up to ``:known``. Parameters from :func:`aged_params`."""
    day, c, lo, hi = (d.date(p) for p in (":d", ":c", ":lo", ":hi"))
    rec = " AND m.recorded_at <= :known" if known else ""
    plus = f"m.effective_date <= {day}{rec}"
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


def checkpoint_join_sql(d: dialect.Dialect, *, known: bool = False) -> tuple[str, str, str]:
    """How a query over ``invoices i`` reads balances at the end of ``:d`` from a checkpoint: the joins to add after
    ``FROM invoices i``, the balance expression, and the condition "may have a balance" (the checkpoint's row or a
    movement). Joined to the invoices like the later movements of the exact path: the invoices are scanned once and
    the checkpoint's rows and the movements' sums are hashed."""
    joins = f"""
        LEFT JOIN balance_checkpoint_rows b ON b.checkpoint_id = :cp AND b.invoice_id = i.id
        LEFT JOIN ({checkpoint_moves_sql(d, known=known)}) x ON x.invoice_id = i.id"""
    present = "(b.invoice_id IS NOT NULL OR x.invoice_id IS NOT NULL)"
    return joins, "COALESCE(b.balance, 0) + COALESCE(x.change, 0)", present


def checkpoint_balances_sql(d: dialect.Dialect, *, known: bool = False) -> str:
    """SQL of ``invoice_id, balance`` at the end of ``:d`` for every invoice whose balance may be non-zero, from a
    checkpoint (:func:`checkpoint_join_sql`)."""
    joins, balance, present = checkpoint_join_sql(d, known=known)
    return f"SELECT i.id AS invoice_id, {balance} AS balance FROM invoices i {joins} WHERE {present}"
