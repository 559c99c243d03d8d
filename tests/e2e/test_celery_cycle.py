"""The whole cycle on the production executor: CeleryExecutor, Redis broker, PostgreSQL metadata and ledger.

`make demo` is run the way docker-compose's default profile runs Airflow (issue 17): ``scripts/demo_cycle.py
--executor celery`` starts the api-server, scheduler, dag-processor and two ``airflow celery worker`` processes on a
fresh PostgreSQL metadata database, with the ledger in its own PostgreSQL database; ingest -> validation ->
candidates -> approval (answered through the REST API by the assigned, authenticated approvers) -> posting ->
reconciliation. Both databases are created for the test and dropped afterwards; the workers consume a queue of
their own, so other users of the same Redis are not disturbed.

Asserted: both workers executed tasks of the chain (their logs name the task instances), every task instance went
through that queue, the ledger balances per currency, every posted write-off has exactly one journal entry, the
reconciliation found no break and the audit chain verifies.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from scripts.airflow_local import Celery, worker_tasks
from writeoffs import audit
from writeoffs.db.engine import make_engine
from writeoffs.db.schema import journal_entries, journal_lines, recon_runs, writeoff_batches, writeoffs

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BROKER_URL = os.environ.get("WRITEOFFS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: Small on purpose (the cost is Airflow's, not the data's), large enough that the allowance of EU01 covers its
#: write-offs (the demo's policy refuses a write-off that would overdraw it).
INVOICES = 600
#: The issue's budget for this test on the 2-core machine, asserted when the machine is not oversubscribed by other
#: work (5-minute load average at most twice the cores): measured 421 s at a load average of 10.7 on 2 cores.
BUDGET_S = 240


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    """A fresh metadata database (psycopg2, as Airflow's docs use) and ledger database; dropped afterwards."""
    if not _reachable(BROKER_URL):
        pytest.fail(f"Redis is not reachable at {BROKER_URL}: start it (see .ci/run)")
    suffix = secrets.token_hex(4)
    names = (f"airflow_celery_{suffix}", f"ledger_celery_{suffix}")
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = make_url(PG_URL)
    try:
        yield (
            base.set(drivername="postgresql+psycopg2", database=names[0]).render_as_string(hide_password=False),
            base.set(database=names[1]).render_as_string(hide_password=False),
        )
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_whole_cycle_on_celery_with_two_workers(tmp_path: Path, databases: tuple[str, str]) -> None:
    metadata_url, ledger_url = databases
    env = {**os.environ, "WRITEOFFS_DATA_DIR": str(tmp_path)}
    env.pop("WRITEOFFS_LEDGER_URL", None)
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "demo_cycle.py"),
            "--invoices",
            str(INVOICES),
            "--executor",
            "celery",
            "--celery-workers",
            "2",
            "--broker-url",
            BROKER_URL,
            "--metadata-url",
            metadata_url,
            "--ledger-url",
            ledger_url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    elapsed = time.monotonic() - started
    load = os.getloadavg()
    print(f"celery cycle: {elapsed:.0f} s, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("\n".join(line for line in (result.stdout + result.stderr).splitlines() if "/7]" in line or " run " in line))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "demo finished" in result.stderr + result.stdout

    # Both workers took part: the chain's tasks are spread over the two worker processes.
    home = tmp_path / "demo" / "airflow"
    ran = worker_tasks(home, Celery(workers=2))
    assert set(ran) == {"worker1", "worker2"}
    assert all(ran.values()), {w: len(t) for w, t in ran.items()}
    everything = [t for tasks in ran.values() for t in tasks]
    for needed in (
        "ar_aging_ingest.merge",
        "ar_aging_ingest.validate",
        "writeoff_candidates.select_candidates",
        "writeoff_approval.post_auto_batches",
        "ledger_reconciliation.run_checks",
    ):
        assert needed in everything, needed
    assert any(t.startswith("writeoff_approval.batch.post[") for t in everything)

    # Every task instance was executed through Celery (the deployment's own queue), none by a local executor.
    meta = create_engine(metadata_url)
    try:
        with meta.connect() as conn:
            queues = set(
                conn.execute(text("SELECT DISTINCT queue FROM task_instance WHERE start_date IS NOT NULL")).scalars()
            )
            posts = conn.execute(
                text(
                    "SELECT count(*) FROM task_instance WHERE dag_id = 'writeoff_approval' AND task_id = 'batch.post'"
                    " AND state = 'success'"
                )
            ).scalar_one()
    finally:
        meta.dispose()
    assert len(queues) == 1 and next(iter(queues)).startswith("writeoffs_"), queues

    key = bytes.fromhex((tmp_path / "demo" / "audit.key").read_text())
    ledger = make_engine(ledger_url, audit_key=key)
    try:
        with ledger.connect() as conn:
            statuses = dict(conn.execute(select(writeoff_batches.c.id, writeoff_batches.c.status)).all())
            human = conn.execute(
                select(func.count()).select_from(writeoff_batches).where(writeoff_batches.c.tier != "auto")
            ).scalar_one()
            assert statuses and set(statuses.values()) <= {"posted", "partially_posted"}, statuses
            assert posts == human  # one successful posting task per human batch
            # Posted exactly once: one write-off journal entry per posted write-off, none twice.
            posted = conn.execute(
                select(func.count()).select_from(writeoffs).where(writeoffs.c.status == "posted")
            ).scalar_one()
            entries = conn.execute(
                select(func.count(), func.count(func.distinct(journal_entries.c.source_id))).where(
                    journal_entries.c.source_type == "writeoff"
                )
            ).one()
            assert posted > 0 and entries == (posted, posted), (posted, entries)
            # The books balance per currency.
            for currency, debit, credit in conn.execute(
                select(journal_lines.c.currency, func.sum(journal_lines.c.debit), func.sum(journal_lines.c.credit))
                .group_by(journal_lines.c.currency)
                .order_by(journal_lines.c.currency)
            ):
                assert Decimal(debit) == Decimal(credit), currency
            breaks = conn.execute(select(recon_runs.c.break_count).order_by(recon_runs.c.id)).scalars().all()
            assert breaks and breaks[-1] == 0
            assert audit.verify(conn) == []
    finally:
        ledger.dispose()
    if load[1] <= 2 * (os.cpu_count() or 1):
        assert elapsed < BUDGET_S, f"the Celery cycle took {elapsed:.0f} s (budget {BUDGET_S} s)"
