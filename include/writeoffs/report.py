"""Human-readable summaries of the ledger (CLI, demo, task logs)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from writeoffs import audit
from writeoffs.audit_anchor import verify_anchored
from writeoffs.db.schema import (
    accounts,
    customers,
    invoices,
    journal_entries,
    journal_lines,
    writeoffs,
)


def _fmt(value: object) -> str:
    return f"{Decimal(str(value or 0)).quantize(Decimal('0.01')):,}"


def ledger_summary(engine: Engine) -> str:
    lines: list[str] = []
    with engine.connect() as conn:
        n_cust = conn.execute(select(func.count()).select_from(customers)).scalar_one()
        lines.append(f"Ledger {engine.url.render_as_string(hide_password=True)}")
        lines.append(f"  customers: {n_cust:,}")
        lines.append("  invoices by status:")
        for r in conn.execute(
            select(invoices.c.status, func.count(), func.sum(invoices.c.open_balance))
            .group_by(invoices.c.status)
            .order_by(invoices.c.status)
        ):
            lines.append(f"    {r[0]:<20} {r[1]:>10,}  open balance {_fmt(r[2]):>20}")
        lines.append("  open AR (sub-ledger) vs GL AR control, per entity and currency:")
        sub = {
            (r.entity_code, r.currency): r.total
            for r in conn.execute(
                select(
                    invoices.c.entity_code, invoices.c.currency, func.sum(invoices.c.open_balance).label("total")
                ).group_by(invoices.c.entity_code, invoices.c.currency)
            )
        }
        ar = accounts.alias("ar")
        gl = {
            (r.entity_code, r.currency): r.total
            for r in conn.execute(
                select(
                    journal_lines.c.entity_code,
                    journal_lines.c.currency,
                    func.sum(journal_lines.c.debit - journal_lines.c.credit).label("total"),
                )
                .select_from(
                    journal_lines.join(journal_entries, journal_entries.c.id == journal_lines.c.entry_id).join(
                        ar,
                        (ar.c.entity_code == journal_lines.c.entity_code)
                        & (ar.c.code == journal_lines.c.account_code)
                        & (ar.c.role == "ar_control"),
                    )
                )
                .where(journal_entries.c.status == "posted")
                .group_by(journal_lines.c.entity_code, journal_lines.c.currency)
            )
        }
        for key in sorted(set(sub) | set(gl)):
            lines.append(f"    {key[0]} {key[1]}: sub-ledger {_fmt(sub.get(key)):>20}  GL {_fmt(gl.get(key)):>20}")
        n_je = conn.execute(
            select(func.count()).select_from(journal_entries).where(journal_entries.c.status == "posted")
        ).scalar_one()
        lines.append(f"  posted journal entries: {n_je:,}")
        for r in conn.execute(
            select(writeoffs.c.status, func.count(), func.sum(writeoffs.c.amount)).group_by(writeoffs.c.status)
        ):
            lines.append(f"  write-offs {r[0]:<12} {r[1]:>8,}  amount {_fmt(r[2])}")
        findings = verify_anchored(engine)
        lines.append(
            f"  audit log: {audit.count(conn):,} rows, chain "
            + ("intact" if not findings else f"BROKEN ({len(findings)} findings)")
        )
    return "\n".join(lines)


#: Selection runs shown per invoice in ``trail`` (latest first).
RUNS_SHOWN = 5


def _evidence_lines(evidence: str, indent: str) -> list[str]:
    import json

    ev = json.loads(evidence)
    lines = [f"{indent}evidence: {json.dumps({k: v for k, v in ev.items() if k != 'required'}, sort_keys=True)}"]
    if "required" in ev:
        lines.append(f"{indent}policy required: {json.dumps(ev['required'], sort_keys=True)}")
    return lines


def _decision_lines(conn: Connection, inv: Any) -> list[str]:
    """What the latest selection runs decided on the invoice: the rule that fired, the exclusion that stopped it,
    the shortfall, or that the run did not consider it (and how far past due it was on that date)."""
    from writeoffs.db.schema import policy_versions, selection_decisions, selection_runs
    from writeoffs.policy.schema import parse_policy

    runs = conn.execute(
        select(selection_runs)
        .where(selection_runs.c.as_of_date >= inv.invoice_date)
        .order_by(selection_runs.c.as_of_date.desc(), selection_runs.c.id.desc())
        .limit(RUNS_SHOWN)
    ).all()
    if not runs:
        return []
    decided = {
        d.run_id: d
        for d in conn.execute(
            select(selection_decisions).where(
                selection_decisions.c.invoice_id == inv.id,
                selection_decisions.c.run_id.in_([r.id for r in runs]),
            )
        )
    }
    basis: dict[str, str] = {}
    out = ["  selection runs (latest first):"]
    for run in runs:
        head = f"    {run.as_of_date} policy {run.policy_version} ({run.policy_hash[:12]}): "
        d = decided.get(run.id)
        if d is None:
            if run.policy_hash not in basis:
                text = conn.execute(
                    select(policy_versions.c.content).where(policy_versions.c.content_hash == run.policy_hash)
                ).scalar()
                basis[run.policy_hash] = parse_policy(text).model.aging_basis if text else "due_date"
            since = inv.due_date if basis[run.policy_hash] == "due_date" else inv.invoice_date
            dpd = (run.as_of_date - since).days
            out.append(
                f"{head}not considered ({dpd} days past due by {basis[run.policy_hash]} on that date): under every"
                " route's threshold, not an open receivable then, or already in another run's batch"
            )
            continue
        if d.outcome == "candidate":
            out.append(f"{head}candidate: {d.rule} (write-off below)")
        elif d.outcome == "excluded":
            out.append(f"{head}excluded by {d.rule} (route that fired: {d.route})")
        else:
            out.append(f"{head}not eligible: {d.rule}")
        if d.evidence:
            out.extend(_evidence_lines(d.evidence, "      "))
    return out


def invoice_trail(engine: Engine, invoice_ref: str, entity: str | None = None) -> str:
    """Everything the ledger knows about one invoice's write-off, in the order an auditor asks for it: the invoice,
    the candidate with its rule, reason and evidence, the batch and the recorded decisions, the journal lines, and
    recoveries. Read-only."""

    from writeoffs.db.schema import approvals, recoveries, writeoff_batches

    out: list[str] = []
    with engine.connect() as conn:
        q = select(invoices).where(invoices.c.invoice_ref == invoice_ref)
        if entity:
            q = q.where(invoices.c.entity_code == entity)
        inv = conn.execute(q).first()
        if inv is None:
            return f"no invoice {invoice_ref!r}" + (f" in entity {entity}" if entity else "")
        out.append(
            f"Invoice {inv.invoice_ref} ({inv.entity_code}): {_fmt(inv.amount)} {inv.currency}, invoiced "
            f"{inv.invoice_date}, due {inv.due_date}, status {inv.status}, open {_fmt(inv.open_balance)}, "
            f"written off {_fmt(inv.written_off_amount)}, recovered {_fmt(inv.recovered_amount)}"
        )
        out.extend(_decision_lines(conn, inv))
        for w in conn.execute(select(writeoffs).where(writeoffs.c.invoice_id == inv.id).order_by(writeoffs.c.id)):
            out.append(
                f"  write-off #{w.id}: {_fmt(w.amount)} {w.currency}, reason {w.reason_code}, rule {w.rule}, "
                f"tier {w.tier}, status {w.status}, policy {w.policy_version} ({w.policy_hash[:12]})"
            )
            if w.skip_reason:
                out.append(f"    skipped: {w.skip_reason}")
            if w.evidence:
                out.extend(_evidence_lines(w.evidence, "    "))
            if w.batch_id is not None:
                b = conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == w.batch_id)).one()
                out.append(
                    f"    batch {b.batch_key}: {b.item_count} items, {_fmt(b.total_amount)} {b.currency}, status "
                    f"{b.status}, prepared by {b.prepared_by}, fingerprint {(b.batch_hash or '')[:12]}"
                )
                for a in conn.execute(
                    select(approvals).where(approvals.c.batch_id == b.id).order_by(approvals.c.decided_at)
                ):
                    out.append(
                        f"    {a.step:<8} {a.decision:<10} by {a.approver} (tier {a.tier}, limit "
                        f"{_fmt(a.limit_amount) if a.limit_amount is not None else 'none'}) at {a.decided_at}"
                        + (f" - {a.comment}" if a.comment else "")
                    )
        lines = conn.execute(
            select(journal_entries.c.idempotency_key, journal_entries.c.posting_date, journal_lines)
            .select_from(journal_lines.join(journal_entries, journal_entries.c.id == journal_lines.c.entry_id))
            .where(journal_lines.c.invoice_id == inv.id, journal_entries.c.status == "posted")
            .order_by(journal_entries.c.id, journal_lines.c.line_no)
        ).all()
        if lines:
            out.append("  journal:")
        for ln in lines:
            side = f"Dr {_fmt(ln.debit)}" if ln.debit else f"Cr {_fmt(ln.credit)}"
            out.append(
                f"    {ln.posting_date} {ln.idempotency_key[:40]:<40} {ln.account_code:<6} {side:>18} {ln.currency}"
            )
        for r in conn.execute(select(recoveries).where(recoveries.c.invoice_id == inv.id)):
            out.append(f"  recovery {r.recovery_date}: {_fmt(r.amount)} {r.currency} (entry {r.journal_entry_id})")
    return "\n".join(out)


#: Most audit rows an invoice's trail lists (the batch's reminders can be many).
TRAIL_AUDIT_MAX = 200


def invoice_audit_rows(conn: Connection, invoice_ref: str, entity: str | None = None) -> list[Any]:
    """The audit rows about one invoice, oldest first: rows on the invoice itself (recoveries, reversals cleared),
    on its write-offs (reversals) and on the batches that carried them (requests, decisions, posting).

    Empty when the invoice is unknown (or its ref repeats across entities and none is given)."""
    from sqlalchemy import and_, or_

    from writeoffs.db.schema import audit_log

    q = select(invoices.c.id).where(invoices.c.invoice_ref == invoice_ref)
    if entity:
        q = q.where(invoices.c.entity_code == entity)
    inv_id = conn.execute(q.limit(1)).scalar()
    if inv_id is None:
        return []
    wos = conn.execute(select(writeoffs.c.id, writeoffs.c.batch_id).where(writeoffs.c.invoice_id == inv_id)).all()
    objects = [and_(audit_log.c.object_type == "invoice", audit_log.c.object_id == str(inv_id))]
    if wos:
        objects.append(and_(audit_log.c.object_type == "writeoff", audit_log.c.object_id.in_([str(w.id) for w in wos])))
        batches = sorted({str(w.batch_id) for w in wos if w.batch_id is not None})
        if batches:
            objects.append(and_(audit_log.c.object_type == "writeoff_batch", audit_log.c.object_id.in_(batches)))
    return list(
        conn.execute(
            select(
                audit_log.c.id,
                audit_log.c.recorded_at,
                audit_log.c.actor,
                audit_log.c.action,
                audit_log.c.object_type,
                audit_log.c.object_id,
            )
            .where(or_(*objects))
            .order_by(audit_log.c.id)
            .limit(TRAIL_AUDIT_MAX)
        )
    )
