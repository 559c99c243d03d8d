"""Drawing one chunk: its invoices, payments, collection activities and holds, vectorised; and the chunk stream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from writeoffs.sample.generator.chunk import Chunk, _Counters
from writeoffs.sample.generator.design import (
    _AMOUNT_TIERS,
    _AMOUNT_WEIGHTS,
    _BUCKET_HI,
    _BUCKET_LO,
    AGENCY,
    BUCKET_WEIGHTS,
    CONTACT,
    DESCRIPTION_TABLE,
    DISPUTE_RATE,
    DISPUTE_REASONS,
    DISTRESSED_BUCKET_WEIGHTS,
    DISTRESSED_PARTIAL,
    FULLY_PAID_BY_BUCKET,
    LEGAL,
    LETTER,
    LONG_TAIL_MAX_DAYS,
    LONG_TAIL_SHARE,
    NO_DATE,
    ONE_E4,
    PARENT_PARTIAL_RATE,
    PARTIALLY_PAID_BY_BUCKET,
    PAYMENT_PLAN_RATE,
    RESOLVED_DISPUTE_RATE,
    TERMS_DAYS,
    TRANSFERRED_RATE,
    WORKED_AMOUNT_CENTS,
    WORKED_DESCRIPTION,
    worked_invoice_date,
)
from writeoffs.sample.generator.totals import Totals
from writeoffs.sample.generator.universe import Universe


def _group_index(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``np.repeat(arange(n), counts)``: (owner of each row, position of the row within its owner)."""
    owner = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(owner.size) - starts[owner]


def _draw_bucket(rng: np.random.Generator, distressed: np.ndarray) -> np.ndarray:
    r = rng.random(distressed.size)
    normal = np.searchsorted(np.cumsum(BUCKET_WEIGHTS), r, side="right")
    bad = np.searchsorted(np.cumsum(DISTRESSED_BUCKET_WEIGHTS), r, side="right")
    return np.minimum(np.where(distressed, bad, normal), len(BUCKET_WEIGHTS) - 1)


@dataclass(slots=True)
class _Invoices:
    """One chunk's invoices as drawn (indexed by position within the chunk); the later draws read them."""

    cust: np.ndarray
    dpd: np.ndarray  # days past due at as-of
    due: np.ndarray
    inv: np.ndarray  # invoice date
    amount: np.ndarray
    fx: np.ndarray
    full: np.ndarray
    part: np.ndarray
    disputed: np.ndarray
    plan: np.ndarray
    transferred: np.ndarray
    desc: np.ndarray
    worked: np.ndarray
    paid: np.ndarray
    open_balance: np.ndarray
    inv_id: np.ndarray
    payer: np.ndarray


@dataclass(slots=True)
class _Payments:
    """One chunk's payment allocations (one row per payment and invoice) and the instalments drawn per invoice."""

    owner: np.ndarray  # invoice position of each allocation row
    applied: np.ndarray
    pay_date: np.ndarray
    pay_total: np.ndarray
    pay_id: np.ndarray
    alloc_id: np.ndarray
    n_inst: np.ndarray  # per invoice; a payment plan's instalments are also its hold's note


@dataclass(slots=True)
class _Activities:
    """One chunk's collection activities, sorted by customer, invoice, date and type."""

    act_id: np.ndarray
    local: np.ndarray
    cust: np.ndarray
    type: np.ndarray
    channel: np.ndarray
    date: np.ndarray
    end: np.ndarray
    outcome: np.ndarray


@dataclass(slots=True)
class _Holds:
    """One chunk's holds (disputes and payment plans), sorted by invoice and start."""

    dispute_since: np.ndarray  # per invoice
    hold_id: np.ndarray
    local: np.ndarray
    type: np.ndarray
    start: np.ndarray
    end: np.ndarray
    resolution: np.ndarray
    note: np.ndarray


def generate_chunk(u: Universe, k: int, ids: _Counters) -> Chunk:
    """Chunk ``k`` of the universe; ``ids`` carries the global id counters and is advanced."""
    rng = np.random.default_rng([u.spec.seed, k + 1])
    c0, c1 = u.chunks[k]
    # The draws share one stream: their order is part of the output.
    iv = _draw_invoices(u, k, rng, ids)
    pays = _draw_payments(u, rng, iv, ids)
    acts = _draw_activities(u, k, rng, iv, ids)
    holds = _draw_holds(u, rng, iv, pays.n_inst, ids)
    inv_id, owner = iv.inv_id, pays.owner

    return Chunk(
        index=k,
        cust_start=c0,
        cust_stop=c1,
        inv_id=inv_id,
        inv_cust=iv.cust,
        inv_date=iv.inv,
        due_date=iv.due,
        amount=iv.amount,
        open_balance=iv.open_balance,
        fx_e4=iv.fx,
        disputed=iv.disputed,
        dispute_since=holds.dispute_since,
        payment_plan=iv.plan,
        transferred=iv.transferred,
        description=iv.desc,
        pay_id=pays.pay_id,
        pay_cust=iv.payer[owner],
        pay_date=pays.pay_date,
        pay_amount=pays.pay_total,
        alloc_id=pays.alloc_id,
        alloc_inv=inv_id[owner],
        alloc_local=owner,
        applied=pays.applied,
        act_id=acts.act_id,
        act_cust=acts.cust,
        act_inv=np.where(acts.local >= 0, inv_id[np.maximum(acts.local, 0)], 0),
        act_local=acts.local,
        act_type=acts.type,
        act_channel=acts.channel,
        act_date=acts.date,
        act_end=acts.end,
        act_outcome=acts.outcome,
        hold_id=holds.hold_id,
        hold_cust=iv.cust[holds.local],
        hold_inv=inv_id[holds.local],
        hold_type=holds.type,
        hold_start=holds.start,
        hold_end=holds.end,
        hold_resolution=holds.resolution,
        hold_note=holds.note,
    )


def _draw_invoices(u: Universe, k: int, rng: np.random.Generator, ids: _Counters) -> _Invoices:
    """The chunk's invoices: aging, amount, FX rate, payment state (chunk 0 starts with the worked example)."""
    as_of = u.as_of_ord
    c0, c1 = u.chunks[k]
    cust = np.repeat(np.arange(c0, c1, dtype=np.int64), u.inv_count[c0:c1])
    n = cust.size
    distressed = u.bankrupt[cust] | u.dissolved[cust]

    # Aging: a bucket, then days past due within it, then the dates.
    bucket = _draw_bucket(rng, distressed)
    terms = TERMS_DAYS[rng.integers(0, TERMS_DAYS.size, n)]
    lo = np.where(bucket == 0, 1 - terms, _BUCKET_LO[np.maximum(bucket - 1, 0)])
    tail = np.where(rng.random(n) < LONG_TAIL_SHARE, LONG_TAIL_MAX_DAYS, 365 + 365)
    hi = np.where(bucket == 0, 0, np.where(bucket == len(BUCKET_WEIGHTS) - 1, tail, _BUCKET_HI[bucket - 1]))
    dpd = rng.integers(lo, hi + 1)
    due = as_of - dpd
    inv = due - terms

    tier = np.minimum(np.searchsorted(np.cumsum(_AMOUNT_WEIGHTS), rng.random(n), side="right"), 4)
    amount = rng.integers(_AMOUNT_TIERS[tier, 0], _AMOUNT_TIERS[tier, 1])
    whole = rng.random(n) < 0.35
    amount = np.where(whole, np.maximum(amount // 10_000, 1) * 10_000, amount)

    cur = u.currency[cust]
    fx = np.where(cur == 2, u.gbp_rate_by_month[u.month_of_day[inv - u.base_ord]], ONE_E4)

    # Payment state.
    r = rng.random(n)
    p_full = np.where(distressed, 0.0, FULLY_PAID_BY_BUCKET[bucket])
    p_part = np.where(distressed, DISTRESSED_PARTIAL, PARTIALLY_PAID_BY_BUCKET[bucket])
    full = r < p_full
    part = ~full & (r < p_full + p_part)
    disputed = rng.random(n) < DISPUTE_RATE
    full &= ~disputed
    plan = ~full & ~disputed & ~distressed & (dpd >= 31) & (dpd <= 365) & (rng.random(n) < PAYMENT_PLAN_RATE)
    transferred = u.is_child[cust] & (rng.random(n) < TRANSFERRED_RATE)
    part |= plan | (transferred & ~full & (rng.random(n) < PARENT_PARTIAL_RATE))
    part &= ~full
    pct = rng.integers(10, 91, n)
    seg = u.segment[cust]
    desc = seg * 4 + rng.integers(0, 4, n)

    worked = np.zeros(n, dtype=bool)
    if k == 0:
        # Customer 0 is the worked example and has exactly one invoice: overwrite it with the worked example's facts.
        w_inv = worked_invoice_date(u.spec.as_of).toordinal()
        worked[0] = True
        inv[0], terms[0], due[0], dpd[0] = w_inv, 30, w_inv + 30, as_of - (w_inv + 30)
        amount[0], fx[0] = WORKED_AMOUNT_CENTS, ONE_E4
        full[0] = part[0] = disputed[0] = plan[0] = transferred[0] = False
        desc[0] = DESCRIPTION_TABLE.index(WORKED_DESCRIPTION)

    paid = np.where(full, amount, np.where(part, amount * pct // 100, 0))
    open_balance = amount - paid
    inv_id = ids.invoice + 1 + np.arange(n, dtype=np.int64)
    ids.invoice += n
    payer = np.where(transferred, u.parent[cust], cust)
    return _Invoices(
        cust, dpd, due, inv, amount, fx, full, part, disputed, plan, transferred, desc, worked, paid, open_balance,
        inv_id, payer,
    )  # fmt: skip


def _draw_payments(u: Universe, rng: np.random.Generator, iv: _Invoices, ids: _Counters) -> _Payments:
    """Payments of the paid part of each invoice: one, two, or a plan's instalments; neighbours sometimes share one."""
    as_of = u.as_of_ord
    n = iv.cust.size
    full, part, plan, paid, due, inv, payer = iv.full, iv.part, iv.plan, iv.paid, iv.due, iv.inv, iv.payer
    n_inst = np.where(plan, rng.integers(2, 6, n), 1 + (rng.random(n) < 0.25))
    npay = np.where(full, 1, np.where(part, n_inst, 0))
    owner, j = _group_index(npay)
    kk = npay[owner]
    a_paid = paid[owner]
    applied = a_paid * (j + 1) // kk - a_paid * j // kk
    win_end = np.where(full, np.minimum(as_of, due + 45), as_of)
    win_start = np.minimum(inv + 1, win_end)
    span = (win_end - win_start)[owner]
    pay_date = win_start[owner] + span * j // kk + rng.integers(0, span // kk + 1)
    # A third of the neighbouring fully paid invoices of the same payer were settled by one payment.
    row_of = np.cumsum(npay) - npay
    pos = np.arange(n - 1)
    pair = (pos % 2 == 0) & full[:-1] & full[1:] & (payer[:-1] == payer[1:]) & (rng.random(max(n - 1, 0)) < 0.33)
    first_rows = row_of[:-1][pair]
    second_rows = row_of[1:][pair]
    both = np.maximum(pay_date[first_rows], pay_date[second_rows])
    pay_date[first_rows] = both
    pay_date[second_rows] = both
    new_payment = np.ones(owner.size, dtype=bool)
    new_payment[second_rows] = False
    pay_local = np.cumsum(new_payment) - 1
    pay_total = np.add.reduceat(applied, np.flatnonzero(new_payment))[pay_local] if owner.size else applied.copy()
    pay_id = ids.payment + 1 + pay_local
    ids.payment += int(new_payment.sum())
    alloc_id = ids.allocation + 1 + np.arange(owner.size, dtype=np.int64)
    ids.allocation += owner.size
    return _Payments(owner, applied, pay_date, pay_total, pay_id, alloc_id, n_inst)


def _draw_activities(u: Universe, k: int, rng: np.random.Generator, iv: _Invoices, ids: _Counters) -> _Activities:
    """Collection activities: effort grows with age; plus account-level ones and the worked example's."""
    as_of = u.as_of_ord
    c0, c1 = u.chunks[k]
    n = iv.cust.size
    cust, dpd, due, amount, open_balance, worked = iv.cust, iv.dpd, iv.due, iv.amount, iv.open_balance, iv.worked
    active = (open_balance > 0) & (dpd > 0) & ~worked
    lam = np.where(active, np.minimum(dpd, 490) / 35.0, 0.0)
    n_contact = np.minimum(rng.poisson(lam), 14)
    n_letter = np.where(active & (dpd >= 45), rng.binomial(np.clip((dpd - 15) // 45, 0, 3), 0.7), 0)
    placed = active & (dpd >= 150) & (rng.random(n) < np.where(dpd >= 365, 0.6, 0.4))
    legal = active & (dpd >= 240) & (amount >= 1_000_000) & ~u.bankrupt[cust] & (rng.random(n) < 0.15)

    c_own, c_j = _group_index(n_contact)
    c_k = n_contact[c_own]
    c_span = dpd[c_own] - 1
    c_date = due[c_own] + 1 + c_span * c_j // c_k + rng.integers(0, c_span // c_k + 1)
    c_email = (rng.random(c_own.size) < 0.4).astype(np.int64)
    c_out = np.where(c_email == 1, 5 + rng.integers(0, 3, c_own.size), 1 + rng.integers(0, 4, c_own.size))

    l_own, l_j = _group_index(n_letter)
    l_date = np.minimum(due[l_own] + 30 * (l_j + 1) + rng.integers(0, 10, l_own.size), as_of)

    p_own = np.flatnonzero(placed)
    p_date = due[p_own] + 120 + rng.integers(0, 30, p_own.size)
    p_end = p_date + np.array([60, 90, 120])[rng.integers(0, 3, p_own.size)]
    p_done = p_end <= as_of
    p_out = np.where(p_done, np.array([9, 9, 10, 11])[rng.integers(0, 4, p_own.size)], 12)
    p_end = np.where(p_done, p_end, NO_DATE)

    g_own = np.flatnonzero(legal)
    g_date = due[g_own] + 200 + rng.integers(0, 40, g_own.size)
    g_end = g_date + rng.integers(30, 121, g_own.size)
    g_done = (rng.random(g_own.size) < 0.4) & (g_end <= as_of)
    g_out = np.where(g_done, 14, 13)
    g_end = np.where(g_done, g_end, NO_DATE)

    # Account-level activities: bankruptcy claims and the note that a company was dissolved.
    ccust = np.arange(c0, c1, dtype=np.int64)
    bk = ccust[u.bankrupt[c0:c1]]
    bk_date = np.minimum(u.bankruptcy_date[bk] + 14, as_of)
    dz = ccust[u.dissolved[c0:c1]]

    parts = [
        # (invoice position or -1, customer, type, channel, date, end, outcome)
        (c_own, cust[c_own], CONTACT, c_email, c_date, NO_DATE, c_out),
        (l_own, cust[l_own], LETTER, 0, l_date, NO_DATE, 8),
        (p_own, cust[p_own], AGENCY, 0, p_date, p_end, p_out),
        (g_own, cust[g_own], LEGAL, 0, g_date, g_end, g_out),
        (np.full(bk.size, -1), bk, LEGAL, 0, bk_date, NO_DATE, 15),
        (np.full(dz.size, -1), dz, CONTACT, 0, u.dissolved_date[dz], NO_DATE, 16),
    ]
    if k == 0:
        parts.extend(_worked_activities(u))
    cols = [
        np.concatenate([np.broadcast_to(np.asarray(p[f], dtype=np.int64), p[0].shape) for p in parts]) for f in range(7)
    ]
    a_local, a_cust, a_type, a_chan, a_date, a_end, a_out = cols
    order = np.lexsort((a_type, a_date, a_local, a_cust))
    a_local, a_cust, a_type, a_chan, a_date, a_end, a_out = (c[order] for c in cols)
    act_id = ids.activity + 1 + np.arange(a_local.size, dtype=np.int64)
    ids.activity += a_local.size
    return _Activities(act_id, a_local, a_cust, a_type, a_chan, a_date, a_end, a_out)


def _draw_holds(u: Universe, rng: np.random.Generator, iv: _Invoices, n_inst: np.ndarray, ids: _Counters) -> _Holds:
    """Holds: open disputes, resolved past disputes (ledger-only history) and payment plans."""
    as_of = u.as_of_ord
    n = iv.cust.size
    disputed, inv, due, dpd, plan = iv.disputed, iv.inv, iv.due, iv.dpd, iv.plan
    open_balance, worked = iv.open_balance, iv.worked
    d_own = np.flatnonzero(disputed)
    d_start = inv[d_own] + rng.integers(0, as_of - inv[d_own] + 1)
    dispute_since = np.zeros(n, dtype=np.int64)
    dispute_since[d_own] = d_start
    resolved = (open_balance > 0) & ~disputed & (dpd > 30) & ~worked & (rng.random(n) < RESOLVED_DISPUTE_RATE)
    r_own = np.flatnonzero(resolved)
    r_start = due[r_own] + rng.integers(0, dpd[r_own] // 2 + 1)
    r_end = np.minimum(r_start + rng.integers(7, 61, r_own.size), as_of)
    r_res = 1 + (rng.random(r_own.size) < 0.45)
    pl_own = np.flatnonzero(plan)
    pl_start = due[pl_own] + rng.integers(15, dpd[pl_own] - 9)
    hparts = [
        # (invoice position, type, start, end, resolution, note)
        (d_own, 0, d_start, NO_DATE, 0, rng.integers(1, len(DISPUTE_REASONS), d_own.size)),
        (r_own, 0, r_start, r_end, r_res, rng.integers(1, len(DISPUTE_REASONS), r_own.size)),
        (pl_own, 1, pl_start, NO_DATE, 0, n_inst[pl_own]),
    ]
    hcols = [
        np.concatenate([np.broadcast_to(np.asarray(p[f], dtype=np.int64), p[0].shape) for p in hparts])
        for f in range(6)
    ]
    horder = np.lexsort((hcols[2], hcols[0]))
    h_local, h_type, h_start, h_end, h_res, h_note = (c[horder] for c in hcols)
    hold_id = ids.hold + 1 + np.arange(h_local.size, dtype=np.int64)
    ids.hold += h_local.size
    return _Holds(dispute_since, hold_id, h_local, h_type, h_start, h_end, h_res, h_note)


def _worked_activities(u: Universe) -> list[tuple]:
    """12 contact attempts, 3 demand letters, one 90-day agency placement that ended unsuccessfully."""
    d = worked_invoice_date(u.spec.as_of).toordinal()
    z = np.zeros(1, dtype=np.int64)
    contacts = np.zeros(12, dtype=np.int64)
    letters = np.zeros(3, dtype=np.int64)
    c_dates = d + 35 + 14 * np.arange(12)
    channel = np.arange(12) % 2  # alternating call / email
    return [
        (contacts, 0, CONTACT, channel, c_dates, NO_DATE, np.where(channel == 1, 6, 1)),
        (letters, 0, LETTER, 0, d + 60 + 30 * np.arange(3), NO_DATE, 8),
        (z, 0, AGENCY, 0, d + 200, d + 290, 9),
    ]


def iter_chunks(u: Universe, totals: Totals | None = None) -> Iterator[Chunk]:
    """The chunks in order; ``totals`` (if given) is updated as each chunk is produced."""
    ids = _Counters()
    for k in range(len(u.chunks)):
        chunk = generate_chunk(u, k, ids)
        if totals is not None:
            totals.add(u, chunk)
        yield chunk
