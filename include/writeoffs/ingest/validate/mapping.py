"""Source columns renamed to canonical fields; a missing mapped or required column rejects the batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from writeoffs.errors import InputError, shorten
from writeoffs.ingest.fields import DATASETS
from writeoffs.ingest.sources import RawChunk

if TYPE_CHECKING:
    from writeoffs.ingest.config import SourceConfig


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


def _source_name(cfg: SourceConfig, dataset: str, canonical: str) -> str:
    for src, inp in cfg.datasets[dataset].inputs.items():
        if inp.name == canonical:
            return src
    for src, dst in cfg.datasets[dataset].columns.items():
        if dst == canonical:
            return src
    return canonical
