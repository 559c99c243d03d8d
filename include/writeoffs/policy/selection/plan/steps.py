"""The decision query's steps (:class:`_Plan`): population (optionally screened to the invoices that can reach
a route), collection effort, then holds, payments and parent/child facts; the route and what follows are
:mod:`writeoffs.policy.selection.plan.route`'s.
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
from writeoffs.policy.selection.model import IN_FLIGHT, LIVE_STATUSES, Scope
from writeoffs.policy.selection.params import _PARAM_COLUMNS, _tier_case, param_tables, resolved_layers
from writeoffs.policy.selection.plan.route import route
from writeoffs.policy.sqlx import days_between, typed


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
        i, c = invoices, customers
        params, cur_params = self.params, self.cur_params
        later = self._later_payments()
        later_paid = func.coalesce(later.c.later_paid, 0)
        basis_date = i.c.due_date if policy.model.aging_basis == "due_date" else i.c.invoice_date
        dpd = days_between(d, basis_date)
        balance, in_scope = self._balance_in_scope(later_paid)
        p = params.c
        reversed_on = self._reversed_on()
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

    def _later_payments(self) -> Any:
        """Regular payments allocated after the date: rebuild a past balance (what-if) and report "later paid"."""
        pa = payment_allocations
        return (
            select(pa.c.invoice_id.label("key"), func.sum(pa.c.amount).label("later_paid"))
            .where(pa.c.kind == "regular", pa.c.allocated_on > self.d)
            .group_by(pa.c.invoice_id)
            .subquery("later")
        )

    def _balance_in_scope(self, later_paid: Any) -> tuple[Any, list[Any]]:
        """The balance an invoice is decided on, and the conditions that put it in scope (point in time or live)."""
        d, policy, i = self.d, self.policy, invoices
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
        return balance, in_scope

    @staticmethod
    def _reversed_on() -> Any:
        """The posting date of the reversal that reinstated a reversed invoice (NULL for any other)."""
        i = invoices
        je, w_rev = journal_entries.alias("rev_entry"), writeoffs.alias("rev_wo")
        return case(
            (
                i.c.status == InvoiceStatus.REVERSED,
                select(func.max(je.c.posting_date))
                .select_from(je.join(w_rev, w_rev.c.journal_entry_id == je.c.reverses_entry_id))
                .where(w_rev.c.invoice_id == i.c.id, w_rev.c.status == "reversed", je.c.status == "posted")
                .scalar_subquery(),
            ),
            else_=null(),
        )

    def reachable(self, basis_date: Any, balance: Any, invoice_id: Any) -> Any:
        """True for every invoice on which some route *could* fire (a superset: it may let more through).

        Each route's condition is widened to the loosest value any (entity, segment) layer in the ledger has, so the
        test needs no join to the policy tables and compares the aging date with a constant (``due_date <= as_of -
        N``) in the parallel scan of ``invoices``; the two routes that need aggregated facts (a lost dispute, a
        settlement) become membership in the small set of invoices that have one. An invoice outside is therefore
        decided already: no route fires, and being under every ``writeoff_days`` its decision is ``not_eligible``
        / ``under_threshold`` (what :meth:`screened_out` reports for it). ``_route_conditions`` (plan.route) must keep
        implying this.
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
        pop_customers = select(pop.c.customer_id)
        acts_cust = self._account_effort(pop_customers)
        holds_inv, holds_cust = self._holds(pop, pop_customers)
        pays, parent_paid = self._payment_facts(pop)

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
        return route(base, d, policy, evidence_for)

    def _account_effort(self, pop_customers: Any) -> Any:
        """Account-level activities (invoice_id NULL) count for every invoice of the account."""
        ca = collection_activities
        return self._effort_cols(
            select(ca.c.customer_id.label("key"))
            .where(ca.c.invoice_id.is_(None), ca.c.customer_id.in_(pop_customers))
            .group_by(ca.c.customer_id)
        ).cte("acts_cust")

    def _holds(self, pop: Any, pop_customers: Any) -> tuple[Any, Any]:
        """Hold facts per invoice of ``pop`` and per account (account-level holds count for every invoice)."""
        d, h = self.d, holds
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
        return holds_inv, holds_cust

    def _payment_facts(self, pop: Any) -> tuple[Any, Any]:
        """Per invoice of ``pop``: its last regular payment, and whether the parent paid a transferred child."""
        d, pa = self.d, payment_allocations
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
        return pays, parent_paid

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
