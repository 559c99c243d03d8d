"""What-if: evaluate a draft policy against any past as-of date, read-only, and compare with what really happened.

The draft runs through the same decision query as production (:mod:`writeoffs.policy.selection`) in
point-in-time mode: balances are rebuilt as they stood on the date (today's balance plus what was paid or written
off since), activities, holds and payments are counted up to the date. Nothing is written: the transaction is
read-only (PostgreSQL ``SET TRANSACTION READ ONLY``; SQLite ``PRAGMA query_only``) and rolled back.

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

from sqlalchemy import Connection, Engine, and_, case, func, select, text

from writeoffs.db.schema import writeoffs
from writeoffs.money import money_str
from writeoffs.policy.schema import Policy
from writeoffs.policy.selection import Scope, decision_query

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


def _read_only(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET TRANSACTION READ ONLY"))
    else:
        conn.exec_driver_sql("PRAGMA query_only = ON")


def whatif(engine: Engine, draft: Policy, as_of: date) -> WhatIfReport:
    """Run the backtest in its own read-only transaction, always rolled back."""
    with engine.connect() as conn:
        try:
            _read_only(conn)
            return whatif_on(conn, draft, as_of)
        finally:
            conn.rollback()
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA query_only = OFF")


def whatif_on(conn: Connection, draft: Policy, as_of: date) -> WhatIfReport:
    dq = decision_query(conn, draft, Scope(as_of, point_in_time=True)).cte("decided")
    d = dq.c
    w = writeoffs
    actual = (
        select(w.c.invoice_id, func.sum(w.c.amount).label("actual_amount"))
        .where(w.c.status == "posted", w.c.as_of_date >= as_of)
        .group_by(w.c.invoice_id)
        .cte("actual")
    )
    a = actual.c

    selected = conn.execute(
        select(d.currency, d.reason_code, d.bucket, func.count(), func.sum(d.amount))
        .where(d.outcome == "candidate")
        .group_by(d.currency, d.reason_code, d.bucket)
        .order_by(d.currency, d.reason_code, d.bucket)
    ).all()
    outcomes = conn.execute(
        select(d.outcome, d.rule, func.count()).group_by(d.outcome, d.rule).order_by(d.outcome, d.rule)
    ).all()

    sel = d.outcome == "candidate"
    act = a.invoice_id.is_not(None)

    def n(cond: Any) -> Any:
        return func.sum(case((cond, 1), else_=0))

    def s(cond: Any, value: Any) -> Any:
        return func.sum(case((cond, value), else_=0))

    both, draft_only, actual_only = and_(sel, act), and_(sel, ~act), and_(~sel, act)
    comp_rows = conn.execute(
        select(
            d.currency,
            n(sel),
            s(sel, d.amount),
            n(both),
            s(both, a.actual_amount),
            s(both, d.recovered_amount),
            n(draft_only),
            s(draft_only, d.amount),
            s(draft_only, d.later_paid),
            n(actual_only),
            s(actual_only, a.actual_amount),
            s(actual_only, d.recovered_amount),
        )
        .select_from(dq.outerjoin(actual, a.invoice_id == d.invoice_id))
        .group_by(d.currency)
        .order_by(d.currency)
    ).all()
    keys = (
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
    comparison = {
        r[0]: {k: (int(v or 0) if k.endswith("_count") else _m(v)) for k, v in zip(keys, r[1:], strict=True)}
        for r in comp_rows
    }
    return WhatIfReport(
        as_of=as_of,
        policy_version=draft.version,
        policy_hash=draft.content_hash,
        evaluated=sum(int(r[2]) for r in outcomes),
        selected=[(r[0], r[1], r[2], int(r[3]), _m(r[4])) for r in selected],
        outcomes=[(r[0], r[1], int(r[2])) for r in outcomes],
        comparison=comparison,
    )
