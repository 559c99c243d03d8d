"""The resolved policy in SQL: the policy resolved for every (entity, segment) of the ledger as two small literal
tables (:func:`param_tables`, also used by charge-off) and the approval tier as a CASE (:func:`_tier_case`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Connection, Integer, String, and_, case, false, literal, or_, select

from writeoffs.db.schema import MONEY, customers
from writeoffs.policy.schema import Policy, Rules
from writeoffs.policy.sqlx import rows_table, typed
from writeoffs.tiers import AUTO_TIER

_PARAM_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("entity_code", String(16)),
    ("segment", String(32)),
    ("charge_off_days", Integer()),
    ("writeoff_days", Integer()),
    ("min_attempts", Integer()),
    ("min_letters", Integer()),
    ("min_agency_days", Integer()),
    ("excl_dispute", Boolean()),
    ("excl_plan", Boolean()),
    ("recent_days", Integer()),
    ("small_days", Integer()),
    ("partial_allowed", Boolean()),
    ("partial_settlements", Boolean()),
    ("bk_days", Integer()),  # NULL: route disabled
    ("dis_days", Integer()),
    ("dl_days", Integer()),
    ("st_days", Integer()),
    ("statute_days", Integer()),
    ("child_full", Boolean()),
    ("parent_paid_excl", Boolean()),
    ("cooling_days", Integer()),  # NULL: a reversed invoice waits for a person to clear it
)
_CURRENCY_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("entity_code", String(16)),
    ("segment", String(32)),
    ("currency", String(3)),
    ("tolerance", MONEY),
    ("legal_above", MONEY),
)


def _route_days(route: Any) -> int | None:
    return route.min_days_past_due if route.enabled else None


def resolved_layers(conn: Connection, policy: Policy) -> list[tuple[str, str, Rules]]:
    """The policy resolved for every (entity, segment) present in the ledger."""
    pairs = conn.execute(select(customers.c.entity_code, customers.c.segment).distinct()).all()
    return [(entity, segment, policy.rules_for(entity, segment)) for entity, segment in sorted(pairs)]


def param_tables(
    conn: Connection, policy: Policy, layers: list[tuple[str, str, Rules]] | None = None
) -> tuple[Any, Any]:
    """The resolved policy (:func:`resolved_layers`) as two small literal tables."""
    rows, cur_rows = [], []
    for entity, segment, r in resolved_layers(conn, policy) if layers is None else layers:
        rows.append(
            (
                entity,
                segment,
                r.charge_off_days,
                r.writeoff_days,
                r.effort.min_contact_attempts,
                r.effort.min_demand_letters,
                r.effort.min_agency_days,
                r.exclusions.open_dispute,
                r.exclusions.active_payment_plan,
                r.exclusions.recent_payment_days,
                r.small_balance.min_days_past_due,
                r.partial.allowed,
                r.partial.settlements,
                _route_days(r.bankruptcy),
                _route_days(r.dissolved),
                _route_days(r.dispute_lost),
                _route_days(r.settlement),
                r.statute_days,
                r.parent_child.child_full_only,
                r.parent_child.exclude_if_parent_paid_transferred,
                r.reversal_cooling_days,
            )
        )
        tol, legal = r.small_balance.tolerance, r.effort.legal_action_required_above
        for cur in sorted(set(tol) | set(legal)):
            cur_rows.append((entity, segment, cur, tol.get(cur), legal.get(cur)))
    return rows_table("params", _PARAM_COLUMNS, rows), rows_table("cur_params", _CURRENCY_COLUMNS, cur_rows)


def _tier_case(amount: Any, currency: Any, tolerance: Any, policy: Policy) -> Any:
    """``writeoffs.tiers.tier_for`` in SQL, with ``auto`` at or below the small-balance tolerance."""
    whens: list[tuple[Any, Any]] = [(and_(tolerance.is_not(None), amount <= tolerance), literal(AUTO_TIER))]
    tiers = policy.tiers
    for t in tiers[:-1]:
        # Tier.covers: only the currencies the tier has a limit for (anything else goes up, and the top tier refuses
        # what the policy names no limit for when the batch is approved). Batch totals are checked at approval.
        covered = [and_(currency == cur, amount <= typed(lim, MONEY)) for cur, lim in t.limits.items()]
        whens.append((or_(*covered) if covered else false(), literal(t.name)))
    return case(*whens, else_=literal(tiers[-1].name))
