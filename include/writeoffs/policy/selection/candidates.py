"""Writing candidates: the live run's one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` over the materialised
decision, each candidate attached to its batch (:func:`insert_candidates`), and its :class:`SelectionResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, Date, Integer, Select, String, and_, case, func, literal, select, true

from writeoffs.accounting.keys import writeoff_candidate_prefix
from writeoffs.db import dialect
from writeoffs.db.schema import writeoffs
from writeoffs.policy.schema import Policy
from writeoffs.policy.selection.model import Scope
from writeoffs.policy.selection.plan import _Plan
from writeoffs.policy.selection.trail import audit_run, record_decisions
from writeoffs.policy.sqlx import drop_temp, temp_table, typed

#: Session-temporary tables of a live run (dropped at the end of the step; on PostgreSQL also ON COMMIT).
_POP, _EFFORT, _DECIDED = "wo_pop", "wo_effort", "wo_decided"

SKIP_DECIDED = "batch already decided; re-selected on a later as-of date"


@dataclass(frozen=True, slots=True)
class SelectionResult:
    as_of: date
    policy_version: str
    policy_hash: str
    inserted: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "policy_version": self.policy_version,
            "policy_hash": self.policy_hash,
            "inserted": self.inserted,
        }


def idempotency_prefix(as_of: date, policy: Policy) -> str:
    return writeoff_candidate_prefix(as_of, policy.content_hash)


def insert_candidates(
    conn: Connection, policy: Policy, as_of: date, *, actor: str = "system", batch_map: Any = None
) -> SelectionResult:
    """Write the candidates for ``as_of`` in the caller's transaction, each attached to its batch.

    ``batch_map`` (from :func:`writeoffs.policy.batching.open_batches`) maps (entity, currency, tier) to the batch id
    and whether that batch is still open; the batch is assigned in the INSERT itself (no second pass over the
    rows). A candidate whose batch was already decided is written ``skipped`` with the reason instead.
    Idempotent: the idempotency key is unique per (as_of, policy hash, invoice), so a re-run inserts nothing.
    """
    decided = _materialise_decision(conn, policy, as_of)
    source, batch_id, status, skip = _batch_assignment(decided, batch_map)
    inserted = _insert(conn, policy, as_of, _candidate_rows(policy, as_of, decided, source, batch_id, status, skip))
    trail = record_decisions(conn, policy, as_of, decided)
    drop_temp(conn, _DECIDED)
    drop_temp(conn, _EFFORT)
    drop_temp(conn, _POP)
    audit_run(
        conn,
        policy,
        as_of,
        actor=actor,
        action="policy.select_candidates",
        object_type="writeoff_run",
        inserted=inserted,
        decisions=trail,
    )
    return SelectionResult(as_of, policy.version, policy.content_hash, inserted)


def _materialise_decision(conn: Connection, policy: Policy, as_of: date) -> Any:
    """The decision of the screened population, as a session-temporary table (with its population and effort)."""
    # The screened population and its effort are materialised (see ``sqlx.temp_table`` for why); the rest of the
    # decision runs inside the INSERT over those two small, analysed tables.
    plan = _Plan(conn, policy, Scope(as_of))
    pop = temp_table(conn, _POP, plan.population(screen=True))
    effort = temp_table(conn, _EFFORT, plan.effort(pop))
    # Materialised once: the candidates and the decision trail are both written from it. Evidence (a JSON object
    # per row, the costliest column by far) only for the rows that keep it: candidates and excluded invoices.
    return temp_table(conn, _DECIDED, plan.decide(pop, effort, evidence_for=("candidate", "excluded")))


def _batch_assignment(decided: Any, batch_map: Any) -> tuple[Any, Any, Any, Any]:
    """What the candidates are selected from, and their batch id, status and skip reason (by ``batch_map``)."""
    dc = decided.c
    source: Any = decided
    if batch_map is not None:
        bm = batch_map
        source = decided.outerjoin(
            bm, and_(bm.c.entity_code == dc.entity_code, bm.c.currency == dc.currency, bm.c.tier == dc.tier)
        )
        is_open = bm.c.is_open == true()
        batch_id = case((is_open, bm.c.batch_id), else_=literal(None, Integer()))
        status = case((is_open, literal("candidate")), else_=literal("skipped"))
        skip = case((is_open, literal(None, String())), else_=literal(SKIP_DECIDED))
    else:
        batch_id, status, skip = literal(None, Integer()), literal("candidate"), literal(None, String())
    return source, batch_id, status, skip


def _candidate_rows(
    policy: Policy, as_of: date, decided: Any, source: Any, batch_id: Any, status: Any, skip: Any
) -> Select[Any]:
    """The rows to insert into ``writeoffs``: one per decided candidate."""
    dc = decided.c
    return (
        select(
            dc.invoice_id,
            typed(as_of, Date()).label("as_of_date"),
            dc.currency,
            dc.amount,
            dc.reason_code,
            dc.rule,
            dc.evidence,
            dc.tier,
            literal(policy.version, String()).label("policy_version"),
            literal(policy.content_hash, String()).label("policy_hash"),
            status.label("status"),
            (literal(idempotency_prefix(as_of, policy), String()) + func.cast(dc.invoice_id, String())).label("key"),
            batch_id.label("batch_id"),
            skip.label("skip_reason"),
        )
        .select_from(source)
        .where(dc.outcome == "candidate")
    )


def _insert(conn: Connection, policy: Policy, as_of: date, src: Select[Any]) -> int:
    """``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` of the candidate rows; how many were inserted."""
    cols = [
        "invoice_id",
        "as_of_date",
        "currency",
        "amount",
        "reason_code",
        "rule",
        "evidence",
        "tier",
        "policy_version",
        "policy_hash",
        "status",
        "idempotency_key",
        "batch_id",
        "skip_reason",
    ]
    ins = dialect.of(conn).insert(writeoffs)
    # Counted, not taken from rowcount: Python's sqlite3 reports -1 for a statement that starts with WITH.
    mine = select(func.count()).where(writeoffs.c.as_of_date == as_of, writeoffs.c.policy_hash == policy.content_hash)
    before = conn.execute(mine).scalar_one()
    conn.execute(ins.from_select(cols, src).on_conflict_do_nothing())
    return conn.execute(mine).scalar_one() - before
