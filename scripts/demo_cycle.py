#!/usr/bin/env python
"""`make demo`: the whole write-off cycle, unattended, on the embedded default (SQLite for Airflow and the ledger).

1. Generates the sample ERP data (CSV export with control totals) and creates the SQLite ledger.
2. Starts a private Airflow 3 (api-server, scheduler, dag-processor; LocalExecutor with 4 slots) with this
   project's DAGs, plugins and demo users.
3. Triggers ``ar_aging_ingest`` for the business date; the asset chain then runs ``writeoff_candidates`` and
   ``writeoff_approval`` by itself.
4. Books the allowance for doubtful accounts of the allowance-method entity (EU01) from the day's aging, as the
   month-end run would: the policy refuses a write-off that would drive the allowance into a debit balance
   (``allowance_shortfall: refuse``), so the reserve is funded before any write-off draws on it.
5. Answers every approval request through Airflow's REST API as the approver Airflow assigned to it (the demo's
   stand-in for a person clicking in the UI: the answer goes through the same Human-in-the-loop machinery), then
   confirms what will be posted.
6. Waits for the posting and for ``ledger_reconciliation`` (triggered by the posting asset), prints the ledger
   summary and where the reports are, and stops Airflow.

Everything lives under ``$WRITEOFFS_DATA_DIR/demo`` (default ``.data/demo``) and is rebuilt on every run.
Options: ``--invoices N`` (default 20,000), ``--as-of YYYY-MM-DD`` (default 2026-11-24), ``--keep-running``,
``--ledger-url URL`` (an empty PostgreSQL database instead of the SQLite file, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/ledger_demo``), and the production way of running Airflow:
``--executor celery --metadata-url postgresql+psycopg2://...`` (CeleryExecutor, Redis broker ``--broker-url``,
default ``redis://127.0.0.1:6379/0``, ``--celery-workers N`` worker processes, default 2; the metadata database
must exist and be empty or Airflow's own).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "include"), str(ROOT / "plugins")]

from scripts import approve  # noqa: E402
from scripts.airflow_local import AirflowServer, Celery, start_airflow  # noqa: E402

log = logging.getLogger("demo")
PIPELINE = ("ar_aging_ingest", "writeoff_candidates", "writeoff_approval", "ledger_reconciliation")


def step(n: int, text: str) -> None:
    log.info("[%d/7] %s", n, text)


def run_cli(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "writeoffs", *args], env=env, check=True, cwd=ROOT)


def latest_run(server: AirflowServer, dag_id: str, run_type: str | None = None) -> dict | None:
    with server.client() as c:
        r = c.get(f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 20})
        r.raise_for_status()
        runs = [x for x in r.json()["dag_runs"] if run_type is None or x["run_type"] == run_type]
    return runs[0] if runs else None


def wait_finished(server: AirflowServer, dag_id: str, *, timeout: float, run_type: str | None = None) -> dict:
    """Wait for the newest run of ``dag_id`` (it may still have to be created by an asset event) to finish."""

    def done() -> dict | None:
        run = latest_run(server, dag_id, run_type)
        return run if run and run["state"] in ("success", "failed") else None

    run = server.wait_for(done, timeout=timeout, interval=1, what=f"a finished run of {dag_id}")
    log.info("    %s run %s: %s", dag_id, run["dag_run_id"], run["state"])
    if run["state"] != "success":
        states = server.task_states(dag_id, run["dag_run_id"])
        failed = sorted(f"{t}[{m}]" if m >= 0 else t for (t, m), s in states.items() if s == "failed")
        raise SystemExit(f"{dag_id} failed (tasks: {', '.join(failed)}); logs under {server.home}")
    return run


def answer_all(server: AirflowServer, run_id: str, *, timeout: float) -> int:
    """Answer approval requests of the approval run until none is left and the run has finished."""
    answered = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with server.client() as admin:
            run = admin.get(f"/dags/writeoff_approval/dagRuns/{run_id}").json()
        if run["state"] in ("success", "failed"):
            return answered
        with httpx_client(server, "admin") as c:
            pending = [d for d in approve.pending(c, None) if d["task_instance"]["dag_run_id"] == run_id]
        for detail in pending:
            # Answer as the person Airflow assigned: the tier's approver, never the preparer.
            user = detail["assigned_users"][0]["id"]
            option = approve.OPTION["confirm" if approve.step_of(detail) == "confirm" else "approve"]
            with httpx_client(server, user) as c:
                approve.answer(c, detail, option, comment="demo: reviewed evidence, collection exhausted")
            answered += 1
            log.info("    %-10s answered %-7s on %s", user, option, detail["subject"])
        time.sleep(1)
    raise SystemExit(f"approval run {run_id} did not finish within {timeout:.0f} s; logs under {server.home}")


def httpx_client(server: AirflowServer, user: str):
    import httpx

    return httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {server.token(user)}"}, timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=20_000)
    parser.add_argument("--as-of", default="2026-11-24")
    parser.add_argument("--keep-running", action="store_true", help="leave Airflow running to look around in the UI")
    parser.add_argument("--ledger-url", help="the ledger database (default: a SQLite file under the demo folder)")
    parser.add_argument("--executor", choices=("local", "celery"), default="local")
    parser.add_argument("--metadata-url", help="Airflow's metadata database (default: SQLite; PostgreSQL for celery)")
    parser.add_argument("--broker-url", default=Celery.broker_url, help="the Celery broker (celery executor)")
    parser.add_argument("--celery-workers", type=int, default=2, help="Celery worker processes (celery executor)")
    args = parser.parse_args(argv)
    if args.executor == "celery" and not (args.metadata_url or "").startswith("postgresql"):
        parser.error("--executor celery needs --metadata-url postgresql+psycopg2://... (Celery refuses SQLite)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    started = time.monotonic()

    base = Path(os.environ.get("WRITEOFFS_DATA_DIR", ROOT / ".data")).resolve() / "demo"
    shutil.rmtree(base, ignore_errors=True)
    (base / "airflow").mkdir(parents=True)
    ledger_url = args.ledger_url or f"sqlite:///{base / 'ledger.db'}"
    env = {
        **os.environ,
        "WRITEOFFS_DATA_DIR": str(base),
        "WRITEOFFS_LEDGER_URL": ledger_url,
        "WRITEOFFS_SOURCES_DIR": str(base / "sources"),
        "WRITEOFFS_INGEST_SCHEDULE": "",  # manual only: the demo triggers the business date it wants
        # The audit chain's key, outside the ledger: a random key in a mode-0600 file, made below.
        "WRITEOFFS_AUDIT_KEY_FILE": str(base / "audit.key"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins")]),
    }

    step(1, f"sample data: {args.invoices:,} invoices as of {args.as_of}, ledger {ledger_url}")
    run_cli(
        "generate",
        "--invoices",
        str(args.invoices),
        "--as-of",
        args.as_of,
        "--out",
        str(base / "sources"),
        "--formats",
        "csv",
        "-q",
        env=env,
    )
    run_cli("audit-key", env=env)
    run_cli("init-db", env=env)

    celery = Celery(broker_url=args.broker_url, workers=args.celery_workers) if args.executor == "celery" else None
    workers = f", {args.celery_workers} Celery workers" if celery else ""
    step(2, f"starting Airflow (api-server, scheduler, dag-processor{workers}) with the project's DAGs")
    server = start_airflow(
        dag_files=sorted((ROOT / "dags").glob("*.py")),
        env={
            k: env[k]
            for k in (
                "WRITEOFFS_DATA_DIR",
                "WRITEOFFS_LEDGER_URL",
                "WRITEOFFS_SOURCES_DIR",
                "WRITEOFFS_INGEST_SCHEDULE",
                "WRITEOFFS_AUDIT_KEY_FILE",
            )
        },
        home=base / "airflow",
        metadata_url=args.metadata_url,
        celery=celery,
    )
    log.info("    Airflow UI %s  (logins in %s)", server.base_url, server.home / "passwords.json")
    try:
        step(3, "ar_aging_ingest: stage the ERP export, validate (GX), merge, age, tie out to the GL")
        server.trigger("ar_aging_ingest", f"demo__{args.as_of}", {"as_of": args.as_of, "sources": ["erp_csv"]})
        wait_finished(server, "ar_aging_ingest", timeout=600)

        step(4, "writeoff_candidates (on the aging asset): charge-off, policy selection, batches per tier")
        wait_finished(server, "writeoff_candidates", timeout=300)

        step(5, "allowance: EU01 (allowance method) reserves for its aging before any write-off draws on it")
        run_cli("allowance", "--as-of", args.as_of, env=env)

        step(6, "writeoff_approval: answering each request through the REST API as its assigned approver")
        run = server.wait_for(lambda: latest_run(server, "writeoff_approval"), timeout=120, what="the approval run")
        answered = answer_all(server, run["dag_run_id"], timeout=900)
        log.info("    %d answers given", answered)
        wait_finished(server, "writeoff_approval", timeout=60)

        step(7, "ledger_reconciliation (on the posting asset): sub-ledger vs GL, approved vs posted")
        # Its daily timetable may also have started a run when it was unpaused: wait for the posting's run.
        wait_finished(server, "ledger_reconciliation", timeout=300, run_type="asset_triggered")
    finally:
        if not args.keep_running:
            server.stop()

    print()
    run_cli("summary", env=env)
    print("\nThe worked example, as an auditor would trace it:")
    run_cli("trail", "INV-WORKED-45000", env=env)
    reports = base / "reports"
    print(f"\nReports (validation Data Docs, batch candidate lists, reconciliation): {reports}")
    print(f"Airflow home with task logs: {server.home}")
    log.info("demo finished in %.0f s", time.monotonic() - started)
    if args.keep_running:
        log.info("Airflow keeps running at %s; Ctrl-C to stop", server.base_url)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
