"""Charge-off: the earlier *declaration* that a receivable is unlikely to be collected.

Distinct from the write-off on purpose: the invoice gets status ``charged_off`` and a ``charged_off_date``, but the
receivable stays on the books (``open_balance`` unchanged) and no journal entry is made. One set-wise UPDATE per
run, one audit row with the counts and totals, idempotent (already charged-off invoices are not touched again).
The UPDATE is bounded by an index range (open invoices older than the lowest threshold), so the daily run costs in
proportion to the day's new crossings, not to the size of the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, Date, func, select, update

from writeoffs import subledger
from writeoffs.db.schema import customers, invoices
from writeoffs.money import money_str
from writeoffs.policy.schema import Policy
from writeoffs.policy.selection import audit_run, param_tables, resolved_layers, run_ref
from writeoffs.policy.sqlx import days_between, typed


@dataclass(frozen=True, slots=True)
class ChargeOffResult:
    as_of: date
    charged_off: int
    #: (entity, currency) -> (count, open balance) of invoices charged off by this run.
    totals: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "charged_off": self.charged_off, "totals": self.totals}


def charge_off(conn: Connection, policy: Policy, as_of: date, *, actor: str = "system") -> ChargeOffResult:
    """Declare charged-off every open invoice at or past its (entity, segment) charge-off threshold."""
    layers = resolved_layers(conn, policy)
    thresholds = [r.charge_off_days for _, _, r in layers if r.charge_off_days is not None]
    count = 0
    if thresholds:
        params, _ = param_tables(conn, policy, layers)
        i, c, p = invoices, customers, params.c
        d = typed(as_of, Date())
        basis = i.c.due_date if policy.model.aging_basis == "due_date" else i.c.invoice_date
        # The constant bound (the lowest threshold of any layer) makes the search an index range on
        # ix_invoices_status_due_date: after the first run, a daily run touches only the day's new crossings.
        # The per-layer threshold is then checked exactly on that small set, joined rather than correlated.
        lowest = typed(as_of - timedelta(days=min(thresholds)), Date())
        with subledger.movement(conn, "charge_off", as_of, f"charge-off {run_ref(as_of, policy)}"):
            result = conn.execute(
                update(i)
                .where(
                    i.c.status == "open",
                    basis <= lowest,
                    i.c.open_balance > 0,
                    c.c.id == i.c.customer_id,
                    p.entity_code == c.c.entity_code,
                    p.segment == c.c.segment,
                    p.charge_off_days.is_not(None),
                    days_between(d, basis) >= p.charge_off_days,
                )
                .values(status="charged_off", charged_off_date=as_of)
            )
        count = max(result.rowcount or 0, 0)
    totals: dict[str, dict[str, str]] = {}
    if count:
        rows = conn.execute(
            select(invoices.c.entity_code, invoices.c.currency, func.count(), func.sum(invoices.c.open_balance))
            .where(invoices.c.status == "charged_off", invoices.c.charged_off_date == as_of)
            .group_by(invoices.c.entity_code, invoices.c.currency)
        ).all()
        totals = {f"{e}:{cur}": {"count": str(n), "open_balance": money_str(s)} for e, cur, n, s in rows}
    audit_run(
        conn,
        policy,
        as_of,
        actor=actor,
        action="policy.charge_off",
        object_type="charge_off_run",
        charged_off=count,
        totals=totals,
    )
    return ChargeOffResult(as_of, count, totals)
