"""Write-off candidate selection: one set-wise SQL decision per invoice, with the rule that fired and its evidence.

The decision query (:func:`decision_query`) evaluates every open invoice against the resolved policy in a single
statement of CTEs: collection effort, holds, payments and parent/child facts are aggregated once per invoice, then
one CASE picks the route (first that applies, in the documented order), a second the exclusion that blocks it.
Writing candidates is one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` on top of the same query; the what-if
backtest runs the very same query read-only, so a draft policy is judged by exactly the code that would run it.

Outcome per invoice: ``candidate`` (rule = route), ``excluded`` (a route fired but an exclusion blocks it; rule =
the exclusion) or ``not_eligible`` (no route fired; rule = the closest shortfall, e.g. ``insufficient_letters``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Date,
    Integer,
    Select,
    String,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from writeoffs import audit
from writeoffs.buckets import bucket_case
from writeoffs.db.schema import (
    MONEY,
    collection_activities,
    customers,
    holds,
    invoices,
    payment_allocations,
    payments,
    writeoffs,
)
from writeoffs.policy.schema import Policy, Reason
from writeoffs.policy.sqlx import days_between, json_bool, json_obj, rows_table, typed
from writeoffs.tiers import AUTO_TIER

#: Invoice statuses that are still receivables in a live run (charged-off invoices stay on the books).
LIVE_STATUSES = ("open", "charged_off", "reversed")
#: Write-off statuses that mean "already in flight": an invoice in another run's pending batch is not re-selected.
IN_FLIGHT = ("candidate", "approved")

SKIP_DECIDED = "batch already decided; re-selected on a later as-of date"
#: Routes in evaluation order: (rule name, reason). The first route whose conditions hold decides the reason.
ROUTES: tuple[tuple[str, Reason], ...] = (
    ("dispute_resolved_lost", Reason.DISPUTE_LOST),
    ("settlement_remainder", Reason.SETTLEMENT),
    ("customer_bankrupt", Reason.BANKRUPTCY),
    ("customer_dissolved", Reason.DISSOLVED),
    ("statute_days_exceeded", Reason.STATUTE),
    ("small_balance_aged", Reason.SMALL_BALANCE),
    ("aged_and_collections_exhausted", Reason.UNCOLLECTIBLE),
)
#: Exclusions in evaluation order (the first that applies is reported).
EXCLUSIONS = (
    "open_dispute",
    "active_payment_plan",
    "parent_paid_transferred",
    "child_partial",
    "partial_not_allowed",
    "recent_payment",
)
#: Routes that the recent-payment exclusion does not block: a settlement or a lost dispute usually comes with a
#: recent payment of the undisputed/settled part, and trustee distributions say nothing about collectability.
_RECENT_PAYMENT_EXEMPT = ("settlement_remainder", "dispute_resolved_lost", "customer_bankrupt")

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


def param_tables(conn: Connection, policy: Policy) -> tuple[Any, Any]:
    """The policy resolved for every (entity, segment) present in the ledger, as two small literal tables."""
    pairs = conn.execute(select(customers.c.entity_code, customers.c.segment).distinct()).all()
    rows, cur_rows = [], []
    for entity, segment in sorted(pairs):
        r = policy.rules_for(entity, segment)
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
        covered = [and_(currency == cur, amount <= typed(lim, MONEY)) for cur, lim in t.limits.items()]
        # Tier.covers: a currency the tier has no limit for is covered without limit.
        covered.append(currency.not_in(list(t.limits)) if t.limits else true())
        whens.append((or_(*covered), literal(t.name)))
    return case(*whens, else_=literal(tiers[-1].name))


@dataclass(frozen=True, slots=True)
class Scope:
    """What to evaluate. ``point_in_time`` reconstructs balances as they were on ``as_of`` (what-if on a past date)
    instead of trusting today's open balance and status (a live run)."""

    as_of: date
    point_in_time: bool = False


def decision_query(conn: Connection, policy: Policy, scope: Scope) -> Select[Any]:
    """One row per evaluated invoice with its outcome, rule, reason, amount, tier and evidence (JSON text)."""
    as_of = scope.as_of
    d = typed(as_of, Date())
    params, cur_params = param_tables(conn, policy)
    i, c = invoices, customers
    ca, h, pa = collection_activities, holds, payment_allocations
    hash_ = policy.content_hash

    # -- collection effort up to the business date: per invoice and account-level (invoice_id NULL) ------------
    agency_end = case((or_(ca.c.end_date.is_(None), ca.c.end_date > d), d), else_=ca.c.end_date)

    def effort_cols() -> list[Any]:
        def n(kind: str) -> Any:
            return func.sum(case((ca.c.activity_type == kind, 1), else_=0))

        return [
            n("contact_attempt").label("attempts"),
            n("demand_letter").label("letters"),
            func.sum(
                case((ca.c.activity_type == "agency_placement", days_between(agency_end, ca.c.activity_date)), else_=0)
            ).label("agency_days"),
            n("legal_action").label("legal"),
            func.max(case((ca.c.outcome == policy.model.settlement_outcome, 1), else_=0)).label("settled"),
        ]

    acts_inv = (
        select(ca.c.invoice_id.label("key"), *effort_cols())
        .where(ca.c.invoice_id.is_not(None), ca.c.activity_date <= d)
        .group_by(ca.c.invoice_id)
        .cte("acts_inv")
    )
    acts_cust = (
        select(ca.c.customer_id.label("key"), *effort_cols())
        .where(ca.c.invoice_id.is_(None), ca.c.activity_date <= d)
        .group_by(ca.c.customer_id)
        .cte("acts_cust")
    )

    # -- holds as of the business date ----------------------------------------------------------------------
    started = h.c.start_date <= d
    active = and_(started, or_(h.c.end_date.is_(None), h.c.end_date > d))

    def hold_cols() -> list[Any]:
        def flag(cond: Any) -> Any:
            return func.max(case((cond, 1), else_=0))

        def cnt(cond: Any) -> Any:
            return func.sum(case((cond, 1), else_=0))

        dispute = h.c.hold_type == "dispute"
        return [
            flag(and_(active, dispute)).label("open_dispute"),
            flag(and_(active, h.c.hold_type == "payment_plan")).label("active_plan"),
            cnt(and_(started, dispute)).label("disputes"),
            cnt(and_(dispute, h.c.end_date <= d, h.c.resolution == "lost")).label("disputes_lost"),
        ]

    holds_inv = (
        select(h.c.invoice_id.label("key"), *hold_cols())
        .where(h.c.invoice_id.is_not(None))
        .group_by(h.c.invoice_id)
        .cte("holds_inv")
    )
    holds_cust = (
        select(h.c.customer_id.label("key"), *hold_cols())
        .where(h.c.invoice_id.is_(None))
        .group_by(h.c.customer_id)
        .cte("holds_cust")
    )

    # -- payments on the invoice: last one up to the date; what arrived later (for point-in-time balances) ------
    pays = (
        select(
            pa.c.invoice_id.label("key"),
            func.max(case((pa.c.allocated_on <= d, pa.c.allocated_on))).label("last_payment"),
            func.sum(case((pa.c.allocated_on > d, pa.c.amount), else_=0)).label("later_paid"),
        )
        .where(pa.c.kind == "regular")
        .group_by(pa.c.invoice_id)
        .cte("pays")
    )
    # Child invoices whose balance went to the parent, on which the parent (as payer) paid anything.
    child, pay = customers.alias("child"), payments.alias("pay")
    inv2 = invoices.alias("inv2")
    parent_paid = (
        select(pa.c.invoice_id.label("key"))
        .select_from(
            pa.join(pay, pay.c.id == pa.c.payment_id)
            .join(inv2, inv2.c.id == pa.c.invoice_id)
            .join(child, child.c.id == inv2.c.customer_id)
        )
        .where(
            pa.c.kind == "regular",
            pa.c.allocated_on <= d,
            inv2.c.balance_transferred_to_parent == true(),
            pay.c.customer_id == child.c.parent_id,
        )
        .distinct()
        .cte("parent_paid")
    )

    # -- the population -------------------------------------------------------------------------------------
    basis_date = i.c.due_date if policy.model.aging_basis == "due_date" else i.c.invoice_date
    dpd = days_between(d, basis_date)
    if scope.point_in_time:
        # Balance on the date = today's balance + what was paid or written off since (never above the amount).
        rebuilt = (
            i.c.open_balance
            + func.coalesce(pays.c.later_paid, 0)
            + case((i.c.written_off_date >= d, i.c.written_off_amount), else_=0)
        )
        balance = case((rebuilt > i.c.amount, i.c.amount), else_=rebuilt)
        population = [i.c.invoice_date <= d, balance > 0]
    else:
        balance = i.c.open_balance
        other = writeoffs.alias("other")
        in_flight = exists().where(
            other.c.invoice_id == i.c.id,
            other.c.status.in_(IN_FLIGHT),
            not_(and_(other.c.as_of_date == d, other.c.policy_hash == hash_)),
        )
        population = [i.c.status.in_(LIVE_STATUSES), i.c.open_balance > 0, ~in_flight]

    def add(a: Any, b: Any) -> Any:
        return func.coalesce(a, 0) + func.coalesce(b, 0)

    def either(a: Any, b: Any) -> Any:
        return case((or_(func.coalesce(a, 0) > 0, func.coalesce(b, 0) > 0), 1), else_=0)

    ai, ac, hi, hc = acts_inv, acts_cust, holds_inv, holds_cust
    base = (
        select(
            i.c.id.label("invoice_id"),
            i.c.invoice_ref,
            i.c.entity_code,
            i.c.currency,
            i.c.amount.label("invoice_amount"),
            i.c.recovered_amount,
            i.c.written_off_amount,
            c.c.segment,
            c.c.bankruptcy_flag,
            c.c.bankruptcy_date,
            c.c.dissolved,
            c.c.parent_id,
            i.c.balance_transferred_to_parent.label("transferred"),
            balance.label("balance"),
            dpd.label("dpd"),
            add(ai.c.attempts, ac.c.attempts).label("attempts"),
            add(ai.c.letters, ac.c.letters).label("letters"),
            add(ai.c.agency_days, ac.c.agency_days).label("agency_days"),
            add(ai.c.legal, ac.c.legal).label("legal"),
            func.coalesce(ai.c.settled, 0).label("settled"),
            either(hi.c.open_dispute, hc.c.open_dispute).label("open_dispute"),
            either(hi.c.active_plan, hc.c.active_plan).label("active_plan"),
            add(hi.c.disputes, hc.c.disputes).label("disputes"),
            func.coalesce(hi.c.disputes_lost, 0).label("disputes_lost"),
            pays.c.last_payment,
            func.coalesce(pays.c.later_paid, 0).label("later_paid"),
            case((parent_paid.c.key.is_not(None), 1), else_=0).label("parent_paid"),
            params.c.writeoff_days,
            params.c.min_attempts,
            params.c.min_letters,
            params.c.min_agency_days,
            params.c.excl_dispute,
            params.c.excl_plan,
            params.c.recent_days,
            params.c.small_days,
            params.c.partial_allowed,
            params.c.partial_settlements,
            params.c.bk_days,
            params.c.dis_days,
            params.c.dl_days,
            params.c.st_days,
            params.c.statute_days,
            params.c.child_full,
            params.c.parent_paid_excl,
            cur_params.c.tolerance,
            cur_params.c.legal_above,
        )
        .select_from(
            i.join(c, c.c.id == i.c.customer_id)
            .join(params, and_(params.c.entity_code == c.c.entity_code, params.c.segment == c.c.segment))
            .outerjoin(
                cur_params,
                and_(
                    cur_params.c.entity_code == c.c.entity_code,
                    cur_params.c.segment == c.c.segment,
                    cur_params.c.currency == i.c.currency,
                ),
            )
            .outerjoin(ai, ai.c.key == i.c.id)
            .outerjoin(ac, ac.c.key == i.c.customer_id)
            .outerjoin(hi, hi.c.key == i.c.id)
            .outerjoin(hc, hc.c.key == i.c.customer_id)
            .outerjoin(pays, pays.c.key == i.c.id)
            .outerjoin(parent_paid, parent_paid.c.key == i.c.id)
        )
        .where(*population)
        .cte("base")
    )
    b = base.c

    bankrupt_on_date = and_(b.bankruptcy_flag == true(), or_(b.bankruptcy_date.is_(None), b.bankruptcy_date <= d))
    legal_needed = and_(b.legal_above.is_not(None), b.balance > b.legal_above)
    effort_ok = and_(
        b.attempts >= b.min_attempts,
        b.letters >= b.min_letters,
        b.agency_days >= b.min_agency_days,
        or_(not_(legal_needed), b.legal > 0),
    )
    route_conditions = {
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

    routed = select(base, route.label("route"), shortfall.label("shortfall"), reason.label("reason_code")).cte("routed")
    r = routed.c
    is_child = r.parent_id.is_not(None)
    partial = r.balance < r.invoice_amount
    exclusion = case(
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
    outcome = case(
        (r.route.is_(None), literal("not_eligible")),
        (exclusion.is_not(None), literal("excluded")),
        else_=literal("candidate"),
    )
    rule = case((r.route.is_(None), r.shortfall), (exclusion.is_not(None), exclusion), else_=r.route)
    evidence = json_obj(
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
            "required": json_obj(
                {
                    "writeoff_days": r.writeoff_days,
                    "min_contact_attempts": r.min_attempts,
                    "min_demand_letters": r.min_letters,
                    "min_agency_days": r.min_agency_days,
                    "recent_payment_days": r.recent_days,
                },
                as_text=False,
            ),
        }
    )
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
        r.reason_code,
        r.balance.label("amount"),  # never above the open balance: it *is* the open balance (full or remainder)
        _tier_case(r.balance, r.currency, r.tolerance, policy).label("tier"),
        evidence.label("evidence"),
    )


@dataclass(frozen=True, slots=True)
class SelectionResult:
    as_of: date
    policy_version: str
    policy_hash: str
    inserted: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "policy_version": self.policy_version,
            "policy_hash": self.policy_hash,
            "inserted": self.inserted,
        }


def idempotency_prefix(as_of: date, policy: Policy) -> str:
    return f"wo:{as_of.isoformat()}:{policy.content_hash}:"


def insert_candidates(
    conn: Connection, policy: Policy, as_of: date, *, actor: str = "system", batch_map: Any = None
) -> SelectionResult:
    """Write the candidates for ``as_of`` in the caller's transaction, each attached to its batch.

    ``batch_map`` (from :func:`writeoffs.policy.batching.open_batches`) maps (entity, currency, tier) to the batch id
    and whether that batch is still open; the batch is assigned in the INSERT itself (no second pass over the
    rows). A candidate whose batch was already decided is written ``skipped`` with the reason instead.
    Idempotent: the idempotency key is unique per (as_of, policy hash, invoice), so a re-run inserts nothing.
    """
    decided = decision_query(conn, policy, Scope(as_of)).subquery("decided")
    dc = decided.c
    cols = [
        "invoice_id",
        "as_of_date",
        "currency",
        "amount",
        "reason_code",
        "rule",
        "evidence",
        "tier",
        "policy_version",
        "policy_hash",
        "status",
        "idempotency_key",
        "batch_id",
        "skip_reason",
    ]
    source: Any = decided
    if batch_map is not None:
        bm = batch_map
        source = decided.outerjoin(
            bm, and_(bm.c.entity_code == dc.entity_code, bm.c.currency == dc.currency, bm.c.tier == dc.tier)
        )
        is_open = bm.c.is_open == true()
        batch_id = case((is_open, bm.c.batch_id), else_=literal(None, Integer()))
        status = case((is_open, literal("candidate")), else_=literal("skipped"))
        skip = case((is_open, literal(None, String())), else_=literal(SKIP_DECIDED))
    else:
        batch_id, status, skip = literal(None, Integer()), literal("candidate"), literal(None, String())
    src = (
        select(
            dc.invoice_id,
            typed(as_of, Date()).label("as_of_date"),
            dc.currency,
            dc.amount,
            dc.reason_code,
            dc.rule,
            dc.evidence,
            dc.tier,
            literal(policy.version, String()).label("policy_version"),
            literal(policy.content_hash, String()).label("policy_hash"),
            status.label("status"),
            (literal(idempotency_prefix(as_of, policy), String()) + func.cast(dc.invoice_id, String())).label("key"),
            batch_id.label("batch_id"),
            skip.label("skip_reason"),
        )
        .select_from(source)
        .where(dc.outcome == "candidate")
    )
    ins = (pg_dialect.insert if conn.dialect.name == "postgresql" else sqlite_dialect.insert)(writeoffs)
    # Counted, not taken from rowcount: Python's sqlite3 reports -1 for a statement that starts with WITH.
    mine = select(func.count()).where(writeoffs.c.as_of_date == as_of, writeoffs.c.policy_hash == policy.content_hash)
    before = conn.execute(mine).scalar_one()
    conn.execute(ins.from_select(cols, src).on_conflict_do_nothing())
    inserted = conn.execute(mine).scalar_one() - before
    audit.append(
        conn,
        actor=actor,
        action="policy.select_candidates",
        object_type="writeoff_run",
        object_id=f"{as_of.isoformat()}:{policy.short_hash()}",
        details={
            "as_of": as_of,
            "policy_version": policy.version,
            "policy_hash": policy.content_hash,
            "inserted": inserted,
        },
    )
    return SelectionResult(as_of, policy.version, policy.content_hash, inserted)


def decisions(conn: Connection, policy: Policy, as_of: date, *, point_in_time: bool = False) -> list[dict[str, Any]]:
    """Every decision as dicts (tests, small ledgers, explanations); use the SQL aggregates for large ones."""
    q = decision_query(conn, policy, Scope(as_of, point_in_time))
    return [dict(row._mapping) for row in conn.execute(q)]


def money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.0001"))
