"""The decision query builder (:class:`_Plan`): population (optionally screened to the invoices that can reach a
route), collection effort, then holds, payments, parent/child facts, route, exclusion, amount, tier and evidence.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Date,
    Select,
    String,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    true,
)

from writeoffs.accounting.status import InvoiceStatus
from writeoffs.buckets import bucket_case
from writeoffs.db.schema import (
    MONEY,
    collection_activities,
    customers,
    holds,
    invoices,
    journal_entries,
    payment_allocations,
    payments,
    writeoffs,
)
from writeoffs.policy.schema import Policy
from writeoffs.policy.selection.model import _RECENT_PAYMENT_EXEMPT, IN_FLIGHT, LIVE_STATUSES, ROUTES, Scope
from writeoffs.policy.selection.params import _PARAM_COLUMNS, _tier_case, param_tables, resolved_layers
from writeoffs.policy.sqlx import days_between, json_bool, json_obj, json_pick, money_text, typed


class _Plan:
    """The decision, built in three steps that can each be a CTE (one statement) or a temporary table.

    1. :meth:`population`: one row per invoice in scope with its customer, resolved policy and balance, optionally
       *screened* to the invoices that can reach some route (:meth:`reachable`);
    2. :meth:`effort`: collection effort per invoice, aggregated only over the population (a join on the indexed
       ``collection_activities.invoice_id``, not a GROUP BY over every activity in the ledger);
    3. :meth:`decide`: holds, payments and parent/child facts for the population, then route, exclusion, amount,
       tier and evidence.
    """

    def __init__(self, conn: Connection, policy: Policy, scope: Scope) -> None:
        self.policy, self.scope = policy, scope
        self.d = typed(scope.as_of, Date())
        self.layers = resolved_layers(conn, policy)
        self.params, self.cur_params = param_tables(conn, policy, self.layers)

    # -- step 1 -----------------------------------------------------------------------------------------------
    def population(self, screen: bool | None = None) -> Select[Any]:
        """Invoices in scope; ``screen`` True keeps only reachable ones, False only the others, None all."""
        d, policy = self.d, self.policy
        i, c, pa = invoices, customers, payment_allocations
        params, cur_params = self.params, self.cur_params
        # Regular payments allocated after the date: rebuild a past balance (what-if) and report "later paid".
        later = (
            select(pa.c.invoice_id.label("key"), func.sum(pa.c.amount).label("later_paid"))
            .where(pa.c.kind == "regular", pa.c.allocated_on > d)
            .group_by(pa.c.invoice_id)
            .subquery("later")
        )
        later_paid = func.coalesce(later.c.later_paid, 0)
        basis_date = i.c.due_date if policy.model.aging_basis == "due_date" else i.c.invoice_date
        dpd = days_between(d, basis_date)
        if self.scope.point_in_time:
            # Balance on the date = today's balance + what was paid or written off since (never above the amount).
            rebuilt = i.c.open_balance + later_paid + case((i.c.written_off_date >= d, i.c.written_off_amount), else_=0)
            balance = case((rebuilt > i.c.amount, i.c.amount), else_=rebuilt)
            in_scope = [i.c.invoice_date <= d, balance > 0]
        else:
            balance = i.c.open_balance
            other = writeoffs.alias("other")
            in_flight = exists().where(
                other.c.invoice_id == i.c.id,
                other.c.status.in_(IN_FLIGHT),
                not_(and_(other.c.as_of_date == d, other.c.policy_hash == policy.content_hash)),
            )
            in_scope = [i.c.status.in_(LIVE_STATUSES), i.c.open_balance > 0, ~in_flight]
        p = params.c
        je, w_rev = journal_entries.alias("rev_entry"), writeoffs.alias("rev_wo")
        reversed_on = case(
            (
                i.c.status == InvoiceStatus.REVERSED,
                select(func.max(je.c.posting_date))
                .select_from(je.join(w_rev, w_rev.c.journal_entry_id == je.c.reverses_entry_id))
                .where(w_rev.c.invoice_id == i.c.id, w_rev.c.status == "reversed", je.c.status == "posted")
                .scalar_subquery(),
            ),
            else_=null(),
        )
        cols = [
            i.c.id.label("invoice_id"),
            i.c.invoice_ref,
            i.c.customer_id,
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
            later_paid.label("later_paid"),
            dpd.label("dpd"),
            i.c.status.label("invoice_status"),
            reversed_on.label("reversed_on"),
            *[getattr(p, name) for name, _ in _PARAM_COLUMNS[2:]],
            cur_params.c.tolerance,
            cur_params.c.legal_above,
        ]
        q = (
            select(*cols)
            .select_from(
                i.join(c, c.c.id == i.c.customer_id)
                .join(params, and_(p.entity_code == c.c.entity_code, p.segment == c.c.segment))
                .outerjoin(
                    cur_params,
                    and_(
                        cur_params.c.entity_code == c.c.entity_code,
                        cur_params.c.segment == c.c.segment,
                        cur_params.c.currency == i.c.currency,
                    ),
                )
                .outerjoin(later, later.c.key == i.c.id)
            )
            .where(*in_scope)
        )
        if screen is not None:
            # CASE, not the bare predicate: a NULL must land on exactly one side of the screen.
            flag = case((self.reachable(basis_date, balance, i.c.id), 1), else_=0)
            q = q.where(flag == (1 if screen else 0))
        return q

    def reachable(self, basis_date: Any, balance: Any, invoice_id: Any) -> Any:
        """True for every invoice on which some route *could* fire (a superset: it may let more through).

        Each route's condition is widened to the loosest value any (entity, segment) layer in the ledger has, so the
        test needs no join to the policy tables and compares the aging date with a constant (``due_date <= as_of -
        N``) in the parallel scan of ``invoices``; the two routes that need aggregated facts (a lost dispute, a
        settlement) become membership in the small set of invoices that have one. An invoice outside is therefore
        decided already: no route fires, and being under every ``writeoff_days`` its decision is ``not_eligible``
        / ``under_threshold`` (what :meth:`screened_out` reports for it). ``_route`` must keep implying this.
        """
        d, h, ca, c = self.d, holds, collection_activities, customers.c
        rules = [r for _, _, r in self.layers]
        if not rules:
            return false()
        as_of = self.scope.as_of

        def aged(days: int) -> Any:
            return basis_date <= typed(as_of - timedelta(days=days), Date())

        # writeoff_days is never NULL; a statute is never looser than the loosest write-off threshold it undercuts.
        general = min([r.writeoff_days for r in rules] + [r.statute_days for r in rules if r.statute_days])
        terms = [aged(general)]
        small_days = [r.small_balance.min_days_past_due for r in rules if r.small_balance.tolerance]
        tolerances = [t for r in rules for t in r.small_balance.tolerance.values()]
        small_days = [n for n in small_days if n is not None]
        if small_days and tolerances:
            terms.append(and_(aged(min(small_days)), balance <= typed(max(tolerances), MONEY)))
        terms += [c.bankruptcy_flag == true(), c.dissolved == true()]
        lost = select(h.c.invoice_id).where(
            h.c.invoice_id.is_not(None), h.c.hold_type == "dispute", h.c.end_date <= d, h.c.resolution == "lost"
        )
        settled = select(ca.c.invoice_id).where(
            ca.c.invoice_id.is_not(None),
            ca.c.outcome == self.policy.model.settlement_outcome,
            ca.c.activity_date <= d,
        )
        terms.append(invoice_id.in_(lost.union(settled)))
        return or_(*terms)

    # -- step 2 -----------------------------------------------------------------------------------------------
    def effort(self, pop: Any) -> Select[Any]:
        """Effort per invoice of ``pop`` up to the date: one pass over its activities, one FILTER per kind."""
        return self._effort_cols(
            select(collection_activities.c.invoice_id.label("key"))
            .select_from(collection_activities.join(pop, pop.c.invoice_id == collection_activities.c.invoice_id))
            .group_by(collection_activities.c.invoice_id)
        )

    def _effort_cols(self, q: Select[Any]) -> Select[Any]:
        ca, d = collection_activities, self.d
        agency_end = case((or_(ca.c.end_date.is_(None), ca.c.end_date > d), d), else_=ca.c.end_date)

        def n(kind: str) -> Any:
            return func.count().filter(ca.c.activity_type == kind)

        return q.add_columns(
            n("contact_attempt").label("attempts"),
            n("demand_letter").label("letters"),
            func.sum(days_between(agency_end, ca.c.activity_date))
            .filter(ca.c.activity_type == "agency_placement")
            .label("agency_days"),
            n("legal_action").label("legal"),
            func.count().filter(ca.c.outcome == self.policy.model.settlement_outcome).label("settled"),
        ).where(ca.c.activity_date <= d)

    # -- step 3 -----------------------------------------------------------------------------------------------
    def decide(self, pop: Any, effort: Any, *, evidence_for: tuple[str, ...] | None = None) -> Select[Any]:
        """One row per invoice of ``pop`` with its outcome, rule, reason, amount, tier and evidence (JSON text)."""
        d, policy = self.d, self.policy
        ca, h, pa = collection_activities, holds, payment_allocations
        pop_customers = select(pop.c.customer_id)

        # Account-level activities and holds (invoice_id NULL) count for every invoice of the account.
        acts_cust = self._effort_cols(
            select(ca.c.customer_id.label("key"))
            .where(ca.c.invoice_id.is_(None), ca.c.customer_id.in_(pop_customers))
            .group_by(ca.c.customer_id)
        ).cte("acts_cust")

        started = h.c.start_date <= d
        active = and_(started, or_(h.c.end_date.is_(None), h.c.end_date > d))
        dispute = h.c.hold_type == "dispute"
        hold_cols = [
            func.count().filter(and_(active, dispute)).label("open_dispute"),
            func.count().filter(and_(active, h.c.hold_type == "payment_plan")).label("active_plan"),
            func.count().filter(and_(started, dispute)).label("disputes"),
            func.count().filter(and_(dispute, h.c.end_date <= d, h.c.resolution == "lost")).label("disputes_lost"),
        ]
        holds_inv = (
            select(h.c.invoice_id.label("key"), *hold_cols)
            .select_from(h.join(pop, pop.c.invoice_id == h.c.invoice_id))
            .group_by(h.c.invoice_id)
            .cte("holds_inv")
        )
        holds_cust = (
            select(h.c.customer_id.label("key"), *hold_cols)
            .where(h.c.invoice_id.is_(None), h.c.customer_id.in_(pop_customers))
            .group_by(h.c.customer_id)
            .cte("holds_cust")
        )
        # Last regular payment on the invoice up to the date.
        pays = (
            select(pa.c.invoice_id.label("key"), func.max(pa.c.allocated_on).label("last_payment"))
            .select_from(pa.join(pop, pop.c.invoice_id == pa.c.invoice_id))
            .where(pa.c.kind == "regular", pa.c.allocated_on <= d)
            .group_by(pa.c.invoice_id)
            .cte("pays")
        )
        # Child invoices whose balance went to the parent, on which the parent (as payer) paid anything.
        pay = payments.alias("pay")
        parent_paid = (
            select(pa.c.invoice_id.label("key"))
            .select_from(pa.join(pop, pop.c.invoice_id == pa.c.invoice_id).join(pay, pay.c.id == pa.c.payment_id))
            .where(
                pa.c.kind == "regular",
                pa.c.allocated_on <= d,
                pop.c.transferred == true(),
                pay.c.customer_id == pop.c.parent_id,
            )
            .distinct()
            .cte("parent_paid")
        )

        def add(a: Any, b: Any) -> Any:
            return func.coalesce(a, 0) + func.coalesce(b, 0)

        def either(a: Any, b: Any) -> Any:
            return case((or_(func.coalesce(a, 0) > 0, func.coalesce(b, 0) > 0), 1), else_=0)

        ai, ac, hi, hc = effort, acts_cust, holds_inv, holds_cust
        base = (
            select(
                *[col for col in pop.c if col.name != "customer_id"],
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
                case((parent_paid.c.key.is_not(None), 1), else_=0).label("parent_paid"),
            )
            .select_from(
                pop.outerjoin(ai, ai.c.key == pop.c.invoice_id)
                .outerjoin(ac, ac.c.key == pop.c.customer_id)
                .outerjoin(hi, hi.c.key == pop.c.invoice_id)
                .outerjoin(hc, hc.c.key == pop.c.customer_id)
                .outerjoin(pays, pays.c.key == pop.c.invoice_id)
                .outerjoin(parent_paid, parent_paid.c.key == pop.c.invoice_id)
            )
            .cte("base")
        )
        return self._route(base, d, policy, evidence_for)

    def _route(self, base: Any, d: Any, policy: Policy, evidence_for: tuple[str, ...] | None = None) -> Select[Any]:
        b = base.c
        bankrupt_on_date = and_(b.bankruptcy_flag == true(), or_(b.bankruptcy_date.is_(None), b.bankruptcy_date <= d))
        legal_needed = and_(b.legal_above.is_not(None), b.balance > b.legal_above)
        effort_ok = and_(
            b.attempts >= b.min_attempts,
            b.letters >= b.min_letters,
            b.agency_days >= b.min_agency_days,
            or_(not_(legal_needed), b.legal > 0),
        )
        # Keep in step with :meth:`reachable`: every condition here must imply it.
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

        routed = select(base, route.label("route"), shortfall.label("shortfall"), reason.label("reason_code")).cte(
            "routed"
        )
        r = routed.c
        is_child = r.parent_id.is_not(None)
        partial = r.balance < r.invoice_amount
        exclusion = case(
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
                "reversed_on": r.reversed_on,
                "reversal_cooling_days": r.cooling_days,
                "required": self._required(r),
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
            r.route,
            r.reason_code,
            r.balance.label("amount"),  # never above the open balance: it *is* the open balance (full or remainder)
            _tier_case(r.balance, r.currency, r.tolerance, self.policy).label("tier"),
            (evidence if evidence_for is None else case((outcome.in_(evidence_for), evidence), else_=null())).label(
                "evidence"
            ),
        )

    @staticmethod
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

    def screened_out(self) -> Select[Any]:
        """The decisions of the invoices the screen left out, without aggregating anything for them.

        Same columns as :meth:`decide`; no route can fire (the screen holds every route condition) and days past
        due are under ``writeoff_days`` (the screen's first condition), so the shortfall is ``under_threshold``.
        Evidence is NULL: these rows feed counts and sums (what-if), never a write-off.
        """
        s = self.population(screen=False).subquery("screened_out")
        return select(
            s.c.invoice_id,
            s.c.invoice_ref,
            s.c.entity_code,
            s.c.currency,
            s.c.segment,
            s.c.invoice_amount,
            s.c.balance,
            s.c.dpd,
            bucket_case(s.c.dpd).label("bucket"),
            s.c.later_paid,
            s.c.recovered_amount,
            s.c.written_off_amount,
            literal("not_eligible", String()).label("outcome"),
            literal("under_threshold", String()).label("rule"),
            literal(None, String()).label("route"),
            literal(None, String()).label("reason_code"),
            s.c.balance.label("amount"),
            _tier_case(s.c.balance, s.c.currency, s.c.tolerance, self.policy).label("tier"),
            literal(None, String()).label("evidence"),
        )
