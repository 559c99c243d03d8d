"""Exactly once under concurrency and crashes: two runs at once, and a run killed with SIGKILL mid-chunk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from tests import factories as f
from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from writeoffs import audit
from writeoffs.db.schema import invoices, journal_entries, journal_lines, writeoff_batches, writeoffs
from writeoffs.posting import post_batch

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import sys, time
from datetime import date
from writeoffs.db.engine import make_engine
from writeoffs.posting import post_batch
from tests.integration.posting_support import TIERS

url, schema, batch, pause_at, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
engine = make_engine(url, schema=schema or None)

def hook(stage, n):
    print(stage, n, flush=True)
    if stage == "written" and n == pause_at:
        time.sleep(600)  # inside chunk n's open transaction: the parent kills us here

report = post_batch(engine, batch, actor="worker", tiers=TIERS, posting_date=date(2026, 11, 24), chunk_size=chunk,
                    on_chunk=hook)
print("DONE", report.posted, flush=True)
"""


def batch_of(engine: Engine, n: int) -> int:
    with engine.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        invs = [f.invoice(conn, cid, amount="10.00", days_past_due=400) for _ in range(n)]
        batch = make_batch(conn, [(i, "10.00", "uncollectible_after_collections") for i in invs])
    approve(engine, batch)
    return batch


def where(engine: Engine) -> tuple[str, str]:
    """(URL, schema) for a worker process to reach the same ledger."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        return engine.url.render_as_string(hide_password=False), schema
    return engine.url.render_as_string(hide_password=False), ""


def spawn(engine: Engine, batch: int, pause_at: int = 0, chunk: int = 10) -> subprocess.Popen:
    url, schema = where(engine)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins"), str(ROOT)])}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, url, schema, str(batch), str(pause_at), str(chunk)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ledger_state(engine: Engine) -> dict[str, object]:
    """Every view of 'what is posted' must agree: entries, lines, write-off rows, invoice sub-ledger."""
    with engine.connect() as conn:
        scalar = lambda q: conn.execute(q).scalar_one()  # noqa: E731
        return {
            "entries": scalar(select(func.count()).select_from(journal_entries)),
            "pending": scalar(select(func.count()).where(journal_entries.c.status == "pending")),
            "lines": scalar(select(func.count()).select_from(journal_lines)),
            "posted_writeoffs": scalar(select(func.count()).where(writeoffs.c.status == "posted")),
            "linked": scalar(select(func.count(func.distinct(writeoffs.c.journal_entry_id)))),
            "written_off_invoices": scalar(select(func.count()).where(invoices.c.status == "written_off")),
            "written_off_total": scalar(select(func.coalesce(func.sum(invoices.c.written_off_amount), 0))),
            "audit_ok": audit.verify(conn) == [],
        }


def consistent(n: int) -> dict[str, object]:
    return {
        "entries": n,
        "pending": 0,
        "lines": 2 * n,
        "posted_writeoffs": n,
        "linked": n,
        "written_off_invoices": n,
        "written_off_total": Decimal(10 * n),
        "audit_ok": True,
    }


def test_two_concurrent_threads_post_each_writeoff_once(pg_ledger: Engine) -> None:
    batch = batch_of(pg_ledger, 60)
    start = threading.Barrier(2)
    reports, errors = [], []

    def run() -> None:
        start.wait()
        try:
            reports.append(post_batch(pg_ledger, batch, actor="t", tiers=TIERS, posting_date=AS_OF, chunk_size=5))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert errors == []
    assert sum(r.posted for r in reports) == 60
    assert {r.status for r in reports} == {"posted"}
    assert ledger_state(pg_ledger) == consistent(60)


def test_two_concurrent_processes_post_each_writeoff_once(pg_ledger: Engine) -> None:
    batch = batch_of(pg_ledger, 60)

    procs = [spawn(pg_ledger, batch, chunk=5) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    posted = [int(out.strip().splitlines()[-1].split()[1]) for out, _ in outs]
    assert sum(posted) == 60
    assert ledger_state(pg_ledger) == consistent(60)


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_killed_mid_chunk_leaves_whole_chunks_only_and_a_rerun_completes(make_ledger, dialect: str) -> None:
    engine = make_ledger(dialect)
    batch = batch_of(engine, 35)
    proc = spawn(engine, batch, pause_at=2, chunk=10)
    try:
        seen = []
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line.strip())
            if line.strip() == "written 2":
                break
        assert seen == ["written 1", "committed 1", "written 2"], proc.stderr.read()  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)  # chunk 2 is written but not committed
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]

    assert ledger_state(engine) == consistent(10)  # chunk 1 fully, chunk 2 not at all
    with engine.connect() as conn:
        assert conn.execute(select(writeoff_batches.c.status)).scalar_one() == "confirmed"

    report = post_batch(engine, batch, actor="rerun", tiers=TIERS, posting_date=AS_OF, chunk_size=10)

    assert (report.posted, report.already_posted, report.status) == (25, 10, "posted")
    assert ledger_state(engine) == consistent(35)
