"""Approval runs never strand batches: every proposed batch up to the business date is claimed, by one run only.

The finding: ``writeoff_approval`` claimed only the batches *of* its business date; while one run stayed open for
days, later days' triggers piled up, the next run kept only the newest date, and the batches of the days in between
stayed ``proposed`` forever while their invoices were skipped as "in flight".
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import Engine, select

from tests.factories import entity
from tests.integration.approval_support import AS_OF, TEST_TIERS, make_batch, write_policy
from writeoffs.approvals import governing_tiers, record_decision
from writeoffs.db.schema import writeoff_batches as b
from writeoffs.db.schema import writeoffs
from writeoffs_airflow.hitl import claim_batches, post_confirmed


def test_batches_of_missed_days_are_claimed_once_by_the_next_run(ledger: Engine, ledger_env) -> None:
    ledger_env(ledger)
    with ledger.begin() as conn:
        entity(conn)
        older, _ = make_batch(conn, ["100.00"], tier="ar_manager", as_of=AS_OF - timedelta(days=2))
        today, _ = make_batch(conn, ["200.00"], tier="ar_manager", as_of=AS_OF)
        later, _ = make_batch(conn, ["300.00"], tier="ar_manager", as_of=AS_OF + timedelta(days=1))

    assert claim_batches(AS_OF.isoformat(), run_id="run-a") == [older, today]  # the missed day too, not the future
    assert claim_batches(AS_OF.isoformat(), run_id="run-b") == []  # never shared with a concurrent run
    assert claim_batches(AS_OF.isoformat(), run_id="run-a") == [older, today]  # a retry gets its own back
    assert claim_batches((AS_OF + timedelta(days=1)).isoformat(), run_id="run-c") == [later]
    with ledger.connect() as conn:
        rows = dict(conn.execute(select(b.c.id, b.c.dag_run_id)).all())
    assert rows == {older: "run-a", today: "run-a", later: "run-c"}


def test_the_recorded_policy_governs_posting_not_todays_file(ledger: Engine, ledger_env, tmp_path, monkeypatch) -> None:
    """The finding: approval and posting read tiers from the *current* policy file, so editing it between approval
    and posting changed what was checked. The version recorded on the batch governs; today's file does not."""
    ledger_env(ledger)
    with ledger.begin() as conn:
        entity(conn)
        batch, _ = make_batch(conn, ["4000.00", "3000.00"], tier="ar_manager")  # recorded: ar_manager <= 5,000/item
        tiers = governing_tiers(conn, batch)
    for step, decision, who in (("approve", "approved", "ar_manager"), ("confirm", "confirmed", "controller")):
        with ledger.begin() as conn:
            record_decision(conn, batch_id=batch, step=step, approver=who, decision=decision, tiers=tiers)
    # Today's file: the AR manager's limits cut to 1,000 (with the recorded version, posting would now be refused).
    edited = [dict(t) for t in TEST_TIERS]
    for t in edited:
        if t["name"] == "ar_manager":
            t["limits"], t["batch_limits"] = {"USD": "1000"}, {"USD": "1000"}
    monkeypatch.setenv("WRITEOFFS_POLICY_PATH", str(write_policy(tmp_path / "policy.yaml", edited)))

    post_confirmed(batch)

    with ledger.connect() as conn:
        posted = conn.execute(select(writeoffs.c.amount).where(writeoffs.c.status == "posted")).scalars().all()
    assert sorted(posted) == [Decimal("3000"), Decimal("4000")]
