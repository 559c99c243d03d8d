"""Reading decisions: the one-statement decision query (:func:`decision_query`), the decisions its screen leaves
out (:func:`screened_out_query`, for the what-if) and every decision as dicts (:func:`decisions`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection, Select

from writeoffs.policy.schema import Policy
from writeoffs.policy.selection.model import Scope
from writeoffs.policy.selection.plan import _Plan


def decision_query(conn: Connection, policy: Policy, scope: Scope, *, screen: bool = False) -> Select[Any]:
    """One row per evaluated invoice with its outcome, rule, reason, amount, tier and evidence (JSON text).

    One statement of CTEs. ``screen`` evaluates only the invoices that can reach a route (the live run and the
    what-if use it; :meth:`_Plan.screened_out` gives the rest); without it every invoice in scope gets its full
    decision and evidence (explanations, tests, small ledgers).
    """
    plan = _Plan(conn, policy, scope)
    pop = plan.population(screen=True if screen else None).cte("pop")
    return plan.decide(pop, plan.effort(pop).cte("effort"))


def screened_out_query(conn: Connection, policy: Policy, scope: Scope) -> Select[Any]:
    """The decisions ``decision_query(..., screen=True)`` leaves out (all ``not_eligible`` / ``under_threshold``)."""
    return _Plan(conn, policy, scope).screened_out()


def decisions(conn: Connection, policy: Policy, as_of: date, *, point_in_time: bool = False) -> list[dict[str, Any]]:
    """Every decision as dicts (tests, small ledgers, explanations); use the SQL aggregates for large ones."""
    q = decision_query(conn, policy, Scope(as_of, point_in_time))
    return [dict(row._mapping) for row in conn.execute(q)]
