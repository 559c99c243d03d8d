#!/usr/bin/env python
"""Run every benchmark of BENCHMARKS.md one after another (each in its own process, so peak RSS is its own).

    .venv/bin/python bench/run_all.py            # full size (1,000,000 invoices; 50,000 postings)
    .venv/bin/python bench/run_all.py --quick    # 100,000 invoices / 5,000 postings: a smoke test

Each benchmark prints its per-stage table and writes JSON under bench/out/. PostgreSQL at 127.0.0.1:5432 (database
``test``); every benchmark works in a schema of its own and drops it afterwards.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    # Benchmark ledgers are throw-away: one random audit key for the run (the chain is keyed; no key, no audit rows).
    os.environ.setdefault("WRITEOFFS_AUDIT_KEY", secrets.token_hex(32))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = "100000" if args.quick else "1000000"
    runs = [
        ("generate + seed", ["bench_generate.py", "--invoices", n]),
        ("ingest + aging", ["bench_ingest.py", "--invoices", n]),
        ("validation", ["bench_validate.py", "--rows", n]),
        ("candidate selection", ["bench_select.py", "--invoices", n, "--data", "sample"]),
        ("posting", ["bench_post.py", "--n", "5000" if args.quick else "50000"]),
        ("reconciliation", ["bench_reconcile.py", "--invoices", n]),
    ]
    failed = []
    for name, cmd in runs:
        print(f"\n===== {name}: {' '.join(cmd)}", flush=True)
        started = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / cmd[0]), *cmd[1:]])
        print(f"===== {name}: exit {rc} after {time.perf_counter() - started:.1f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
