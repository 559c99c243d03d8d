"""The decision query builder (:class:`_Plan`): population (optionally screened to the invoices that can reach a
route), collection effort, then holds, payments, parent/child facts, route, exclusion, amount, tier and evidence.

Submodules: :mod:`.steps` (:class:`_Plan`: population, screen, effort, and the facts each decision needs),
:mod:`.route` (route, exclusion, outcome, tier and evidence over those facts).
"""

from __future__ import annotations

from writeoffs.policy.selection.plan.steps import _Plan

__all__ = ["_Plan"]
