"""Route, exclusion, outcome, tier and evidence of each invoice of the decision's ``base`` (:func:`route`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Select,
    String,
    and_,
    case,
    false,
    literal,
    not_,
    null,
    or_,
    select,
    true,
)

from writeoffs.accounting.status import InvoiceStatus
from writeoffs.buckets import bucket_case
from writeoffs.policy.schema import Policy
from writeoffs.policy.selection.model import _RECENT_PAYMENT_EXEMPT, ROUTES
from writeoffs.policy.selection.params import _tier_case
from writeoffs.policy.sqlx import days_between, json_bool, json_obj, json_pick, money_text


def route(base: Any, d: Any, policy: Policy, evidence_for: tuple[str, ...] | None = None) -> Select[Any]:
    """One row per invoice of ``base`` with its outcome, rule, reason, amount, tier and evidence (JSON text)."""
    routed = _routed(base, d)
    r = routed.c
    is_child = r.parent_id.is_not(None)
    partial = r.balance < r.invoice_amount
    exclusion = _exclusion(r, d, is_child, partial)
    outcome = case(
        (r.route.is_(None), literal("not_eligible")),
        (exclusion.is_not(None), literal("excluded")),
        else_=literal("candidate"),
    )
    rule = case((r.route.is_(None), r.shortfall), (exclusion.is_not(None), exclusion), else_=r.route)
    evidence = _evidence(r, policy, is_child, partial)
    return select(
        r.invoice_id,
        r.invoice_ref,
        r.entity_code,
        r.currency,
        r.segment,
        r.invoice_amount,
        r.balance,
        r.dpd,
        bucket_case(r.dpd).label("bucket"),
        r.later_paid,
        r.recovered_amount,
        r.written_off_amount,
        outcome.label("outcome"),
        rule.label("rule"),
        r.route,
        r.reason_code,
        r.balance.label("amount"),  # never above the open balance: it *is* the open balance (full or remainder)
        _tier_case(r.balance, r.currency, r.tolerance, policy).label("tier"),
        (evidence if evidence_for is None else case((outcome.in_(evidence_for), evidence), else_=null())).label(
            "evidence"
        ),
    )


def _route_conditions(base: Any, d: Any) -> dict[str, Any]:
    """Per route, the condition on which it fires (in ``ROUTES`` order: the first that holds wins)."""
    b = base.c
    bankrupt_on_date = and_(b.bankruptcy_flag == true(), or_(b.bankruptcy_date.is_(None), b.bankruptcy_date <= d))
    legal_needed = and_(b.legal_above.is_not(None), b.balance > b.legal_above)
    effort_ok = and_(
        b.attempts >= b.min_attempts,
        b.letters >= b.min_letters,
        b.agency_days >= b.min_agency_days,
        or_(not_(legal_needed), b.legal > 0),
    )
    # Keep in step with ``_Plan.reachable`` (plan.steps): every condition here must imply it.
    return {
        "dispute_resolved_lost": and_(b.dl_days.is_not(None), b.disputes_lost > 0, b.dpd >= b.dl_days),
        "settlement_remainder": and_(b.st_days.is_not(None), b.settled > 0, b.dpd >= b.st_days),
        "customer_bankrupt": and_(b.bk_days.is_not(None), bankrupt_on_date, b.dpd >= b.bk_days),
        "customer_dissolved": and_(b.dis_days.is_not(None), b.dissolved == true(), b.dpd >= b.dis_days),
        "statute_days_exceeded": and_(b.statute_days.is_not(None), b.dpd >= b.statute_days),
        "small_balance_aged": and_(
            b.tolerance.is_not(None), b.balance <= b.tolerance, b.small_days.is_not(None), b.dpd >= b.small_days
        ),
        "aged_and_collections_exhausted": and_(b.dpd >= b.writeoff_days, effort_ok),
    }


def _routed(base: Any, d: Any) -> Any:
    """``base`` with the route that fired, the shortfall when none did, and the route's reason (a CTE)."""
    b = base.c
    route_conditions = _route_conditions(base, d)
    route = case(*[(cond, literal(name)) for name, cond in route_conditions.items()], else_=literal(None, String()))
    shortfall = case(
        (b.dpd < b.writeoff_days, literal("under_threshold")),
        (b.attempts < b.min_attempts, literal("insufficient_attempts")),
        (b.letters < b.min_letters, literal("insufficient_letters")),
        (b.agency_days < b.min_agency_days, literal("insufficient_agency_days")),
        else_=literal("legal_action_required"),
    )
    reason = case(
        *[(cond, literal(r.value)) for (name, r), cond in zip(ROUTES, route_conditions.values(), strict=True)]
    )

    return select(base, route.label("route"), shortfall.label("shortfall"), reason.label("reason_code")).cte("routed")


def _exclusion(r: Any, d: Any, is_child: Any, partial: Any) -> Any:
    """The exclusion that stops a routed invoice, or NULL."""
    return case(
        # A write-off somebody deliberately undid is not proposed again automatically (accounting.status).
        (
            and_(
                r.invoice_status == InvoiceStatus.REVERSED,
                or_(
                    r.cooling_days.is_(None),
                    r.reversed_on.is_(None),
                    days_between(d, r.reversed_on) < r.cooling_days,
                ),
            ),
            literal("reversed_hold"),
        ),
        (and_(r.excl_dispute == true(), r.open_dispute > 0), literal("open_dispute")),
        (and_(r.excl_plan == true(), r.active_plan > 0), literal("active_payment_plan")),
        (
            and_(r.parent_paid_excl == true(), is_child, r.transferred == true(), r.parent_paid > 0),
            literal("parent_paid_transferred"),
        ),
        (and_(r.child_full == true(), is_child, partial), literal("child_partial")),
        (
            and_(
                partial,
                case(
                    (r.route == "settlement_remainder", r.partial_settlements),
                    else_=r.partial_allowed,
                )
                == false(),
            ),
            literal("partial_not_allowed"),
        ),
        (
            and_(
                r.recent_days.is_not(None),
                r.last_payment.is_not(None),
                days_between(d, r.last_payment) < r.recent_days,
                r.route.not_in(_RECENT_PAYMENT_EXEMPT),
            ),
            literal("recent_payment"),
        ),
        else_=literal(None, String()),
    )


def _evidence(r: Any, policy: Policy, is_child: Any, partial: Any) -> Any:
    """The evidence of a decision (JSON text): the facts the route, shortfall or exclusion looked at."""
    return json_obj(
        {
            "days_past_due": r.dpd,
            "aging_basis": literal(policy.model.aging_basis),
            "contact_attempts": r.attempts,
            "demand_letters": r.letters,
            "agency_days": r.agency_days,
            "legal_actions": r.legal,
            "last_payment_date": r.last_payment,
            "disputes": r.disputes,
            "disputes_lost": r.disputes_lost,
            "open_dispute": json_bool(r.open_dispute > 0),
            "active_payment_plan": json_bool(r.active_plan > 0),
            "bankrupt": json_bool(r.bankruptcy_flag == true()),
            "bankruptcy_date": r.bankruptcy_date,
            "dissolved": json_bool(r.dissolved == true()),
            "segment": r.segment,
            "child_account": json_bool(is_child),
            "balance_transferred_to_parent": json_bool(r.transferred == true()),
            "partial": json_bool(partial),
            "reversed_on": r.reversed_on,
            "reversal_cooling_days": r.cooling_days,
            "required": _required(r),
        }
    )


def _required(r: Any) -> Any:
    """The thresholds of the rule that fired (issue 15: a small-balance candidate showed the write-off thresholds,
    which played no part). No route fired: the write-off route's thresholds, which the shortfall names.
    ``recent_payment_days`` goes with every route the recent-payment exclusion applies to."""

    def block(route: str, pairs: dict[str, Any]) -> Any:
        recent = {} if route in _RECENT_PAYMENT_EXEMPT else {"recent_payment_days": r.recent_days}
        return json_obj({**pairs, **recent}, as_text=False)

    thresholds = {
        "dispute_resolved_lost": {"min_days_past_due": r.dl_days},
        "settlement_remainder": {"min_days_past_due": r.st_days},
        "customer_bankrupt": {"min_days_past_due": r.bk_days},
        "customer_dissolved": {"min_days_past_due": r.dis_days},
        "statute_days_exceeded": {"statute_days": r.statute_days},
        "small_balance_aged": {"min_days_past_due": r.small_days, "tolerance": money_text(r.tolerance)},
        "aged_and_collections_exhausted": {
            "writeoff_days": r.writeoff_days,
            "min_contact_attempts": r.min_attempts,
            "min_demand_letters": r.min_letters,
            "min_agency_days": r.min_agency_days,
        },
    }
    assert set(thresholds) == {name for name, _ in ROUTES}, "every route names its thresholds"
    blocks = {route: block(route, pairs) for route, pairs in thresholds.items()}
    writeoff = blocks.pop("aged_and_collections_exhausted")
    return json_pick(case(*[(r.route == name, obj) for name, obj in blocks.items()], else_=writeoff))
