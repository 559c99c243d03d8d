"""Write-off candidate selection: one set-wise SQL decision per invoice, with the rule that fired and its evidence.

The decision query (:func:`decision_query`) evaluates every open invoice against the resolved policy in a single
statement of CTEs: collection effort, holds, payments and parent/child facts are aggregated once per invoice, then
one CASE picks the route (first that applies, in the documented order), a second the exclusion that blocks it.
Writing candidates is one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` on top of the same query; the what-if
backtest runs the very same query read-only, so a draft policy is judged by exactly the code that would run it.

Outcome per invoice: ``candidate`` (rule = route), ``excluded`` (a route fired but an exclusion blocks it; rule =
the exclusion) or ``not_eligible`` (no route fired; rule = the closest shortfall, e.g. ``insufficient_letters``).

Layout (imports go one way, downward): side by side :mod:`~writeoffs.policy.selection.model` (statuses, routes,
exclusions, :class:`Scope`) and :mod:`~writeoffs.policy.selection.params` (the resolved policy as literal tables, the
tier CASE); then :mod:`~writeoffs.policy.selection.plan` (the decision query builder) beside
:mod:`~writeoffs.policy.selection.trail` (recording the decision trail); on top
:mod:`~writeoffs.policy.selection.query` (reading decisions) and :mod:`~writeoffs.policy.selection.candidates`
(writing candidates). Every name callers used from ``writeoffs.policy.selection`` is re-exported here.
"""

from writeoffs.policy.selection.candidates import SKIP_DECIDED, SelectionResult, idempotency_prefix, insert_candidates
from writeoffs.policy.selection.model import EXCLUSIONS, IN_FLIGHT, LIVE_STATUSES, ROUTES, Scope, money
from writeoffs.policy.selection.params import param_tables, resolved_layers
from writeoffs.policy.selection.query import decision_query, decisions, screened_out_query
from writeoffs.policy.selection.trail import audit_run, record_decisions, run_ref

__all__ = [
    "EXCLUSIONS",
    "IN_FLIGHT",
    "LIVE_STATUSES",
    "ROUTES",
    "SKIP_DECIDED",
    "Scope",
    "SelectionResult",
    "audit_run",
    "decision_query",
    "decisions",
    "idempotency_prefix",
    "insert_candidates",
    "money",
    "param_tables",
    "record_decisions",
    "resolved_layers",
    "run_ref",
    "screened_out_query",
]
