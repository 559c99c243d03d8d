"""One chunk validated: inputs, fields (computed or read) in order, cross checks, keep_if, quarantine records."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from writeoffs.errors import shorten, value_repr
from writeoffs.ingest import derive
from writeoffs.ingest.fields import DATASETS, Field
from writeoffs.ingest.sources import RawChunk
from writeoffs.ingest.validate.cross import _cross_checks
from writeoffs.ingest.validate.mapping import _source_name, map_columns
from writeoffs.ingest.validate.model import Context, Quarantined, Validated, _column, _Rows, raw_json
from writeoffs.ingest.validate.parse import _parse_input, _typed

if TYPE_CHECKING:
    from writeoffs.ingest.config import DatasetConfig, SourceConfig


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
