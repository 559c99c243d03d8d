"""Control totals accumulated while the chunks stream past."""

from __future__ import annotations

from dataclasses import dataclass, field

from writeoffs.sample.generator.chunk import Chunk
from writeoffs.sample.generator.design import ACTIVITY_TYPES, CURRENCIES, ENTITIES, NO_DATE, ONE_E4
from writeoffs.sample.generator.universe import Universe


@dataclass(slots=True)
class Totals:
    """Control totals accumulated while the chunks stream past (integer cents: exact)."""

    customers: int = 0
    invoices: int = 0
    amount: int = 0
    open_balance: int = 0
    paid_invoices: int = 0
    partially_paid: int = 0
    disputed: int = 0
    payment_plans: int = 0
    transferred: int = 0
    transferred_paid_by_parent: int = 0
    payments: int = 0
    payment_rows: int = 0
    payment_amount: int = 0
    activities: int = 0
    activities_by_type: dict[str, int] = field(default_factory=dict)
    holds: int = 0
    holds_by_kind: dict[str, int] = field(default_factory=dict)
    bankrupt_customers: int = 0
    dissolved_customers: int = 0
    child_customers: int = 0
    min_date: int = 0
    #: (entity, currency) -> [invoice count, open balance cents, open balance in functional cents]
    by_currency: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def add(self, u: Universe, c: Chunk) -> None:
        self.customers += c.cust_stop - c.cust_start
        sl = slice(c.cust_start, c.cust_stop)
        self.bankrupt_customers += int(u.bankrupt[sl].sum())
        self.dissolved_customers += int(u.dissolved[sl].sum())
        self.child_customers += int(u.is_child[sl].sum())
        self.invoices += c.n_invoices
        self.amount += int(c.amount.sum())
        self.open_balance += int(c.open_balance.sum())
        self.paid_invoices += int((c.open_balance == 0).sum())
        self.partially_paid += int(((c.open_balance > 0) & (c.open_balance < c.amount)).sum())
        self.disputed += int(c.disputed.sum())
        self.payment_plans += int(c.payment_plan.sum())
        self.transferred += int(c.transferred.sum())
        by_parent = c.transferred & (c.open_balance > 0) & (c.open_balance < c.amount)
        self.transferred_paid_by_parent += int(by_parent.sum())
        self.payments += int(c.payment_rows.sum())
        self.payment_rows += int(c.alloc_id.size)
        self.payment_amount += int(c.applied.sum())
        self.activities += int(c.act_id.size)
        for t, name in enumerate(ACTIVITY_TYPES):
            self.activities_by_type[name] = self.activities_by_type.get(name, 0) + int((c.act_type == t).sum())
        self.holds += int(c.hold_id.size)
        for key, mask in (
            ("dispute_active", (c.hold_type == 0) & (c.hold_end == NO_DATE)),
            ("dispute_won", (c.hold_type == 0) & (c.hold_resolution == 1)),
            ("dispute_lost", (c.hold_type == 0) & (c.hold_resolution == 2)),
            ("payment_plan", c.hold_type == 1),
        ):
            self.holds_by_kind[key] = self.holds_by_kind.get(key, 0) + int(mask.sum())
        low = int(c.inv_date.min())
        self.min_date = low if not self.min_date else min(self.min_date, low)
        ent = u.entity[c.inv_cust]
        cur = u.currency[c.inv_cust]
        functional = (c.open_balance * c.fx_e4 + ONE_E4 // 2) // ONE_E4  # per invoice, half-up to the cent
        for e in range(len(ENTITIES)):
            for ci in range(len(CURRENCIES)):
                m = (ent == e) & (cur == ci)
                if not m.any():
                    continue
                acc = self.by_currency.setdefault((ENTITIES[e][0], CURRENCIES[ci]), [0, 0, 0])
                acc[0] += int(m.sum())
                acc[1] += int(c.open_balance[m].sum())
                acc[2] += int(functional[m].sum())

    def as_dict(self) -> dict[str, object]:
        from writeoffs.sample.render import cents_str

        return {
            "customers": self.customers,
            "bankrupt_customers": self.bankrupt_customers,
            "dissolved_customers": self.dissolved_customers,
            "child_customers": self.child_customers,
            "invoices": self.invoices,
            "invoice_amount": cents_str(self.amount),
            "open_balance": cents_str(self.open_balance),
            "paid_invoices": self.paid_invoices,
            "partially_paid_invoices": self.partially_paid,
            "disputed_invoices": self.disputed,
            "payment_plans": self.payment_plans,
            "transferred_to_parent": self.transferred,
            "transferred_partially_paid_by_parent": self.transferred_paid_by_parent,
            "payments": self.payments,
            "payment_allocations": self.payment_rows,
            "payment_amount": cents_str(self.payment_amount),
            "activities": self.activities,
            "activities_by_type": dict(sorted(self.activities_by_type.items())),
            "holds": self.holds,
            "holds_by_kind": dict(sorted(self.holds_by_kind.items())),
            "open_by_entity_currency": {
                f"{e}:{c}": {"invoices": v[0], "open_balance": cents_str(v[1]), "functional": cents_str(v[2])}
                for (e, c), v in sorted(self.by_currency.items())
            },
        }
