"""What-if: evaluate a draft policy against any past as-of date, read-only, and compare with what really happened.

The draft runs through the same decision query as production (:mod:`writeoffs.policy.selection`, with the same
screen as the live run) in point-in-time mode: balances are rebuilt as they stood on the date (today's balance plus
what was paid or written off since), activities, holds and payments are counted up to the date. Nothing is
written: the transaction is read-only (PostgreSQL ``SET TRANSACTION READ ONLY``; SQLite ``PRAGMA query_only``) and
rolled back.

The comparison answers the controller's questions about a draft:
- *selected*: what the draft would have written off on that date, by reason and aging bucket;
- *also actually written off*: selected and really written off (a posted write-off dated on/after the as-of),
  and how much of that was later recovered;
- *draft only*: selected but never written off, and how much of it customers paid afterwards (money the draft
  would have written off prematurely);
- *actual only*: really written off later but not selected by the draft (and their recoveries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, case, func, select, union_all

from writeoffs.db import dialect
from writeoffs.db.schema import writeoffs
from writeoffs.money import money_str
from writeoffs.policy.schema import Policy
from writeoffs.policy.selection import Scope, decision_query, screened_out_query

_Q4 = Decimal("0.0001")


def _m(value: Any) -> str:
    return money_str(Decimal(str(value or 0)).quantize(_Q4))


@dataclass(frozen=True)
class WhatIfReport:
    as_of: date
    policy_version: str
    policy_hash: str
    evaluated: int
    #: (currency, reason, bucket, count, amount)
    selected: list[tuple[str, str, str, int, str]] = field(default_factory=list)
    #: (outcome, rule, count): why invoices were excluded or not eligible, and which rules fired
    outcomes: list[tuple[str, str, int]] = field(default_factory=list)
    #: currency -> metric -> value (counts as int, money as str)
    comparison: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "policy_version": self.policy_version,
            "policy_hash": self.policy_hash,
            "evaluated": self.evaluated,
            "selected": [
                {"currency": c, "reason": r, "bucket": b, "count": n, "amount": a} for c, r, b, n, a in self.selected
            ],
            "outcomes": [{"outcome": o, "rule": r, "count": n} for o, r, n in self.outcomes],
            "comparison": self.comparison,
        }

    def render(self) -> str:
        out = [
            f"What-if: policy {self.policy_version} ({self.policy_hash[:12]}) as of {self.as_of.isoformat()}, "
            f"{self.evaluated:,} invoices evaluated",
            "",
            "Selected by reason and aging bucket:",
            f"  {'currency':<8} {'reason':<34} {'bucket':<9} {'count':>8} {'amount':>20}",
        ]
        out += [f"  {c:<8} {r:<34} {b:<9} {n:>8,} {a:>20}" for c, r, b, n, a in self.selected] or ["  (none)"]
        out += ["", "Decisions by rule:", f"  {'outcome':<13} {'rule':<34} {'count':>8}"]
        out += [f"  {o:<13} {r:<34} {n:>8,}" for o, r, n in self.outcomes]
        out += ["", "Compared with what was actually written off (posted, dated on/after the as-of):"]
        for cur, m in sorted(self.comparison.items()):
            out.append(
                f"  {cur}: draft selects {m['selected_count']:,} / {m['selected_amount']}; "
                f"also actually written off {m['both_count']:,} / {m['both_actual_amount']} "
                f"(later recovered {m['both_recovered']}); "
                f"draft only {m['draft_only_count']:,} / {m['draft_only_amount']} "
                f"(of which later paid {m['draft_only_later_paid']}); "
                f"actual only {m['actual_only_count']:,} / {m['actual_only_amount']} "
                f"(later recovered {m['actual_only_recovered']})"
            )
        return "\n".join(out)


def whatif(engine: Engine, draft: Policy, as_of: date) -> WhatIfReport:
    """Run the backtest in its own read-only transaction, always rolled back."""
    with engine.connect() as conn:
        try:
            dialect.read_only(conn)
            return whatif_on(conn, draft, as_of)
        finally:
            conn.rollback()
            dialect.end_read_only(conn)


def whatif_on(conn: Connection, draft: Policy, as_of: date) -> WhatIfReport:
    """One read-only statement: the screened decision (:func:`~writeoffs.policy.selection.decision_query` with
    ``screen=True``) plus the screened-out invoices (``not_eligible`` / ``under_threshold`` without aggregating
    anything for them), joined with what was really written off and grouped once; the three views of the report
    are sums over those few groups. No temporary tables: the transaction is read-only."""
    scope = Scope(as_of, point_in_time=True)
    decided = union_all(
        decision_query(conn, draft, scope, screen=True), screened_out_query(conn, draft, scope)
    ).subquery("decided")
    d = decided.c
    w = writeoffs
    actual = (
        select(w.c.invoice_id, func.sum(w.c.amount).label("actual_amount"))
        .where(w.c.status == "posted", w.c.as_of_date >= as_of)
        .group_by(w.c.invoice_id)
        .subquery("actual")
    )
    a = actual.c
    act = case((a.invoice_id.is_not(None), 1), else_=0)
    groups = conn.execute(
        select(
            d.currency,
            d.outcome,
            d.rule,
            d.reason_code,
            d.bucket,
            act.label("act"),
            func.count(),
            func.sum(d.amount),
            func.sum(func.coalesce(a.actual_amount, 0)),
            func.sum(func.coalesce(d.recovered_amount, 0)),
            func.sum(func.coalesce(d.later_paid, 0)),
        )
        .select_from(decided.outerjoin(actual, a.invoice_id == d.invoice_id))
        .group_by(d.currency, d.outcome, d.rule, d.reason_code, d.bucket, act)
    ).all()

    selected: dict[tuple[str, str, str], list[Any]] = {}
    outcomes: dict[tuple[str, str], int] = {}
    metrics: dict[str, dict[str, Any]] = {}
    for cur, outcome, rule, reason, bucket, actual_flag, n, amount, actual_amount, recovered, later_paid in groups:
        n, amount, actual_amount = int(n), Decimal(str(amount or 0)), Decimal(str(actual_amount or 0))
        recovered, later_paid = Decimal(str(recovered or 0)), Decimal(str(later_paid or 0))
        outcomes[(outcome, rule)] = outcomes.get((outcome, rule), 0) + n
        m = metrics.setdefault(cur, dict.fromkeys(_KEYS, 0))
        sel, act_ = outcome == "candidate", bool(actual_flag)
        if sel:
            acc = selected.setdefault((cur, reason, bucket), [0, Decimal(0)])
            acc[0] += n
            acc[1] += amount
            m["selected_count"] += n
            m["selected_amount"] += amount
        if sel and act_:
            m["both_count"] += n
            m["both_actual_amount"] += actual_amount
            m["both_recovered"] += recovered
        elif sel:
            m["draft_only_count"] += n
            m["draft_only_amount"] += amount
            m["draft_only_later_paid"] += later_paid
        elif act_:
            m["actual_only_count"] += n
            m["actual_only_amount"] += actual_amount
            m["actual_only_recovered"] += recovered
    comparison = {
        cur: {k: (int(v) if k.endswith("_count") else _m(v)) for k, v in m.items()}
        for cur, m in sorted(metrics.items())
    }
    return WhatIfReport(
        as_of=as_of,
        policy_version=draft.version,
        policy_hash=draft.content_hash,
        evaluated=sum(outcomes.values()),
        selected=[(c, r, b, int(v[0]), _m(v[1])) for (c, r, b), v in sorted(selected.items())],
        outcomes=[(o, r, n) for (o, r), n in sorted(outcomes.items())],
        comparison=comparison,
    )


#: Comparison metrics per currency, in report order.
_KEYS = (
    "selected_count",
    "selected_amount",
    "both_count",
    "both_actual_amount",
    "both_recovered",
    "draft_only_count",
    "draft_only_amount",
    "draft_only_later_paid",
    "actual_only_count",
    "actual_only_amount",
    "actual_only_recovered",
)
