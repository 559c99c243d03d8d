"""Human-readable summaries of the ledger (CLI, demo, task logs)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Engine, func, select

from writeoffs import audit
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
        findings = audit.verify(conn)
        lines.append(
            f"  audit log: {audit.count(conn):,} rows, chain "
            + ("intact" if not findings else f"BROKEN ({len(findings)} findings)")
        )
    return "\n".join(lines)
