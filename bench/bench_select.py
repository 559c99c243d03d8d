"""Benchmark: charge-off, candidate selection and batching over N invoices (default 1,000,000) on PostgreSQL.

    .venv/bin/python bench/bench_select.py [--invoices 1000000] [--data sample|series] [--keep]

The ledger is built in a fresh PostgreSQL schema (build time is reported but is not part of the measurement):

- ``--data sample`` (default, the headline number): the realistic sample generator
  (``writeoffs.sample.seed.seed_ledger``): ~1.85M collection activities per 1M invoices and a realistic aging
  shape (most open invoices current or young, a tail of old ones).
- ``--data series``: a worst case built set-wise with ``generate_series``: invoice age uniform over -100..899 days,
  so ~78 % are over 120 days past due and ~50 % over a year, with ~7.3M activities; reported as a second number.

Stages timed: ``charge_off`` (first run: every invoice over the threshold), ``select_and_batch`` (the target:
candidates + batches <= 3 s for 1M invoices), ``rerun_idempotent`` (same date again: inserts nothing),
``whatif_2026_06_30`` (read-only backtest of the same policy), ``charge_off_daily`` (the next day: only that day's
new crossings). Prints per-stage times and the load average, and writes JSON to
``bench/out/bench_select-<data>-<n>.json``.
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
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from writeoffs import ledger  # noqa: E402
from writeoffs.db.engine import make_engine  # noqa: E402
from writeoffs.db.migrate import upgrade  # noqa: E402
from writeoffs.policy.batching import batch_table  # noqa: E402
from writeoffs.policy.schema import load_policy  # noqa: E402
from writeoffs.policy.service import run_charge_off, select_and_batch  # noqa: E402
from writeoffs.policy.whatif import whatif  # noqa: E402

PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
AS_OF = date(2026, 11, 24)

# Set-wise data: every row derived from its sequence number g (deterministic, no Python loop).
SERIES_SQL = [
    """INSERT INTO customers (id, entity_code, customer_ref, name, parent_id, segment, bankruptcy_flag,
                              bankruptcy_date, dissolved, source)
       SELECT g, CASE WHEN g % 2 = 0 THEN 'US01' ELSE 'DE01' END, 'C' || g, 'Customer ' || g,
              CASE WHEN g % 50 = 0 THEN g - 2 END,
              CASE WHEN g % 5 = 0 THEN 'small_business' ELSE 'default' END,
              g % 97 = 0, CASE WHEN g % 97 = 0 THEN CAST(:as_of AS DATE) - 200 END, g % 89 = 0, 'bench'
       FROM generate_series(1, :customers) g""",
    """INSERT INTO invoices (id, entity_code, invoice_ref, customer_id, source, invoice_date, due_date, currency,
                             amount, open_balance, status, balance_transferred_to_parent)
       SELECT g, CASE WHEN c % 2 = 0 THEN 'US01' ELSE 'DE01' END, 'INV' || g, c, 'bench',
              CAST(:as_of AS DATE) - dpd - 30, CAST(:as_of AS DATE) - dpd,
              CASE WHEN c % 2 = 0 THEN 'USD' ELSE 'EUR' END,
              amt, CASE WHEN g % 7 = 0 THEN round(amt * 0.6, 2) ELSE amt END, 'open', c % 50 = 0 AND g % 3 = 0
       FROM (SELECT g, (g % :customers) + 1 AS c, CAST(((g * 7919) % 1000) - 100 AS INTEGER) AS dpd,
                    round(((g * 31) % 500000) / 100.0 + 10, 2) AS amt
             FROM generate_series(1::bigint, :invoices) g) s""",
    # Effort grows with age: one contact attempt per 45 days (max 12), a letter per 150 days (max 3),
    # one agency placement for invoices over 200 days, lasting (dpd - 150) days capped at 120.
    """INSERT INTO collection_activities (customer_id, invoice_id, activity_type, activity_date, source)
       SELECT i.customer_id, i.id, 'contact_attempt', i.due_date + 45 * k, 'bench'
       FROM invoices i CROSS JOIN LATERAL generate_series(1, LEAST((CAST(:as_of AS DATE) - i.due_date) / 45, 12)) k
       WHERE i.due_date < CAST(:as_of AS DATE) - 45 AND i.id % 4 <> 0""",
    """INSERT INTO collection_activities (customer_id, invoice_id, activity_type, activity_date, source)
       SELECT i.customer_id, i.id, 'demand_letter', i.due_date + 150 * k, 'bench'
       FROM invoices i CROSS JOIN LATERAL generate_series(1, LEAST((CAST(:as_of AS DATE) - i.due_date) / 150, 3)) k
       WHERE i.due_date < CAST(:as_of AS DATE) - 150 AND i.id % 4 <> 0""",
    """INSERT INTO collection_activities (customer_id, invoice_id, activity_type, activity_date, end_date,
                                          outcome, source)
       SELECT i.customer_id, i.id, 'agency_placement', i.due_date + 150,
              i.due_date + 150 + LEAST((CAST(:as_of AS DATE) - i.due_date) - 150, 120), 'unsuccessful', 'bench'
       FROM invoices i WHERE i.due_date < CAST(:as_of AS DATE) - 200 AND i.id % 4 <> 0""",
    """INSERT INTO holds (customer_id, invoice_id, hold_type, start_date, end_date, resolution)
       SELECT i.customer_id, i.id, CASE WHEN i.id % 200 = 0 THEN 'payment_plan' ELSE 'dispute' END,
              i.due_date + 10, CASE WHEN i.id % 300 = 0 THEN i.due_date + 40 END,
              CASE WHEN i.id % 300 = 0 THEN 'lost' END
       FROM invoices i WHERE i.id % 100 = 0 AND i.due_date < CAST(:as_of AS DATE) - 20""",
    """INSERT INTO payments (id, entity_code, payment_ref, customer_id, payment_date, currency, amount, source)
       SELECT i.id, i.entity_code, 'PAY' || i.id, i.customer_id, LEAST(i.due_date + 20, CAST(:as_of AS DATE)),
              i.currency,
              i.amount - i.open_balance, 'bench'
       FROM invoices i WHERE i.open_balance < i.amount""",
    """INSERT INTO payment_allocations (payment_id, invoice_id, amount, allocated_on, kind)
       SELECT p.id, p.id, p.amount, p.payment_date, 'regular' FROM payments p""",
]


def build_series(engine: Engine, n: int) -> dict[str, float]:
    times: dict[str, float] = {}
    customers = max(n // 10, 10)
    with engine.begin() as conn:
        for code, cur in (("US01", "USD"), ("DE01", "EUR")):
            ledger.bootstrap_entity(
                conn,
                code=code,
                name=code,
                functional_currency=cur,
                periods_from=date(2026, 1, 1),
                periods_to=date(2027, 12, 31),
            )
        for sql in SERIES_SQL:
            t = time.perf_counter()
            conn.execute(text(sql), {"as_of": AS_OF, "customers": customers, "invoices": n})
            table = sql.split()[2]
            times[f"build_{table}"] = times.get(f"build_{table}", 0) + time.perf_counter() - t
        for table in ("customers", "invoices", "payments"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
    return times


def build_sample(engine: Engine, n: int) -> dict[str, float]:
    from writeoffs.sample.generator import SampleSpec
    from writeoffs.sample.seed import seed_ledger

    t = time.perf_counter()
    seed_ledger(engine, SampleSpec(invoices=n, as_of=AS_OF))
    return {"build_sample": time.perf_counter() - t}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    # Benchmark ledgers are throw-away: one random audit key for the run (the chain is keyed; no key, no audit rows).
    os.environ.setdefault("WRITEOFFS_AUDIT_KEY", secrets.token_hex(32))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--invoices", type=int, default=1_000_000)
    ap.add_argument("--data", choices=("sample", "series"), default="sample")
    ap.add_argument("--keep", action="store_true", help="keep the schema (printed) for inspection")
    args = ap.parse_args()

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(PG_URL, schema=schema)
    try:
        upgrade(engine)
        times = build_series(engine, args.invoices) if args.data == "series" else build_sample(engine, args.invoices)
        with engine.begin() as conn:
            t = time.perf_counter()
            for tb in ("customers", "invoices", "collection_activities", "holds", "payments", "payment_allocations"):
                conn.execute(text(f"ANALYZE {tb}"))
            times["analyze"] = time.perf_counter() - t
            counts = {
                tb: conn.execute(text(f"SELECT count(*) FROM {tb}")).scalar_one()
                for tb in ("customers", "invoices", "collection_activities", "holds", "payment_allocations")
            }
        policy = load_policy()
        load_start = _load()
        t = time.perf_counter()
        co = run_charge_off(engine, policy, AS_OF)
        times["charge_off"] = time.perf_counter() - t

        t = time.perf_counter()
        prep = select_and_batch(engine, policy, AS_OF, prepared_by="bench")
        times["select_and_batch"] = time.perf_counter() - t

        t = time.perf_counter()
        again = select_and_batch(engine, policy, AS_OF, prepared_by="bench")
        times["rerun_idempotent"] = time.perf_counter() - t

        with engine.connect() as conn:
            batches = batch_table(conn, policy.content_hash, AS_OF)
        t = time.perf_counter()
        report = whatif(engine, policy, date(2026, 6, 30))
        times["whatif_2026_06_30"] = time.perf_counter() - t

        t = time.perf_counter()
        daily = run_charge_off(engine, policy, AS_OF + timedelta(days=1))
        times["charge_off_daily"] = time.perf_counter() - t

        result = {
            "invoices": args.invoices,
            "data": args.data,
            "counts": counts,
            "charged_off": co.charged_off,
            "charged_off_daily": daily.charged_off,
            "candidates": prep.selection.inserted,
            "batches": len(batches),
            "rerun_inserted": again.selection.inserted,
            "whatif_selected": sum(r[3] for r in report.selected),
            "seconds": {k: round(v, 3) for k, v in times.items()},
            "selection_target_met": times["select_and_batch"] <= 3.0,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "load_average": {"start": load_start, "end": _load()},
            "note": "shared 2-core machine; timings are noisy",
        }
        for k, v in times.items():
            print(f"{k:<24} {v:8.3f} s")
        print(f"load average (1, 5, 15 min): start {load_start}, end {_load()}")
        print(json.dumps({k: v for k, v in result.items() if k != "seconds"}, indent=1))
        out = ROOT / "bench" / "out" / f"bench_select-{args.data}-{args.invoices}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    finally:
        engine.dispose()
        if args.keep:
            print(f"kept schema {schema}")
        else:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
