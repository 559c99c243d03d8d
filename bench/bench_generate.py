"""Benchmark: generate the sample data and seed it into PostgreSQL.

    .venv/bin/python bench/bench_generate.py                      # 1,000,000 invoices (the target)
    .venv/bin/python bench/bench_generate.py --invoices 50000     # a quick run

Stages, each timed with a wall clock:
1. ``generate files``: the three source formats (CSV, SQLite, JSON API) into a temporary directory (deleted
   afterwards unless ``--keep-files``); skip with ``--formats none``;
2. ``migrate``: a fresh schema in database ``test`` (dropped at the end), ledger migrations;
3. ``seed``: :func:`writeoffs.sample.seed_ledger` (COPY of every table + tie-out + opening entries + audit);
4. ``verify``: the GL AR control per entity and currency against the sub-ledger, and the audit chain.

Peak RSS is ``ru_maxrss`` of this process and of its children (``resource.getrusage``); the PostgreSQL server's
own memory is not a child and is not included. Target: 1,000,000 invoices seeded in <= 60 s, peak RSS <= 1 GiB.
The machine is shared: numbers are noisy; run twice and keep both if they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from sqlalchemy import func, select, text  # noqa: E402

from writeoffs import audit  # noqa: E402
from writeoffs.db.engine import make_engine  # noqa: E402
from writeoffs.db.migrate import upgrade  # noqa: E402
from writeoffs.db.schema import accounts, invoices, journal_entries, journal_lines  # noqa: E402
from writeoffs.sample import SampleSpec, parse_formats, seed_ledger, write_sample  # noqa: E402

PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TARGET_SECONDS = 60.0
TARGET_RSS_MIB = 1024.0

T = TypeVar("T")


def peak_rss_mib() -> float:
    """Peak resident set size so far, this process and waited-for children (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def main(argv: list[str] | None = None) -> int:
    # Benchmark ledgers are throw-away: one random audit key for the run (the chain is keyed; no key, no audit rows).
    os.environ.setdefault("WRITEOFFS_AUDIT_KEY", secrets.token_hex(32))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--invoices", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 11, 24))
    p.add_argument("--formats", default="csv,sqlite,api", help="file formats to generate, or 'none'")
    p.add_argument("--keep-files", action="store_true", help="keep the generated files (path is printed)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = p.parse_args(argv)

    spec = SampleSpec(invoices=args.invoices, seed=args.seed, as_of=args.as_of)
    stages: list[dict[str, object]] = []

    def stage(name: str, fn: Callable[[], T]) -> T:
        t0 = time.perf_counter()
        result = fn()
        row = {"stage": name, "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mib": round(peak_rss_mib(), 1)}
        stages.append(row)
        print(f"  {name:<16} {row['seconds']:>8.2f} s   peak RSS {row['peak_rss_mib']:>8.1f} MiB", flush=True)
        return result

    print(f"bench_generate: {spec.invoices:,} invoices, seed {spec.seed}, as of {spec.as_of}", flush=True)
    gen_info: dict[str, object] = {}
    if args.formats.strip().lower() != "none":
        formats = parse_formats(args.formats)
        tmp = Path(tempfile.mkdtemp(prefix="bench_generate_"))
        try:
            res = stage("generate files", lambda: write_sample(spec, tmp, formats))
            size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
            gen_info = {"formats": list(formats), "bytes": size, "summary": res.summary()}
            print(f"  ({res.summary()}; {size / 2**20:,.0f} MiB on disk)", flush=True)
        finally:
            if args.keep_files:
                print(f"  files kept in {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(PG_URL, schema=schema)
    try:
        stage("migrate", lambda: upgrade(engine))
        seeded = stage("seed (postgres)", lambda: seed_ledger(engine, spec))
        checks = stage("verify", lambda: _verify(engine))
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    seed_s = next(s["seconds"] for s in stages if s["stage"] == "seed (postgres)")
    rss = peak_rss_mib()
    ok = bool(seed_s <= TARGET_SECONDS and rss <= TARGET_RSS_MIB and checks["ties"] and checks["audit_intact"])
    print(seeded.summary())
    print(
        f"seed {seed_s:.1f} s (target <= {TARGET_SECONDS:.0f} s), peak RSS {rss:,.0f} MiB "
        f"(target <= {TARGET_RSS_MIB:,.0f} MiB), GL ties: {checks['ties']}, audit chain intact: "
        f"{checks['audit_intact']} -> {'PASS' if ok else 'MISS'}"
    )
    report = {
        "benchmark": "bench_generate",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "spec": spec.as_dict(),
        "stages": stages,
        "seed_sub_stages": {k: round(v, 2) for k, v in seeded.stages.items()},
        "files": gen_info,
        "totals": seeded.details["totals"],
        "checks": checks,
        "peak_rss_mib": round(rss, 1),
        "targets": {"seed_seconds": TARGET_SECONDS, "peak_rss_mib": TARGET_RSS_MIB},
        "pass": ok,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench_generate_{spec.invoices}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


def _verify(engine) -> dict[str, object]:
    """GL AR control (posted lines on the ar_control account) equals the sub-ledger, per entity and currency."""
    with engine.connect() as conn:
        sub = {
            (r[0], r[1]): r[2]
            for r in conn.execute(
                select(invoices.c.entity_code, invoices.c.currency, func.sum(invoices.c.open_balance)).group_by(
                    invoices.c.entity_code, invoices.c.currency
                )
            )
        }
        gl = {
            (r[0], r[1]): r[2]
            for r in conn.execute(
                select(
                    journal_lines.c.entity_code,
                    journal_lines.c.currency,
                    func.sum(journal_lines.c.debit - journal_lines.c.credit),
                )
                .select_from(
                    journal_lines.join(journal_entries, journal_entries.c.id == journal_lines.c.entry_id).join(
                        accounts,
                        (accounts.c.entity_code == journal_lines.c.entity_code)
                        & (accounts.c.code == journal_lines.c.account_code),
                    )
                )
                .where(journal_entries.c.status == "posted", accounts.c.role == "ar_control")
                .group_by(journal_lines.c.entity_code, journal_lines.c.currency)
            )
        }
        findings = audit.verify(conn)
    return {
        "ties": sub == gl,
        "sub_ledger": {f"{k[0]}:{k[1]}": str(v) for k, v in sorted(sub.items())},
        "gl_ar_control": {f"{k[0]}:{k[1]}": str(v) for k, v in sorted(gl.items())},
        "audit_intact": not findings,
    }


if __name__ == "__main__":
    sys.exit(main())
