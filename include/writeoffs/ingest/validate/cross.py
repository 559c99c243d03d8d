"""Checks across the fields of one row (balance above amount, due before invoice date, fx rate rules)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from writeoffs.ingest.validate.model import MONEY_TYPE, RATE_TYPE, Context, _Rows


def _cross_checks(dataset: str, out: dict[str, pa.Array], rows: _Rows, ctx: Context) -> None:
    zero_m = pa.scalar(0, MONEY_TYPE)
    if dataset == "invoices":
        rows.flag(
            pc.greater(out["open_balance"], out["amount"]),
            "open_balance",
            "balance_above_amount",
            "open balance exceeds the invoice amount",
        )
        rows.flag(
            pc.less(out["due_date"], out["invoice_date"]),
            "due_date",
            "due_before_invoice",
            "due date is before the invoice date",
        )
        fx = out["fx_rate"]
        rows.flag(pc.equal(fx, pa.scalar(0, RATE_TYPE)), "fx_rate", "invalid_fx_rate", "fx_rate must be positive")
        # Invoices in the functional currency carry rate 1; a foreign-currency invoice must bring its booked rate.
        ents = list(ctx.functional)
        func_cur = pc.take(
            pa.array([ctx.functional[e] for e in ents], pa.string()),
            pc.index_in(out["entity"], value_set=pa.array(ents, pa.string())),
        )
        same = pc.fill_null(pc.equal(func_cur, out["currency"]), False)
        rows.flag(
            pc.and_kleene(pc.invert(same), pc.is_null(fx)),
            "fx_rate",
            "missing_fx_rate",
            "foreign-currency invoice without its booked fx_rate",
        )
        rows.flag(
            pc.and_kleene(same, pc.fill_null(pc.not_equal(fx, pa.scalar(1, RATE_TYPE)), False)),
            "fx_rate",
            "invalid_fx_rate",
            "fx_rate must be 1 for an invoice in the functional currency",
        )
        out["fx_rate"] = pc.if_else(pc.is_null(fx), pa.scalar(1, RATE_TYPE), fx)
    elif dataset == "payments":
        rows.flag(pc.equal(out["amount"], zero_m), "amount", "non_positive_amount", "payment amount must be positive")
        rows.flag(
            pc.greater(out["applied_amount"], out["amount"]),
            "applied_amount",
            "applied_above_amount",
            "applied amount exceeds the payment amount",
        )
        rows.flag(
            pc.and_kleene(pc.is_valid(out["applied_amount"]), pc.is_null(out["invoice_ref"])),
            "invoice_ref",
            "missing_value",
            "applied amount without an invoice_ref",
        )
    elif dataset == "activities":
        rows.flag(
            pc.less(out["end_date"], out["activity_date"]),
            "end_date",
            "end_before_start",
            "end date is before the activity date",
        )
