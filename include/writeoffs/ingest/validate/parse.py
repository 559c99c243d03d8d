"""One field's (or input column's) text typed and checked by its kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from writeoffs.ingest import derive
from writeoffs.ingest.fields import ACTIVITY_TYPES, Field
from writeoffs.ingest.validate.dates import _parse_dates, _plausible_dates
from writeoffs.ingest.validate.model import Context, _clean, _Rows
from writeoffs.ingest.validate.numbers import _parse_money, _parse_number, _plain_number_text, _relabel_signs
from writeoffs.money import MINOR_UNITS

if TYPE_CHECKING:
    from writeoffs.ingest.config import SourceConfig
    from writeoffs.ingest.derive import InputColumn


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
