"""The whole cycle as `make demo` runs it: a private Airflow, every DAG of the chain, approvals over REST.

This is the test that catches seams between features (a hash computed two ways, a config key read with the wrong
shape): each DAG is tested on its own elsewhere; here they must work together, on the embedded default (SQLite).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from writeoffs import audit
from writeoffs.db.engine import make_engine
from writeoffs.db.schema import invoices, journal_entries, journal_lines, recon_runs, writeoff_batches, writeoffs

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.airflow]


def test_demo_runs_the_whole_cycle_unattended(tmp_path: Path) -> None:
    env = {**os.environ, "WRITEOFFS_DATA_DIR": str(tmp_path)}
    env.pop("WRITEOFFS_LEDGER_URL", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo_cycle.py"), "--invoices", "4000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "demo finished" in result.stderr + result.stdout

    key_file = tmp_path / "demo" / "audit.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # the demo's audit key is a private file
    engine = make_engine(f"sqlite:///{tmp_path / 'demo' / 'ledger.db'}", audit_key=bytes.fromhex(key_file.read_text()))
    with engine.connect() as conn:
        # Every human batch was approved and posted through the HITL path; nothing is left waiting.
        statuses = {r.tier: r.status for r in conn.execute(select(writeoff_batches.c.tier, writeoff_batches.c.status))}
        assert statuses and set(statuses.values()) <= {"posted", "partially_posted"}, statuses
        posted = conn.execute(select(writeoffs.c.id).where(writeoffs.c.status == "posted")).all()
        assert posted

        # The worked example: Dr Bad Debt Expense 45,000 / Cr AR 45,000, invoice written off.
        inv = conn.execute(select(invoices).where(invoices.c.invoice_ref == "INV-WORKED-45000")).one()
        assert inv.status == "written_off" and inv.open_balance == 0
        lines = conn.execute(
            select(journal_lines.c.account_code, journal_lines.c.debit, journal_lines.c.credit)
            .join(journal_entries, journal_entries.c.id == journal_lines.c.entry_id)
            .where(journal_lines.c.invoice_id == inv.id, journal_entries.c.source_type == "writeoff")
            .order_by(journal_lines.c.line_no)
        ).all()
        assert [(a, Decimal(d), Decimal(c)) for a, d, c in lines] == [
            ("6100", Decimal("45000"), Decimal("0")),
            ("1100", Decimal("0"), Decimal("45000")),
        ]

        # Reconciliation ran on the posting asset and found the books in agreement; the audit chain holds.
        runs = conn.execute(select(recon_runs.c.break_count)).scalars().all()
        assert runs and runs[-1] == 0
        assert audit.verify(conn) == []
    assert "INV-WORKED-45000" in result.stdout  # the audit trail of the worked example is printed
