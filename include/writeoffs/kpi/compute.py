"""Computing a report: :func:`kpi_report` runs the queries of a period on one connection and assembles the KPIs per
entity and currency, the functional totals per entity, the breakdowns, the tax listing and the trend.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from writeoffs.db import bulk
from writeoffs.kpi.model import Kpi, KpiReport, TrendRow
from writeoffs.kpi.period import Period, Thresholds, percent
from writeoffs.kpi.queries import (
    _ar_movements,
    _breakdowns,
    _functional_currencies,
    _listing,
    _net_by_pair,
    _recoveries,
    _sales,
    _sums,
    _writeoffs,
)
from writeoffs.money import round_money

_EPOCH = date(1900, 1, 1)


def _kpi(
    entity: str,
    currency: str,
    wo: Mapping[str, Any],
    sales: Decimal,
    open_ar: Decimal,
    rec: Decimal,
    cum_wo: Decimal,
    cum_rec: Decimal,
    th: Thresholds,
) -> Kpi:
    net = wo["gross"] - wo["reversed"]
    r_sales, r_ar = percent(net, sales), percent(net, open_ar)
    return Kpi(
        entity=entity,
        currency=currency,
        written_off=wo["gross"],
        reversed=wo["reversed"],
        net_written_off=net,
        count=wo["n"],
        sales=sales,
        open_ar=open_ar,
        recoveries=rec,
        cumulative_written_off=cum_wo,
        cumulative_recovered=cum_rec,
        rate_of_sales=r_sales,
        rate_of_ar=r_ar,
        class_of_sales=th.classify(r_sales),
        class_of_ar=th.classify(r_ar),
        recovery_rate=percent(rec, net) if net > 0 else None,
        cumulative_recovery_rate=percent(cum_rec, cum_wo) if cum_wo > 0 else None,
    )


def kpi_report(
    conn: Connection,
    start: date,
    end: date,
    *,
    previous: bool = True,
    thresholds: Thresholds | None = None,
) -> KpiReport:
    """Compute the KPIs of [start, end] (inclusive) on one connection (run it in one read transaction)."""
    period = Period.of(start, end)
    th = thresholds or Thresholds()
    bulk.set_local_work_mem(conn)  # open AR from movements hashes per-invoice sums: in memory
    fcur = _functional_currencies(conn)
    wo = _writeoffs(conn, start, end)
    cum = _writeoffs(conn, _EPOCH, end)
    sales = _sums(conn, _sales(), start, end)
    ar = _sums(conn, _ar_movements(), start, end)
    ar_basis = f"sub-ledger as of {end} (invoice movements)"
    rec = _sums(conn, _recoveries(), start, end)
    cum_rec = _sums(conn, _recoveries(), _EPOCH, end)
    by_currency, ent_acc = _per_currency(fcur, wo, cum, sales, ar, rec, cum_rec, th)
    by_entity = _per_entity(ent_acc, th)

    prev_period = trend = trend_f = None
    if previous:
        prev_period = period.previous()
        trend, trend_f = _trend(conn, prev_period, start, end, fcur)
    return KpiReport(
        period=period,
        ar_basis=ar_basis,
        thresholds=th,
        by_currency=tuple(by_currency),
        by_entity=tuple(by_entity),
        breakdowns=_breakdowns(conn, start, end),
        previous=prev_period,
        trend=trend or (),
        trend_functional=trend_f or (),
        listing=_listing(conn, start, end),
    )


def _per_currency(
    fcur: Mapping[str, str],
    wo: Mapping[tuple[str, str], Any],
    cum: Mapping[tuple[str, str], Any],
    sales: Mapping[tuple[str, str], Any],
    ar: Mapping[tuple[str, str], Any],
    rec: Mapping[tuple[str, str], Any],
    cum_rec: Mapping[tuple[str, str], Any],
    th: Thresholds,
) -> tuple[list[Kpi], dict[str, dict[str, Any]]]:
    """The KPIs per entity and currency, and per entity the functional-currency sums :func:`_per_entity` needs."""
    zero = {k: Decimal(0) for k in ("gross", "reversed", "functional_gross", "functional_reversed", "functional_net")}
    zero["n"] = 0
    z2 = (Decimal(0), Decimal(0))

    keys = sorted(set(wo) | set(sales) | set(ar) | set(rec) | set(cum) | set(cum_rec))
    by_currency = []
    ent_acc: dict[str, dict[str, Any]] = {}
    for entity, cur in keys:
        w, c = wo.get((entity, cur), zero), cum.get((entity, cur), zero)
        by_currency.append(
            _kpi(
                entity,
                cur,
                w,
                sales.get((entity, cur), z2)[0],
                ar.get((entity, cur), z2)[0],
                rec.get((entity, cur), z2)[0],
                c["gross"] - c["reversed"],
                cum_rec.get((entity, cur), z2)[0],
                th,
            )
        )
        f = fcur.get(entity, cur)
        acc = ent_acc.setdefault(
            entity, {k: Decimal(0) for k in ("gross", "reversed", "sales", "ar", "rec", "cum", "cum_rec")} | {"n": 0}
        )
        acc["gross"] += w["functional_gross"]
        acc["reversed"] += w["functional_reversed"]
        acc["n"] += w["n"]
        acc["sales"] += sales.get((entity, cur), z2)[1]
        acc["ar"] += ar.get((entity, cur), z2)[1]
        acc["rec"] += rec.get((entity, cur), z2)[1]
        acc["cum"] += c["functional_net"]
        acc["cum_rec"] += cum_rec.get((entity, cur), z2)[1]
        acc["currency"] = f
    return by_currency, ent_acc


def _per_entity(ent_acc: dict[str, dict[str, Any]], th: Thresholds) -> list[Kpi]:
    """The KPIs per entity in its functional currency, from the sums :func:`_per_currency` collected."""
    by_entity = []
    for entity, acc in sorted(ent_acc.items()):
        f = acc["currency"]
        w = {"gross": round_money(acc["gross"], f), "reversed": round_money(acc["reversed"], f), "n": acc["n"]}
        by_entity.append(
            _kpi(
                entity,
                f,
                w,
                round_money(acc["sales"], f),
                round_money(acc["ar"], f),
                round_money(acc["rec"], f),
                round_money(acc["cum"], f),
                round_money(acc["cum_rec"], f),
                th,
            )
        )
    return by_entity


def _trend(
    conn: Connection, prev_period: Period, start: date, end: date, fcur: Mapping[str, str]
) -> tuple[tuple[TrendRow, ...], tuple[TrendRow, ...]]:
    """The net written off of the previous period vs this one: per entity and currency, and per entity in its
    functional currency."""
    prev_pairs, prev_f = _net_by_pair(conn, prev_period.start, prev_period.end)
    cur_pairs, cur_f = _net_by_pair(conn, start, end)
    trend = tuple(
        TrendRow(e, c, prev_pairs.get((e, c), Decimal(0)), cur_pairs.get((e, c), Decimal(0)))
        for e, c in sorted(set(prev_pairs) | set(cur_pairs))
    )
    trend_f = tuple(
        TrendRow(e, fcur.get(e, "?"), prev_f.get(e, Decimal(0)), cur_f.get(e, Decimal(0)))
        for e in sorted(set(prev_f) | set(cur_f))
    )
    return trend, trend_f
