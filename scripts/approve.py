#!/usr/bin/env python
"""Answer write-off approval requests through Airflow's REST API (what an approver does in the UI).

    # list the requests waiting for you (all DAG runs)
    scripts/approve.py --user ar_manager --password ... list
    # approve batch 12, leaving two invoices out, with an internal comment
    scripts/approve.py --user ar_manager --password ... answer 12 approve --exclude INV-1,INV-7 --comment "..."
    # confirm what will be posted (second step), or reject
    scripts/approve.py --user ar_manager --password ... answer 12 confirm
    scripts/approve.py --user ar_manager --password ... answer 12 reject

Environment: AIRFLOW_API_URL (default http://127.0.0.1:8080), AIRFLOW_USER, AIRFLOW_PASSWORD.
The token comes from ``POST /auth/token``; requests are listed with ``GET /api/v2/dags/~/dagRuns/~/hitlDetails``
and answered with ``PATCH .../taskInstances/{task_id}/{map_index}/hitlDetails``. An answer the ledger would refuse
(not your tier, your own batch, an exclusion outside the batch) is refused before Airflow takes it, with the reason
(403/422: see docs/approvals.md, "Refusals"); the request stays open for someone who may decide.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Any

import httpx

DAG_ID = "writeoff_approval"
OPTION = {"approve": "Approve", "confirm": "Confirm", "reject": "Reject"}
_BATCH = re.compile(r"batch (\d+):")


def token(base: str, user: str, password: str) -> str:
    r = httpx.post(f"{base}/auth/token", json={"username": user, "password": password}, timeout=30)
    if r.status_code != 200 and r.status_code != 201:
        sys.exit(f"login failed for {user}: HTTP {r.status_code} {r.text}")
    return str(r.json()["access_token"])


def pending(client: httpx.Client, user: str | None) -> list[dict[str, Any]]:
    r = client.get(
        "/api/v2/dags/~/dagRuns/~/hitlDetails",
        params={"dag_id_pattern": DAG_ID, "response_received": False, "limit": 1000, "order_by": "created_at"},
    )
    r.raise_for_status()
    out = []
    for d in r.json()["hitl_details"]:
        if d["task_instance"]["state"] != "awaiting_input":
            continue  # answered, timed out, or not parked yet
        if user and d["assigned_users"] and user not in {u["id"] for u in d["assigned_users"]}:
            continue  # not yours (Airflow would answer 403)
        out.append(d)
    return out


def batch_of(detail: dict[str, Any]) -> int | None:
    m = _BATCH.search(detail["subject"])
    return int(m.group(1)) if m else None


def step_of(detail: dict[str, Any]) -> str:
    return "confirm" if detail["task_instance"]["task_id"].endswith("confirm") else "approve"


def answer(
    client: httpx.Client, detail: dict[str, Any], option: str, exclude: str = "", comment: str = ""
) -> dict[str, Any]:
    ti = detail["task_instance"]
    fields = set(detail.get("params") or {})
    if exclude and "exclude_invoice_refs" not in fields:
        # Never drop what the approver asked for: this request has no exclusion field (e.g. the confirm step).
        sys.exit(f"this request ({step_of(detail)} step) takes no exclusions: --exclude {exclude!r} cannot be sent")
    params: dict[str, Any] = {}
    if "comment" in fields:
        params["comment"] = comment or None
    elif comment:
        sys.exit(f"this request ({step_of(detail)} step) takes no comment: --comment cannot be sent")
    if "exclude_invoice_refs" in fields:
        params["exclude_invoice_refs"] = exclude or None  # a string of refs: the ledger parses and checks them
    url = (
        f"/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/{ti['map_index']}"
        "/hitlDetails"
    )
    for attempt in range(1, 6):
        r = client.patch(url, json={"chosen_options": [option], "params_input": params})
        # 5xx: on the SQLite metadata DB of `make up`/the demo a busy database can refuse the write ("database is
        # locked"); nothing was recorded, so answering again is safe. Anything else is final.
        if r.status_code < 500:
            break
        time.sleep(2 * attempt)
    if r.status_code != 200:
        try:
            why = r.json().get("detail")
        except ValueError:
            why = None
        sys.exit(f"answer refused: HTTP {r.status_code}: {why if isinstance(why, str) else r.text}")
    return dict(r.json())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=os.environ.get("AIRFLOW_API_URL", "http://127.0.0.1:8080"))
    p.add_argument("--user", default=os.environ.get("AIRFLOW_USER"))
    p.add_argument("--password", default=os.environ.get("AIRFLOW_PASSWORD"))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="requests waiting for you")
    a = sub.add_parser("answer", help="answer the pending request of a batch")
    a.add_argument("batch_id", type=int)
    a.add_argument("decision", choices=sorted(OPTION))
    a.add_argument("--exclude", default="", help="invoice refs to exclude (approve step), comma separated")
    a.add_argument("--comment", default="", help="internal comment (never shown to customers)")
    a.add_argument("--wait", type=float, default=0, help="seconds to wait for the request to appear")
    args = p.parse_args(argv)
    if not args.user or not args.password:
        p.error("--user and --password (or AIRFLOW_USER / AIRFLOW_PASSWORD) are required")

    base = args.url.rstrip("/")
    headers = {"Authorization": f"Bearer {token(base, args.user, args.password)}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        if args.cmd == "list":
            rows = pending(client, args.user)
            if args.json:
                listing = [{"batch_id": batch_of(d), "step": step_of(d), "subject": d["subject"]} for d in rows]
                print(json.dumps(listing))
            for d in [] if args.json else rows:
                print(f"batch {batch_of(d)}  step {step_of(d):<7}  {d['subject']}")
            return 0
        step = "confirm" if args.decision == "confirm" else None
        deadline = time.monotonic() + args.wait
        while True:
            mine = pending(client, args.user)
            match = [d for d in mine if batch_of(d) == args.batch_id and (not step or step_of(d) == step)]
            if match or time.monotonic() >= deadline:
                break
            time.sleep(1)
        if not match:
            print(f"no pending request for batch {args.batch_id} assigned to {args.user}", file=sys.stderr)
            return 2
        detail = match[0]
        if args.decision == "approve" and step_of(detail) != "approve":
            print(f"batch {args.batch_id} waits for confirmation, not approval", file=sys.stderr)
            return 2
        result = answer(client, detail, OPTION[args.decision], args.exclude, args.comment)
        summary = {"batch_id": args.batch_id, "step": step_of(detail), "chosen": result["chosen_options"]}
        print(json.dumps(summary) if args.json else f"answered {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
