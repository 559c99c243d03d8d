"""The ingestion chained without Airflow (CLI, demo, benchmark): stage every source, validate, merge, age.

The DAG runs the same steps as separate tasks; this module is the plain-Python equivalent, and it applies the
same gate (:func:`writeoffs.validation.run.validate_batches`: blocking checks such as control totals, warnings
quarantined, the quarantine share limit) between staging and merge. A blocked batch raises
:class:`~writeoffs.validation.run.ValidationBlocked` and nothing is merged.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from writeoffs.aging import compute_aging
from writeoffs.ingest.config import SourcesConfig
from writeoffs.ingest.merge import merge
from writeoffs.ingest.sources import Source, build_source
from writeoffs.ingest.staging import stage
from writeoffs.subledger import checkpoint_period_end

if TYPE_CHECKING:
    from writeoffs.validation.config import ValidationConfig

log = logging.getLogger(__name__)


def age(engine: Engine, config: SourcesConfig, as_of: date) -> dict[str, Any]:
    """The aging snapshot of ``as_of``; then, in a transaction of its own, the sub-ledger checkpoint of the last month
    end on or before it if it is missing (``writeoffs.subledger.checkpoint_period_end``: once a month, derived from
    the movements, so that as-of questions about past dates start near them)."""
    with engine.begin() as conn:
        aged = compute_aging(conn, as_of, basis=config.aging.basis, buckets=config.aging.buckets())
    with engine.begin() as conn:
        checkpoint_period_end(conn, as_of)
    return aged


def run(
    engine: Engine,
    config: SourcesConfig,
    as_of: date,
    *,
    sources: list[Source] | None = None,
    names: list[str] | None = None,
    actor: str = "ingest",
    run_key: str | None = None,
    validation_config: ValidationConfig | None = None,
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
    from writeoffs.validation.run import validate_batches

    # The DAG's gate, the same function: blocking checks stop everything before the merge.
    validated = validate_batches(
        engine,
        [s["batch_id"] for s in staged],
        as_of=as_of,
        run_key=run_key or f"{actor}:{as_of.isoformat()}:{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}",
        config=validation_config,
    )
    timings["validate"] = round(time.perf_counter() - t0, 3)
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
    return {
        "staged": staged,
        "validation": validated.summary(),
        "merged": merged,
        "recoveries": recovered,
        "aging": aging,
        "timings_s": timings,
    }
