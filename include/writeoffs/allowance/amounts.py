"""The estimate rows (stored set-wise), the functional requirement and the GL allowance balances."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal

from sqlalchemy import CTE, Connection, Date, Select, and_, bindparam, column, func, select, table

from writeoffs import ledger
from writeoffs.accounting.chart import posted_lines
from writeoffs.allowance.config import RATE_DECIMALS
from writeoffs.allowance.model import BucketEstimate
from writeoffs.allowance.sql import PAIR_COLUMNS, RATE_COLUMNS, _aged, _dec, _money_sum, _union_rows
from writeoffs.buckets import DEFAULT_BUCKETS
from writeoffs.db import dialect
from writeoffs.db.schema import allowance_estimates
from writeoffs.money import round_money

#: The as-of date of the stored rows (``:d``, bound as a date).
_D = bindparam("d", type_=Date)


def _rates_table(rates: Mapping[str, Mapping[str, Decimal]], entities: Iterable[str]) -> CTE:
    rows = [(e, b, r) for e in sorted(set(entities)) for b, r in sorted(rates[e].items())]
    return _union_rows("rt", RATE_COLUMNS, [(e, b, str(r)) for e, b, r in rows])


def _estimate_rows(
    conn: Connection, as_of: date, todo: Sequence[tuple[str, str]], rates: Mapping[str, Mapping[str, Decimal]]
) -> Select:
    """Per pair and configured bucket: the rate, the currency's minor unit and the open balance summed as of ``:d``."""
    rt, pr = _rates_table(rates, (e for e, _ in todo)), _union_rows("pr", PAIR_COLUMNS, list(todo))
    s = _aged(conn, as_of)
    ag = (
        select(s.c.entity_code, s.c.currency, s.c.bucket, func.sum(s.c.open_balance).label("open_sum"))
        .group_by(s.c.entity_code, s.c.currency, s.c.bucket)
        .cte("ag")
    )
    c = table("currencies", column("code"), column("minor_unit")).alias("c")
    joined = (
        pr.join(rt, rt.c.entity_code == pr.c.entity_code)
        .join(c, c.c.code == pr.c.currency)
        .outerjoin(
            ag, and_(ag.c.entity_code == pr.c.entity_code, ag.c.currency == pr.c.currency, ag.c.bucket == rt.c.bucket)
        )
    )
    return select(pr.c.entity_code, pr.c.currency, rt.c.bucket, rt.c.rate, c.c.minor_unit, ag.c.open_sum).select_from(
        joined
    )


def _store_estimates(
    conn: Connection, as_of: date, todo: Sequence[tuple[str, str]], rates: Mapping[str, Mapping[str, Decimal]]
) -> None:
    """One row per (entity, currency, configured bucket), zeros included; ``ON CONFLICT DO NOTHING``."""
    d = dialect.of(conn)
    rows_of = _estimate_rows(conn, as_of, todo, rates)
    keys = ["as_of_date", "entity_code", "currency", "bucket"]
    if d.native_decimal:
        # Exact NUMERIC; ROUND on numeric rounds half away from zero = half-up for these non-negative amounts.
        x = rows_of.subquery("x")
        open_sum = func.coalesce(x.c.open_sum, 0)
        rows = select(
            _D,
            x.c.entity_code,
            x.c.currency,
            x.c.bucket,
            open_sum,
            x.c.rate,
            func.round(open_sum * x.c.rate, x.c.minor_unit),
        )
        columns = [*keys, "open_balance", "loss_rate", "required_allowance"]
        conn.execute(
            d.insert(allowance_estimates).from_select(columns, rows).on_conflict_do_nothing(index_elements=keys),
            {"d": as_of},
        )
        return
    out = []
    for r in conn.execute(rows_of, {"d": as_of}).all():
        open_sum = _money_sum(d, r.open_sum)
        rate = Decimal(str(r.rate)).quantize(Decimal(1).scaleb(-RATE_DECIMALS))
        out.append(
            {
                "as_of_date": as_of,
                "entity_code": r.entity_code,
                "currency": r.currency,
                "bucket": r.bucket,
                "open_balance": open_sum,
                "loss_rate": rate,
                "required_allowance": round_money(open_sum * rate, r.currency),
            }
        )
    ledger.upsert_ignore(conn, allowance_estimates, out, keys)


def _stored(
    conn: Connection, as_of: date, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[BucketEstimate, ...]]:
    order = {b.label: n for n, b in enumerate(DEFAULT_BUCKETS)}
    a = allowance_estimates.c
    grouped: dict[tuple[str, str], list[BucketEstimate]] = defaultdict(list)
    wanted = set(pairs)
    for r in conn.execute(select(allowance_estimates).where(a.as_of_date == as_of)):
        if (r.entity_code, r.currency) in wanted:
            grouped[(r.entity_code, r.currency)].append(
                BucketEstimate(
                    r.bucket,
                    _dec(r.open_balance),
                    Decimal(str(r.loss_rate)).quantize(Decimal(1).scaleb(-RATE_DECIMALS)),
                    round_money(_dec(r.required_allowance), r.currency),
                )
            )
    return {k: tuple(sorted(v, key=lambda b: (order.get(b.bucket, 99), b.bucket))) for k, v in grouped.items()}


def _functional_required(
    conn: Connection,
    as_of: date,
    todo: Sequence[tuple[str, str]],
    rates: Mapping[str, Mapping[str, Decimal]],
    functional: Mapping[str, str],
) -> dict[tuple[str, str], Decimal]:
    """Per pair: sum over buckets of ROUND(sum(open x booked fx_rate) x rate, functional minor unit).

    Grouped by booked rate so that the sums stay exact on both databases (a handful of distinct rates per bucket);
    the multiplication by the rate happens in Decimal.
    """
    if not todo:
        return {}
    d = dialect.of(conn)
    pr, s = _union_rows("pr", PAIR_COLUMNS, list(todo)), _aged(conn, as_of)
    i = table("invoices", column("id"), column("fx_rate")).alias("i")
    stmt = (
        select(s.c.entity_code, s.c.currency, s.c.bucket, i.c.fx_rate, func.sum(s.c.open_balance).label("open_sum"))
        .select_from(
            s.join(pr, and_(pr.c.entity_code == s.c.entity_code, pr.c.currency == s.c.currency)).join(
                i, i.c.id == s.c.invoice_id
            )
        )
        .group_by(s.c.entity_code, s.c.currency, s.c.bucket, i.c.fx_rate)
    )
    rows = conn.execute(stmt, {"d": as_of}).all()
    per_bucket: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for r in rows:
        fx = Decimal(str(r.fx_rate)).quantize(Decimal("0.0000000001"))
        per_bucket[(r.entity_code, r.currency, r.bucket)] += _money_sum(d, r.open_sum) * fx
    out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (entity, cur, bucket), amount in per_bucket.items():
        rate = rates[entity].get(bucket, Decimal(0))
        out[(entity, cur)] += round_money(amount * rate, functional[entity])
    return dict(out)


def _allowance_balances(
    conn: Connection, as_of: date, todo: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """GL allowance credit balance (credit - debit) up to ``as_of``, per pair: (transaction, functional)."""
    if not todo:
        return {}
    # The entities' allowance lines (their pairs kept in Python; accounting.chart: the one home of "an account's
    # posted lines").
    p = posted_lines("allowance", through=bindparam("d", type_=Date))
    l = p.l  # noqa: E741
    stmt = (
        select(
            l.c.entity_code,
            l.c.currency,
            func.sum(l.c.credit - l.c.debit).label("bal"),
            func.sum(l.c.functional_credit - l.c.functional_debit).label("fbal"),
        )
        .select_from(p.join)
        .where(l.c.entity_code.in_(bindparam("entities", expanding=True)))
        .group_by(l.c.entity_code, l.c.currency)
    )
    rows = conn.execute(stmt, {"d": as_of, "entities": sorted({e for e, _ in todo})}).all()
    d, wanted = dialect.of(conn), set(todo)
    return {
        (r.entity_code, r.currency): (_money_sum(d, r.bal), _money_sum(d, r.fbal))
        for r in rows
        if (r.entity_code, r.currency) in wanted
    }
