"""One as-of date end to end, each step its own transaction (what the DAG tasks and the CLI call)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Engine

from writeoffs.policy import registry
from writeoffs.policy.batching import BatchingResult, batch_table, finish_batches, open_batches
from writeoffs.policy.chargeoff import ChargeOffResult, charge_off
from writeoffs.policy.schema import Policy
from writeoffs.policy.selection import SelectionResult, insert_candidates


def resolve(
    engine: Engine, path: str | os.PathLike[str] | None = None, *, actor: str = "system"
) -> registry.Resolution:
    with engine.begin() as conn:
        return registry.resolve_for_run(conn, path, actor=actor)


def policy_by_hash(engine: Engine, content_hash: str) -> Policy:
    """Re-load a recorded policy by hash (tasks pass the hash through XCom, never the policy object)."""
    from sqlalchemy import select

    from writeoffs.db.schema import policy_versions
    from writeoffs.errors import ConfigError
    from writeoffs.policy.schema import parse_policy

    with engine.connect() as conn:
        text = conn.execute(
            select(policy_versions.c.content).where(policy_versions.c.content_hash == content_hash)
        ).scalar()
    if text is None:
        raise ConfigError(f"policy {content_hash[:12]} is not recorded in policy_versions")
    policy = parse_policy(text, source=f"policy_versions[{content_hash[:12]}]")
    if policy.content_hash != content_hash:
        raise ConfigError(f"recorded policy {content_hash[:12]} does not match its content hash (edited?)")
    return policy


def run_charge_off(engine: Engine, policy: Policy, as_of: date, *, actor: str = "system") -> ChargeOffResult:
    with engine.begin() as conn:
        return charge_off(conn, policy, as_of, actor=actor)


@dataclass(frozen=True, slots=True)
class Prepared:
    selection: SelectionResult
    batching: BatchingResult

    def to_dict(self) -> dict[str, Any]:
        return {**self.selection.to_dict(), **self.batching.to_dict()}


def select_and_batch(
    engine: Engine,
    policy: Policy,
    as_of: date,
    *,
    prepared_by: str = "system",
    dag_run_id: str | None = None,
) -> Prepared:
    """Candidates and their batches in ONE transaction: no candidate is ever visible without its batch."""
    with engine.begin() as conn:
        batch_map = open_batches(conn, policy, as_of, prepared_by=prepared_by, dag_run_id=dag_run_id)
        sel = insert_candidates(conn, policy, as_of, actor=prepared_by, batch_map=batch_map)
        bat = finish_batches(conn, policy, as_of)
    return Prepared(sel, bat)


def summary(engine: Engine, policy_hash: str, as_of: date) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return batch_table(conn, policy_hash, as_of)


def prepare(
    engine: Engine,
    as_of: date,
    *,
    policy_path: str | os.PathLike[str] | None = None,
    prepared_by: str = "system",
    dag_run_id: str | None = None,
) -> dict[str, Any]:
    """Resolve the policy, charge off, select and batch; returns a JSON-able summary."""
    res = resolve(engine, policy_path, actor=prepared_by)
    co = run_charge_off(engine, res.policy, as_of, actor=prepared_by)
    prep = select_and_batch(engine, res.policy, as_of, prepared_by=prepared_by, dag_run_id=dag_run_id)
    return {
        "policy_version": res.policy.version,
        "policy_hash": res.policy.content_hash,
        "policy_rejected": res.rejected,
        "charge_off": co.to_dict(),
        **prep.to_dict(),
        "batches": summary(engine, res.policy.content_hash, as_of),
    }
