"""Deterministic, chunked generator of an ERP's accounts receivable.

The data is a pure function of ``(seed, invoices, as_of)``: customers come from ``random.Random(seed)``, each chunk
of invoices from its own ``numpy`` generator seeded with ``[seed, chunk_no]``. There is no global random state, so
the same spec always yields the same rows, whichever output format (or the ledger loader) consumes them, and a
chunk does not depend on how fast the previous one was consumed.

Scale: customers (one per ~20 invoices) are held in memory; invoices, payments, activities and holds are produced
in chunks of whole customers (~50,000 invoices each), vectorised with numpy. Chunk boundaries depend only on the
spec, never on a knob, because they are part of what the random streams are keyed on.

Money never passes through floating point: amounts are integer minor units (cents) from the first draw; FX rates
are integers in 1/10,000. Floats appear only as probabilities and Poisson means.
"""

from __future__ import annotations

import calendar
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from writeoffs.buckets import DEFAULT_BUCKETS
from writeoffs.errors import InputError

#: Bumped whenever the shape of the generated data changes (recorded in the seed's audit row).
GENERATOR_VERSION = 1
DEFAULT_AS_OF = date(2026, 11, 24)
DEFAULT_SEED = 42
MIN_INVOICES = 100
MAX_INVOICES = 10_000_000
#: Invoices per chunk (whole customers, so slightly more). A constant on purpose: the random streams are keyed by
#: chunk number, so making it a knob would make the output depend on it.
CHUNK_INVOICES = 50_000
INVOICES_PER_CUSTOMER = 20

#: (code, name, functional currency, write-off method)
ENTITIES: tuple[tuple[str, str, str, str], ...] = (
    ("US01", "Fabrikam Inc.", "USD", "direct"),
    ("EU01", "Fabrikam Europe B.V.", "EUR", "allowance"),
)
CURRENCIES: tuple[str, ...] = ("USD", "EUR", "GBP")
CURRENCY_ENTITY = np.array([0, 1, 1])  # USD invoices are billed by US01, EUR and GBP ones by EU01
ONE_E4 = 10_000  # FX rates are integers in 1/10,000 of the functional currency

SEGMENTS: tuple[str, ...] = (
    "it_services",
    "manufacturing",
    "retail",
    "healthcare",
    "wholesale",
    "public_sector",
    "financial_services",
)
_SEGMENT_WEIGHTS = (20, 22, 18, 10, 15, 5, 10)

# --- aging design ---------------------------------------------------------------------------------------------
#: Bucket labels, from the shared definition (current, 1-30, ..., 181-365, 365+).
BUCKET_LABELS: tuple[str, ...] = tuple(b.label for b in DEFAULT_BUCKETS)
#: Share of invoices per bucket for an ordinary customer (by days past due at as-of).
BUCKET_WEIGHTS: tuple[float, ...] = (0.55, 0.15, 0.08, 0.05, 0.04, 0.04, 0.05, 0.04)
#: Bankrupt and dissolved customers stopped paying long ago: their invoices sit in the old buckets.
DISTRESSED_BUCKET_WEIGHTS: tuple[float, ...] = (0.02, 0.03, 0.05, 0.08, 0.10, 0.17, 0.25, 0.30)
_BUCKET_LO = np.array([b.low for b in DEFAULT_BUCKETS[1:]], dtype=np.int64)
_BUCKET_HI = np.array([b.high if b.high is not None else 0 for b in DEFAULT_BUCKETS[1:]], dtype=np.int64)
#: The 365+ tail: 70 % within the second year past due, 30 % spread over years two to five.
LONG_TAIL_SHARE = 0.30
LONG_TAIL_MAX_DAYS = 365 + 1460
TERMS_DAYS = np.array([15, 30, 30, 30, 30, 45, 60, 60], dtype=np.int64)

#: Probability that an invoice of a bucket is fully paid / partially paid (ordinary customers).
FULLY_PAID_BY_BUCKET = np.array([0.12, 0.18, 0.12, 0.08, 0.05, 0.03, 0.02, 0.01])
PARTIALLY_PAID_BY_BUCKET = np.array([0.08, 0.12, 0.15, 0.15, 0.15, 0.15, 0.12, 0.10])
DISTRESSED_PARTIAL = 0.04
DISPUTE_RATE = 0.03  # of all invoices: disputed invoices are never fully paid
RESOLVED_DISPUTE_RATE = 0.015  # of open invoices more than 30 days past due (ledger-only history)
PAYMENT_PLAN_RATE = 0.07  # of open invoices 31-365 days past due of ordinary customers
TRANSFERRED_RATE = 0.5  # of a child customer's invoices, billed through the parent
PARENT_PARTIAL_RATE = 0.35  # of transferred invoices the parent has paid part of

#: Invoice amounts: tiers of (low, high) in cents with weights; a third are rounded to whole hundreds.
_AMOUNT_TIERS = np.array(
    [(5_000, 50_000), (50_000, 200_000), (200_000, 1_000_000), (1_000_000, 5_000_000), (5_000_000, 25_000_000)],
    dtype=np.int64,
)
_AMOUNT_WEIGHTS = (0.25, 0.30, 0.28, 0.13, 0.04)

# Customer mix (at least the minimum counts, so that even 100 invoices show every case).
BANKRUPT_RATE, MIN_BANKRUPT = 0.006, 2
DISSOLVED_RATE, MIN_DISSOLVED = 0.004, 2
CHILD_RATE, MIN_CHILDREN = 0.06, 6
US_SHARE = 0.6
GBP_SHARE_OF_EU = 0.3

# --- vocabularies (indices are stored in the numeric chunk columns) ---------------------------------------------
ACTIVITY_TYPES: tuple[str, ...] = ("contact_attempt", "demand_letter", "agency_placement", "legal_action")
CONTACT, LETTER, AGENCY, LEGAL = range(4)
#: The ERP's own vocabulary (CSV export): a contact attempt is a Call or an Email.
ERP_ACTIVITY = ("Call", "Email", "Demand Letter", "Agency Placement", "Legal Action")
OUTCOMES: tuple[str | None, ...] = (
    None,
    "no answer",  # 1-4: calls
    "left voicemail",
    "promised to pay",
    "spoke to accounts payable",
    "email sent",  # 5-7: emails
    "no reply",
    "email bounced",
    "sent",  # 8: demand letter
    "unsuccessful",  # 9-11: agency placement ended
    "returned: uncollectible",
    "returned: customer unreachable",
    "in progress",  # 12: agency placement or legal action still running
    "filed",  # 13
    "judgment obtained, unsatisfied",  # 14
    "bankruptcy: proof of claim filed",  # 15 account-level
    "company dissolved",  # 16 account-level
)
HOLD_TYPES = ("dispute", "payment_plan")
RESOLUTIONS: tuple[str | None, ...] = (None, "won", "lost")
DISPUTE_REASONS = (
    "",
    "pricing dispute",
    "goods not received",
    "quality complaint",
    "duplicate billing claimed",
    "service not as agreed",
)
DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "it_services": ("IT consulting services", "Managed services – monthly fee", "Software licences", "Cloud hosting"),
    "manufacturing": ("Machined components", "Tooling and fixtures", "Spare parts order", "Freight and handling"),
    "retail": ("Store supplies", "Seasonal merchandise", "Point-of-sale hardware", "Display fixtures"),
    "healthcare": ("Medical consumables", "Equipment maintenance", "Laboratory services", "Sterilisation supplies"),
    "wholesale": ("Bulk goods delivery", "Pallet order", "Distribution services", "Packaging materials"),
    "public_sector": ("Framework call-off", "Professional services", "Facilities maintenance", "Training services"),
    "financial_services": ("Data feed subscription", "Advisory services", "Platform fees", "Compliance review"),
}
#: All descriptions in one table; an invoice stores its segment's offset plus 0..3.
DESCRIPTION_TABLE: tuple[str, ...] = tuple(d for seg in SEGMENTS for d in DESCRIPTIONS[seg])

_NAME_FIRST = (
    "Northwind", "Contoso", "Tailspin", "Blue Harbor", "Redwood", "Silverline", "Granite", "Summit", "Lakeside",
    "Pioneer", "Atlas", "Meridian", "Evergreen", "Ironbridge", "Sterling", "Brightwater", "Oakridge", "Crescent",
    "Müller", "Société Lumière", "Søndergaard", "Kowalski", "Fjord", "Alpenblick",
)  # fmt: skip
_NAME_SECOND = (
    "Logistics", "Foods", "Systems", "Medical", "Retail", "Engineering", "Components", "Trading", "Analytics",
    "Holdings", "Supplies", "Labs", "Textiles", "Energy", "Packaging", "Software",
)  # fmt: skip
_SUFFIX = {0: ("Inc.", "LLC", "Corp.", "Co."), 1: ("GmbH", "Ltd", "B.V.", "S.A.S.", "AG", "plc")}
_SURNAMES = ("Smith", "Jones", "Garcia", "Dubois", "Schmidt", "Rossi", "Novak", "Jensen", "O'Brien")

# The worked example: always present, exactly as described.
WORKED_CUSTOMER_REF = "C-NORTHWIND"
WORKED_CUSTOMER_NAME = "Northwind IT Services"
WORKED_INVOICE_REF = "INV-WORKED-45000"
WORKED_AMOUNT_CENTS = 4_500_000
WORKED_DESCRIPTION = "IT consulting services"

# Dates are stored as proleptic ordinals (date.toordinal); 0 means "no date".
NO_DATE = 0


@dataclass(frozen=True, slots=True)
class SampleSpec:
    """What to generate. Same spec => same bytes."""

    invoices: int = 20_000
    seed: int = DEFAULT_SEED
    as_of: date = DEFAULT_AS_OF

    def __post_init__(self) -> None:
        if not MIN_INVOICES <= self.invoices <= MAX_INVOICES:
            raise InputError(
                f"invoices must be between {MIN_INVOICES:,} and {MAX_INVOICES:,}, got {self.invoices:,}",
                field="invoices",
            )
        if self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed}", field="seed")

    def as_dict(self) -> dict[str, object]:
        return {"invoices": self.invoices, "seed": self.seed, "as_of": self.as_of.isoformat()}


def months_before(day: date, months: int) -> date:
    y, m = divmod(day.year * 12 + day.month - 1 - months, 12)
    return date(y, m + 1, min(day.day, calendar.monthrange(y, m + 1)[1]))


def worked_invoice_date(as_of: date) -> date:
    """Fourteen months before as-of (same day of month, clamped)."""
    return months_before(as_of, 14)


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


def build_universe(spec: SampleSpec) -> Universe:
    rnd = random.Random(spec.seed)
    as_of_ord = spec.as_of.toordinal()
    # Dates never precede the oldest possible invoice (longest tail plus longest terms), plus a margin.
    base_ord = as_of_ord - LONG_TAIL_MAX_DAYS - int(TERMS_DAYS.max()) - 31
    n_cust = max(10, spec.invoices // INVOICES_PER_CUSTOMER)

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

    # Every customer has at least one invoice (the export only knows customers through their invoices); the
    # worked example's customer has exactly one.
    np_rng = np.random.default_rng([spec.seed, 0])
    counts = np.ones(n_cust, dtype=np.int64)
    extra = spec.invoices - n_cust
    w = weights.copy()
    w[0] = 0.0
    counts += np_rng.multinomial(extra, w / w.sum())

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

    # Chunks: runs of whole customers holding about CHUNK_INVOICES invoices each.
    chunk_of = (np.cumsum(counts) - 1) // CHUNK_INVOICES
    starts = [0, *(np.flatnonzero(np.diff(chunk_of)) + 1).tolist()]
    chunks = list(zip(starts, [*starts[1:], n_cust], strict=True))

    return Universe(
        spec=spec,
        as_of_ord=as_of_ord,
        base_ord=base_ord,
        cust_ref=refs,
        cust_name=names,
        entity=entity,
        currency=currency,
        segment=segment,
        parent=parent,
        is_child=parent >= 0,
        bankrupt=bankrupt,
        bankruptcy_date=bk_date,
        dissolved=dissolved,
        dissolved_date=ds_date,
        inv_count=counts,
        gbp_rate_by_month=np.array(rates, dtype=np.int64),
        chunks=chunks,
        month_of_day=month_of_day,
    )


def _customer_name(rnd: random.Random, ent: int) -> str:
    pick = rnd.random()
    if pick < 0.12:
        # Commas and apostrophes in names: the CSV must quote them, ingestion must not split them.
        a, b = rnd.sample(_SURNAMES, 2)
        return f"{a}, {b} & Partners {rnd.choice(_SUFFIX[ent])}"
    return f"{rnd.choice(_NAME_FIRST)} {rnd.choice(_NAME_SECOND)} {rnd.choice(_SUFFIX[ent])}"


@dataclass(slots=True)
class Chunk:
    """One chunk of generated rows, columnar. Ids are global and sequential (1-based)."""

    index: int
    cust_start: int
    cust_stop: int
    # invoices
    inv_id: np.ndarray
    inv_cust: np.ndarray
    inv_date: np.ndarray
    due_date: np.ndarray
    amount: np.ndarray  # cents
    open_balance: np.ndarray  # cents
    fx_e4: np.ndarray
    disputed: np.ndarray
    dispute_since: np.ndarray
    payment_plan: np.ndarray
    transferred: np.ndarray
    description: np.ndarray  # index into DESCRIPTION_TABLE
    # payment allocations, one row per (payment, invoice)
    pay_id: np.ndarray
    pay_cust: np.ndarray  # the payer (the parent for balances transferred to it)
    pay_date: np.ndarray
    pay_amount: np.ndarray  # the whole payment, repeated on each of its allocation rows
    alloc_id: np.ndarray
    alloc_inv: np.ndarray  # invoice id
    alloc_local: np.ndarray  # invoice position within the chunk
    applied: np.ndarray
    # collection activities
    act_id: np.ndarray
    act_cust: np.ndarray
    act_inv: np.ndarray  # invoice id, 0 for account-level activities
    act_local: np.ndarray  # invoice position within the chunk, -1 for account-level
    act_type: np.ndarray
    act_channel: np.ndarray  # 0 call, 1 email (contact attempts only)
    act_date: np.ndarray
    act_end: np.ndarray
    act_outcome: np.ndarray
    # holds
    hold_id: np.ndarray
    hold_cust: np.ndarray
    hold_inv: np.ndarray
    hold_type: np.ndarray
    hold_start: np.ndarray
    hold_end: np.ndarray
    hold_resolution: np.ndarray
    hold_note: np.ndarray  # dispute: index into DISPUTE_REASONS; plan: number of instalments

    @property
    def n_invoices(self) -> int:
        return int(self.inv_id.size)

    @property
    def payment_rows(self) -> np.ndarray:
        """Mask of allocation rows that start a new payment (a payment can pay two invoices)."""
        first = np.ones(self.pay_id.size, dtype=bool)
        first[1:] = self.pay_id[1:] != self.pay_id[:-1]
        return first


@dataclass(slots=True)
class _Counters:
    invoice: int = 0
    payment: int = 0
    allocation: int = 0
    activity: int = 0
    hold: int = 0


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


def generate_chunk(u: Universe, k: int, ids: _Counters) -> Chunk:
    """Chunk ``k`` of the universe; ``ids`` carries the global id counters and is advanced."""
    rng = np.random.default_rng([u.spec.seed, k + 1])
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

    # --- payments --------------------------------------------------------------------------------------------
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

    # --- collection activities: effort grows with age --------------------------------------------------------
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

    # --- holds -----------------------------------------------------------------------------------------------
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

    return Chunk(
        index=k,
        cust_start=c0,
        cust_stop=c1,
        inv_id=inv_id,
        inv_cust=cust,
        inv_date=inv,
        due_date=due,
        amount=amount,
        open_balance=open_balance,
        fx_e4=fx,
        disputed=disputed,
        dispute_since=dispute_since,
        payment_plan=plan,
        transferred=transferred,
        description=desc,
        pay_id=pay_id,
        pay_cust=payer[owner],
        pay_date=pay_date,
        pay_amount=pay_total,
        alloc_id=alloc_id,
        alloc_inv=inv_id[owner],
        alloc_local=owner,
        applied=applied,
        act_id=act_id,
        act_cust=a_cust,
        act_inv=np.where(a_local >= 0, inv_id[np.maximum(a_local, 0)], 0),
        act_local=a_local,
        act_type=a_type,
        act_channel=a_chan,
        act_date=a_date,
        act_end=a_end,
        act_outcome=a_out,
        hold_id=hold_id,
        hold_cust=cust[h_local],
        hold_inv=inv_id[h_local],
        hold_type=h_type,
        hold_start=h_start,
        hold_end=h_end,
        hold_resolution=h_res,
        hold_note=h_note,
    )


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


def iter_chunks(u: Universe, totals: Totals | None = None) -> Iterator[Chunk]:
    """The chunks in order; ``totals`` (if given) is updated as each chunk is produced."""
    ids = _Counters()
    for k in range(len(u.chunks)):
        chunk = generate_chunk(u, k, ids)
        if totals is not None:
            totals.add(u, chunk)
        yield chunk
