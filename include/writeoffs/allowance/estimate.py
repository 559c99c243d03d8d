"""The estimate: lock, scope, store, post one adjustment per entity and currency, audit (and the run wrapper)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from writeoffs import audit, ledger
from writeoffs.allowance.amounts import _allowance_balances, _functional_required, _store_estimates, _stored
from writeoffs.allowance.booking import _adjust_pair, _already_result, _post_adjustments
from writeoffs.allowance.config import AllowanceConfig, load_config
from writeoffs.allowance.model import AllowanceResult, PairResult, _PeriodProbe
from writeoffs.allowance.scope import _check_rates_cover_aging, _done_pairs, _refuse_out_of_order, _scope
from writeoffs.db import bulk
from writeoffs.db.locks import ALLOWANCE_ESTIMATE, ledger_lock
from writeoffs.db.schema import legal_entities
from writeoffs.journal import JournalEntry


def estimate_allowance(
    conn: Connection,
    as_of: date,
    *,
    config: AllowanceConfig,
    actor: str,
    entities: Sequence[str] | None = None,
) -> AllowanceResult:
    """Estimate and post in the caller's transaction (see :mod:`writeoffs.allowance`). Idempotent per date."""
    ledger_lock(conn, ALLOWANCE_ESTIMATE)
    bulk.set_local_work_mem(conn)  # the aging from movements hashes per-invoice sums: in memory (where a setting)
    functional = _allowance_entities(conn, entities)
    if not functional:
        return AllowanceResult(as_of, config.version, ())
    rates = {e: config.rates_for(e) for e in functional}
    _check_rates_cover_aging(conn, as_of, rates, config)

    pairs = _scope(conn, as_of, sorted(functional))
    done = _done_pairs(conn, as_of, pairs)
    todo = [p for p in pairs if p not in done]
    if todo:
        ledger.check_periods_open(conn, [_PeriodProbe(e, as_of) for e in sorted({e for e, _ in todo})])
        _refuse_out_of_order(conn, as_of, todo)
        _store_estimates(conn, as_of, todo, rates)
    stored = _stored(conn, as_of, pairs)
    required_f = _functional_required(conn, as_of, todo, rates, functional)
    balances = _allowance_balances(conn, as_of, todo)

    results: list[PairResult] = []
    entries: list[JournalEntry] = []
    for entity, cur in pairs:
        buckets = stored.get((entity, cur), ())
        if (entity, cur) in done:
            results.append(_already_result(entity, cur, functional[entity], buckets, as_of, done[(entity, cur)]))
            continue
        balance = balances.get((entity, cur), (Decimal(0), Decimal(0)))
        req_f = required_f.get((entity, cur), Decimal(0))
        pair_result, entry = _adjust_pair(conn, as_of, config, entity, cur, functional[entity], buckets, balance, req_f)
        if entry is not None:
            entries.append(entry)
        results.append(pair_result)
    results = _post_adjustments(conn, results, entries, actor)
    result = AllowanceResult(as_of, config.version, tuple(results))
    if todo:
        _audit_estimate(conn, as_of, config, results, todo, actor)
    return result


def _allowance_entities(conn: Connection, entities: Sequence[str] | None) -> dict[str, str]:
    """Allowance-method entities (all, or those of ``entities``) -> their functional currency."""
    q = select(legal_entities.c.code, legal_entities.c.functional_currency).where(
        legal_entities.c.writeoff_method == "allowance"
    )
    if entities:
        q = q.where(legal_entities.c.code.in_(list(entities)))
    return dict(conn.execute(q.order_by(legal_entities.c.code)).all())


def _audit_estimate(
    conn: Connection,
    as_of: date,
    config: AllowanceConfig,
    results: Sequence[PairResult],
    todo: Sequence[tuple[str, str]],
    actor: str,
) -> None:
    """One audit record for the date: the configuration used and the pairs estimated by this run."""
    audit.append(
        conn,
        actor=actor,
        action="allowance.estimate",
        object_type="allowance_estimate",
        object_id=as_of.isoformat(),
        details={
            "config_version": config.version,
            "config_hash": config.content_hash,
            "config_source": config.source,
            "pairs": [r.summary() for r in results if (r.entity, r.currency) in set(todo)],
        },
    )


def run_allowance(engine: Any, as_of: date, *, config: AllowanceConfig | None = None, actor: str) -> AllowanceResult:
    """One transaction: estimate and post for every allowance-method entity (the DAG and CLI entry point)."""
    cfg = config or load_config()
    with engine.begin() as conn:
        return estimate_allowance(conn, as_of, config=cfg, actor=actor)


def has_allowance_entities(conn: Connection) -> bool:
    return (
        conn.execute(
            select(legal_entities.c.code).where(legal_entities.c.writeoff_method == "allowance").limit(1)
        ).first()
        is not None
    )
