"""Map source columns onto canonical fields, type them and validate them, vectorised (pyarrow compute).

One pass per chunk, whatever the source kind: every value is text as the source printed it, parsed according to
the source config (date format, separators, yes/no words, vocabularies). Each row gets at most one reason — the
first failing check in field order — so a quarantine record names exactly one field, and
``accepted + quarantined == rows read`` holds by construction (a row is either in ``good`` or in ``bad``).

Problems with the *shape* of the input (a mapped column missing, a required field nowhere) are not row problems:
they raise :class:`~writeoffs.errors.InputError` and reject the batch whatever ``on_bad_rows`` says.

Currency minor units and :data:`~writeoffs.money.MAX_AMOUNT` are enforced here, on every money field (invoice
amount and open balance, payment amount and applied amount, any money field added to
:mod:`writeoffs.ingest.fields`), for every source kind, because this is the one place where the row, the field,
the value *as the source printed it* and the row's currency are all known, before anything is stored. The rule
itself lives in :mod:`writeoffs.money` (:func:`~writeoffs.money.check_minor_units`,
:func:`~writeoffs.money.check_max_amount`): this pass applies it vectorised (decimals counted on the text, zero
padding excluded, against :data:`~writeoffs.money.MINOR_UNITS`) and takes each refused row's message from those
functions, which must agree (a unit test pins the two value by value). It is deliberately not a declarative check
of :mod:`writeoffs.validation.checks`: those run on rows already staged in NUMERIC(20, 4) columns, with a
configurable severity, whereas an amount its currency cannot hold must never be stored nor depend on a setting.
A refused amount is never rounded: the row is quarantined (``too_many_decimals``, ``amount_too_large``) or, with
``on_bad_rows: reject``, fails the batch naming source, file, row and field.

Submodules:

- :mod:`.chunk` — :func:`validate_chunk`, the one pass over a chunk (field order, keep_if, quarantine records).
- :mod:`.mapping` — :func:`map_columns`: source columns renamed to canonical fields.
- :mod:`.parse` — one field's text typed and checked by its kind (text vocabularies, dates, money, rates, flags).
- :mod:`.dates` — date parsing in the source's format and the plausible-date range.
- :mod:`.numbers` — separators, negative styles, rates and money amounts (minor units, MAX_AMOUNT).
- :mod:`.cross` — checks across the fields of one row.
- :mod:`.model` — the result types (:class:`Validated`, :class:`Quarantined`, :class:`Context`), the first-failure
  row bookkeeping and the raw record kept for the quarantine.
"""

from writeoffs.ingest.validate.chunk import validate_chunk
from writeoffs.ingest.validate.mapping import map_columns
from writeoffs.ingest.validate.model import (
    MONEY_TYPE,
    RATE_TYPE,
    RAW_LIMIT,
    Context,
    Quarantined,
    Validated,
    arrow_type,
    as_dicts,
    first_problem,
    raw_json,
)

__all__ = [
    "MONEY_TYPE",
    "RATE_TYPE",
    "RAW_LIMIT",
    "Context",
    "Quarantined",
    "Validated",
    "arrow_type",
    "as_dicts",
    "first_problem",
    "map_columns",
    "raw_json",
    "validate_chunk",
]
