"""Canonical datasets and their fields: the one vocabulary every source is mapped onto.

The CONTRACT shared with the sample-data generator names these fields; a source config maps its own column names
onto them. Field kinds drive the (vectorised) typing in :mod:`writeoffs.ingest.validate` and the staging columns
in :mod:`writeoffs.ingest.tables`, so adding a field here is the only place a new field needs describing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["text", "date", "money", "rate", "flag", "currency", "entity", "activity"]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    required: bool = False
    max_len: int = 64


INVOICE_FIELDS: tuple[Field, ...] = (
    Field("entity", "entity", required=True, max_len=16),
    Field("invoice_ref", "text", required=True),
    Field("customer_ref", "text", required=True),
    Field("customer_name", "text", max_len=200),
    Field("parent_customer_ref", "text"),
    Field("segment", "text", max_len=32),
    Field("invoice_date", "date", required=True),
    Field("due_date", "date", required=True),
    Field("currency", "currency", required=True, max_len=3),
    Field("amount", "money", required=True),
    Field("open_balance", "money", required=True),
    Field("fx_rate", "rate"),
    Field("disputed", "flag"),
    Field("dispute_since", "date"),
    Field("payment_plan", "flag"),
    Field("bankrupt", "flag"),
    Field("transferred_to_parent", "flag"),
    Field("description", "text", max_len=200),
)

PAYMENT_FIELDS: tuple[Field, ...] = (
    Field("entity", "entity", required=True, max_len=16),
    Field("payment_ref", "text", required=True),
    Field("customer_ref", "text", required=True),
    Field("payment_date", "date", required=True),
    Field("currency", "currency", required=True, max_len=3),
    Field("amount", "money", required=True),
    Field("invoice_ref", "text"),
    Field("applied_amount", "money"),
)

ACTIVITY_FIELDS: tuple[Field, ...] = (
    Field("entity", "entity", required=True, max_len=16),
    Field("customer_ref", "text", required=True),
    Field("invoice_ref", "text"),
    Field("activity_type", "activity", required=True, max_len=24),
    Field("activity_date", "date", required=True),
    Field("end_date", "date"),
    Field("outcome", "text"),
)

#: Holds are not a separate dataset in the CONTRACT: they travel as flags on invoices (disputed, dispute_since,
#: payment_plan) and the merge derives ``holds`` rows from them.
DATASETS: dict[str, tuple[Field, ...]] = {
    "invoices": INVOICE_FIELDS,
    "payments": PAYMENT_FIELDS,
    "activities": ACTIVITY_FIELDS,
}

#: Natural key of a row within one batch: a repeated key is a duplicate (every occurrence is quarantined, because
#: nothing tells us which one is right).
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "invoices": ("entity", "invoice_ref"),
    "payments": ("entity", "payment_ref", "invoice_ref"),
}

ACTIVITY_TYPES = ("contact_attempt", "demand_letter", "agency_placement", "legal_action")


def fields_of(dataset: str) -> tuple[Field, ...]:
    return DATASETS[dataset]


def required_fields(dataset: str) -> tuple[str, ...]:
    return tuple(f.name for f in DATASETS[dataset] if f.required)
