"""Benchmark: the workspace's batch page and CSV download for one batch of N write-offs (default 100,000), PostgreSQL.

Builds a fresh schema set-wise (INSERT ... SELECT over generate_series; not timed): N open invoices of 1,000
customers, one proposed CFO-tier batch of N candidates with evidence JSON and four reasons, under the shipped policy.
Then times HTTP requests to the workspace app in-process (FastAPI TestClient, the user dependency overridden with
``cfo``, the batch's entitled approver): the first page (50 items by amount), the first page sorted by days past
due, filtered by one reason, the last page (deep OFFSET), and the full CSV download. Each request is warmed up once
and then timed ``--repeat`` times; the median is reported. The target: first page < 1 s. Results go to
``bench/out/bench_workspace_<timestamp>.json`` with the load average (the machine is shared).

    .venv/bin/python bench/bench_workspace.py [--n 100000] [--repeat 5] [--url postgresql://...] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import sys
import time
import uuid
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "plugins")]

from sqlalchemy import Engine, text  # noqa: E402

AS_OF = date(2026, 11, 24)
DEFAULT_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REASONS = ("uncollectible_after_collections", "bankruptcy", "small_balance", "dispute_lost")


def build(engine: Engine, n: int, *, tier: str = "cfo", prepared_by: str = "ar_clerk") -> int:
    """One proposed batch of ``n`` candidates (set-wise), under the shipped policy; returns its id."""
    from writeoffs import ledger
    from writeoffs.accounting import keys
    from writeoffs.approvals import batch_hash_of, current_items
    from writeoffs.db.schema import writeoff_batches
    from writeoffs.policy import registry
    from writeoffs.policy.schema import parse_policy

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
                "SELECT 'US01', 'INV' || lpad(g::text, 8, '0'), c.id, DATE '2024-06-01' + (g % 500), "
                "  DATE '2024-07-01' + (g % 500), 'USD', (100 + g % 4000) + 0.25, (100 + g % 4000) + 0.25, 1, 'open' "
                "FROM generate_series(1, :n) g JOIN customers c ON c.customer_ref = 'C' || (g % 1000 + 1)"
            ),
            {"n": n},
        )
        batch_id = conn.execute(
            writeoff_batches.insert()
            .values(
                batch_key=f"bench:{AS_OF}:US01:USD:{tier}:workspace",
                entity_code="US01",
                currency="USD",
                tier=tier,
                as_of_date=AS_OF,
                policy_version=policy.version,
                policy_hash=policy.content_hash,
                status="proposed",
                prepared_by=prepared_by,
            )
            .returning(writeoff_batches.c.id)
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO writeoffs (batch_id, invoice_id, as_of_date, currency, amount, reason_code, rule,"
                " evidence, tier, policy_version, policy_hash, status, idempotency_key) "
                "SELECT :b, i.id, :d, i.currency, i.open_balance, (CAST(:reasons AS text[]))[1 + i.id % 4], "
                "  'uncollectible_365', CAST(json_build_object('contact_attempts', 6 + i.id % 9, 'demand_letters', 3,"
                "  'agency_days', 90, 'last_payment_date', '2024-05-0' || (1 + i.id % 9)) AS text),"
                "  :t, :v, :h, 'candidate', :prefix || CAST(i.id AS TEXT) FROM invoices i"
            ),
            {
                "b": batch_id,
                "d": AS_OF,
                "t": tier,
                "v": policy.version,
                "h": policy.content_hash,
                "reasons": list(REASONS),
                "prefix": keys.writeoff_candidate_prefix(AS_OF, policy.content_hash),
            },
        )
        items = current_items(conn, batch_id)
        conn.execute(
            writeoff_batches.update()
            .where(writeoff_batches.c.id == batch_id)
            .values(batch_hash=batch_hash_of(items), item_count=len(items), total_amount=sum(a for _, a, _ in items))
        )
        conn.execute(text("ANALYZE customers, invoices, writeoffs, writeoff_batches"))  # this schema only
    return batch_id


def timed(get, path: str, params: dict | None, repeat: int) -> tuple[float, int, int]:
    """(median seconds, status, bytes) of ``repeat`` requests after one warm-up."""
    get(path, params=params)
    times, r = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        r = get(path, params=params)
        times.append(time.perf_counter() - t)
    assert r is not None
    return statistics.median(times), r.status_code, len(r.content)


def main() -> int:
    # Benchmark ledgers are throw-away: one random audit key for the run (the chain is keyed; no key, no audit rows).
    os.environ.setdefault("WRITEOFFS_AUDIT_KEY", secrets.token_hex(32))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--url", default=DEFAULT_URL)
    ap.add_argument("--keep", action="store_true", help="keep the bench schema for inspection")
    args = ap.parse_args()

    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from writeoffs.db.engine import make_engine
    from writeoffs.db.migrate import upgrade
    from writeoffs_airflow.workspace.app import create_app

    class Approver:
        def get_name(self) -> str:
            return "cfo"

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(args.url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(args.url, schema=schema)
    load_before = os.getloadavg()[0]
    results: dict[str, dict] = {}
    try:
        upgrade(engine)
        t = time.perf_counter()
        batch_id = build(engine, args.n)
        build_s = time.perf_counter() - t
        app = create_app(engine_factory=lambda: engine, required_action=lambda b: None)
        app.dependency_overrides[get_user] = Approver
        client = TestClient(app, root_path="/writeoffs")
        base = f"/batches/{batch_id}"
        cases = {
            "first_page": (base, None),
            "first_page_by_days_past_due": (base, {"sort": "days_past_due"}),
            "first_page_one_reason": (base, {"reason": "bankruptcy"}),
            "last_page": (base, {"page": args.n // 50}),
            "queue": ("/queue", None),
            "csv_all_items": (f"{base}/candidates.csv", None),
        }
        for name, (path, params) in cases.items():
            median, status, size = timed(client.get, path, params, args.repeat)
            results[name] = {"median_s": round(median, 4), "status": status, "bytes": size}
            print(f"{name:>30}: {median * 1000:8.1f} ms  (HTTP {status}, {size:,} bytes)")
        with engine.connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar_one()
    finally:
        engine.dispose()
        if not args.keep:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    ok = all(r["status"] == 200 for r in results.values())
    result = {
        "benchmark": "workspace_batch_page",
        "n": args.n,
        "repeat": args.repeat,
        "build_data_s": round(build_s, 2),
        "requests": results,
        "target_first_page_s": 1.0,
        "within_target": ok and results["first_page"]["median_s"] < 1.0,
        "postgres": version,
        "cpus": os.cpu_count(),
        "load_avg_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "python": platform.python_version(),
    }
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_workspace_{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{args.n:,}-item batch: first page {results['first_page']['median_s'] * 1000:.0f} ms (target < 1 s); "
        f"load {result['load_avg_1m']['before']} -> {result['load_avg_1m']['after']}; written {path.relative_to(ROOT)}"
    )
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
