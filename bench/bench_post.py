"""Benchmark: post one approved batch of N write-offs (default 50,000) on PostgreSQL.

Builds a fresh schema set-wise (INSERT ... SELECT over generate_series), records the two approvals through the
domain (so posting's full re-verification runs), times ``post_batch`` and prints per-stage times. Results go to
``bench/out/bench_post_<timestamp>.json``, with the 1-minute load average before and after: on a shared machine
the same run varies by 2x with the load, so a number without it means little. The target is <= 10 s for 50,000
write-offs.

    .venv/bin/python bench/bench_post.py [--n 50000] [--chunk-size 5000] [--url postgresql://...] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import time
import uuid
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include")]

from sqlalchemy import func, select, text  # noqa: E402

from writeoffs import ledger  # noqa: E402
from writeoffs.accounting import keys  # noqa: E402
from writeoffs.approvals import batch_hash_of, current_items, record_decision  # noqa: E402
from writeoffs.db.engine import make_engine  # noqa: E402
from writeoffs.db.migrate import upgrade  # noqa: E402
from writeoffs.db.schema import invoices, journal_entries, writeoff_batches  # noqa: E402
from writeoffs.policy import registry  # noqa: E402
from writeoffs.policy.schema import parse_policy  # noqa: E402
from writeoffs.posting import post_batch  # noqa: E402

AS_OF = date(2026, 11, 24)
DEFAULT_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def build(engine, n: int) -> int:
    # Posting reads accounts from the policy recorded on the batch: the shipped policy, recorded like a real run.
    policy = parse_policy((ROOT / "include" / "config" / "policy.yaml").read_text())
    with engine.begin() as conn:
        registry.record(conn, policy)
        ledger.bootstrap_entity(
            conn,
            code="US01",
            name="Bench",
            functional_currency="USD",
            periods_from=date(2024, 1, 1),
            periods_to=date(2027, 12, 31),
        )
        conn.execute(
            text(
                "INSERT INTO customers (entity_code, customer_ref, name) "
                "SELECT 'US01', 'C' || g, 'Customer ' || g FROM generate_series(1, 1000) g"
            )
        )
        conn.execute(
            text(
                "INSERT INTO invoices (entity_code, invoice_ref, customer_id, invoice_date, due_date, currency, amount,"
                " open_balance, fx_rate, status) "
                "SELECT 'US01', 'INV' || lpad(g::text, 8, '0'), c.id, DATE '2025-06-01', DATE '2025-07-01', 'USD', "
                "  (100 + g % 4000) + 0.25, (100 + g % 4000) + 0.25, 1, 'open' "
                "FROM generate_series(1, :n) g JOIN customers c ON c.customer_ref = 'C' || (g % 1000 + 1)"
            ),
            {"n": n},
        )
        batch_id = conn.execute(
            writeoff_batches.insert()
            .values(
                batch_key=f"bench:{AS_OF}:US01:USD:cfo",
                entity_code="US01",
                currency="USD",
                tier="cfo",
                as_of_date=AS_OF,
                policy_version=policy.version,
                policy_hash=policy.content_hash,
                status="proposed",
                prepared_by="ar_clerk",
            )
            .returning(writeoff_batches.c.id)
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO writeoffs (batch_id, invoice_id, as_of_date, currency, amount, reason_code, rule, tier,"
                " policy_version, policy_hash, status, idempotency_key) "
                "SELECT :b, i.id, :d, i.currency, i.open_balance, "
                "  (ARRAY['uncollectible_after_collections', 'bankruptcy', 'small_balance', 'dispute_lost'])"
                "  [1 + i.id % 4],"
                "  'bench', 'cfo', :v, :h, 'candidate', :prefix || CAST(i.id AS TEXT) FROM invoices i"
            ),
            {
                "b": batch_id,
                "d": AS_OF,
                "v": policy.version,
                "h": policy.content_hash,
                "prefix": keys.writeoff_candidate_prefix(AS_OF, policy.content_hash),
            },
        )
        items = current_items(conn, batch_id)
        conn.execute(
            writeoff_batches.update()
            .where(writeoff_batches.c.id == batch_id)
            .values(batch_hash=batch_hash_of(items), item_count=len(items), total_amount=sum(a for _, a, _ in items))
        )
        conn.execute(text("ANALYZE customers, invoices, writeoffs"))  # this schema only
    return batch_id


def main() -> int:
    # Benchmark ledgers are throw-away: one random audit key for the run (the chain is keyed; no key, no audit rows).
    os.environ.setdefault("WRITEOFFS_AUDIT_KEY", secrets.token_hex(32))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--chunk-size", type=int, default=5000)
    ap.add_argument("--url", default=DEFAULT_URL)
    ap.add_argument("--keep", action="store_true", help="keep the bench schema for inspection")
    args = ap.parse_args()

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(args.url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(args.url, schema=schema)
    stages: dict[str, float] = {}
    tiers = parse_policy((ROOT / "include" / "config" / "policy.yaml").read_text()).tiers  # the shipped tiers
    load_before = os.getloadavg()[0]
    try:
        t = time.perf_counter()
        upgrade(engine)
        stages["migrate"] = time.perf_counter() - t
        t = time.perf_counter()
        batch_id = build(engine, args.n)
        stages["build_data"] = time.perf_counter() - t
        t = time.perf_counter()
        # Four eyes (CFO tier, every amount): the CFO approves, the controller confirms.
        for step, decision, who in (("approve", "approved", "cfo"), ("confirm", "confirmed", "controller")):
            with engine.begin() as conn:
                record_decision(conn, batch_id=batch_id, step=step, approver=who, decision=decision, tiers=tiers)
        stages["approvals"] = time.perf_counter() - t
        t = time.perf_counter()
        report = post_batch(
            engine, batch_id, actor="bench", tiers=tiers, posting_date=AS_OF, chunk_size=args.chunk_size
        )
        stages["post_batch"] = time.perf_counter() - t
        with engine.connect() as conn:
            entries = conn.execute(select(func.count()).select_from(journal_entries)).scalar_one()
            open_left = conn.execute(select(func.sum(invoices.c.open_balance))).scalar_one()
            version = conn.execute(text("SHOW server_version")).scalar_one()
        t = time.perf_counter()
        again = post_batch(engine, batch_id, actor="bench", tiers=tiers, posting_date=AS_OF)
        stages["rerun_noop"] = time.perf_counter() - t
    finally:
        engine.dispose()
        if not args.keep:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    ok = report.posted == args.n and entries == args.n and open_left == 0 and again.posted == 0
    result = {
        "benchmark": "post_batch",
        "n": args.n,
        "chunk_size": args.chunk_size,
        "posted": report.posted,
        "entries_in_db": entries,
        "status": report.status,
        "stages_s": {k: round(v, 3) for k, v in stages.items()},
        "post_batch_breakdown_s": {k: round(v, 3) for k, v in report.timings.items()},
        "writeoffs_per_s": round(args.n / stages["post_batch"]),
        "target_s": 10.0,
        "within_target": stages["post_batch"] <= 10.0,
        "consistent": ok,
        "postgres": version,
        "cpus": os.cpu_count(),
        "load_avg_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "python": platform.python_version(),
        "schema_kept": schema if args.keep else None,
    }
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_post_{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    for k, v in stages.items():
        print(f"{k:>12}: {v:8.3f} s")
    print("post_batch breakdown: " + ", ".join(f"{k} {v:.3f}s" for k, v in report.timings.items()))
    print(
        f"{args.n:,} write-offs posted in {stages['post_batch']:.2f} s ({result['writeoffs_per_s']:,}/s); "
        f"consistent={ok}; load {result['load_avg_1m']['before']} -> {result['load_avg_1m']['after']}; "
        f"written {path.relative_to(ROOT)}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
