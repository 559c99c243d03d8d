"""The universe generated up front: customers (with their special cases), invoice counts, the FX table, chunks."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

import numpy as np

from writeoffs.sample.generator.design import (
    _NAME_FIRST,
    _NAME_SECOND,
    _SEGMENT_WEIGHTS,
    _SUFFIX,
    _SURNAMES,
    BANKRUPT_RATE,
    CHILD_RATE,
    CHUNK_INVOICES,
    DISSOLVED_RATE,
    GBP_SHARE_OF_EU,
    INVOICES_PER_CUSTOMER,
    LONG_TAIL_MAX_DAYS,
    MIN_BANKRUPT,
    MIN_CHILDREN,
    MIN_DISSOLVED,
    SEGMENTS,
    TERMS_DAYS,
    US_SHARE,
    WORKED_CUSTOMER_NAME,
    WORKED_CUSTOMER_REF,
    SampleSpec,
)


@dataclass(slots=True)
class Universe:
    """Everything generated up front: the customers, the FX table and the chunk plan."""

    spec: SampleSpec
    as_of_ord: int
    base_ord: int  # earliest ordinal any generated date can have (date tables start here)
    cust_ref: list[str]
    cust_name: list[str]
    entity: np.ndarray  # per customer: 0 US01, 1 EU01
    currency: np.ndarray  # per customer: index into CURRENCIES
    segment: np.ndarray  # index into SEGMENTS
    parent: np.ndarray  # customer index of the parent, -1 if none
    is_child: np.ndarray
    bankrupt: np.ndarray
    bankruptcy_date: np.ndarray  # ordinal or NO_DATE
    dissolved: np.ndarray
    dissolved_date: np.ndarray
    inv_count: np.ndarray  # invoices per customer (sum = spec.invoices)
    gbp_rate_by_month: np.ndarray  # GBP->EUR rate in 1/10,000, indexed by month number since base
    chunks: list[tuple[int, int]]  # customer index ranges [start, stop)
    month_of_day: np.ndarray  # ordinal - base_ord -> months since base_ord's month (FX table index)

    @property
    def n_customers(self) -> int:
        return len(self.cust_ref)


def _pick_distinct(rnd: random.Random, population: range, k: int) -> list[int]:
    return rnd.sample(population, min(k, len(population)))


@dataclass(slots=True)
class _Customers:
    """The customers drawn one by one (see :func:`_draw_customers`), before their invoices are counted."""

    refs: list[str]
    names: list[str]
    entity: np.ndarray
    currency: np.ndarray
    segment: np.ndarray
    parent: np.ndarray
    bankrupt: np.ndarray
    bankruptcy_date: np.ndarray
    dissolved: np.ndarray
    dissolved_date: np.ndarray
    weights: np.ndarray  # relative invoice volume


def build_universe(spec: SampleSpec) -> Universe:
    rnd = random.Random(spec.seed)
    as_of_ord = spec.as_of.toordinal()
    # Dates never precede the oldest possible invoice (longest tail plus longest terms), plus a margin.
    base_ord = as_of_ord - LONG_TAIL_MAX_DAYS - int(TERMS_DAYS.max()) - 31
    n_cust = max(10, spec.invoices // INVOICES_PER_CUSTOMER)
    cs = _draw_customers(rnd, n_cust, as_of_ord)
    counts = _invoice_counts(spec, n_cust, cs.weights)
    month_of_day, rates = _gbp_rates(rnd, spec, base_ord, as_of_ord)
    chunks = _chunk_plan(counts, n_cust)

    return Universe(
        spec=spec,
        as_of_ord=as_of_ord,
        base_ord=base_ord,
        cust_ref=cs.refs,
        cust_name=cs.names,
        entity=cs.entity,
        currency=cs.currency,
        segment=cs.segment,
        parent=cs.parent,
        is_child=cs.parent >= 0,
        bankrupt=cs.bankrupt,
        bankruptcy_date=cs.bankruptcy_date,
        dissolved=cs.dissolved,
        dissolved_date=cs.dissolved_date,
        inv_count=counts,
        gbp_rate_by_month=np.array(rates, dtype=np.int64),
        chunks=chunks,
        month_of_day=month_of_day,
    )


def _draw_customers(rnd: random.Random, n_cust: int, as_of_ord: int) -> _Customers:
    """The customers in index order, from ``rnd``: entity, currency, segment, volume weight and the special cases."""
    # Special customers are disjoint sets drawn once; customer 0 is the worked example and stays ordinary.
    n_bk = max(MIN_BANKRUPT, round(BANKRUPT_RATE * n_cust))
    n_ds = max(MIN_DISSOLVED, round(DISSOLVED_RATE * n_cust))
    n_ch = max(MIN_CHILDREN, round(CHILD_RATE * n_cust))
    special = _pick_distinct(rnd, range(2, n_cust), n_bk + n_ds + n_ch)
    bankrupt_set = set(special[:n_bk])
    dissolved_set = set(special[n_bk : n_bk + n_ds])
    child_set = set(special[n_bk + n_ds :])

    entity = np.zeros(n_cust, dtype=np.int64)
    currency = np.zeros(n_cust, dtype=np.int64)
    segment = np.zeros(n_cust, dtype=np.int64)
    parent = np.full(n_cust, -1, dtype=np.int64)
    bankrupt = np.zeros(n_cust, dtype=bool)
    bk_date = np.zeros(n_cust, dtype=np.int64)
    dissolved = np.zeros(n_cust, dtype=bool)
    ds_date = np.zeros(n_cust, dtype=np.int64)
    weights = np.zeros(n_cust, dtype=np.float64)
    refs: list[str] = []
    names: list[str] = []
    parents_so_far: dict[int, list[int]] = {0: [], 1: []}
    for i in range(n_cust):
        if i == 0:
            ent, cur, seg = 0, 0, SEGMENTS.index("it_services")
            refs.append(WORKED_CUSTOMER_REF)
            names.append(WORKED_CUSTOMER_NAME)
        else:
            ent = 0 if rnd.random() < US_SHARE else 1
            cur = 0 if ent == 0 else (2 if rnd.random() < GBP_SHARE_OF_EU else 1)
            seg = rnd.choices(range(len(SEGMENTS)), weights=_SEGMENT_WEIGHTS)[0]
            refs.append(f"C{i:07d}")
            names.append(_customer_name(rnd, ent))
        entity[i], currency[i], segment[i] = ent, cur, seg
        # Heavy-tailed invoice volume: a few large accounts, many small ones.
        weights[i] = min(rnd.paretovariate(1.2), 40.0)
        if i in child_set and parents_so_far[ent]:
            parent[i] = rnd.choice(parents_so_far[ent])
        elif i > 0:
            parents_so_far[ent].append(i)
        if i in bankrupt_set:
            bankrupt[i] = True
            bk_date[i] = as_of_ord - rnd.randint(45, 720)
        if i in dissolved_set:
            dissolved[i] = True
            ds_date[i] = as_of_ord - rnd.randint(60, 900)
    return _Customers(refs, names, entity, currency, segment, parent, bankrupt, bk_date, dissolved, ds_date, weights)


def _invoice_counts(spec: SampleSpec, n_cust: int, weights: np.ndarray) -> np.ndarray:
    """Invoices per customer, summing to ``spec.invoices``."""
    # Every customer has at least one invoice (the export only knows customers through their invoices); the
    # worked example's customer has exactly one.
    np_rng = np.random.default_rng([spec.seed, 0])
    counts = np.ones(n_cust, dtype=np.int64)
    extra = spec.invoices - n_cust
    w = weights.copy()
    w[0] = 0.0
    counts += np_rng.multinomial(extra, w / w.sum())
    return counts


def _gbp_rates(rnd: random.Random, spec: SampleSpec, base_ord: int, as_of_ord: int) -> tuple[np.ndarray, list[int]]:
    """(months since the base month per day from ``base_ord``, the GBP->EUR rate per month in 1/10,000)."""
    # GBP->EUR booked rate per month: a bounded random walk around 1.15.
    base = date.fromordinal(base_ord)
    months = (spec.as_of.year * 12 + spec.as_of.month) - (base.year * 12 + base.month)
    month_of_day = np.array(
        [
            (d.year - base.year) * 12 + d.month - base.month
            for d in map(date.fromordinal, range(base_ord, as_of_ord + 1))
        ],
        dtype=np.int64,
    )
    rate = 11_500
    rates = []
    for _ in range(months + 1):
        rate = min(11_900, max(11_200, rate + rnd.randint(-80, 80)))
        rates.append(rate)
    return month_of_day, rates


def _chunk_plan(counts: np.ndarray, n_cust: int) -> list[tuple[int, int]]:
    """Customer index ranges [start, stop) of the chunks."""
    # Chunks: runs of whole customers holding about CHUNK_INVOICES invoices each.
    chunk_of = (np.cumsum(counts) - 1) // CHUNK_INVOICES
    starts = [0, *(np.flatnonzero(np.diff(chunk_of)) + 1).tolist()]
    chunks = list(zip(starts, [*starts[1:], n_cust], strict=True))
    return chunks


def _customer_name(rnd: random.Random, ent: int) -> str:
    pick = rnd.random()
    if pick < 0.12:
        # Commas and apostrophes in names: the CSV must quote them, ingestion must not split them.
        a, b = rnd.sample(_SURNAMES, 2)
        return f"{a}, {b} & Partners {rnd.choice(_SUFFIX[ent])}"
    return f"{rnd.choice(_NAME_FIRST)} {rnd.choice(_NAME_SECOND)} {rnd.choice(_SUFFIX[ent])}"
