"""Benchmark: the audit-chain status of the invoice trail page vs verifying the whole chain (issue 18).

Fills a scratch PostgreSQL ledger (schema in database ``test``, dropped afterwards) with ``--n`` keyed audit rows
(bulk-inserted, MACs computed as :func:`writeoffs.audit.append` does), checkpoints the head, runs the reconciliation
check ``audit_chain`` (the full verification the page reuses), appends ``--after`` rows one transaction each (the
day's activity since that run), then times :func:`writeoffs.audit_anchor.chain_status` for five of the invoice's
rows spread over the chain, and one full :func:`writeoffs.audit.verify` for comparison. Median milliseconds.

    .venv/bin/python bench/bench_trail_chain.py --n 1000000 --after 200
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
os.environ.setdefault("WRITEOFFS_AUDIT_KEY", secrets.token_hex(32))
os.environ["WRITEOFFS_DATA_DIR"] = tempfile.mkdtemp(prefix="bench_trail_")

from sqlalchemy import create_engine, insert, text  # noqa: E402

from writeoffs import audit, audit_anchor  # noqa: E402
from writeoffs.db.engine import make_engine  # noqa: E402
from writeoffs.db.migrate import upgrade  # noqa: E402
from writeoffs.db.schema import audit_log  # noqa: E402
from writeoffs.reconcile import CHECKS, reconcile  # noqa: E402

PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def fill(engine, n: int, chunk: int = 20_000) -> None:
    key = audit_anchor.bound(engine)[0]
    prev, stamp = audit.GENESIS, "2026-11-24T00:00:00.000000Z"
    for start in range(1, n + 1, chunk):
        rows = []
        for i in range(start, min(start + chunk, n + 1)):
            oid, body = str(i % 5000), '{"n":1}'
            mac = audit.row_mac(key, prev, i, stamp, "bench", "bench.event", "writeoff_batch", oid, body)
            rows.append(
                {"id": i, "recorded_at": stamp, "actor": "bench", "action": "bench.event",
                 "object_type": "writeoff_batch", "object_id": oid, "details": body, "prev_hash": prev,
                 "row_hash": mac}
            )  # fmt: skip
            prev = mac
        with engine.begin() as conn:
            conn.execute(insert(audit_log), rows)
    audit_anchor.checkpoint_now(engine)
    with engine.connect() as conn:  # as autovacuum would have, on a ledger that grew to this size
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE audit_log")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--after", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    schema = f"bench_trail_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        engine = make_engine(PG_URL, schema=schema)
        upgrade(engine)
        t0 = time.perf_counter()
        fill(engine, args.n)
        print(f"filled {args.n:,} audit rows in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        chain_only = [c for c in CHECKS if c.name == "audit_chain"]
        result = reconcile(engine, date(2026, 11, 24), run_key="bench", checks=chain_only, write_report=False)
        print(f"reconciliation check audit_chain: {time.perf_counter() - t0:.2f} s, breaks {result.break_count}")
        for i in range(args.after):
            with engine.begin() as conn:
                audit.append(conn, actor="bench", action="bench.later", object_type="thing", object_id=i, details={})
        own = [1, args.n // 4, args.n // 2, args.n - 10, args.n + args.after]
        times, status = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            status = audit_anchor.chain_status(engine, own)
            times.append((time.perf_counter() - t0) * 1000)
        assert status is not None and status.intact, status
        shown = ", ".join(f"{t:.1f}" for t in times)
        median = statistics.median(times)
        print(f"chain_status (5 own rows, {args.after + 1} since the run): median {median:.1f} ms ({shown})")
        print(f"  {status.headline()}; {status.basis()}")
        t0 = time.perf_counter()
        with engine.connect() as conn:
            assert audit.verify(conn) == []
        print(f"full audit.verify of {args.n + args.after + 1:,} rows: {time.perf_counter() - t0:.2f} s")
        print(f"load average: {Path('/proc/loadavg').read_text().strip()}")
        engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
