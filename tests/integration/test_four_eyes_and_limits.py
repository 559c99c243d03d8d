"""Four eyes and narrower limits, enforced in the ledger layer (issue 13, findings 3 and 4).

The attacks: one person approves and confirms a large batch alone; the person who routed the batch for approval
answers it; a confirm row written by raw SQL by the approver (with a matching audit row forged through the app's
own audit function) gets the batch posted; an AR manager writes off a settlement or an enterprise customer above
the narrower limit the policy sets for it; a user with a personal limit approves above it. Each was possible
before: the same entitled person could approve and confirm at any amount, nobody recorded who routed a batch,
and limits existed per tier and currency only.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select, update

from tests import factories as f
from tests.integration.posting_support import AS_OF, TIERS, make_batch
from writeoffs import audit
from writeoffs.approvals import (
    eligible_answerers,
    record_decision,
    route_to_entitled_tier,
    verify_batch_approval,
)
from writeoffs.db.schema import approvals, writeoff_batches, writeoffs
from writeoffs.errors import ApprovalError, ConfigError, SegregationOfDuties
from writeoffs.policy import parse_policy
from writeoffs.policy.schema import DEFAULT_POLICY_PATH
from writeoffs.posting import post_batch
from writeoffs.tiers import Restriction

D = Decimal
UNCOLLECTIBLE = "uncollectible_after_collections"


def batch_of(engine: Engine, items, *, tier: str, segment: str = "default", prepared_by: str = "ar_clerk") -> int:
    """A proposed batch of one customer (in ``segment``) with one invoice per ``(amount, reason)``."""
    with engine.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn, segment=segment)
        rows = [(f.invoice(conn, cid, amount=a, days_past_due=400), a, reason) for a, reason in items]
        return make_batch(conn, rows, tier=tier, prepared_by=prepared_by)


def decide(engine: Engine, batch: int, step: str, who: str, decision: str, tiers=TIERS) -> None:
    with engine.begin() as conn:
        record_decision(conn, batch_id=batch, step=step, approver=who, decision=decision, tiers=tiers)


def status(engine: Engine, batch: int) -> str:
    with engine.connect() as conn:
        return conn.execute(select(writeoff_batches.c.status).where(writeoff_batches.c.id == batch)).scalar_one()


# ------------------------------------------------------------------------------------------------ four eyes


def test_the_approver_cannot_confirm_a_controller_batch_and_a_second_person_can(ledger: Engine) -> None:
    batch = batch_of(ledger, [("30000.00", UNCOLLECTIBLE)], tier="controller")
    decide(ledger, batch, "approve", "controller", "approved")
    with pytest.raises(SegregationOfDuties, match="four eyes: 'controller' approved this batch"):
        decide(ledger, batch, "confirm", "controller", "confirmed")
    with pytest.raises(SegregationOfDuties, match="four eyes"):
        decide(ledger, batch, "confirm", " Controller ", "confirmed")  # no case or blank games
    assert status(ledger, batch) == "approved"
    # Who the UI asks: the tier's confirmers minus the approver.
    with ledger.connect() as conn:
        assert eligible_answerers(conn, batch, "confirm", TIERS) == ("cfo",)
    decide(ledger, batch, "confirm", "cfo", "confirmed")
    report = post_batch(ledger, batch, actor="airflow:writeoff_approval", tiers=TIERS, posting_date=AS_OF)
    assert report.status == "posted"


def test_below_the_four_eyes_amount_the_approver_may_finalise_alone(ledger: Engine) -> None:
    """AR manager tier: four eyes above 10,000 USD only (policy). 8,000 in two items: the same person confirms."""
    small = batch_of(ledger, [("4000.00", UNCOLLECTIBLE), ("4000.00", UNCOLLECTIBLE)], tier="ar_manager")
    decide(ledger, small, "approve", "ar_manager", "approved")
    decide(ledger, small, "confirm", "ar_manager", "confirmed")
    big = batch_of(ledger, [("4000.00", UNCOLLECTIBLE)] * 3, tier="ar_manager")  # 12,000 > 10,000
    decide(ledger, big, "approve", "ar_manager", "approved")
    with pytest.raises(SegregationOfDuties, match=r"second person above 10,000.00 USD"):
        decide(ledger, big, "confirm", "ar_manager", "confirmed")
    decide(ledger, big, "confirm", "controller", "confirmed")  # a confirmer of the tier, not its approver
    with ledger.connect() as conn:
        assert verify_batch_approval(conn, small, TIERS).confirmer == "ar_manager"
        assert verify_batch_approval(conn, big, TIERS).confirmer == "controller"


def test_a_confirmer_is_not_thereby_an_approver(ledger: Engine) -> None:
    batch = batch_of(ledger, [("30000.00", UNCOLLECTIBLE)], tier="controller")
    with pytest.raises(SegregationOfDuties, match="is not an approver of tier 'controller'"):
        decide(ledger, batch, "approve", "cfo", "approved")


def test_a_confirm_row_forged_by_the_approver_is_refused_at_posting(ledger: Engine) -> None:
    """The insider path around record_decision: the approver rewrites the confirm row (and its audit witness,
    through the app's own audit function) to their own name. Posting's re-check refuses the batch."""
    batch = batch_of(ledger, [("30000.00", UNCOLLECTIBLE)], tier="controller")
    decide(ledger, batch, "approve", "controller", "approved")
    decide(ledger, batch, "confirm", "cfo", "confirmed")
    with ledger.begin() as conn:
        conn.execute(update(approvals).where(approvals.c.step == "confirm").values(approver="controller"))
        digest = conn.execute(select(approvals.c.batch_hash).where(approvals.c.step == "confirm")).scalar_one()
        audit.append(
            conn,
            actor="controller",
            action="approval.confirmed",
            object_type="writeoff_batch",
            object_id=batch,
            details={"batch_hash": digest},
        )
    with pytest.raises(ApprovalError, match="four eyes"):
        post_batch(ledger, batch, actor="airflow:writeoff_approval", tiers=TIERS, posting_date=AS_OF)


def test_whoever_routed_the_batch_may_answer_no_step(ledger: Engine) -> None:
    """The approval run's triggering user is recorded on the batches it claims (``routed_by``)."""
    batch = batch_of(ledger, [("30000.00", UNCOLLECTIBLE)], tier="controller")
    with ledger.begin() as conn:
        conn.execute(update(writeoff_batches).where(writeoff_batches.c.id == batch).values(routed_by="controller"))
    with pytest.raises(SegregationOfDuties, match="triggered the approval run that routed batch"):
        decide(ledger, batch, "approve", "controller", "approved")
    with ledger.connect() as conn, pytest.raises(SegregationOfDuties, match="nobody may answer the approve step"):
        eligible_answerers(conn, batch, "approve", TIERS)


def test_nobody_is_asked_to_approve_a_batch_nobody_could_then_confirm(ledger: Engine) -> None:
    """Controller tier: the controller approves, the controller or the CFO confirms, four eyes at every amount. When
    the CFO routed the batch, nobody may confirm after the controller's approval: the approval is refused before it
    is given (and the UI asks nobody), not after the approver acted with the batch left stuck at "approved"."""
    batch = batch_of(ledger, [("30000.00", UNCOLLECTIBLE)], tier="controller")
    with ledger.begin() as conn:
        conn.execute(update(writeoff_batches).where(writeoff_batches.c.id == batch).values(routed_by="cfo"))
    with ledger.connect() as conn, pytest.raises(SegregationOfDuties, match="nobody could then confirm"):
        eligible_answerers(conn, batch, "approve", TIERS)
    with pytest.raises(SegregationOfDuties, match="nobody could then confirm"):
        decide(ledger, batch, "approve", "controller", "approved")
    assert status(ledger, batch) == "proposed"
    # A rejection is still open to the approver: it needs no confirmation.
    decide(ledger, batch, "approve", "controller", "rejected")
    assert status(ledger, batch) == "rejected"


def test_an_approver_after_whom_a_confirmer_remains_is_still_asked(ledger: Engine) -> None:
    """Two approvers, one confirmer who is also an approver, four eyes: only the approver after whom the
    confirmer remains is asked, and the other one's approval is refused before it is given."""
    tiers = tuple(
        replace(t, approvers=("controller", "cfo"), confirmers=("cfo",)) if t.name == "controller" else t for t in TIERS
    )
    batch = batch_of(ledger, [("30000.00", UNCOLLECTIBLE)], tier="controller")
    with ledger.connect() as conn:
        assert eligible_answerers(conn, batch, "approve", tiers) == ("controller",)
    with pytest.raises(SegregationOfDuties, match="nobody could then confirm"):
        decide(ledger, batch, "approve", "cfo", "approved", tiers)
    decide(ledger, batch, "approve", "controller", "approved", tiers)
    decide(ledger, batch, "confirm", "cfo", "confirmed", tiers)
    assert status(ledger, batch) == "confirmed"


def test_a_policy_whose_top_tier_has_no_second_person_is_refused() -> None:
    import yaml

    doc = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    doc["approval"]["tiers"][-1]["confirmers"] = ["cfo"]
    with pytest.raises(ConfigError, match=r"tier .cfo.: four eyes applies .* add someone else to confirmers"):
        parse_policy(yaml.safe_dump(doc))
    # The shipped policy: four eyes on for the controller and CFO tiers at every amount, above 10,000 for AR.
    tiers = {t.name: t for t in parse_policy(DEFAULT_POLICY_PATH.read_text(encoding="utf-8")).tiers}
    assert tiers["controller"].four_eyes("USD", D("0.01")) and tiers["cfo"].four_eyes("EUR", D("0.01"))
    assert not tiers["ar_manager"].four_eyes("USD", D("10000")) and tiers["ar_manager"].four_eyes("USD", D("10000.01"))
    assert tiers["ar_manager"].four_eyes("CHF", D("1"))  # a currency it does not list: four eyes (fail closed)


# ------------------------------------------------------------------------------------------------ narrower limits


def _restricted(*restrictions: Restriction):
    """The default tiers with restrictions on the AR manager's tier (4 people: ar_manager, ar_junior, ...)."""
    out = []
    for t in TIERS:
        if t.name == "ar_manager":
            t = replace(t, approvers=("ar_manager", "ar_junior"), restrictions=restrictions)
        out.append(t)
    return tuple(out)


def test_a_reason_limit_narrows_the_tier_and_the_batch_goes_up(ledger: Engine) -> None:
    tiers = _restricted(Restriction("reason", "settlement_remainder", {"USD": D("2500")}))
    ok = batch_of(ledger, [("4000.00", UNCOLLECTIBLE), ("2500.00", "settlement_remainder")], tier="ar_manager")
    decide(ledger, ok, "approve", "ar_manager", "approved", tiers=tiers)
    over = batch_of(ledger, [("1000.00", UNCOLLECTIBLE), ("2500.01", "settlement_remainder")], tier="ar_manager")
    with pytest.raises(ApprovalError, match=r"reason 'settlement_remainder' exceeds tier 'ar_manager' limit"):
        decide(ledger, over, "approve", "ar_manager", "approved", tiers=tiers)
    # Routing sends it where it may be approved (the controller tier has no such restriction).
    assert route_to_entitled_tier(ledger, over, tiers) == "controller"


def test_a_segment_batch_limit_counts_only_that_segments_items(ledger: Engine) -> None:
    tiers = _restricted(Restriction("segment", "enterprise", {}, {"USD": D("3000")}))
    retail = batch_of(ledger, [("2000.00", UNCOLLECTIBLE)] * 2, tier="ar_manager", segment="retail")
    decide(ledger, retail, "approve", "ar_manager", "approved", tiers=tiers)
    enterprise = batch_of(ledger, [("2000.00", UNCOLLECTIBLE)] * 2, tier="ar_manager", segment="enterprise")
    with pytest.raises(ApprovalError, match=r"total 4,000.00 USD for segment 'enterprise' exceeds"):
        decide(ledger, enterprise, "approve", "ar_manager", "approved", tiers=tiers)


def test_a_user_limit_binds_that_user_only_and_the_most_restrictive_wins(ledger: Engine) -> None:
    tiers = _restricted(
        Restriction("user", "ar_junior", {"USD": D("1000")}),
        Restriction("reason", UNCOLLECTIBLE, {"USD": D("3000")}),
    )
    batch = batch_of(ledger, [("1500.00", UNCOLLECTIBLE)], tier="ar_manager")
    with pytest.raises(ApprovalError, match=r"user 'ar_junior' exceeds tier 'ar_manager' limit for user"):
        decide(ledger, batch, "approve", "ar_junior", "approved", tiers=tiers)
    decide(ledger, batch, "approve", "ar_manager", "approved", tiers=tiers)  # the tier's other approver may
    # A 3,500 item: within the tier (5,000) and nobody's user limit, but above the reason limit (3,000).
    big = batch_of(ledger, [("3500.00", UNCOLLECTIBLE)], tier="ar_manager")
    with pytest.raises(ApprovalError, match="reason 'uncollectible_after_collections'"):
        decide(ledger, big, "approve", "ar_manager", "approved", tiers=tiers)


def test_posting_re_checks_the_narrower_limits(ledger: Engine) -> None:
    """Approved within the limits, then the settlement item is raised by raw SQL: posting refuses, naming the limit
    itself (not only the changed hash)."""
    tiers = _restricted(Restriction("reason", "settlement_remainder", {"USD": D("2500")}))
    batch = batch_of(ledger, [("2000.00", "settlement_remainder")], tier="ar_manager")
    decide(ledger, batch, "approve", "ar_manager", "approved", tiers=tiers)
    decide(ledger, batch, "confirm", "ar_manager", "confirmed", tiers=tiers)
    with ledger.connect() as conn:
        assert verify_batch_approval(conn, batch, tiers).approver == "ar_manager"
    with ledger.begin() as conn:
        conn.execute(update(writeoffs).where(writeoffs.c.batch_id == batch).values(amount=D("2600.00")))
    with pytest.raises(ApprovalError, match=r"approve decision by 'ar_manager': largest item 2,600.00 USD for reason"):
        post_batch(ledger, batch, actor="airflow:writeoff_approval", tiers=tiers, posting_date=AS_OF)


def test_restrictions_in_the_policy_file_are_validated() -> None:
    import yaml

    doc = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    ar = doc["approval"]["tiers"][0]
    for bad, message in [
        ({"reason": "settlement_remainder", "segment": "x", "limits": {"USD": "1"}}, "exactly one of"),
        ({"reason": "settlement_remainder"}, "needs limits or batch_limits"),
        ({"user": "mallory", "limits": {"USD": "1"}}, "user 'mallory' is not an approver or confirmer"),
        ({"reason": "settlement_remainder", "limits": {"CHF": "1"}}, "not in approval.currencies"),
        ({"reason": "no_such_reason", "limits": {"USD": "1"}}, "restrictions.0.reason"),
    ]:
        ar["restrictions"] = [bad]
        with pytest.raises(ConfigError, match=message):
            parse_policy(yaml.safe_dump(doc))
    tiers = parse_policy(DEFAULT_POLICY_PATH.read_text(encoding="utf-8")).tiers
    assert tiers[0].restrictions == (
        Restriction("reason", "settlement_remainder", {"USD": D("2500"), "EUR": D("2500"), "GBP": D("2000")}, {}),
    )


def test_policy_check_against_the_ledger_refuses_a_currency_no_tier_covers(ledger: Engine, capsys) -> None:
    """The shipped policy sets limits for USD, EUR and GBP. A ledger with a CHF entity: policy-check refuses it."""
    from writeoffs.cli import main

    url = ledger.url.render_as_string(hide_password=False)
    with ledger.begin() as conn:
        f.entity(conn, "US01", "USD")
    assert main(["--ledger-url", url, "policy-check", "--against-ledger", str(DEFAULT_POLICY_PATH)]) == 0
    with ledger.begin() as conn:
        f.entity(conn, "CH01", "CHF")
    assert main(["--ledger-url", url, "policy-check", "--against-ledger", str(DEFAULT_POLICY_PATH)]) == 2
    err = capsys.readouterr().err
    assert "open invoices in CHF, which no approval tier has a limit for" in err and err.count("\n") == 1


def test_posting_re_checks_a_segment_limit_with_the_customers_segment_today(ledger: Engine) -> None:
    """Approved as a retail customer's batch; the customer is then moved to the restricted segment: posting reads
    the segment again and refuses (the segment is read only for tiers that restrict by segment)."""
    from writeoffs.db.schema import customers

    tiers = _restricted(Restriction("segment", "enterprise", {}, {"USD": D("3000")}))
    batch = batch_of(ledger, [("2000.00", UNCOLLECTIBLE)] * 2, tier="ar_manager", segment="retail")
    decide(ledger, batch, "approve", "ar_manager", "approved", tiers=tiers)
    decide(ledger, batch, "confirm", "ar_manager", "confirmed", tiers=tiers)
    with ledger.connect() as conn:
        assert verify_batch_approval(conn, batch, tiers).confirmer == "ar_manager"
    with ledger.begin() as conn:
        conn.execute(update(customers).values(segment="enterprise"))
    with pytest.raises(ApprovalError, match=r"total 4,000.00 USD for segment 'enterprise' exceeds"):
        post_batch(ledger, batch, actor="airflow:writeoff_approval", tiers=tiers, posting_date=AS_OF)
