"""Benchmark: what checkpointing the audit chain's head costs per auditing transaction (issue 14).

Appends one audit row per transaction, ``--n`` times, through an engine with the checkpoint hook
(``writeoffs.audit_anchor``) and through one with the same key and no hook, alternately, on SQLite and on PostgreSQL
(a scratch schema in database ``test``, dropped afterwards). Prints the median milliseconds per transaction.

    .venv/bin/python bench/bench_audit_checkpoint.py --n 200 --repeat 3
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
os.environ.setdefault("WRITEOFFS_AUDIT_KEY", secrets.token_hex(32))
os.environ["WRITEOFFS_DATA_DIR"] = tempfile.mkdtemp(prefix="bench_audit_")

from sqlalchemy import Engine, create_engine  # noqa: E402

from writeoffs import audit, audit_anchor  # noqa: E402
from writeoffs.db.engine import make_engine, schema_url  # noqa: E402
from writeoffs.db.migrate import upgrade  # noqa: E402

PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def per_transaction_ms(engine: Engine, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        with engine.begin() as conn:
            audit.append(conn, actor="bench", action="bench.event", object_type="bench", object_id=i, details={})
    return (time.perf_counter() - started) / n * 1000


def compare(url: str, n: int, repeat: int) -> dict[str, float]:
    hooked = make_engine(url)
    upgrade(hooked)
    # Same key, same pool options, no checkpoint hook.
    bare = audit_anchor.bind(
        create_engine(hooked.url, pool_pre_ping=True), key=audit_anchor.bound(hooked)[0], checkpoint=None
    )
    per_transaction_ms(hooked, 20)  # warm-up
    per_transaction_ms(bare, 20)
    with_hook, without = [], []
    for _ in range(repeat):
        with_hook.append(per_transaction_ms(hooked, n))
        without.append(per_transaction_ms(bare, n))
    hooked.dispose()
    bare.dispose()
    return {"with_ms": statistics.median(with_hook), "without_ms": statistics.median(without)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}")
    sqlite = compare(f"sqlite:///{tempfile.mkdtemp()}/ledger.db", args.n, args.repeat)
    print("sqlite", {k: round(v, 2) for k, v in sqlite.items()}, f"+{sqlite['with_ms'] - sqlite['without_ms']:.2f} ms")
    schema = f"bench_audit_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        pg = compare(schema_url(PG_URL, schema), args.n, args.repeat)
        print("postgresql", {k: round(v, 2) for k, v in pg.items()}, f"+{pg['with_ms'] - pg['without_ms']:.2f} ms")
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
