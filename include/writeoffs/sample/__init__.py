"""Sample data: a deterministic emulation of an ERP's accounts receivable, from 100 to 10,000,000 invoices.

- :func:`write_sample` writes the three source formats (CSV export, SQLite billing database, JSON API pages);
- :func:`seed_ledger` loads the same data straight into the ledger and posts the opening AR balance.

See ``docs/sample-data.md`` for what the data looks like and the knobs.
"""

from __future__ import annotations

from writeoffs.sample.formats import FORMATS, GenerateResult, parse_formats, write_sample
from writeoffs.sample.generator import DEFAULT_AS_OF, DEFAULT_SEED, SampleSpec, Totals
from writeoffs.sample.seed import SampleAlreadySeeded, SeedResult, seed_ledger

__all__ = [
    "DEFAULT_AS_OF",
    "DEFAULT_SEED",
    "FORMATS",
    "GenerateResult",
    "SampleAlreadySeeded",
    "SampleSpec",
    "SeedResult",
    "Totals",
    "parse_formats",
    "seed_ledger",
    "write_sample",
]
