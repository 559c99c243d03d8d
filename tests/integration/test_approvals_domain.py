"""Approval records: segregation of duties server-side, refusals audited, replays idempotent, hashes checked."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select, update

from tests import factories as f
from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from writeoffs import audit
from writeoffs.approvals import batch_hash_of, record_decision, route_to_entitled_tier, verify_batch_approval
from writeoffs.db.schema import approvals, audit_log, writeoff_batches, writeoffs
from writeoffs.errors import AnswerNotTaken, ApprovalError, SegregationOfDuties
from writeoffs.posting import post_batch
from writeoffs.tiers import SYSTEM_ACTOR

D = Decimal


def decide(engine: Engine, batch: int, step: str, approver: str, decision: str, **kw) -> None:
    with engine.begin() as conn:
        record_decision(conn, batch_id=batch, step=step, approver=approver, decision=decision, tiers=TIERS, **kw)


def simple_batch(engine: Engine, amounts=("1000.00", "250.00"), tier="controller", prepared_by="ar_clerk") -> int:
    with engine.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        items = [
            (f.invoice(conn, cid, ref=f"INV-A{n}", amount=a, days_past_due=400), a, "uncollectible_after_collections")
            for n, a in enumerate(amounts)
        ]
        return make_batch(conn, items, tier=tier, prepared_by=prepared_by)


def state(engine: Engine, batch: int) -> tuple[str, int, list[str]]:
    with engine.connect() as conn:
        status = conn.execute(select(writeoff_batches.c.status).where(writeoff_batches.c.id == batch)).scalar_one()
        n = conn.execute(select(func.count()).select_from(approvals)).scalar_one()
        refused = [
            json.loads(d)["reason"]
            for d in conn.execute(select(audit_log.c.details).where(audit_log.c.action == "approval.refused")).scalars()
        ]
    return status, n, refused


@pytest.mark.parametrize(
    ("approver", "prepared_by", "error", "message"),
    [
        ("controller", "controller", SegregationOfDuties, "nobody may approve their own batch"),
        ("CONTROLLER ", "controller", SegregationOfDuties, "nobody may approve their own batch"),  # no case games
        ("ar_manager", "ar_clerk", SegregationOfDuties, "is not an approver of tier 'controller'"),
        ("mallory", "ar_clerk", SegregationOfDuties, "is not an approver of tier 'controller'"),
    ],
)
def test_unentitled_approver_is_refused_and_the_attempt_audited(
    ledger: Engine, approver: str, prepared_by: str, error: type, message: str
) -> None:
    batch = simple_batch(ledger, prepared_by=prepared_by)

    with pytest.raises(error, match=message):
        decide(ledger, batch, "approve", approver, "approved")

    status, n, refused = state(ledger, batch)
    assert (status, n) == ("proposed", 0)  # nothing recorded ...
    assert len(refused) == 1 and message in refused[0]  # ... except the refused attempt, committed on its own
    with ledger.connect() as conn:
        assert set(conn.execute(select(writeoffs.c.status)).scalars()) == {"candidate"}
        assert audit.verify(conn) == []


def test_over_limit_is_refused(ledger: Engine) -> None:
    batch = simple_batch(ledger, amounts=("6000.00", "10.00"), tier="ar_manager")

    # AnswerNotTaken: another answer (an exclusion, a higher tier) can cure it; the approval glue matches the class.
    with pytest.raises(AnswerNotTaken, match=r"largest item 6,000.00 USD exceeds tier 'ar_manager' item limit 5,000"):
        decide(ledger, batch, "approve", "ar_manager", "approved")
    assert state(ledger, batch)[:2] == ("proposed", 0)


def test_batch_total_over_the_tier_batch_limit_is_refused(ledger: Engine) -> None:
    """Many items under the per-item limit do not add up to a free pass: the batch limit binds the total."""
    batch = simple_batch(ledger, amounts=("4500.00",) * 6, tier="ar_manager")  # 27,000 > 25,000

    with pytest.raises(AnswerNotTaken, match=r"batch total 27,000.00 USD exceeds tier 'ar_manager' batch limit 25,000"):
        decide(ledger, batch, "approve", "ar_manager", "approved")
    assert state(ledger, batch)[:2] == ("proposed", 0)
    # Excluding one item brings the total to 22,500: within both limits.
    decide(ledger, batch, "approve", "ar_manager", "approved", excluded_invoice_refs=["INV-A0"])


def test_posting_rechecks_the_batch_limit_of_the_tiers_it_is_given(ledger: Engine) -> None:
    """Approved under looser limits (e.g. a policy edited in between), posting re-checks and refuses."""
    batch = simple_batch(ledger, amounts=("4500.00",) * 6, tier="ar_manager")
    loose = [replace(t, batch_limits={"USD": D("1000000")}) if t.name == "ar_manager" else t for t in TIERS]
    approve(ledger, batch, approver="ar_manager", tiers=loose)

    with pytest.raises(ApprovalError, match=r"batch total 27,000.00 USD exceeds tier 'ar_manager' batch limit"):
        post_batch(ledger, batch, actor="system", tiers=TIERS, posting_date=AS_OF)
    with ledger.connect() as conn:
        assert set(conn.execute(select(writeoffs.c.status)).scalars()) == {"approved"}


def test_a_currency_without_a_limit_cannot_be_approved_by_anyone(ledger: Engine) -> None:
    """The attack: 10,000,000 CHF under tiers that name no CHF limit. Missing = refused, even for the top tier."""
    with ledger.begin() as conn:
        f.entity(conn, code="CH01", currency="CHF")
        cid = f.customer(conn, entity_code="CH01")
        inv = f.invoice(conn, cid, entity_code="CH01", ref="INV-CHF", amount="10000000.00", currency="CHF",
                        days_past_due=400)  # fmt: skip
        items = [(inv, "10000000.00", "uncollectible_after_collections")]
        low = make_batch(conn, items, tier="ar_manager", currency="CHF", entity="CH01")
    for tier, who in (("ar_manager", "ar_manager"), ("cfo", "cfo")):
        with ledger.begin() as conn:
            conn.execute(update(writeoff_batches).where(writeoff_batches.c.id == low).values(tier=tier))
        with pytest.raises(ApprovalError, match=f"tier '{tier}' has no limit configured for CHF") as refused:
            decide(ledger, low, "approve", who, "approved")
        assert not isinstance(refused.value, AnswerNotTaken)  # no answer can cure it: never a request left open
    assert state(ledger, low)[:2] == ("proposed", 0)


def test_excluding_the_large_item_brings_the_batch_within_limit(ledger: Engine) -> None:
    batch = simple_batch(ledger, amounts=("6000.00", "10.00"), tier="ar_manager")

    decide(ledger, batch, "approve", "ar_manager", "approved", excluded_invoice_refs=["INV-A0"], comment="dispute?")
    decide(ledger, batch, "confirm", "ar_manager", "confirmed")

    with ledger.connect() as conn:
        rows = dict(conn.execute(select(writeoffs.c.amount, writeoffs.c.status)).all())
        appr = conn.execute(select(approvals).where(approvals.c.step == "approve")).one()
        summary = verify_batch_approval(conn, batch, TIERS)
    assert rows == {D("6000"): "excluded", D("10"): "approved"}
    assert appr.limit_amount == D("5000") and json.loads(appr.excluded_invoice_refs) == ["INV-A0"]
    assert appr.batch_hash == batch_hash_of([("INV-A1", D("10"), "uncollectible_after_collections")])
    assert (summary.approver, summary.max_item, summary.item_count) == ("ar_manager", D("10"), 1)

    report = post_batch(ledger, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF)
    assert (report.posted, report.amounts) == (1, {"USD": D("10")})


def test_excluding_an_invoice_outside_the_batch_is_refused(ledger: Engine) -> None:
    batch = simple_batch(ledger)
    with pytest.raises(AnswerNotTaken, match=r"excluded invoices \['INV-NOPE'\] are not"):
        decide(ledger, batch, "approve", "controller", "approved", excluded_invoice_refs=["INV-NOPE"])
    # Refs are case-sensitive: no fuzzy matching on money (the one exclusion rule; the approval form has no other).
    with pytest.raises(AnswerNotTaken, match=r"excluded invoices \['inv-a1'\] are not"):
        decide(ledger, batch, "approve", "controller", "approved", excluded_invoice_refs=["INV-A0", "inv-a1"])
    assert state(ledger, batch)[:2] == ("proposed", 0)


def test_replaying_the_same_decision_is_idempotent_and_a_different_one_refused(ledger: Engine) -> None:
    batch = simple_batch(ledger)
    decide(ledger, batch, "approve", "controller", "approved")
    with ledger.connect() as conn:
        audits_before = audit.count(conn)

    decide(ledger, batch, "approve", "controller", "approved")  # retried task
    with pytest.raises(ApprovalError, match="already decided: approved by controller"):
        decide(ledger, batch, "approve", "controller", "rejected")

    status, n, refused = state(ledger, batch)
    assert (status, n, len(refused)) == ("approved", 1, 1)
    with ledger.connect() as conn:
        assert audit.count(conn) == audits_before + 1  # only the refused attempt


def test_confirm_needs_an_approval_first(ledger: Engine) -> None:
    batch = simple_batch(ledger)
    with pytest.raises(ApprovalError, match="step 'confirm' needs status approved"):
        decide(ledger, batch, "confirm", "controller", "confirmed")


def test_full_flow_statuses_and_audit_trail(ledger: Engine) -> None:
    batch = simple_batch(ledger)
    approve(ledger, batch, approver="controller")

    with ledger.connect() as conn:
        batch_row = conn.execute(select(writeoff_batches)).one()
        acts = [
            (r.actor, r.action, json.loads(r.details)) for r in conn.execute(select(audit_log).order_by(audit_log.c.id))
        ]
    assert batch_row.status == "confirmed" and batch_row.decided_at is not None
    assert [(a, b) for a, b, _ in acts] == [("controller", "approval.approved"), ("cfo", "approval.confirmed")]
    details = acts[0][2]
    assert details["policy_version"] == "2026.11-test" and details["comment"] == "reviewed evidence"
    assert details["batch_hash"] == batch_row.batch_hash  # nothing excluded: what was approved is what was shown


def test_rejection_stops_the_batch(ledger: Engine) -> None:
    batch = simple_batch(ledger)
    decide(ledger, batch, "approve", "controller", "rejected", comment="customer still trading")

    with ledger.connect() as conn:
        assert set(conn.execute(select(writeoffs.c.status)).scalars()) == {"rejected"}
    assert state(ledger, batch)[0] == "rejected"
    with pytest.raises(ApprovalError, match="status is 'rejected'"):
        post_batch(ledger, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF)


@pytest.mark.parametrize(
    ("actor", "decision", "message"),
    [
        ("cfo", "escalated", "can only be recorded by the approval system"),
        ("controller", "expired", "can only be recorded by the approval system"),
        ("system:hitl-timeout", "expired", "can only be recorded by the approval system"),
        (SYSTEM_ACTOR, "approved", "cannot record a person's decision"),
        (SYSTEM_ACTOR, "rejected", "cannot record a person's decision"),
    ],
)
def test_system_only_transitions(ledger: Engine, actor: str, decision: str, message: str) -> None:
    """The attack: through the Python API, a person records an escalation or an expiry (or the system approves)."""
    batch = simple_batch(ledger)
    with pytest.raises(SegregationOfDuties, match=message):
        decide(ledger, batch, "approve", actor, decision)
    status, n, refused = state(ledger, batch)
    assert (status, n) == ("proposed", 0) and len(refused) == 1 and message in refused[0]


def test_timeout_expires_or_escalates(ledger: Engine) -> None:
    expiring = simple_batch(ledger)
    decide(ledger, expiring, "approve", SYSTEM_ACTOR, "expired")
    assert state(ledger, expiring)[0] == "expired"

    with ledger.begin() as conn:
        cid = f.customer(conn)
        inv = f.invoice(conn, cid, amount="70.00", days_past_due=400)
        escalating = make_batch(conn, [(inv, "70.00", "small_balance")], tier="ar_manager")
    decide(ledger, escalating, "approve", SYSTEM_ACTOR, "escalated")
    with ledger.connect() as conn:
        row = conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == escalating)).one()
    assert (row.tier, row.status) == ("controller", "awaiting_approval")
    with pytest.raises(SegregationOfDuties):  # the lower tier may no longer decide
        decide(ledger, escalating, "approve", "ar_manager", "approved")
    approve(ledger, escalating, approver="controller")


def test_items_changed_since_proposal_are_refused(ledger: Engine) -> None:
    batch = simple_batch(ledger)
    with ledger.begin() as conn:
        conn.execute(update(writeoffs).where(writeoffs.c.amount == D("250")).values(amount=D("2500")))
    with pytest.raises(ApprovalError, match="items changed since proposal"):
        decide(ledger, batch, "approve", "controller", "approved")


def test_auto_tier_batches_take_no_human_decision(ledger: Engine) -> None:
    batch = simple_batch(ledger, amounts=("5.00",), tier="auto")
    with pytest.raises(ApprovalError, match="auto tier"):
        decide(ledger, batch, "approve", "controller", "approved")


def test_confirmer_must_also_be_entitled(ledger: Engine) -> None:
    batch = simple_batch(ledger)
    decide(ledger, batch, "approve", "controller", "approved")
    with pytest.raises(SegregationOfDuties, match="'ar_clerk' prepared batch"):
        decide(ledger, batch, "confirm", "ar_clerk", "confirmed")
    assert state(ledger, batch)[:2] == ("approved", 1)


def test_a_batch_above_its_tiers_batch_limit_goes_up_before_anyone_is_asked(ledger: Engine) -> None:
    batch = simple_batch(ledger, amounts=("4500.00",) * 6, tier="ar_manager")  # 27,000 > ar_manager's 25,000

    assert route_to_entitled_tier(ledger, batch, TIERS) == "controller"
    with ledger.connect() as conn:
        row = conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == batch)).one()
        escalations = conn.execute(
            select(audit_log.c.actor, audit_log.c.details).where(audit_log.c.action == "approval.escalated")
        ).all()
    assert (row.tier, row.status) == ("controller", "awaiting_approval")
    assert [a for a, _ in escalations] == [SYSTEM_ACTOR]
    assert "batch total 27,000.00 USD exceeds tier 'ar_manager' batch limit" in json.loads(escalations[0][1])["comment"]
    assert route_to_entitled_tier(ledger, batch, TIERS) == "controller"  # idempotent: nothing more to do
    approve(ledger, batch, approver="controller")


def test_routing_refuses_a_batch_nobody_may_approve(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn, code="CH01", currency="CHF")
        cid = f.customer(conn, entity_code="CH01")
        inv = f.invoice(conn, cid, entity_code="CH01", ref="INV-CHF", amount="10000000.00", currency="CHF",
                        days_past_due=400)  # fmt: skip
        batch = make_batch(conn, [(inv, "10000000.00", "uncollectible_after_collections")], tier="ar_manager",
                           currency="CHF", entity="CH01")  # fmt: skip
    with pytest.raises(ApprovalError, match="cannot be approved by anyone: tier 'cfo' has no limit configured for CHF"):
        route_to_entitled_tier(ledger, batch, TIERS)


def test_a_dry_run_checks_and_audits_a_refusal_but_records_nothing_else(ledger: Engine) -> None:
    # The api-server's answer gate asks with dry_run before Airflow takes an answer: it must never stand in for the
    # task's real recording (an approval recorded by the gate would be one nobody confirmed went through Airflow).
    batch = simple_batch(ledger)
    with pytest.raises(SegregationOfDuties, match="is not an approver of tier 'controller'"):
        decide(ledger, batch, "approve", "mallory", "approved", dry_run=True)
    status, n, refused = state(ledger, batch)
    assert (status, n) == ("proposed", 0) and len(refused) == 1  # the refusal is audited all the same
    decide(ledger, batch, "approve", "controller", "approved", dry_run=True, excluded_invoice_refs=["INV-A1"])
    status, n, refused = state(ledger, batch)
    assert (status, n, len(refused)) == ("proposed", 0, 1)
    with ledger.connect() as conn:
        assert {s for (s,) in conn.execute(select(writeoffs.c.status).where(writeoffs.c.batch_id == batch))} == {
            "candidate"
        }
        assert not conn.execute(select(audit_log.c.id).where(audit_log.c.action == "approval.approved")).first()
    decide(ledger, batch, "approve", "controller", "approved")  # the real answer is still free to be recorded
    assert state(ledger, batch)[:2] == ("approved", 1)


def test_excluding_every_item_is_refused_and_rejecting_is_the_answer(ledger: Engine) -> None:
    batch = simple_batch(ledger)
    with pytest.raises(AnswerNotTaken, match="every item is excluded; reject the batch instead"):
        decide(ledger, batch, "approve", "controller", "approved", excluded_invoice_refs=["INV-A0", "INV-A1"])
    assert state(ledger, batch)[:2] == ("proposed", 0)
    decide(ledger, batch, "approve", "controller", "rejected")
    assert state(ledger, batch)[:2] == ("rejected", 1)


@pytest.mark.parametrize(
    "params",
    [
        {"exclude_invoice_refs": {"INV-A0": True}, "comment": None},  # not refs
        {"exclude_invoice_refs": ["INV-A0", 7], "comment": None},
        {"exclude_invoice_refs": None, "comment": ["approved by cfo"]},  # not text
    ],
)
def test_an_answer_whose_fields_have_the_wrong_shape_is_refused_and_audited(ledger: Engine, params: dict) -> None:
    # What the HITL form sends is hostile until checked: a field of another type is a refusal the answerer can cure
    # (the request stays open), never a crash of the approval task or an exclusion guessed from it.
    from writeoffs_airflow.answers import AnswerRefused, take_answer

    batch = simple_batch(ledger)
    for dry_run in (True, False):
        with pytest.raises(AnswerRefused, match="must be") as refused:
            take_answer(
                ledger,
                batch_id=batch,
                step="approve",
                approver="controller",
                option="Approve",
                params=params,
                tiers=TIERS,
                dry_run=dry_run,
            )
        assert refused.value.who is False
    status, n, reasons = state(ledger, batch)
    assert (status, n) == ("proposed", 0) and len(reasons) == 2 and "must be" in reasons[0]
