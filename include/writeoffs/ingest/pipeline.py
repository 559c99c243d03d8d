"""The ingestion chained without Airflow (CLI, demo, benchmark): stage every source, merge, age.

The DAG runs the same three steps as separate tasks; this module is the plain-Python equivalent.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from typing import Any

from sqlalchemy import Engine

from writeoffs.aging import compute_aging
from writeoffs.ingest.config import SourcesConfig
from writeoffs.ingest.merge import merge
from writeoffs.ingest.sources import Source, build_source
from writeoffs.ingest.staging import stage

log = logging.getLogger(__name__)


def age(engine: Engine, config: SourcesConfig, as_of: date) -> dict[str, Any]:
    with engine.begin() as conn:
        return compute_aging(conn, as_of, basis=config.aging.basis, buckets=config.aging.buckets())


def run(
    engine: Engine,
    config: SourcesConfig,
    as_of: date,
    *,
    sources: list[Source] | None = None,
    names: list[str] | None = None,
    actor: str = "ingest",
) -> dict[str, Any]:
    timings: dict[str, float] = {}
    if sources is None:
        sources = [build_source(config.source(n)) for n in (names or list(config.sources))]
    staged = []
    for src in sources:
        t0 = time.perf_counter()
        staged.append(stage(engine, config, src, as_of, actor=actor))
        timings[f"stage:{src.name}"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    merged = merge(engine, config, [s["batch_id"] for s in staged], as_of, actor=actor)
    timings["merge"] = round(time.perf_counter() - t0, 3)
    # Same order as the DAG: cash that arrived for written-off invoices is booked as recovery before aging.
    from writeoffs.recoveries_pending import book_pending_recoveries

    t0 = time.perf_counter()
    recovered = book_pending_recoveries(engine, as_of, actor)
    timings["recoveries"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    aging = age(engine, config, as_of)
    timings["aging"] = round(time.perf_counter() - t0, 3)
    return {"staged": staged, "merged": merged, "recoveries": recovered, "aging": aging, "timings_s": timings}
