"""Recording decisions: the per-invoice decision trail of a run (``selection_runs`` / ``selection_decisions``),
written set-wise and checked for orphans (:func:`record_decisions`); and a policy run's audit row
(:func:`audit_run`, also written by the charge-off).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection, Integer, String, case, delete, func, insert, literal, select, update

from writeoffs import audit
from writeoffs.db.schema import invoices, selection_decisions, selection_runs
from writeoffs.errors import WriteoffError
from writeoffs.policy.schema import Policy


def run_ref(as_of: date, policy: Policy) -> str:
    """A policy run's reference: its as-of date and the policy's short hash."""
    return f"{as_of.isoformat()}:{policy.short_hash()}"


def audit_run(
    conn: Connection, policy: Policy, as_of: date, *, actor: str, action: str, object_type: str, **details: Any
) -> None:
    """The audit row of a policy run (named by :func:`run_ref`): the as-of date and policy, then ``details``."""
    audit.append(
        conn,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=run_ref(as_of, policy),
        details={"as_of": as_of, "policy_version": policy.version, "policy_hash": policy.content_hash, **details},
    )


def record_decisions(conn: Connection, policy: Policy, as_of: date, decided: Any) -> dict[str, int]:
    """The decision trail of this run: one row per considered invoice, written set-wise (one INSERT ... SELECT).

    A re-run of the same (as-of date, policy) replaces its rows, as its candidates are re-derived: the trail says
    what the latest run decided. Compact: evidence is kept only for excluded invoices (a route fired; the evidence
    shows what the exclusion saw); a candidate's evidence is on its write-off row, a not-eligible invoice's answer
    is its shortfall. Screened-out invoices (under every route's threshold) are counted, not stored: ``trail``
    derives that answer from the run's date and the invoice.

    No foreign keys: one trigger call per row would double the selection's time on a large book. The run row is
    written first in this transaction and the invoice ids come from ``invoices`` in it; that no row is orphaned is
    checked set-wise below, and invoices are never deleted.
    """
    counts = dict(conn.execute(select(decided.c.outcome, func.count()).group_by(decided.c.outcome)).all())
    values = {
        "considered": sum(counts.values()),
        "candidates": counts.get("candidate", 0),
        "excluded": counts.get("excluded", 0),
        "not_eligible": counts.get("not_eligible", 0),
    }
    run_id = conn.execute(
        select(selection_runs.c.id).where(
            selection_runs.c.as_of_date == as_of, selection_runs.c.policy_hash == policy.content_hash
        )
    ).scalar()
    if run_id is None:
        run_id = conn.execute(
            insert(selection_runs)
            .values(as_of_date=as_of, policy_version=policy.version, policy_hash=policy.content_hash, **values)
            .returning(selection_runs.c.id)
        ).scalar_one()
    else:
        conn.execute(delete(selection_decisions).where(selection_decisions.c.run_id == run_id))
        conn.execute(update(selection_runs).where(selection_runs.c.id == run_id).values(**values))
    d = decided.c
    conn.execute(
        insert(selection_decisions).from_select(
            ["run_id", "invoice_id", "outcome", "rule", "route", "evidence"],
            select(
                literal(run_id, Integer()),
                d.invoice_id,
                d.outcome,
                d.rule,
                case((d.outcome == "excluded", d.route), else_=literal(None, String())),
                case((d.outcome == "excluded", d.evidence), else_=literal(None, String())),
            ),
        )
    )
    sd = selection_decisions.c
    orphans = conn.execute(
        select(func.count())
        .select_from(selection_decisions.outerjoin(invoices, invoices.c.id == sd.invoice_id))
        .where(sd.run_id == run_id, invoices.c.id.is_(None))
    ).scalar_one()
    if orphans:  # a bug, never data: the transaction (candidates included) rolls back
        raise WriteoffError(f"decision trail of run {run_id}: {orphans} row(s) name no invoice")
    return {"run_id": run_id, **values}
