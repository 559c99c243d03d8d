"""Benchmark: ingest and age a 1,000,000-invoice ERP CSV into PostgreSQL; prints per-stage times and peak RSS.

    .venv/bin/python bench/bench_ingest.py [--invoices 1000000] [--pg-url URL] [--keep] [--csv-dir DIR] [--rerun]

Generates a CONTRACT-shaped ``erp_export`` (BOM, quoted "45,000.00" amounts, %m/%d/%Y dates, Yes/No flags) in a
temp dir *in a child process* (not timed, and not counted in the peak RSS, which then measures the ingestion
only), or reuses one from ``--csv-dir`` (``--generate-only DIR`` writes one). It migrates a fresh schema, then
times: stage (read + validate + COPY), merge (customers, invoices, holds, AR sync entries), aging snapshot.
``--rerun`` then ingests the same file again for the same day (the daily, mostly-unchanged path: the batch is
replaced, nothing changes in the ledger) and reports it separately. Writes JSON under bench/out/.
Target: total <= 15 s, peak RSS <= 1 GiB. The machine is shared: run it several times and report each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

AS_OF = date(2026, 11, 24)


def generate(out: Path, n: int, *, invoices_only: bool = False) -> None:
    """The sample generator's CSV export (``python -m writeoffs generate``: invoices, payments, activities).

    ``invoices_only`` keeps the invoices and empties payments and activities (the old benchmark's input: it
    measured neither the payments' nor the activities' part of the merge).
    """
    from writeoffs.sample import SampleSpec, write_sample

    write_sample(SampleSpec(invoices=n, as_of=AS_OF), out, ("csv",))
    if invoices_only:
        d = out / "erp_export"
        for name in ("payments.csv", "activities.csv"):
            with (d / name).open("rb") as f:
                header = f.readline()
            (d / name).write_bytes(header)


def _generate_in_child(out: Path, n: int, invoices_only: bool) -> float:
    """Generate in a separate process: its memory is not the ingestion's (RUSAGE_SELF stays ingestion-only)."""
    t0 = time.perf_counter()
    cmd = [sys.executable, __file__, "--generate-only", str(out), "--invoices", str(n)]
    subprocess.run([*cmd, "--invoices-only"] if invoices_only else cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def _profile(engine, path: Path, explain_ms: int) -> None:
    """Write every statement's wall time and row count to ``path`` and, for statements (triggers' included) slower
    than ``explain_ms``, PostgreSQL's own plan with actual times and buffers (auto_explain, sent to the client as
    LOG notices). The plans cost time of their own: a profiled run's totals are not the benchmark's."""
    from sqlalchemy import event

    out = path.open("a")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.add_notice_handler(lambda d: out.write(f"-- plan\n{d.message_primary}\n") or out.flush())
        with dbapi_conn.cursor() as cur:
            cur.execute("LOAD 'auto_explain'")
            for name, value in (
                ("auto_explain.log_min_duration", str(explain_ms)),
                ("auto_explain.log_analyze", "on"),
                ("auto_explain.log_buffers", "on"),
                ("auto_explain.log_wal", "on"),
                ("auto_explain.log_nested_statements", "on"),
                ("client_min_messages", "log"),
            ):
                cur.execute("SELECT set_config(%s, %s, false)", (name, value))
        dbapi_conn.commit()

    def backend_cpu(conn) -> float:
        """CPU seconds the connection's PostgreSQL backend has used (same host; a measure less noisy than wall
        time on a shared machine: waiting for a core does not count)."""
        pid = conn.info.get("backend_pid")
        if pid is None:
            pid = conn.info["backend_pid"] = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, _cursor, statement, _params, _context, _many) -> None:
        if "pg_backend_pid" not in statement:
            conn.info.setdefault("t0", []).append((time.perf_counter(), backend_cpu(conn)))

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, _params, _context, _many) -> None:
        if "pg_backend_pid" in statement:
            return
        t0, c0 = conn.info["t0"].pop()
        took, cpu = time.perf_counter() - t0, backend_cpu(conn) - c0
        out.write(f"{took:9.3f} s {cpu:8.2f} cpu {cursor.rowcount:>9} rows  {' '.join(statement.split())[:160]}\n")
        out.flush()


def _ingest(engine, cfg, times: dict[str, float], prefix: str = "") -> tuple[dict, dict, dict]:
    from writeoffs.ingest.merge import merge
    from writeoffs.ingest.pipeline import age
    from writeoffs.ingest.sources import build_source
    from writeoffs.ingest.staging import stage

    t = time.perf_counter()
    staged = stage(engine, cfg, build_source(cfg.source("erp_csv")), AS_OF)
    times[f"{prefix}stage"] = time.perf_counter() - t
    t = time.perf_counter()
    merged = merge(engine, cfg, [staged["batch_id"]], AS_OF)
    times[f"{prefix}merge"] = time.perf_counter() - t
    t = time.perf_counter()
    aging = age(engine, cfg, AS_OF)
    times[f"{prefix}aging"] = time.perf_counter() - t
    return staged, merged, aging


def main() -> int:
    # Benchmark ledgers are throw-away: one random audit key for the run (the chain is keyed; no key, no audit rows).
    os.environ.setdefault("WRITEOFFS_AUDIT_KEY", secrets.token_hex(32))
    ap = argparse.ArgumentParser()
    ap.add_argument("--invoices", type=int, default=1_000_000)
    ap.add_argument("--generate-only", metavar="DIR", help="write the input under DIR/erp_export and exit")
    ap.add_argument("--csv-dir", metavar="DIR", help="use an input generated earlier (DIR holds erp_export/)")
    ap.add_argument("--rerun", action="store_true", help="then ingest the same file again (the daily path)")
    ap.add_argument(
        "--pg-url", default=os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    )
    ap.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema afterwards")
    ap.add_argument("--stage-only", action="store_true", help="stop after staging (for profiling the merge by hand)")
    ap.add_argument(
        "--invoices-only", action="store_true", help="empty payments and activities files (the old benchmark's input)"
    )
    ap.add_argument("--profile", metavar="FILE", help="append each statement's time (and slow plans) to FILE")
    ap.add_argument("--explain-ms", type=int, default=1000, help="with --profile: plan statements slower than this")
    args = ap.parse_args()
    if args.generate_only:
        generate(Path(args.generate_only), args.invoices, invoices_only=args.invoices_only)
        return 0

    from sqlalchemy import text

    from writeoffs.db.engine import make_engine
    from writeoffs.db.migrate import upgrade
    from writeoffs.ingest import config as source_config
    from writeoffs.ingest.sources import build_source
    from writeoffs.ingest.staging import stage

    with tempfile.TemporaryDirectory() as tmp:
        if args.csv_dir:
            base, gen_s = Path(args.csv_dir), 0.0
        else:
            base, gen_s = Path(tmp), _generate_in_child(Path(tmp), args.invoices, args.invoices_only)
        csv_bytes = (base / "erp_export" / "invoices.csv").stat().st_size
        os.environ["WRITEOFFS_SOURCES_DIR"] = str(base)
        cfg = source_config.load()
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = make_engine(args.pg_url)
        with admin.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = make_engine(args.pg_url, schema=schema)
        try:
            upgrade(engine)
            if args.profile:
                engine.dispose()
                _profile(engine, Path(args.profile), args.explain_ms)
            times: dict[str, float] = {}
            if args.stage_only:
                t = time.perf_counter()
                stage(engine, cfg, build_source(cfg.source("erp_csv")), AS_OF)
                print(f"staged into schema {schema} in {time.perf_counter() - t:.2f} s")
                return 0
            staged, merged, aging = _ingest(engine, cfg, times)
            rerun = _ingest(engine, cfg, times, "rerun_") if args.rerun else None
        finally:
            engine.dispose()
            if not args.keep:
                with admin.begin() as c:
                    c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    total = times["stage"] + times["merge"] + times["aging"]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; this process only
    result = {
        "invoices": args.invoices,
        "csv_mib": round(csv_bytes / 2**20, 1),
        "generate_s (child process, not timed)": round(gen_s, 2),
        "stage_s": round(times["stage"], 2),
        "merge_s": round(times["merge"], 2),
        "aging_s": round(times["aging"], 2),
        "total_s": round(total, 2),
        "peak_rss_mib": round(peak_mib, 1),
        "rows_accepted": staged["rows_accepted"],
        "rows_quarantined": staged["rows_quarantined"],
        "aged_invoices": aging["invoices"],
        "merge_counts": merged["batches"][0]["counts"],
        "ar_sync_entries": len(merged["batches"][0]["ar_sync"]),
        "target": {"total_s": 15, "peak_rss_mib": 1024},
        "ok": total <= 15 and peak_mib <= 1024,
        "load_average": os.getloadavg(),
        "host": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    if rerun is not None:
        result["rerun"] = {
            "stage_s": round(times["rerun_stage"], 2),
            "merge_s": round(times["rerun_merge"], 2),
            "aging_s": round(times["rerun_aging"], 2),
            "total_s": round(times["rerun_stage"] + times["rerun_merge"] + times["rerun_aging"], 2),
            "merge_counts": rerun[1]["batches"][0]["counts"],
            "ar_sync_entries": len(rerun[1]["batches"][0]["ar_sync"]),
        }
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_ingest_{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    for k in ("stage_s", "merge_s", "aging_s", "total_s", "peak_rss_mib", "load_average"):
        print(f"{k:>14}: {result[k]}")
    if rerun is not None:
        print(f"{'rerun':>14}: {result['rerun']}")
    print(f"written {path}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
