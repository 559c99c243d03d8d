"""The generator's design: sizes, entities, the aging and payment mix, vocabularies, the worked example, the spec."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
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
