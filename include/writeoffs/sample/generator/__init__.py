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


Layout (imports go one way, downward): :mod:`~writeoffs.sample.generator.design` (sizes, the aging and payment
mix, vocabularies, the worked example, :class:`SampleSpec`) at the base; :mod:`~writeoffs.sample.generator.universe`
(customers, invoice counts, the FX table and the chunk plan, drawn up front); :mod:`~writeoffs.sample.generator.chunk`
(the columnar :class:`Chunk` and the id counters); :mod:`~writeoffs.sample.generator.totals` (control totals); and on
top :mod:`~writeoffs.sample.generator.generate` (one chunk's invoices, payments, activities and holds, and
:func:`iter_chunks`). Every name callers use from ``writeoffs.sample.generator`` is re-exported here; the tuning
constants stay in :mod:`~writeoffs.sample.generator.design`.
"""

from __future__ import annotations

from writeoffs.sample.generator.chunk import Chunk
from writeoffs.sample.generator.design import (
    ACTIVITY_TYPES,
    BUCKET_LABELS,
    BUCKET_WEIGHTS,
    CURRENCIES,
    DEFAULT_AS_OF,
    DEFAULT_SEED,
    DESCRIPTION_TABLE,
    DISPUTE_RATE,
    DISPUTE_REASONS,
    ENTITIES,
    ERP_ACTIVITY,
    GENERATOR_VERSION,
    HOLD_TYPES,
    NO_DATE,
    ONE_E4,
    OUTCOMES,
    RESOLUTIONS,
    SEGMENTS,
    WORKED_INVOICE_REF,
    SampleSpec,
    months_before,
)
from writeoffs.sample.generator.generate import iter_chunks
from writeoffs.sample.generator.totals import Totals
from writeoffs.sample.generator.universe import Universe, build_universe

__all__ = [
    "ACTIVITY_TYPES",
    "BUCKET_LABELS",
    "BUCKET_WEIGHTS",
    "CURRENCIES",
    "DEFAULT_AS_OF",
    "DEFAULT_SEED",
    "DESCRIPTION_TABLE",
    "DISPUTE_RATE",
    "DISPUTE_REASONS",
    "ENTITIES",
    "ERP_ACTIVITY",
    "GENERATOR_VERSION",
    "HOLD_TYPES",
    "NO_DATE",
    "ONE_E4",
    "OUTCOMES",
    "RESOLUTIONS",
    "SEGMENTS",
    "WORKED_INVOICE_REF",
    "Chunk",
    "SampleSpec",
    "Totals",
    "Universe",
    "build_universe",
    "iter_chunks",
    "months_before",
]
