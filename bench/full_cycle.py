"""Benchmark: the whole write-off cycle through real Airflow, side by side with a plain-SQL floor and a row-by-row peer.

    .venv/bin/python bench/full_cycle.py [--invoices 1000000] [--peer-invoices 100000] [--pg-url URL]
                                         [--skip-airflow] [--skip-floor] [--skip-peer] [--keep]

One generated ERP export (``python -m writeoffs generate``: invoices, payments, collection activities, control
totals) is processed three ways, each in its own PostgreSQL schema:

1. **Ours**: the project's DAGs in a private Airflow (LocalExecutor, 4 slots, SQLite metadata), the ledger on
   PostgreSQL: ``ar_aging_ingest`` (stage, validate with GX, merge, age, AR sync) → ``writeoff_candidates`` →
   allowance (CLI, as the demo) → ``writeoff_approval`` (every request answered over the REST API as its assigned
   approver, like ``make demo``) → posting → ``ledger_reconciliation``. Task times come from Airflow's task
   instances: *data work* is the time some non-approval task of the chain was running (union of intervals),
   *approval wait* the time only approval requests were open (the answering script waits 8 s after each request
   appears, see scripts/approve.py), *orchestration* the rest of the wall time (scheduling, process start-up,
   asset hand-offs). Peak RSS: the Airflow processes with their task processes (not PostgreSQL), sampled
   every 0.5 s.
2. **Floor**: the same data work in plain SQL with no checks, audit or idempotency: COPY of the three CSVs,
   typed insert (amounts, dates), aging buckets, a one-statement selection (365+ days past due or bankrupt, not
   disputed, no payment plan, no payment in 90 days), two journal lines per write-off, the sub-ledger update and the
   reconciliation sums.
3. **Peer**: what a team writes by hand: ``csv`` reader, one INSERT per row, the aging and selection in a Python
   loop with one query per invoice for its payments, one journal entry (and its two lines) and one UPDATE per
   write-off, a commit at the end; run at ``--peer-invoices`` and scaled linearly to ``--invoices``.

Prints a table and writes JSON under bench/out/. The machine is shared: report the load average printed with it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "include"), str(ROOT / "plugins")]

import psutil  # noqa: E402
import psycopg  # noqa: E402

from writeoffs.db.engine import schema_url  # noqa: E402

AS_OF = date(2026, 11, 24)
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
APPROVAL_TASK_MARKERS = ("approve", "confirm")  # HITL request tasks: their time is people's time


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


class RssSampler(threading.Thread):
    """Peak of the summed RSS of the processes ``select`` picks, sampled every 0.5 s."""

    def __init__(self, select) -> None:
        super().__init__(daemon=True)
        self.select, self.peak, self._halt = select, 0, threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            total = 0
            for p in psutil.process_iter(["cmdline", "name"]):
                try:
                    if self.select(p):
                        total += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak = max(self.peak, total)
            self._halt.wait(0.5)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


# --- 1. ours, through Airflow ---------------------------------------------------------------------------------


def run_ours(export: Path, pg_url: str, work: Path, n: int) -> dict:
    from scripts.airflow_local import start_airflow
    from scripts.demo_cycle import answer_all, latest_run, wait_finished

    schema = f"bench_fc_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(pg_url), autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    ledger = schema_url(pg_url, schema)
    env = {
        **os.environ,
        "WRITEOFFS_DATA_DIR": str(work / "data"),
        "WRITEOFFS_LEDGER_URL": ledger,
        "WRITEOFFS_SOURCES_DIR": str(export.parent),
        "WRITEOFFS_INGEST_SCHEDULE": "",
        "WRITEOFFS_AUDIT_KEY_FILE": str(work / "audit.key"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins")]),
    }

    def cli(*args: str) -> None:
        subprocess.run([sys.executable, "-m", "writeoffs", *args], env=env, check=True, cwd=ROOT)

    cli("audit-key")
    cli("init-db")
    passed = {k: env[k] for k in env if k.startswith("WRITEOFFS_")}
    server = start_airflow(dag_files=sorted((ROOT / "dags").glob("*.py")), env=passed, home=work / "airflow")
    home = str(server.home)
    # The components run with the Airflow home as working directory, and so do the task processes they start.
    sampler = RssSampler(lambda p: p.cwd().startswith(home))
    sampler.start()
    dags = ("ar_aging_ingest", "writeoff_candidates", "writeoff_approval", "ledger_reconciliation")
    runs: dict[str, dict] = {}
    try:
        started = time.time()
        server.trigger("ar_aging_ingest", "bench", {"as_of": AS_OF.isoformat(), "sources": ["erp_csv"]})
        runs["ar_aging_ingest"] = wait_finished(server, "ar_aging_ingest", timeout=3600)
        # The month-end allowance is funded before anything draws on it: at once after the ingest, while the
        # candidates run (the approval DAG posts auto-approved batches as soon as it starts and refuses a write-off
        # the allowance cannot absorb). Selection takes longer than this estimate at any size measured so far.
        t = time.time()
        cli("allowance", "--as-of", AS_OF.isoformat())
        allowance = (t, time.time())
        runs["writeoff_candidates"] = wait_finished(server, "writeoff_candidates", timeout=1800)
        run = server.wait_for(lambda: latest_run(server, "writeoff_approval"), timeout=300, what="the approval run")
        answers = answer_all(server, run["dag_run_id"], timeout=3600)
        runs["writeoff_approval"] = wait_finished(server, "writeoff_approval", timeout=600)
        runs["ledger_reconciliation"] = wait_finished(
            server, "ledger_reconciliation", timeout=1800, run_type="asset_triggered"
        )
        wall = ts(runs["ledger_reconciliation"]["end_date"]) - started
        work_iv, wait_iv, per_dag, per_task = [allowance], [], {}, {}
        with server.client() as c:
            for dag in dags:
                rid = runs[dag]["dag_run_id"]
                tis = c.get(f"/dags/{dag}/dagRuns/{rid}/taskInstances", params={"limit": 1000}).json()
                per_dag[dag] = ts(runs[dag]["end_date"]) - ts(runs[dag]["start_date"])
                for ti in tis["task_instances"]:
                    a, b = ts(ti["start_date"]), ts(ti["end_date"])
                    if a is None or b is None or ti["state"] == "skipped":
                        continue
                    human = any(ti["task_id"].split(".")[-1].startswith(m) for m in APPROVAL_TASK_MARKERS)
                    (wait_iv if human else work_iv).append((a, b))
                    if not human:  # where the data work goes: seconds per task, mapped instances summed
                        key = f"{dag}.{ti['task_id']}"
                        per_task[key] = per_task.get(key, 0.0) + (b - a)
    finally:
        peak = sampler.stop()
        server.stop()
    data_work = union_seconds(work_iv)
    approval_wait = union_seconds(wait_iv + work_iv) - data_work
    return {
        "schema": schema,
        "wall_s": wall,
        "data_work_s": data_work,
        "approval_wait_s": approval_wait,
        "orchestration_s": wall - data_work - approval_wait,
        "per_dag_s": per_dag,
        "per_task_s": dict(sorted(per_task.items(), key=lambda kv: -kv[1])),
        "allowance_s": allowance[1] - allowance[0],
        "answers": answers,
        "peak_rss_mib": peak / 2**20,
    }


# --- 2. the plain-SQL floor -------------------------------------------------------------------------------------

FLOOR_DDL = """
CREATE TABLE s_inv (company text, invoice_no text, customer_no text, customer_name text, parent_no text,
  segment text, invoice_date text, due_date text, currency text, amount text, open_balance text, fx text,
  disputed text, dispute_since text, payment_plan text, bankrupt text, transferred text, description text);
CREATE TABLE s_pay (company text, payment_no text, customer_no text, payment_date text, currency text, amount text,
  invoice_no text, applied text);
CREATE TABLE s_act (company text, customer_no text, invoice_no text, activity text, day text, end_day text,
  outcome text);
"""

FLOOR_STEPS = (
    (
        "typed insert",
        """
        CREATE TABLE inv AS SELECT company, invoice_no, customer_no, segment, currency,
          to_date(due_date, 'MM/DD/YYYY') AS due, replace(amount, ',', '')::numeric(18,2) AS amount,
          replace(open_balance, ',', '')::numeric(18,2) AS open_balance, disputed = 'Yes' AS disputed,
          payment_plan = 'Yes' AS plan, bankrupt = 'Yes' AS bankrupt, transferred = 'Yes' AS transferred
        FROM s_inv;
        CREATE TABLE pay AS SELECT company, invoice_no, to_date(payment_date, 'MM/DD/YYYY') AS day,
          replace(applied, ',', '')::numeric(18,2) AS applied FROM s_pay;
        CREATE TABLE act AS SELECT company, invoice_no, activity, to_date(day, 'MM/DD/YYYY') AS day FROM s_act;
        CREATE UNIQUE INDEX ON inv (company, invoice_no);
        CREATE INDEX ON pay (company, invoice_no);
        CREATE INDEX ON act (company, invoice_no);
        """,
    ),
    (
        "aging",
        """
        CREATE TABLE aging AS SELECT company, invoice_no, currency, open_balance, %(d)s::date - due AS dpd,
          CASE WHEN %(d)s::date - due <= 0 THEN 'current' WHEN %(d)s::date - due <= 30 THEN '1-30'
               WHEN %(d)s::date - due <= 60 THEN '31-60' WHEN %(d)s::date - due <= 90 THEN '61-90'
               WHEN %(d)s::date - due <= 120 THEN '91-120' ELSE '120+' END AS bucket
        FROM inv WHERE open_balance > 0;
        """,
    ),
    (
        "selection",
        """
        CREATE TABLE cand AS SELECT i.company, i.invoice_no, i.currency, i.open_balance,
          (SELECT count(*) FROM act a WHERE a.company = i.company AND a.invoice_no = i.invoice_no) AS contacts
        FROM inv i WHERE i.open_balance > 0 AND NOT i.disputed AND NOT i.plan AND NOT i.transferred
          AND (%(d)s::date - i.due >= 365 OR i.bankrupt)
          AND NOT EXISTS (SELECT 1 FROM pay p WHERE p.company = i.company AND p.invoice_no = i.invoice_no
                          AND p.day > %(d)s::date - 90);
        """,
    ),
    (
        "journal lines",
        """
        CREATE TABLE lines AS
          SELECT company, invoice_no, currency, 'bad_debt' AS account, open_balance AS debit, 0::numeric AS credit
          FROM cand
          UNION ALL SELECT company, invoice_no, currency, 'ar', 0, open_balance FROM cand;
        """,
    ),
    (
        "sub-ledger update",
        """
        UPDATE inv SET open_balance = 0 FROM cand
        WHERE inv.company = cand.company AND inv.invoice_no = cand.invoice_no;
        """,
    ),
    (
        "reconciliation sums",
        """
        SELECT l.company, l.currency, sum(l.debit) - sum(l.credit) AS gl,
          (SELECT sum(open_balance) FROM inv i WHERE i.company = l.company AND i.currency = l.currency) AS sub
        FROM lines l GROUP BY l.company, l.currency;
        """,
    ),
)


def copy_csv(cur: psycopg.Cursor, table: str, path: Path) -> None:
    with path.open("rb") as f, cur.copy(f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)") as cp:
        head = f.read(3)
        if head != b"\xef\xbb\xbf":  # the export starts with a UTF-8 BOM
            cp.write(head)
        while chunk := f.read(1 << 20):
            cp.write(chunk)


def run_floor(export: Path, pg_url: str) -> dict:
    schema = f"bench_floor_{uuid.uuid4().hex[:8]}"
    stages: dict[str, float] = {}
    with psycopg.connect(libpq(pg_url)) as c, c.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"; SET search_path = "{schema}"')
        cur.execute(FLOOR_DDL)
        t = time.perf_counter()
        for table, name in (("s_inv", "invoices"), ("s_pay", "payments"), ("s_act", "activities")):
            copy_csv(cur, table, export / f"{name}.csv")
        stages["copy"] = time.perf_counter() - t
        for name, sql in FLOOR_STEPS:
            t = time.perf_counter()
            cur.execute(sql, {"d": AS_OF})
            if cur.description:
                cur.fetchall()
            stages[name] = time.perf_counter() - t
        cur.execute("SELECT count(*) FROM cand")
        candidates = cur.fetchone()[0]
        t = time.perf_counter()
        c.commit()
        stages["commit"] = time.perf_counter() - t
    return {"schema": schema, "stages_s": stages, "total_s": sum(stages.values()), "candidates": candidates}


# --- 3. the row-by-row peer --------------------------------------------------------------------------------------

PEER_DDL = """
CREATE TABLE inv (company text, invoice_no text, customer_no text, currency text, due date, amount numeric(18,2),
  open_balance numeric(18,2), disputed bool, plan bool, bankrupt bool, transferred bool,
  PRIMARY KEY (company, invoice_no));
CREATE TABLE pay (company text, invoice_no text, day date, applied numeric(18,2));
CREATE INDEX ON pay (company, invoice_no);
CREATE TABLE act (company text, invoice_no text, activity text, day date);
CREATE TABLE entry (id serial PRIMARY KEY, company text, invoice_no text, currency text, posted date);
CREATE TABLE line (entry_id int REFERENCES entry, account text, debit numeric(18,2), credit numeric(18,2));
"""


def _d(text: str) -> date | None:
    return datetime.strptime(text, "%m/%d/%Y").date() if text else None


def _m(text: str) -> Decimal:
    return Decimal(text.replace(",", "")) if text else Decimal(0)


def rows(path: Path, limit: int | None = None):
    with path.open(encoding="utf-8-sig", newline="") as f:
        for i, r in enumerate(csv.DictReader(f)):
            if limit is not None and i >= limit:
                return
            yield r


def run_peer(export: Path, pg_url: str, n: int) -> dict:
    """Row by row, at ``n`` invoices (payments and activities of those invoices only)."""
    schema = f"bench_peer_{uuid.uuid4().hex[:8]}"
    stages: dict[str, float] = {}
    with psycopg.connect(libpq(pg_url)) as c, c.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"; SET search_path = "{schema}"')
        cur.execute(PEER_DDL)
        t = time.perf_counter()
        keep = set()
        for r in rows(export / "invoices.csv", n):
            keep.add((r["Company"], r["Invoice No"]))
            cur.execute(
                "INSERT INTO inv VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    r["Company"],
                    r["Invoice No"],
                    r["Customer No"],
                    r["Currency"],
                    _d(r["Due Date"]),
                    _m(r["Amount"]),
                    _m(r["Open Balance"]),
                    r["Disputed"] == "Yes",
                    r["Payment Plan"] == "Yes",
                    r["Bankrupt"] == "Yes",
                    r["Transferred To Parent"] == "Yes",
                ),
            )
        for r in rows(export / "payments.csv"):
            if (r["Company"], r["Invoice No"]) in keep:
                cur.execute(
                    "INSERT INTO pay VALUES (%s, %s, %s, %s)",
                    (r["Company"], r["Invoice No"], _d(r["Payment Date"]), _m(r["Applied Amount"])),
                )
        for r in rows(export / "activities.csv"):
            if (r["Company"], r["Invoice No"]) in keep:
                cur.execute(
                    "INSERT INTO act VALUES (%s, %s, %s, %s)",
                    (r["Company"], r["Invoice No"], r["Activity"], _d(r["Date"])),
                )
        stages["load"] = time.perf_counter() - t
        t = time.perf_counter()
        cur.execute(
            "SELECT company, invoice_no, currency, due, open_balance, disputed, plan, bankrupt, transferred FROM inv"
        )
        buckets: dict[str, Decimal] = {}
        chosen = []
        for company, inv, cur_code, due, bal, disputed, plan, bankrupt, transferred in cur.fetchall():
            if bal <= 0:
                continue
            dpd = (AS_OF - due).days
            bucket = next(b for limit, b in ((0, "current"), (30, "1-30"), (60, "31-60"), (90, "61-90"),
                                             (120, "91-120"), (10**9, "120+")) if dpd <= limit)  # fmt: skip
            buckets[bucket] = buckets.get(bucket, Decimal(0)) + bal
            if disputed or plan or transferred or not (dpd >= 365 or bankrupt):
                continue
            with c.cursor() as q:
                q.execute("SELECT max(day) FROM pay WHERE company = %s AND invoice_no = %s", (company, inv))
                last = q.fetchone()[0]
            if last is None or (AS_OF - last).days >= 90:
                chosen.append((company, inv, cur_code, bal))
        stages["aging + selection"] = time.perf_counter() - t
        t = time.perf_counter()
        for company, inv, cur_code, bal in chosen:
            cur.execute(
                "INSERT INTO entry (company, invoice_no, currency, posted) VALUES (%s, %s, %s, %s) RETURNING id",
                (company, inv, cur_code, AS_OF),
            )
            entry_id = cur.fetchone()[0]
            cur.execute("INSERT INTO line VALUES (%s, 'bad_debt', %s, 0)", (entry_id, bal))
            cur.execute("INSERT INTO line VALUES (%s, 'ar', 0, %s)", (entry_id, bal))
            cur.execute("UPDATE inv SET open_balance = 0 WHERE company = %s AND invoice_no = %s", (company, inv))
        stages["posting"] = time.perf_counter() - t
        t = time.perf_counter()
        cur.execute("SELECT open_balance FROM inv")
        sub = sum((r[0] for r in cur.fetchall()), Decimal(0))
        cur.execute("SELECT debit, credit FROM line")
        gl = sum((d - cr for d, cr in cur.fetchall()), Decimal(0))
        stages["reconciliation"] = time.perf_counter() - t
        t = time.perf_counter()
        c.commit()
        stages["commit"] = time.perf_counter() - t
    return {
        "schema": schema,
        "invoices": n,
        "stages_s": stages,
        "total_s": sum(stages.values()),
        "candidates": len(chosen),
        "sums": [str(sub), str(gl)],
    }


def drop(pg_url: str, *schemas: str) -> None:
    with psycopg.connect(libpq(pg_url), autocommit=True) as c:
        for s in schemas:
            c.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')


def main() -> int:
    os.environ.setdefault("WRITEOFFS_AUDIT_KEY", secrets.token_hex(32))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--invoices", type=int, default=1_000_000)
    ap.add_argument("--peer-invoices", type=int, default=100_000)
    ap.add_argument("--pg-url", default=DEFAULT_PG)
    ap.add_argument("--skip-airflow", action="store_true")
    ap.add_argument("--skip-floor", action="store_true")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the schemas and the work directory")
    args = ap.parse_args()
    work = ROOT / "bench" / "out" / f"full_cycle_{uuid.uuid4().hex[:6]}"
    sources = work / "sources"
    load = [os.getloadavg()[0]]
    t = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "writeoffs",
            "generate",
            "--invoices",
            str(args.invoices),
            "--as-of",
            AS_OF.isoformat(),
            "--out",
            str(sources),
            "--formats",
            "csv",
            "-q",
        ],
        check=True,
        cwd=ROOT,
    )
    export = sources / "erp_export"
    result: dict = {"invoices": args.invoices, "generate_s": time.perf_counter() - t, "started": time.ctime()}
    schemas = []
    try:
        if not args.skip_floor:
            result["floor"] = run_floor(export, args.pg_url)
            schemas.append(result["floor"]["schema"])
            load.append(os.getloadavg()[0])
            print(json.dumps({"floor": result["floor"]}, default=str), flush=True)  # kept if a later part fails
        if not args.skip_peer:
            result["peer"] = run_peer(export, args.pg_url, min(args.peer_invoices, args.invoices))
            schemas.append(result["peer"]["schema"])
            load.append(os.getloadavg()[0])
            print(json.dumps({"peer": result["peer"]}, default=str), flush=True)
        if not args.skip_airflow:
            result["ours"] = run_ours(export, args.pg_url, work, args.invoices)
            schemas.append(result["ours"]["schema"])
            load.append(os.getloadavg()[0])
    finally:
        if not args.keep:
            drop(args.pg_url, *schemas)
    result["load_avg_1m"] = load
    ours, floor, peer = result.get("ours"), result.get("floor"), result.get("peer")
    print(f"\nwhole cycle, {args.invoices:,} invoices (load avg 1m: {', '.join(f'{x:.1f}' for x in load)})")
    if floor:
        print(f"  floor (plain SQL):       {floor['total_s']:8.1f} s  {floor['candidates']:,} write-offs")
        for k, v in floor["stages_s"].items():
            print(f"      {k:<22} {v:8.2f} s")
    if peer:
        scaled = peer["total_s"] * args.invoices / peer["invoices"]
        result["peer"]["scaled_s"] = scaled
        print(f"  peer (row by row):       {peer['total_s']:8.1f} s at {peer['invoices']:,} -> {scaled:,.0f} s scaled")
        for k, v in peer["stages_s"].items():
            print(f"      {k:<22} {v:8.2f} s")
    if ours:
        print(f"  ours, wall (Airflow):    {ours['wall_s']:8.1f} s  peak RSS {ours['peak_rss_mib']:,.0f} MiB")
        print(f"      data work            {ours['data_work_s']:8.1f} s")
        print(f"      approval wait        {ours['approval_wait_s']:8.1f} s  ({ours['answers']} answers)")
        print(f"      orchestration        {ours['orchestration_s']:8.1f} s")
        for k, v in ours["per_dag_s"].items():
            print(f"      run {k:<18} {v:8.1f} s")
        for k, v in list(ours["per_task_s"].items())[:12]:
            print(f"      task {k:<45} {v:8.1f} s")
        if floor:
            result["ours_over_floor"] = ours["data_work_s"] / floor["total_s"]
            print(f"  ours / floor (data work): {result['ours_over_floor']:.1f}x  (target <= 3)")
        if peer:
            result["peer_over_ours"] = result["peer"]["scaled_s"] / ours["data_work_s"]
            print(f"  peer / ours (data work):  {result['peer_over_ours']:.1f}x  (target >= 20)")
    out = ROOT / "bench" / "out" / f"full_cycle_{datetime.now():%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"written {out}")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
