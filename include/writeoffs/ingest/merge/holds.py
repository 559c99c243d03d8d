"""Holds derived from the invoices' dispute and payment-plan flags: opened for flagged invoices, closed when the flag
goes (only the holds this ingestion opened), and disputes on paid invoices closed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from writeoffs.db import stats
from writeoffs.ingest.merge.common import _sql

#: Hold types derived from invoice flags: a dispute from ``disputed`` (since ``dispute_since``, else the as-of
#: date), a payment plan from ``payment_plan`` (since the as-of date). Both are opened by ``sql/holds_open.sql``;
#: each is closed, when its flag goes, by ``sql/holds_close_<hold type>.sql``.
_HOLD_TYPES = ("dispute", "payment_plan")
_CLOSE = {"dispute": "holds_close_dispute", "payment_plan": "holds_close_payment_plan"}


def _merge_holds(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    note = f"ingest:{p['src']}"
    # Without fresh statistics the planner takes holds for empty and anti-joins thousands of new holds against it
    # in a nested loop (measured: 12 s on a re-run of a million invoices instead of 0.3 s).
    stats.analyze(conn, ("holds",))

    def open_ingest_holds() -> dict[str, int]:
        # Only holds this ingestion opened are closed by it; holds set by people stay until people end them.
        return dict(
            conn.execute(
                text(
                    "SELECT hold_type, COUNT(*) FROM holds WHERE end_date IS NULL AND note = :note GROUP BY hold_type"
                ),
                {"note": note},
            ).all()
        )

    before = open_ingest_holds()
    # Both hold types in one statement: the invoices (a million fresh rows on a first load) are joined once.
    # The open holds are read once, before the first insert (MATERIALIZED): a NOT EXISTS probing holds directly
    # would re-read the pages this very statement is filling, once per new hold (quadratic: 3.7 s for 30k holds).
    _sql(conn, "holds_open", {**p, "note": note})
    # The insert only adds open ingestion holds, and the invoices lock keeps other merges out: the difference is
    # exactly what it opened.
    after = open_ingest_holds()
    for hold_type in _HOLD_TYPES:
        out[f"{hold_type}_holds_opened"] = after.get(hold_type, 0) - before.get(hold_type, 0)
        # Counted before the insert: the holds it opened are on flagged invoices, never the ones to close.
        if not before.get(hold_type):
            out[f"{hold_type}_holds_closed"] = 0
            continue
        stats.analyze(conn, ("holds",))  # a few rows against a million: the planner must know it
        out[f"{hold_type}_holds_closed"] = _sql(conn, _CLOSE[hold_type], {**p, "ht": hold_type, "note": note})
    # A dispute on an invoice that is paid in full is over, whoever opened the hold: it is closed here (set-wise,
    # counted in the merge summary that the ingest.merged audit row records) and none is opened above, so an
    # export that keeps flagging a paid invoice disputed does not open and close a hold every day. Payment-plan
    # holds and holds on written-off invoices are left to people (their end is a resolution someone records).
    out["dispute_holds_closed_on_paid"] = _sql(conn, "holds_close_on_paid", p)
    return out
