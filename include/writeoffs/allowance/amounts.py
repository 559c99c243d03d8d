"""The estimate rows (stored set-wise), the functional requirement and the GL allowance balances."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, Date, bindparam, select, text

from writeoffs import ledger
from writeoffs.accounting.chart import posted_lines_joins
from writeoffs.allowance.config import RATE_DECIMALS
from writeoffs.allowance.model import BucketEstimate
from writeoffs.allowance.sql import _aged, _dec, _money_sum, _union_rows
from writeoffs.buckets import DEFAULT_BUCKETS
from writeoffs.db.schema import allowance_estimates
from writeoffs.money import round_money


def _rates_table(rates: Mapping[str, Mapping[str, Decimal]], entities: Iterable[str]) -> tuple[str, dict]:
    rows = [(e, b, r) for e in sorted(set(entities)) for b, r in sorted(rates[e].items())]
    return _union_rows(
        "r",
        (("entity_code", "VARCHAR(16)"), ("bucket", "VARCHAR(16)"), ("rate", "NUMERIC(9, 6)")),
        [(e, b, str(r)) for e, b, r in rows],
    )


def _store_estimates(
    conn: Connection, as_of: date, todo: Sequence[tuple[str, str]], rates: Mapping[str, Mapping[str, Decimal]]
) -> None:
    """One row per (entity, currency, configured bucket), zeros included; ``ON CONFLICT DO NOTHING``."""
    dialect = conn.dialect.name
    rates_sql, params = _rates_table(rates, (e for e, _ in todo))
    pairs_sql, p2 = _union_rows("p", (("entity_code", "VARCHAR(16)"), ("currency", "VARCHAR(3)")), list(todo))
    params |= p2 | {"d": as_of}
    select_sql = f"""
        WITH rt AS ({rates_sql}), pr AS ({pairs_sql}),
        ag AS (SELECT s.entity_code, s.currency, s.bucket, SUM(s.open_balance) AS open_sum
               FROM {_aged(conn, as_of)} s GROUP BY s.entity_code, s.currency, s.bucket)
        SELECT pr.entity_code, pr.currency, rt.bucket, rt.rate, c.minor_unit, ag.open_sum
        FROM pr
        JOIN rt ON rt.entity_code = pr.entity_code
        JOIN currencies c ON c.code = pr.currency
        LEFT JOIN ag ON ag.entity_code = pr.entity_code AND ag.currency = pr.currency AND ag.bucket = rt.bucket
    """
    if dialect == "postgresql":
        # Exact NUMERIC; ROUND on numeric rounds half away from zero = half-up for these non-negative amounts.
        conn.execute(
            text(
                f"""
                INSERT INTO allowance_estimates
                    (as_of_date, entity_code, currency, bucket, open_balance, loss_rate, required_allowance)
                SELECT :d, x.entity_code, x.currency, x.bucket, COALESCE(x.open_sum, 0), x.rate,
                       ROUND(COALESCE(x.open_sum, 0) * x.rate, x.minor_unit)
                FROM ({select_sql}) x
                ON CONFLICT (as_of_date, entity_code, currency, bucket) DO NOTHING
                """
            ).bindparams(bindparam("d", type_=Date)),
            params,
        )
        return
    rows = conn.execute(text(select_sql).bindparams(bindparam("d", type_=Date)), params).all()
    out = []
    for r in rows:
        open_sum = _money_sum(dialect, r.open_sum)
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
    ledger.upsert_ignore(conn, allowance_estimates, out, ["as_of_date", "entity_code", "currency", "bucket"])


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
    dialect = conn.dialect.name
    pairs_sql, params = _union_rows("p", (("entity_code", "VARCHAR(16)"), ("currency", "VARCHAR(3)")), list(todo))
    params["d"] = as_of
    rows = conn.execute(
        text(
            f"""
            WITH pr AS ({pairs_sql})
            SELECT s.entity_code, s.currency, s.bucket, i.fx_rate, SUM(s.open_balance) AS open_sum
            FROM {_aged(conn, as_of)} s
            JOIN pr ON pr.entity_code = s.entity_code AND pr.currency = s.currency
            JOIN invoices i ON i.id = s.invoice_id
            GROUP BY s.entity_code, s.currency, s.bucket, i.fx_rate
            """
        ).bindparams(bindparam("d", type_=Date)),
        params,
    ).all()
    per_bucket: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for r in rows:
        fx = Decimal(str(r.fx_rate)).quantize(Decimal("0.0000000001"))
        per_bucket[(r.entity_code, r.currency, r.bucket)] += _money_sum(dialect, r.open_sum) * fx
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
    pairs_sql, params = _union_rows("p", (("entity_code", "VARCHAR(16)"), ("currency", "VARCHAR(3)")), list(todo))
    params["d"] = as_of
    rows = conn.execute(
        text(
            f"""
            WITH pr AS ({pairs_sql})
            SELECT l.entity_code, l.currency, SUM(l.credit - l.debit) AS bal,
                   SUM(l.functional_credit - l.functional_debit) AS fbal
            FROM journal_lines l
            JOIN pr ON pr.entity_code = l.entity_code AND pr.currency = l.currency
            {posted_lines_joins("allowance", through=":d")}
            GROUP BY l.entity_code, l.currency
            """
        ).bindparams(bindparam("d", type_=Date)),
        params,
    ).all()
    return {
        (r.entity_code, r.currency): (_money_sum(conn.dialect.name, r.bal), _money_sum(conn.dialect.name, r.fbal))
        for r in rows
    }
