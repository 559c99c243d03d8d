"""Builders for the approval tests: a proposed batch with evidence, a test policy file, REST answer helpers."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from itertools import count
from pathlib import Path

import httpx
import yaml
from sqlalchemy import Connection, insert

from tests.factories import customer, invoice, record_policy
from writeoffs.approvals import batch_hash_of
from writeoffs.db.schema import writeoff_batches, writeoffs
from writeoffs.policy import DEFAULT_POLICY_PATH

AS_OF = date(2026, 11, 24)
REASON = "uncollectible_after_collections"
_seq = count(1)

#: Tiers for the tests: two quick ones (18 s response timeout) to see expiry and escalation without waiting hours,
#: then the three business tiers. ``controller`` may also approve in the AR manager's tier (higher authority).
#: Four eyes: the quick tiers never (threshold at their batch limit), the AR manager's tier above 1,000 USD, the
#: controller and CFO tiers at every amount (the CFO confirms the controller's approvals, the controller the CFO's).
TEST_TIERS = [
    {"name": "quick_escalate", "limits": {"USD": "10"}, "batch_limits": {"USD": "100"}, "approvers": ["ar_manager"],
     "four_eyes_above": {"USD": "100"}, "response_timeout_hours": 0.005, "on_timeout": "escalate"},
    {"name": "quick", "limits": {"USD": "20"}, "batch_limits": {"USD": "200"}, "approvers": ["ar_manager"],
     "four_eyes_above": {"USD": "200"}, "response_timeout_hours": 0.005, "on_timeout": "expire"},
    {"name": "ar_manager", "limits": {"USD": "5000"}, "batch_limits": {"USD": "25000"},
     "approvers": ["ar_manager", "controller"], "four_eyes_above": {"USD": "1000"},
     "response_timeout_hours": 1, "on_timeout": "expire"},
    {"name": "controller", "limits": {"USD": "50000"}, "batch_limits": {"USD": "250000"},
     "approvers": ["controller"], "confirmers": ["controller", "cfo"],
     "response_timeout_hours": 1, "on_timeout": "expire"},
    {"name": "cfo", "approvers": ["cfo"], "confirmers": ["controller"], "response_timeout_hours": 1,
     "on_timeout": "expire"},
]  # fmt: skip


def write_policy(path: Path, tiers: Sequence[dict] = TEST_TIERS) -> Path:
    """The shipped policy with the approval tiers replaced (everything else stays valid)."""
    doc = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    doc["approval"] = {"tiers": list(tiers)}
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def make_batch(
    conn: Connection,
    amounts: Sequence[str],
    *,
    tier: str,
    prepared_by: str = "preparer",
    as_of: date = AS_OF,
    entity: str = "US01",
    prefix: str | None = None,
) -> tuple[int, list[str]]:
    """A proposed batch (what writeoff_candidates writes) with one customer and one invoice per amount."""
    n = next(_seq)
    prefix = prefix or f"B{n}"
    # The batch records the policy these tests run with (its tiers govern approval and posting, not the file's).
    policy = record_policy(conn, f"{prefix}-{n}", version="test", approval={"tiers": list(TEST_TIERS)})
    cid = customer(conn, entity, ref=f"C-{prefix}")
    items = []
    for k, amount in enumerate(amounts, 1):
        ref = f"INV-{prefix}-{k}"
        iid = invoice(conn, cid, entity_code=entity, ref=ref, amount=amount, days_past_due=400 + 10 * k, as_of=as_of)
        items.append((iid, ref, Decimal(amount)))
    batch_id = conn.execute(
        insert(writeoff_batches)
        .values(
            batch_key=f"{as_of}:{entity}:USD:{tier}:{prefix}",
            entity_code=entity,
            currency="USD",
            tier=tier,
            as_of_date=as_of,
            policy_version=policy.version,
            policy_hash=policy.content_hash,
            status="proposed",
            item_count=len(items),
            total_amount=sum((a for _, _, a in items), Decimal(0)),
            batch_hash=batch_hash_of((ref, a, REASON) for _, ref, a in items),
            prepared_by=prepared_by,
        )
        .returning(writeoff_batches.c.id)
    ).scalar_one()
    conn.execute(
        insert(writeoffs),
        [
            {
                "batch_id": batch_id,
                "invoice_id": iid,
                "as_of_date": as_of,
                "currency": "USD",
                "amount": a,
                "reason_code": REASON,
                "rule": "uncollectible_365",
                "evidence": json.dumps({"contact_attempts": 12, "demand_letters": 3, "agency_days": 90}),
                "tier": tier,
                "policy_version": policy.version,
                "policy_hash": policy.content_hash,
                "status": "candidate",
                "idempotency_key": f"wo:{as_of}:{policy.content_hash}:{iid}",
            }
            for iid, _, a in items
        ],
    )
    return batch_id, [ref for _, ref, _ in items]


def pending_requests(client: httpx.Client, dag_id: str, run_id: str) -> list[dict]:
    r = client.get(f"/dags/{dag_id}/dagRuns/{run_id}/hitlDetails", params={"response_received": False, "limit": 100})
    r.raise_for_status()
    return [d for d in r.json()["hitl_details"] if d["task_instance"]["state"] == "awaiting_input"]


def answer(
    client: httpx.Client,
    detail: dict,
    option: str,
    params_input: dict | None = None,
) -> httpx.Response:
    """PATCH the answer as the client's user. Sent again (at most twice more) only when Airflow's SQLite metadata
    database refused the write - HTTP 500 "Database error": another Airflow process committed between the handler's
    read and its write (SQLite's WAL snapshot, no busy wait for that case), and the handler's transaction was rolled
    back, so nothing was recorded; a person would click again. Seen once in CI under load; production runs
    Airflow on PostgreSQL. Any other answer (including our gate's 403/422) is returned as it came."""
    ti = detail["task_instance"]
    path = (
        f"/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/{ti['map_index']}/hitlDetails"
    )
    for attempt in range(3):
        r = client.patch(path, json={"chosen_options": [option], "params_input": params_input or {}})
        if not (r.status_code == 500 and "Database error" in r.text) or attempt == 2:
            return r
        time.sleep(1)
    raise AssertionError("unreachable")
