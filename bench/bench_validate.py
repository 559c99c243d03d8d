"""Benchmark: validate one staged batch of N invoices (+ N/5 payments, N/10 activities) on PostgreSQL.

    .venv/bin/python bench/bench_validate.py --rows 1000000

Stages the rows with INSERT ... SELECT generate_series into a fresh schema (not timed), plants 0.1 % faulty rows
(negative amounts, future dates, unknown customers), then times :func:`writeoffs.validation.run.validate_batches`
end to end in a process that has not imported GX yet: GX import and set-up, the SQL pass, GX's structural and
control checks, Data Docs, quarantine and bookkeeping (``validate_batch_s``; the phases are logged to stderr).
Also times the bare GX import + context in a fresh interpreter, for reference, and the aging validation (bucket
consistency + GL tie-out) on N snapshot rows. Prints one JSON line; the schema is dropped afterwards.

``--path gx`` makes GX count every row-level check itself (the pre-fast-path behaviour, for comparison).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from sqlalchemy import text

from writeoffs.db.engine import make_engine
from writeoffs.db.migrate import upgrade

AS_OF = date(2026, 11, 24)
PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def stage(conn, n: int) -> int:
    from writeoffs import ledger

    ledger.bootstrap_entity(
        conn,
        code="US01",
        name="US",
        functional_currency="USD",
        periods_from=date(2024, 1, 1),
        periods_to=date(2027, 12, 31),
    )
    batch = conn.execute(
        text(
            "INSERT INTO ingest_batches (source, as_of_date, status, load_no, rows_read, rows_accepted,"
            " rows_quarantined, details, files, control) VALUES ('bench', :d, 'staged', 1, :t, :t, 0, :det, '[]', :c)"
            " RETURNING id"
        ),
        {
            "d": AS_OF,
            "t": n + n // 5 + n // 10,
            "det": json.dumps(
                {
                    ds: {"read": k, "accepted": k, "quarantined": 0, "totals": {}}
                    for ds, k in (("invoices", n), ("payments", n // 5), ("activities", n // 10))
                }
            ),
            "c": json.dumps({"invoices": {"rows": n}, "payments": {"rows": n // 5}, "activities": {"rows": n // 10}}),
        },
    ).scalar_one()
    # Every 1000th row carries a fault, so the warning path (count, quarantine, delete) is part of the timing.
    conn.execute(
        text(
            "INSERT INTO stg_invoices (batch_id, source_row, source_file, entity, invoice_ref, customer_ref,"
            " customer_name, invoice_date, due_date, currency, amount, open_balance, fx_rate, disputed, payment_plan,"
            " bankrupt, transferred_to_parent)"
            " SELECT :b, g + 1, 'invoices.csv', 'US01', 'INV' || g, 'C' || (g % 50000), 'Customer', "
            " CASE WHEN g % 1000 = 7 THEN DATE '2026-12-01' ELSE DATE '2025-01-01' + (g % 600) END,"
            " DATE '2025-01-31' + (g % 600), CASE WHEN g % 1000 = 3 THEN 'XXX' ELSE 'USD' END,"
            " (100 + g % 5000)::numeric(20,4), CASE WHEN g % 1000 = 5 THEN -1 ELSE (g % 5000)::numeric(20,4) END,"
            " 1, false, false, false, false FROM generate_series(1, :n) g"
        ),
        {"b": batch, "n": n},
    )
    conn.execute(
        text(
            "INSERT INTO stg_payments (batch_id, source_row, source_file, entity, payment_ref, customer_ref,"
            " payment_date, currency, amount, invoice_ref, applied_amount)"
            " SELECT :b, g + 1, 'payments.csv', 'US01', 'PAY' || g,"
            " CASE WHEN g % 1000 = 9 THEN 'NOBODY' ELSE 'C' || (g % 50000) END, DATE '2026-10-01', 'USD', 50, "
            " 'INV' || g, 50 FROM generate_series(1, :n) g"
        ),
        {"b": batch, "n": n // 5},
    )
    conn.execute(
        text(
            "INSERT INTO stg_activities (batch_id, source_row, source_file, entity, customer_ref, invoice_ref,"
            " activity_type, activity_date) SELECT :b, g + 1, 'activities.csv', 'US01', 'C' || (g % 50000),"
            " 'INV' || g, 'contact_attempt', DATE '2026-10-01' FROM generate_series(1, :n) g"
        ),
        {"b": batch, "n": n // 10},
    )
    return batch


def stage_aging(conn, n: int) -> None:
    """N aging rows (no FK to invoices needed for the timing: the constraint is dropped in this bench schema)."""
    conn.execute(text("ALTER TABLE aging_snapshots DROP CONSTRAINT IF EXISTS fk_aging_snapshots_invoice_id_invoices"))
    conn.execute(
        text(
            "INSERT INTO aging_snapshots (as_of_date, invoice_id, entity_code, customer_id, currency, days_past_due,"
            " bucket, open_balance) SELECT :d, g, 'US01', g % 50000, 'USD', (g % 700) - 30,"
            " CASE WHEN (g % 700) - 30 <= 0 THEN 'current' WHEN (g % 700) - 30 <= 30 THEN '1-30'"
            " WHEN (g % 700) - 30 <= 60 THEN '31-60' WHEN (g % 700) - 30 <= 90 THEN '61-90'"
            " WHEN (g % 700) - 30 <= 120 THEN '91-120' WHEN (g % 700) - 30 <= 180 THEN '121-180'"
            " WHEN (g % 700) - 30 <= 365 THEN '181-365' ELSE '365+' END, 10 FROM generate_series(1, :n) g"
        ),
        {"d": AS_OF, "n": n},
    )


def main() -> None:
    # Benchmark ledgers are throw-away: one random audit key for the run (the chain is keyed; no key, no audit rows).
    os.environ.setdefault("WRITEOFFS_AUDIT_KEY", secrets.token_hex(32))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--url", default=PG_URL)
    ap.add_argument("--path", choices=("fast", "gx"), default="fast", help="row-level checks counted by SQL or by GX")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("writeoffs.validation").setLevel(logging.INFO)
    os.environ.setdefault("WRITEOFFS_DATA_DIR", tempfile.mkdtemp(prefix="bench_validate_"))

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(args.url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(args.url, schema=schema)
    try:
        upgrade(engine)
        t0 = time.perf_counter()
        with engine.begin() as conn:
            batch = stage(conn, args.rows)
            stage_aging(conn, args.rows)
        with engine.begin() as conn:
            for t in ("stg_invoices", "stg_payments", "stg_activities", "aging_snapshots", "customers"):
                conn.execute(text(f"ANALYZE {t}"))
        staged_s = time.perf_counter() - t0

        gx_setup_s = float(
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import time; t = time.perf_counter(); import great_expectations as gx;"
                    " gx.get_context(mode='ephemeral'); print(time.perf_counter() - t)",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[-1]
        )

        from writeoffs.validation.config import parse
        from writeoffs.validation.run import ValidationBlocked, validate_aging, validate_batches

        assert "great_expectations" not in sys.modules  # the timed run pays for the import, as a task does
        min_rows = 0 if args.path == "fast" else 10**12
        cfg = parse({"max_quarantined_fraction": "0.01", "fast_path_min_rows": min_rows})
        t0 = time.perf_counter()
        report = validate_batches(engine, [batch], as_of=AS_OF, run_key="bench", config=cfg)
        validate_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        try:
            validate_aging(engine, as_of=AS_OF, run_key="bench-aging", config=cfg)
            aging_outcome = "passed"
        except ValidationBlocked as exc:  # no GL postings in the bench: the tie-out breaks, as it should
            aging_outcome = "blocked: " + ", ".join(f.check for _, f in exc.report.blocking)
        aging_s = time.perf_counter() - t0
        s = report.summary()
        print(
            json.dumps(
                {
                    "rows_invoices": args.rows,
                    "rows_payments": args.rows // 5,
                    "rows_activities": args.rows // 10,
                    "staging_s": round(staged_s, 2),
                    "path": args.path,
                    "gx_import_and_context_s": round(gx_setup_s, 2),
                    "validate_batch_s": round(validate_s, 2),
                    "validate_aging_s": round(aging_s, 2),
                    "aging_outcome": aging_outcome,
                    "expectations": s["evaluated"],
                    "failed": s["failed"],
                    "rows_quarantined": s["rows_quarantined"],
                    "cpus": os.cpu_count(),
                }
            )
        )
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
