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
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from writeoffs.errors import InputError, shorten, value_repr
from writeoffs.ingest import derive
from writeoffs.ingest.fields import ACTIVITY_TYPES, DATASETS, Field
from writeoffs.ingest.sources import RawChunk
from writeoffs.money import DB_SCALE, MAX_AMOUNT, MINOR_UNITS, check_max_amount, check_minor_units

if TYPE_CHECKING:
    from writeoffs.ingest.config import DatasetConfig, SourceConfig
    from writeoffs.ingest.derive import InputColumn

MONEY_TYPE = pa.decimal128(24, 4)
RATE_TYPE = pa.decimal128(30, 10)
#: A plain decimal number (no exponent, no NaN, a digit on both sides of the point).
_NUMBER_RE = r"^[+-]?[0-9]+(\.[0-9]+)?$"
#: NUMERIC(20, 4) holds 16 integer digits; MAX_AMOUNT (checked on the value) is below that.
_MONEY_INT_DIGITS = 16
_RATE_RE = r"^[+-]?[0-9]{1,10}(\.[0-9]{1,10})?$"
_DATE_PARTS = {"%Y": r"(?P<Y>[0-9]{4})", "%m": r"(?P<m>[0-9]{1,2})", "%d": r"(?P<d>[0-9]{1,2})"}


@dataclass(frozen=True, slots=True)
class Quarantined:
    dataset: str
    file: str
    row: int | None
    field: str | None
    reason: str
    message: str
    raw: str  # the source record as JSON (source column names)


@dataclass(slots=True)
class Validated:
    good: pa.Table  # canonical typed columns + source_row + source_file
    bad: list[Quarantined]
    read: int  # = good.num_rows + len(bad) + filtered
    filtered: int = 0  # rows the mapping's keep_if left out (counted, neither staged nor quarantined)


@dataclass(frozen=True, slots=True)
class Context:
    """What validation needs to know beyond the chunk: entities and their functional currency."""

    functional: dict[str, str]  # entity code -> functional currency (configured or already in the ledger)
    as_of: date | None = None  # the business date: plausible dates are bounded relative to it


def arrow_type(f: Field) -> pa.DataType:
    return {
        "date": pa.date32(),
        "money": MONEY_TYPE,
        "rate": RATE_TYPE,
        "flag": pa.bool_(),
    }.get(f.kind, pa.string())


def _date_regex(fmt: str) -> str | None:
    """A full-match regex with named parts for formats built from %Y, %m, %d and literals; None otherwise."""
    out, i = [], 0
    while i < len(fmt):
        tok = fmt[i : i + 2]
        if tok in _DATE_PARTS:
            out.append(_DATE_PARTS[tok])
            i += 2
        elif fmt[i] == "%":
            return None
        else:
            out.append(re.escape(fmt[i]))
            i += 1
    return "^" + "".join(out) + "$"


class _Rows:
    """First-failure bookkeeping: one reason and field per row."""

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.reason = np.empty(n, dtype=object)
        self.field = np.empty(n, dtype=object)
        self.message = np.empty(n, dtype=object)
        #: Every row with a problem in the field, first failure or not (a filter may only read clean fields).
        self.any_field: dict[str, np.ndarray] = {}

    def flag(
        self,
        mask: pa.Array | np.ndarray,
        field: str,
        reason: str,
        message: str | Callable[[np.ndarray], list[str]],
    ) -> None:
        """Flag rows not flagged yet; ``message`` is one text, or a function of the new rows' indices giving one
        text per row (called only for those rows, so a per-row message costs nothing on clean data)."""
        m = mask if isinstance(mask, np.ndarray) else pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
        if m.any():
            self.any_field[field] = self.any_field[field] | m if field in self.any_field else m.copy()
        new = m & ~self.bad
        if new.any():
            self.reason[new] = reason
            self.field[new] = field
            if callable(message):
                idx = np.flatnonzero(new)
                self.message[idx] = np.array(message(idx), dtype=object)
            else:
                self.message[new] = message
            self.bad |= new


def _clean(col: pa.Array) -> pa.Array:
    """Trimmed text; empty becomes null (exports print null as an empty string)."""
    s = pc.utf8_trim_whitespace(col.cast(pa.string()))
    return pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)


def _column(table: pa.Table, name: str, n: int) -> pa.Array:
    if name in table.column_names:
        return _clean(table[name].combine_chunks())
    return pa.nulls(n, pa.string())


def map_columns(chunk: RawChunk, cfg: SourceConfig) -> pa.Table:
    """Rename source columns to canonical fields; refuse the batch if a mapped or required column is missing."""
    ds = cfg.datasets[chunk.dataset]
    fields = {f.name for f in DATASETS[chunk.dataset]}
    have = chunk.table.column_names
    if not have and chunk.table.num_rows == 0:
        return chunk.table  # an empty page/result without columns: nothing to map
    if ds.columns or ds.inputs:
        wanted = {**ds.columns, **{src: i.name for src, i in ds.inputs.items()}}
        missing = [src for src in wanted if src not in have]
        if missing:
            hint = ""
            if len(have) == 1 and any(d in have[0] for d in (";", "\t", "|", ",")):
                hint = f" (the whole header is one column: is the delimiter {cfg.delimiter!r} right?)"
            raise InputError(
                f"column(s) {missing} missing (mapped to {[wanted[m] for m in missing]});"
                f" found {[shorten(h, 40) for h in have[:20]]}{hint}",
                source=cfg.name,
                file=chunk.file,
                row=1 if cfg.kind == "file" else None,
                field=wanted[missing[0]],
            )
    mapping = dict(ds.columns)
    for c in have:  # identity for canonical names the mapping did not rename
        if c in fields and c not in mapping and c not in mapping.values():
            if c in ds.computed:
                if c in ds.inputs:
                    continue  # read as an input under another name
                raise InputError(
                    f"column {c!r} has the name of a field the mapping computes: a field has one source"
                    " (rename or drop the column, or map it to an input)",
                    source=cfg.name,
                    file=chunk.file,
                    row=1 if cfg.kind == "file" else None,
                    field=c,
                )
            mapping[c] = c
    table = pa.table({dst: chunk.table[src] for src, dst in mapping.items()})
    constants = {"entity": cfg.entity, "currency": cfg.default_currency}
    for f in DATASETS[chunk.dataset]:
        if f.required and f.name not in table.column_names and not constants.get(f.name) and f.name not in ds.computed:
            raise InputError(
                f"required field {f.name!r} is not provided by any column; found {[shorten(h, 40) for h in have[:20]]}",
                source=cfg.name,
                file=chunk.file,
                row=1 if cfg.kind == "file" else None,
                field=f.name,
            )
    return table


def validate_chunk(chunk: RawChunk, cfg: SourceConfig, ctx: Context) -> Validated:
    dataset = chunk.dataset
    ds = cfg.datasets[dataset]
    table = map_columns(chunk, cfg)
    n = chunk.table.num_rows
    rows = _Rows(n)
    vocab = {k: {s.lower(): v for s, v in m.items()} for k, m in cfg.values.items()}
    # Typed values by name (inputs, then every field as it is done): what computed fields and keep_if read.
    values: dict[str, pa.Array] = {}
    for src, inp in ds.inputs.items():
        values[inp.name] = _parse_input(_column(chunk.table, src, n), inp, cfg, ctx, rows)
    # A computed value is canonical text (writeoffs.ingest.derive.as_text), read back through the very parsers
    # and checks a source value goes through: one home for every rule on a field, whatever its origin.
    canonical = _canonical_formats(cfg) if ds.computed else cfg
    computed_text: dict[str, pa.Array] = {}
    out: dict[str, pa.Array] = {}
    for f in _field_order(dataset, ds):
        if f.name in ds.computed:
            undecided = derive.Undecided()
            value = derive.evaluate(ds.computed[f.name], derive.value_type(f.kind), values, ctx.as_of, n, undecided)
            _flag_undecided(rows, undecided)
            computed_text[f.name] = derive.as_text(value)
            out[f.name] = _typed(f, computed_text[f.name], canonical, ctx, rows, out, {})
        else:
            out[f.name] = _typed(f, _column(table, f.name, n), cfg, ctx, rows, out, vocab)
        values[f.name] = out[f.name]
    _cross_checks(dataset, out, rows, ctx)
    filtered = np.zeros(n, dtype=bool)
    if ds.keep_if is not None:
        undecided = derive.Undecided()
        keep = derive.condition(ds.keep_if, values, ctx.as_of, undecided)
        # Filtered only when decided false on clean values: a row whose date cannot be read is quarantined, never
        # silently filtered. A filtered row is not this business date's data: its other problems do not count.
        clean = np.ones(n, dtype=bool)
        for name in set(derive.refs(ds.keep_if)):
            if name in rows.any_field:
                clean &= ~rows.any_field[name]
        filtered = pc.fill_null(pc.invert(keep), False).to_numpy(zero_copy_only=False) & clean
        _flag_undecided(rows, undecided)
    kept = ~rows.bad & ~filtered
    fields_in_order = [f.name for f in DATASETS[dataset]]
    good = pa.table({k: out[k] for k in fields_in_order})
    good = good.append_column("source_row", chunk.rows).append_column(
        "source_file", pa.array([chunk.file] * n, pa.string()) if n else pa.array([], pa.string())
    )
    good = good.filter(pa.array(kept))
    bad = [
        Quarantined(dataset, chunk.file, b.row, None, b.reason, b.message, json.dumps({"record": b.raw}))
        for b in chunk.bad
    ]
    idx = np.flatnonzero(rows.bad & ~filtered)
    if len(idx):
        raw = chunk.table.take(pa.array(idx)).to_pylist()
        nums = chunk.rows.take(pa.array(idx)).to_pylist()
        shown = {name: col.take(pa.array(idx)).to_pylist() for name, col in computed_text.items()}
        for k, i in enumerate(idx):
            fld = rows.field[i]
            if fld in shown:
                value = shown[fld][k]
                message = f"{rows.message[i]} (computed: {value_repr(value) if value is not None else 'empty'})"
            else:
                value = raw[k].get(_source_name(cfg, dataset, fld))
                message = f"{rows.message[i]}: {value_repr(value)}" if value is not None else rows.message[i]
            bad.append(
                Quarantined(
                    dataset,
                    chunk.file,
                    nums[k],
                    fld,
                    rows.reason[i],
                    shorten(message, 500),
                    raw_json(raw[k]),
                )
            )
    n_filtered = int(filtered.sum())
    return Validated(good, bad, n + len(chunk.bad), n_filtered)


def _flag_undecided(rows: _Rows, undecided: derive.Undecided) -> None:
    for mask, name, text in undecided.found:
        rows.flag(
            mask,
            name,
            "undecidable",
            f"{name} is empty and the condition `{text}` does not say what empty means (set if_empty)",
        )


def _canonical_formats(cfg: SourceConfig) -> SourceConfig:
    """The source's settings with the canonical formats of computed values (``.`` decimals, ISO dates)."""
    return cfg.model_copy(
        update={
            "decimal_sep": ".",
            "thousands_sep": "",
            "negative_style": "leading_minus",
            "date_format": "%Y-%m-%d",
            "true_values": ("true",),
            "false_values": ("false",),
        }
    )


def _field_order(dataset: str, ds: DatasetConfig) -> list[Field]:
    """The dataset's fields in their order, each computed field as soon as what it reads is done.

    The config check (:func:`writeoffs.ingest.derive.check_dataset`) lets a computed field read inputs, fields
    and fields computed before it, so every computed field finds its place. Money needs the row's currency first.
    """
    fields = DATASETS[dataset]
    if not ds.computed:
        return list(fields)
    by_name = {f.name: f for f in fields}
    pending = [by_name[t] for t in ds.computed]
    done = {i.name for i in ds.inputs.values()}
    order: list[Field] = []

    def place_ready() -> None:
        progress = True
        while progress:
            progress = False
            for p in list(pending):
                needs = set(derive.refs(ds.computed[p.name])) | ({"currency"} if p.kind == "money" else set())
                if needs <= done:
                    pending.remove(p)
                    order.append(p)
                    done.add(p.name)
                    progress = True

    place_ready()
    for f in fields:
        if f.name not in ds.computed:
            order.append(f)
            done.add(f.name)
            place_ready()
    if pending:  # unreachable after the config check
        raise RuntimeError(f"{dataset}: computed field(s) {[p.name for p in pending]} cannot be ordered")
    return order


def _typed(
    f: Field,
    col: pa.Array,
    cfg: SourceConfig,
    ctx: Context,
    rows: _Rows,
    out: dict[str, pa.Array],
    vocab: dict[str, dict[str, str]],
) -> pa.Array:
    """One field's text parsed and checked by its kind (the first failing check per row is recorded)."""
    if f.name in vocab:
        lowered = pc.utf8_lower(col)
        keys = pa.array(list(vocab[f.name]))
        idx = pc.index_in(lowered, value_set=keys)
        mapped = pc.take(pa.array(list(vocab[f.name].values())), idx)
        col = pc.if_else(pc.is_null(idx), col, mapped)
    if f.name == "entity" and cfg.entity:
        col = pc.fill_null(col, cfg.entity)
    if f.name == "currency":
        col = pc.utf8_upper(col)
        if cfg.default_currency:
            col = pc.fill_null(col, cfg.default_currency)
    missing = pc.is_null(col)
    if f.required:
        rows.flag(missing, f.name, "missing_value", f"{f.name} is empty")
    present = pc.invert(missing)
    if f.kind in ("text", "entity", "currency", "activity"):
        rows.flag(pc.greater(pc.utf8_length(col), f.max_len), f.name, "too_long", f"{f.name} longer than {f.max_len}")
        if f.kind == "entity":
            known = pa.array(sorted(ctx.functional))
            rows.flag(
                pc.and_kleene(present, pc.invert(pc.is_in(col, value_set=known))),
                f.name,
                "unknown_entity",
                f"entity is neither configured in sources.yaml nor in the ledger (known: {sorted(ctx.functional)})",
            )
        elif f.kind == "currency":
            rows.flag(
                pc.and_kleene(present, pc.invert(pc.is_in(col, value_set=pa.array(sorted(MINOR_UNITS))))),
                f.name,
                "unknown_currency",
                "currency is not an ISO 4217 code",
            )
        elif f.kind == "activity":
            rows.flag(
                pc.and_kleene(present, pc.invert(pc.is_in(col, value_set=pa.array(ACTIVITY_TYPES)))),
                f.name,
                "unknown_activity_type",
                f"activity type not in {list(ACTIVITY_TYPES)} after mapping (add it under values.activity_type)",
            )
        return col
    if f.kind == "date":
        value = _parse_dates(col, present, f.name, cfg.date_format, rows)
        _plausible_dates(value, f.name, cfg, ctx, rows)
        return value
    if f.kind == "money":
        if "currency" not in out:  # a code bug, not a data problem: fields.py lists currency before money
            raise RuntimeError(f"{f.name}: a money field must come after currency in fields.py")
        return _parse_money(col, present, f, cfg, rows, out["currency"])
    if f.kind == "rate":
        return _parse_number(col, present, f, cfg, rows)
    return _parse_flag(col, present, f.name, cfg, rows)


def _parse_flag(col: pa.Array, present: pa.Array, name: str, cfg: SourceConfig, rows: _Rows) -> pa.Array:
    low = pc.utf8_lower(col)
    is_true = pc.is_in(low, value_set=pa.array([v.lower() for v in cfg.true_values]))
    is_false = pc.is_in(low, value_set=pa.array([v.lower() for v in cfg.false_values]))
    rows.flag(
        pc.and_kleene(present, pc.invert(pc.or_kleene(is_true, is_false))),
        name,
        "invalid_flag",
        f"{name} is not one of {list(cfg.true_values)} / {list(cfg.false_values)}",
    )
    return pc.fill_null(is_true, False)  # an empty flag means "no"


#: An input decimal: at most 16 integer digits and 10 decimals (what NUMERIC amounts and rates can hold).
_INPUT_DECIMAL_RE = r"^[+-]?[0-9]{1,16}(\.[0-9]{1,10})?$"
_INPUT_TEXT_MAX = 200


def _parse_input(col: pa.Array, inp: InputColumn, cfg: SourceConfig, ctx: Context, rows: _Rows) -> pa.Array:
    """A column read only for computed fields and filters, typed with the source's formats and checked."""
    col = _clean(col)
    present = pc.invert(pc.is_null(col))
    if inp.type == "date":
        value = _parse_dates(col, present, inp.name, cfg.date_format, rows)
        _plausible_dates(value, inp.name, cfg, ctx, rows)
        return value
    if inp.type == "decimal":
        text = _plain_number_text(col, present, Field(inp.name, "rate"), cfg, rows)
        ok = pc.fill_null(pc.match_substring_regex(text, _INPUT_DECIMAL_RE), False)
        rows.flag(
            pc.and_kleene(present, pc.invert(ok)),
            inp.name,
            "not_a_number",
            f"{inp.name} is not a decimal number (at most 16 digits before and 10 after the point)",
        )
        _relabel_signs(col, inp.name, cfg, rows)
        return pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), derive.decimal_type())
    if inp.type == "flag":
        return _parse_flag(col, present, inp.name, cfg, rows)
    rows.flag(
        pc.greater(pc.utf8_length(col), _INPUT_TEXT_MAX),
        inp.name,
        "too_long",
        f"{inp.name} longer than {_INPUT_TEXT_MAX}",
    )
    return col


#: The stored raw record is at most this long (``ingest_quarantine.raw``) and always valid JSON.
RAW_LIMIT = 10_000
_RAW_VALUE_LIMIT = 1_000


def raw_json(record: dict[str, Any]) -> str:
    """The source record as JSON for the quarantine, cut *per value* so the result stays valid JSON.

    Values longer than 1,000 characters keep their start and say how long they were; if the record is still too
    long (a very wide row), only the first 100 characters of each value are kept and ``"_cut": true`` says so.
    """

    def cut(v: Any, limit: int) -> Any:
        if isinstance(v, str) and len(v) > limit:
            return f"{v[:limit]}… ({len(v)} chars)"
        return v

    out = json.dumps({k: cut(v, _RAW_VALUE_LIMIT) for k, v in record.items()}, ensure_ascii=False, default=str)
    if len(out) <= RAW_LIMIT:
        return out
    narrow = {"_cut": True, **{str(k)[:100]: cut(v, 100) for k, v in list(record.items())[:60]}}
    out = json.dumps(narrow, ensure_ascii=False, default=str)
    return out if len(out) <= RAW_LIMIT else json.dumps({"_cut": True, "columns": len(record)})


def _source_name(cfg: SourceConfig, dataset: str, canonical: str) -> str:
    for src, inp in cfg.datasets[dataset].inputs.items():
        if inp.name == canonical:
            return src
    for src, dst in cfg.datasets[dataset].columns.items():
        if dst == canonical:
            return src
    return canonical


def _parse_dates(col: pa.Array, present: pa.Array, name: str, fmt: str, rows: _Rows) -> pa.Array:
    parsed = pc.strptime(col, format=fmt, unit="s", error_is_null=True)
    bad = pc.and_kleene(present, pc.is_null(parsed))
    pattern = _date_regex(fmt)
    if pattern:
        # strptime rolls 02/31 over into March; comparing the printed day with the parsed day catches it.
        parts = pc.extract_regex(col, pattern)
        bad = pc.or_kleene(bad, pc.and_kleene(present, pc.invert(pc.is_valid(parts))))
        if "(?P<d>" in pattern:
            printed = pc.if_else(pc.is_valid(parts), pc.struct_field(parts, "d"), pa.scalar(None, pa.string()))
            day = pc.cast(printed, pa.int64())
            bad = pc.or_kleene(bad, pc.and_kleene(present, pc.not_equal(day, pc.day(parsed))))
    rows.flag(bad, name, "invalid_date", f"{name} is not a valid date in format {fmt}")
    ok = pc.and_kleene(pc.invert(pc.fill_null(bad, False)), present)
    return pc.if_else(ok, pc.cast(parsed, pa.date32()), pa.scalar(None, pa.date32()))


def _plausible_dates(col: pa.Array, name: str, cfg: SourceConfig, ctx: Context, rows: _Rows) -> None:
    """Dates outside ``earliest_date .. as_of + max_days_ahead`` are typos (year 0023, 2925), never aged."""
    earliest = cfg.earliest_date
    outside = pc.less(col, pa.scalar(earliest, pa.date32()))
    latest = None
    if ctx.as_of is not None:
        latest = ctx.as_of + timedelta(days=cfg.max_days_ahead)
        outside = pc.or_kleene(outside, pc.greater(col, pa.scalar(latest, pa.date32())))
    rows.flag(
        outside,
        name,
        "implausible_date",
        f"{name} is outside the plausible range {earliest} .. {latest or 'any'} (earliest_date, max_days_ahead)",
    )


def _plain_number_text(col: pa.Array, present: pa.Array, f: Field, cfg: SourceConfig, rows: _Rows) -> pa.Array:
    """The number as text with ``.`` as the decimal point and no grouping.

    Grouping must sit between groups of three digits before the decimal separator: otherwise ``45.000,00`` read
    with US separators would silently become 45.00000, i.e. 45, a 1000x error, now that zero padding is not
    counted as decimals.
    """
    text = _signed_text(col, present, f, cfg, rows)
    if cfg.thousands_sep:
        sep, point = re.escape(cfg.thousands_sep), re.escape(cfg.decimal_sep)
        grouped = f"^[+-]?([0-9]+|[0-9]{{1,3}}({sep}[0-9]{{3}})+)({point}[0-9]+)?$"
        rows.flag(
            pc.and_kleene(
                pc.match_substring(text, cfg.thousands_sep),
                pc.invert(pc.fill_null(pc.match_substring_regex(text, grouped), False)),
            ),
            f.name,
            "not_a_number",
            f"{f.name}: thousands separator {cfg.thousands_sep!r} is not between groups of three digits",
        )
        text = pc.replace_substring(text, cfg.thousands_sep, "")
    if cfg.decimal_sep != ".":
        dotted = pc.match_substring(text, ".")
        rows.flag(
            pc.and_kleene(present, dotted),
            f.name,
            "not_a_number",
            f"{f.name} has '.' but the decimal separator is {cfg.decimal_sep!r}",
        )
        text = pc.replace_substring(text, cfg.decimal_sep, ".")
    return text


#: Per negative style: the shapes a value may have as far as signs go (a sign or parenthesis anywhere else is
#: ambiguous), and for the styles other than a leading minus, the shape of a negative value and where its digits are.
_SIGN_SHAPES = {
    "leading_minus": r"^[+-]?[^()+-]*$",
    "parentheses": r"^(\([^()+-]*\)|[^()+-]*)$",
    "trailing_minus": r"^[^()+-]*-?$",
}
_NEGATIVE: dict[str, tuple[str, int, int]] = {
    "parentheses": (r"^\([^()+-]*\)$", 1, -1),
    "trailing_minus": (r"^[^()+-]*-$", 0, -1),
}
#: Digits and the grouping/decimal separators a source may use (config.THOUSANDS_SEPARATORS), nothing else.
_NUMBERISH = "^[0-9.,' \u00a0\u202f]*[0-9][0-9.,' \u00a0\u202f]*$"
_SIGN_EXAMPLE = {"leading_minus": "-12.34", "parentheses": "(12.34)", "trailing_minus": "12.34-"}


def _ambiguous(values: pa.Array, style: str) -> pa.Array:
    """Signs not in ``style`` on what would otherwise be a number ("n/a-1" is not a number, not an ambiguous one)."""
    numberish = pc.match_substring_regex(pc.replace_substring_regex(values, r"[()+-]", ""), _NUMBERISH)
    return pc.and_kleene(pc.invert(pc.match_substring_regex(values, _SIGN_SHAPES[style])), numberish)


def _sign_message(name: str, style: str) -> str:
    return f"{name}: sign not written as the source's negative_style {style} ({_SIGN_EXAMPLE[style]})"


def _signed_text(col: pa.Array, present: pa.Array, f: Field, cfg: SourceConfig, rows: _Rows) -> pa.Array:
    """The value with its sign as a leading ``-``, read in the source's ``negative_style`` (one home for signs).

    A sign or parenthesis written any other way (``(12.34)`` in a leading-minus export, ``-12.34`` in a
    parentheses export, ``-(12.34)``, ``12.34-``) is ``ambiguous_sign``: an export that mixes styles cannot be read
    by guessing. With a leading minus (the default) nothing is checked here: every other sign form fails the number
    shape, and :func:`_relabel_signs` names those few rows afterwards, so clean data pays nothing.
    """
    style = cfg.negative_style
    if style not in _NEGATIVE:
        return col
    rows.flag(_ambiguous(col, style), f.name, "ambiguous_sign", _sign_message(f.name, style))
    pattern, start, stop = _NEGATIVE[style]
    is_negative = pc.fill_null(pc.match_substring_regex(col, pattern), False)
    body = pc.utf8_slice_codeunits(col, start, stop)
    return pc.if_else(is_negative, pc.binary_join_element_wise("-", body, ""), col)


def _relabel_signs(col: pa.Array, name: str, cfg: SourceConfig, rows: _Rows) -> None:
    """Leading-minus sources: rows of ``name`` refused as ``not_a_number`` whose value is a number with its sign
    written another way are ``ambiguous_sign`` (only the refused rows are looked at)."""
    if cfg.negative_style in _NEGATIVE or name not in rows.any_field:
        return
    idx = np.flatnonzero(rows.any_field[name])
    idx = np.array([i for i in idx if rows.field[i] == name and rows.reason[i] == "not_a_number"], dtype=np.int64)
    if not len(idx):
        return
    hit = pc.fill_null(_ambiguous(col.take(pa.array(idx)), cfg.negative_style), False).to_numpy(zero_copy_only=False)
    for i in idx[hit]:
        rows.reason[i] = "ambiguous_sign"
        rows.message[i] = _sign_message(name, cfg.negative_style)


def _parse_number(col: pa.Array, present: pa.Array, f: Field, cfg: SourceConfig, rows: _Rows) -> pa.Array:
    """A rate (``fx_rate``): at most 10 integer digits and 10 decimals; more is refused rather than rounded."""
    text = _plain_number_text(col, present, f, cfg, rows)
    ok = pc.match_substring_regex(text, _RATE_RE)
    bad = pc.and_kleene(present, pc.invert(pc.fill_null(ok, False)))
    rows.flag(bad, f.name, "not_a_number", f"{f.name} is not a decimal number (at most 10 decimals)")
    _relabel_signs(col, f.name, cfg, rows)
    good = pc.fill_null(ok, False)
    value = pc.cast(pc.if_else(good, text, pa.scalar(None, pa.string())), RATE_TYPE)
    rows.flag(pc.less(value, pa.scalar(0, RATE_TYPE)), f.name, "invalid_fx_rate", f"{f.name} is negative")
    return value


def _parse_money(
    col: pa.Array, present: pa.Array, f: Field, cfg: SourceConfig, rows: _Rows, currency: pa.Array
) -> pa.Array:
    """An amount in the row's ``currency``: a plain number within MAX_AMOUNT and the currency's minor unit.

    Decimals are counted on the text without zero padding (``1234.5000`` is 1234.5: a NUMERIC(18, 4) source
    column or a Parquet decimal prints zeros that are not decimals), so the verdict is the value's, exactly as
    :func:`writeoffs.money.check_minor_units` decides it on a Decimal; nothing is rounded. A float handed over by
    a source reaches this point as its shortest round-trip text (:func:`writeoffs.ingest.sources._text`), so binary
    noise (``0.30000000000000004``) shows up as decimals and is refused, never rounded away.
    """
    text = _plain_number_text(col, present, f, cfg, rows)
    shape = pc.fill_null(pc.match_substring_regex(text, _NUMBER_RE), False)
    rows.flag(pc.and_kleene(present, pc.invert(shape)), f.name, "not_a_number", f"{f.name} is not a decimal number")
    _relabel_signs(col, f.name, cfg, rows)
    # Zero padding off (1234.5000 -> 1234.5, 100.00 -> 100), then decimals and integer digits counted on the text:
    # string kernels only, no regex capture (this runs on every money field of every row).
    number = pc.if_else(shape, text, pa.scalar(None, pa.string()))
    point = pc.find_substring(number, ".")
    has_point = pc.greater_equal(point, 0)
    canonical = pc.if_else(has_point, pc.utf8_rtrim(pc.utf8_rtrim(number, "0"), "."), number)
    places = pc.fill_null(
        pc.if_else(has_point, pc.max_element_wise(pc.subtract(pc.utf8_length(canonical), pc.add(point, 1)), 0), 0), 0
    )
    body = pc.utf8_ltrim(pc.utf8_ltrim(canonical, "+-"), "0")  # integer digits that count: no sign, no leading 0
    body_point = pc.find_substring(body, ".")
    int_digits = pc.if_else(pc.greater_equal(body_point, 0), body_point, pc.utf8_length(body))
    fits = pc.and_kleene(
        shape, pc.and_kleene(pc.less_equal(int_digits, _MONEY_INT_DIGITS), pc.less_equal(places, DB_SCALE))
    )
    value = pc.cast(pc.if_else(fits, canonical, pa.scalar(None, pa.string())), MONEY_TYPE)

    def messages(rule: Any, *args: pa.Array) -> Callable[[np.ndarray], list[str]]:
        def build(idx: np.ndarray) -> list[str]:
            take = pa.array(idx)
            out = []
            for vals in zip(*(a.take(take).to_pylist() for a in (canonical, *args)), strict=True):
                try:
                    rule(Decimal(vals[0]), *vals[1:])
                except InputError as exc:
                    out.append(f"{f.name} {exc.reason}")
                    continue
                raise RuntimeError(f"{f.name} {vals}: the ingest and writeoffs.money disagree (a bug)")
            return out

        return build

    too_large = pc.and_kleene(
        shape,
        pc.or_kleene(
            pc.greater(int_digits, _MONEY_INT_DIGITS),
            pc.greater(pc.abs(value), pa.scalar(MAX_AMOUNT, MONEY_TYPE)),
        ),
    )
    rows.flag(too_large, f.name, "amount_too_large", messages(check_max_amount))
    units = pc.index_in(currency, value_set=pa.array(list(MINOR_UNITS), pa.string()))
    allowed = pc.take(pa.array(list(MINOR_UNITS.values()), pa.int32()), units)
    # An unknown or missing currency already failed its own field; DB_SCALE keeps even such a row from being cut.
    too_many = pc.and_kleene(shape, pc.greater(places, pc.fill_null(allowed, DB_SCALE)))
    rows.flag(too_many, f.name, "too_many_decimals", messages(check_minor_units, currency))
    rows.flag(pc.less(value, pa.scalar(0, MONEY_TYPE)), f.name, "negative_amount", f"{f.name} is negative")
    return value


def _cross_checks(dataset: str, out: dict[str, pa.Array], rows: _Rows, ctx: Context) -> None:
    zero_m = pa.scalar(0, MONEY_TYPE)
    if dataset == "invoices":
        rows.flag(
            pc.greater(out["open_balance"], out["amount"]),
            "open_balance",
            "balance_above_amount",
            "open balance exceeds the invoice amount",
        )
        rows.flag(
            pc.less(out["due_date"], out["invoice_date"]),
            "due_date",
            "due_before_invoice",
            "due date is before the invoice date",
        )
        fx = out["fx_rate"]
        rows.flag(pc.equal(fx, pa.scalar(0, RATE_TYPE)), "fx_rate", "invalid_fx_rate", "fx_rate must be positive")
        # Invoices in the functional currency carry rate 1; a foreign-currency invoice must bring its booked rate.
        ents = list(ctx.functional)
        func_cur = pc.take(
            pa.array([ctx.functional[e] for e in ents], pa.string()),
            pc.index_in(out["entity"], value_set=pa.array(ents, pa.string())),
        )
        same = pc.fill_null(pc.equal(func_cur, out["currency"]), False)
        rows.flag(
            pc.and_kleene(pc.invert(same), pc.is_null(fx)),
            "fx_rate",
            "missing_fx_rate",
            "foreign-currency invoice without its booked fx_rate",
        )
        rows.flag(
            pc.and_kleene(same, pc.fill_null(pc.not_equal(fx, pa.scalar(1, RATE_TYPE)), False)),
            "fx_rate",
            "invalid_fx_rate",
            "fx_rate must be 1 for an invoice in the functional currency",
        )
        out["fx_rate"] = pc.if_else(pc.is_null(fx), pa.scalar(1, RATE_TYPE), fx)
    elif dataset == "payments":
        rows.flag(pc.equal(out["amount"], zero_m), "amount", "non_positive_amount", "payment amount must be positive")
        rows.flag(
            pc.greater(out["applied_amount"], out["amount"]),
            "applied_amount",
            "applied_above_amount",
            "applied amount exceeds the payment amount",
        )
        rows.flag(
            pc.and_kleene(pc.is_valid(out["applied_amount"]), pc.is_null(out["invoice_ref"])),
            "invoice_ref",
            "missing_value",
            "applied amount without an invoice_ref",
        )
    elif dataset == "activities":
        rows.flag(
            pc.less(out["end_date"], out["activity_date"]),
            "end_date",
            "end_before_start",
            "end date is before the activity date",
        )


def first_problem(bad: list[Quarantined], source: str) -> InputError:
    b = min(bad, key=lambda q: (q.dataset, q.file, q.row or 0))
    return InputError(
        f"{len(bad)} bad row(s) and on_bad_rows is 'reject'; first: {b.reason}: {b.message}",
        source=source,
        file=b.file,
        row=b.row,
        field=b.field,
    )


def as_dicts(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()
