"""Charge-off, candidates + batches, policy registry and what-if against real ledgers (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import factories as f
import pytest
import yaml
from conftest import AS_OF
from sqlalchemy import Engine, func, insert, select, update

from writeoffs import audit
from writeoffs.db.schema import audit_log, invoices, journal_entries, policy_versions, writeoff_batches, writeoffs
from writeoffs.errors import ConfigError
from writeoffs.identity import os_actor
from writeoffs.policy import registry
from writeoffs.policy.batching import batch_items_hash, batch_key, items_digest
from writeoffs.policy.schema import DEFAULT_POLICY_PATH, parse_policy
from writeoffs.policy.service import prepare, run_charge_off, select_and_batch
from writeoffs.policy.whatif import whatif

POLICY = parse_policy(Path(DEFAULT_POLICY_PATH).read_text())


def exhaust(conn, cid: int, iid: int) -> None:
    start = AS_OF - timedelta(days=350)
    for k in range(6):
        f.activity(conn, cid, iid, "contact_attempt", start + timedelta(days=k))
    for k in range(2):
        f.activity(conn, cid, iid, "demand_letter", start + timedelta(days=10 + k))
    f.activity(conn, cid, iid, "agency_placement", start + timedelta(days=20), start + timedelta(days=100))


def book(ledger: Engine) -> dict[str, int]:
    """Worked example + a small balance + an EUR entity invoice + a young invoice."""
    with ledger.begin() as conn:
        ids = f.worked_example(conn, AS_OF)
        cid = ids["customer_id"]
        ids["small"] = f.invoice(conn, cid, amount="30.00", days_past_due=200)
        ids["mid"] = f.invoice(conn, cid, amount="2500.00", days_past_due=400)
        exhaust(conn, cid, ids["mid"])
        ids["young"] = f.invoice(conn, cid, amount="800.00", days_past_due=130)
        f.entity(conn, "DE01", "EUR")
        de = f.customer(conn, "DE01")
        ids["eur"] = f.invoice(conn, de, entity_code="DE01", currency="EUR", amount="700.00", days_past_due=400)
        exhaust(conn, de, ids["eur"])
    return ids


def test_charge_off_is_a_declaration(ledger: Engine) -> None:
    ids = book(ledger)
    with ledger.connect() as conn:
        balances = dict(conn.execute(select(invoices.c.id, invoices.c.open_balance)).all())
        audits = audit.count(conn)
    res = run_charge_off(ledger, POLICY, AS_OF)
    assert res.charged_off == 5  # all but none: 130, 200, 400, 405 days all cross 120
    with ledger.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(invoices))}
        assert {r.status for r in rows.values()} == {"charged_off"}
        assert all(r.charged_off_date == AS_OF for r in rows.values())
        assert {i: r.open_balance for i, r in rows.items()} == balances  # still on the books
        assert conn.execute(select(func.count()).select_from(journal_entries)).scalar_one() == 0
        assert audit.count(conn) == audits + 1
        details = json.loads(
            conn.execute(select(audit_log.c.details).where(audit_log.c.action == "policy.charge_off")).scalar_one()
        )
        assert details["charged_off"] == 5 and details["totals"]["US01:USD"]["count"] == "4"
        assert details["policy_hash"] == POLICY.content_hash
    assert run_charge_off(ledger, POLICY, AS_OF).charged_off == 0  # idempotent
    del ids


def test_charge_off_threshold_respected(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        young = f.invoice(conn, cid, days_past_due=119)
        old = f.invoice(conn, cid, days_past_due=120)
    run_charge_off(ledger, POLICY, AS_OF)
    with ledger.connect() as conn:
        st = dict(conn.execute(select(invoices.c.id, invoices.c.status)).all())
    assert (st[young], st[old]) == ("open", "charged_off")


def test_candidates_batches_and_idempotency(ledger: Engine) -> None:
    ids = book(ledger)
    first = select_and_batch(ledger, POLICY, AS_OF, prepared_by="alice", dag_run_id="run-1")
    assert first.selection.inserted == 4  # worked, small, mid, eur (young is under the write-off threshold)
    with ledger.connect() as conn:
        batches = {r.batch_key: r for r in conn.execute(select(writeoff_batches))}
        items = conn.execute(select(writeoffs)).all()
    h = POLICY.content_hash
    assert set(batches) == {
        batch_key(AS_OF, "US01", "USD", "controller", h),
        batch_key(AS_OF, "US01", "USD", "auto", h),
        batch_key(AS_OF, "US01", "USD", "ar_manager", h),
        batch_key(AS_OF, "DE01", "EUR", "ar_manager", h),
    }
    assert batch_key(AS_OF, "US01", "USD", "auto", h) == f"2026-11-24:US01:USD:auto:{h[:12]}"
    ctrl = batches[batch_key(AS_OF, "US01", "USD", "controller", h)]
    assert (ctrl.item_count, ctrl.total_amount, ctrl.status) == (1, Decimal("45000.0000"), "proposed")
    assert (ctrl.prepared_by, ctrl.dag_run_id, ctrl.policy_version) == ("alice", "run-1", POLICY.version)
    assert ctrl.batch_hash == items_digest([("INV-WORKED-45000", Decimal("45000"), "uncollectible_after_collections")])
    by_invoice = {w.invoice_id: w for w in items}
    assert by_invoice[ids["small"]].tier == "auto" and by_invoice[ids["small"]].reason_code == "small_balance"
    assert all(w.status == "candidate" and w.batch_id is not None for w in items)
    assert all(w.idempotency_key == f"wo:2026-11-24:{h}:{w.invoice_id}" for w in items)

    again = select_and_batch(ledger, POLICY, AS_OF, prepared_by="alice", dag_run_id="run-2")
    assert again.selection.inserted == 0
    with ledger.connect() as conn:
        after = {
            r.batch_key: (r.id, r.item_count, r.total_amount, r.batch_hash)
            for r in conn.execute(select(writeoff_batches))
        }
        assert conn.execute(select(func.count()).select_from(writeoffs)).scalar_one() == 4
        for bid, *_ in after.values():
            assert batch_items_hash(conn, bid) == {v[0]: v[3] for v in after.values()}[bid]
    assert after == {k: (r.id, r.item_count, r.total_amount, r.batch_hash) for k, r in batches.items()}


def test_in_flight_invoice_not_selected_again_next_day(ledger: Engine) -> None:
    book(ledger)
    select_and_batch(ledger, POLICY, AS_OF)
    nxt = select_and_batch(ledger, POLICY, AS_OF + timedelta(days=1))
    assert nxt.selection.inserted == 0


def test_decided_batch_is_not_changed_by_a_rerun(ledger: Engine) -> None:
    ids = book(ledger)
    select_and_batch(ledger, POLICY, AS_OF)
    with ledger.begin() as conn:
        conn.execute(update(writeoff_batches).values(status="awaiting_approval"))
        # New data for the same date: another old invoice for the same customer.
        late = f.invoice(conn, ids["customer_id"], amount="2600.00", days_past_due=500)
        exhaust(conn, ids["customer_id"], late)
        before = {r.id: (r.item_count, r.batch_hash) for r in conn.execute(select(writeoff_batches))}
    res = select_and_batch(ledger, POLICY, AS_OF)
    assert (res.selection.inserted, res.batching.skipped) == (1, 1)
    with ledger.connect() as conn:
        row = conn.execute(select(writeoffs).where(writeoffs.c.invoice_id == late)).one()
        assert (row.status, row.batch_id) == ("skipped", None) and "already decided" in row.skip_reason
        assert {r.id: (r.item_count, r.batch_hash) for r in conn.execute(select(writeoff_batches))} == before


def test_invalid_policy_keeps_the_previous_one_in_force(ledger: Engine, tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text(Path(DEFAULT_POLICY_PATH).read_text())
    with ledger.begin() as conn:
        res = registry.resolve_for_run(conn, good)
        assert res.rejected is None and registry.active_hash(conn) == POLICY.content_hash
    raw = yaml.safe_load(good.read_text())
    raw["defaults"]["writeoff_days"] = "one year"
    good.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"defaults\.writeoff_days"):
        parse_policy(good.read_text())
    with ledger.begin() as conn:
        res = registry.resolve_for_run(conn, good)
    assert res.policy.content_hash == POLICY.content_hash
    assert res.rejected and "defaults.writeoff_days" in res.rejected
    with ledger.connect() as conn:
        assert registry.active_hash(conn) == POLICY.content_hash
        assert registry.active_policy(conn).content_hash == POLICY.content_hash
        assert conn.execute(select(func.count()).select_from(policy_versions)).scalar_one() == 1
        assert conn.execute(select(func.count()).where(audit_log.c.action == "policy.rejected")).scalar_one() == 1
    # And the DAG's code path decides with the good policy.
    book(ledger)
    out = prepare(ledger, AS_OF, policy_path=good)
    assert out["policy_hash"] == POLICY.content_hash and out["policy_rejected"] and out["inserted"] == 4


def test_invalid_policy_without_a_previous_one_fails(ledger: Engine, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: x\napproval: {tiers: []}\n")
    with ledger.begin() as conn, pytest.raises(ConfigError, match=r"approval\.tiers"):
        registry.resolve_for_run(conn, bad)


def test_reverting_a_policy_reactivates_it(ledger: Engine) -> None:
    raw = yaml.safe_load(Path(DEFAULT_POLICY_PATH).read_text())
    raw["version"] = "draft-2"
    other = parse_policy(yaml.safe_dump(raw))
    with ledger.begin() as conn:
        assert registry.activate(conn, POLICY)
        assert registry.activate(conn, other)
        assert not registry.activate(conn, other)
        assert registry.activate(conn, POLICY)
        assert registry.active_hash(conn) == POLICY.content_hash


def _snapshot(ledger: Engine) -> tuple[int, ...]:
    with ledger.connect() as conn:
        return tuple(
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (writeoffs, writeoff_batches, audit_log, policy_versions, invoices)
        )


def test_whatif_is_read_only_and_compares_with_actuals(ledger: Engine) -> None:
    past = AS_OF - timedelta(days=60)
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        # A: selected by the draft at `past`, really written off later, then partly recovered.
        a = f.invoice(conn, cid, amount="1000.00", days_past_due=460)
        exhaust(conn, cid, a)
        # B: selected at `past`, but the customer paid it in full afterwards (premature write-off).
        b = f.invoice(conn, cid, amount="2000.00", days_past_due=460, open_balance="0", status="paid")
        exhaust(conn, cid, b)
        f.payment(conn, cid, b, "2000.00", past + timedelta(days=20))
        # C: really written off later but not selected by the draft at `past` (too young then).
        c = f.invoice(conn, cid, amount="300.00", days_past_due=400)
    select_and_batch(ledger, POLICY, AS_OF)  # a real candidate row for A, which we then mark posted
    with ledger.begin() as conn:
        conn.execute(update(writeoffs).where(writeoffs.c.invoice_id == a).values(status="posted"))
        # C was written off case by case (controller decision), outside the policy run.
        conn.execute(
            insert(writeoffs).values(
                invoice_id=c,
                as_of_date=AS_OF,
                currency="USD",
                amount=Decimal("300"),
                reason_code="bankruptcy",
                rule="manual",
                tier="controller",
                policy_version="manual",
                policy_hash="manual",
                status="posted",
                idempotency_key="manual-c",
            )
        )
        conn.execute(
            update(invoices)
            .where(invoices.c.id.in_([a, c]))
            .values(status="written_off", open_balance=0, written_off_amount=invoices.c.amount, written_off_date=AS_OF)
        )
        conn.execute(update(invoices).where(invoices.c.id == a).values(recovered_amount=Decimal("400")))
    before = _snapshot(ledger)
    report = whatif(ledger, POLICY, past)
    assert _snapshot(ledger) == before
    m = report.comparison["USD"]
    assert (m["selected_count"], m["selected_amount"]) == (2, "3000.0000")
    assert (m["both_count"], m["both_actual_amount"], m["both_recovered"]) == (1, "1000.0000", "400.0000")
    assert (m["draft_only_count"], m["draft_only_amount"], m["draft_only_later_paid"]) == (1, "2000.0000", "2000.0000")
    assert (m["actual_only_count"], m["actual_only_amount"]) == (1, "300.0000")
    assert {(r[1], r[2], r[3]) for r in report.selected} == {("uncollectible_after_collections", "365+", 2)}
    assert "draft selects 2" in report.render()


def test_whatif_cli(ledger: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from writeoffs.cli import main

    book(ledger)
    draft = tmp_path / "draft.yaml"
    raw = yaml.safe_load(Path(DEFAULT_POLICY_PATH).read_text())
    raw["defaults"]["writeoff_days"] = 600
    draft.write_text(yaml.safe_dump(raw))
    url = ledger.url.render_as_string(hide_password=False)
    if ledger.dialect.name == "postgresql":
        pytest.skip("the CLI takes a URL; the per-test PostgreSQL schema is set on the engine, not the URL")
    before = _snapshot(ledger)
    assert main(["--ledger-url", url, "whatif", "--policy", str(draft), "--as-of", "2026-11-24", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy_version"] == POLICY.version
    # 600 days: the worked example (405) and the 400-day invoices are no longer selected; small balance still is.
    assert {(s["reason"], s["count"]) for s in out["selected"]} == {("small_balance", 1)}
    assert _snapshot(ledger) == before


def test_cli_candidates_are_prepared_by_the_os_account_not_a_named_person(ledger: Engine, capsys) -> None:
    """No option names the preparer (it used to be ``--prepared-by NAME``): the OS account running the command is."""
    from writeoffs.cli import main

    if ledger.dialect.name == "postgresql":
        pytest.skip("the CLI takes a URL; the per-test PostgreSQL schema is set on the engine, not the URL")
    book(ledger)
    url = ledger.url.render_as_string(hide_password=False)
    with pytest.raises(SystemExit):
        main(["--ledger-url", url, "candidates", "--as-of", "2026-11-24", "--prepared-by", "cfo"])
    capsys.readouterr()
    assert main(["--ledger-url", url, "candidates", "--as-of", "2026-11-24"]) == 0
    with ledger.connect() as conn:
        preparers = set(conn.execute(select(writeoff_batches.c.prepared_by)).scalars())
    assert preparers == {os_actor()}


def test_the_worked_examples_request_shows_the_decisive_evidence(ledger: Engine) -> None:
    """What the controller reads for the worked example: the evidence the selection recorded, as columns."""
    from writeoffs.approval_view import load_batch_view, subject, summary_markdown

    book(ledger)
    select_and_batch(ledger, POLICY, AS_OF, prepared_by="alice", dag_run_id="run-1")
    with ledger.connect() as conn:
        ctrl = conn.execute(select(writeoff_batches.c.id).where(writeoff_batches.c.tier == "controller")).scalar_one()
        view = load_batch_view(conn, ctrl)
    body = summary_markdown(view)
    table = body.split("by amount\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    header = [c.strip() for c in table[0].strip("|").split(" | ")]
    row = dict(zip(header, (c.strip() for c in table[2].strip("|").split(" | ")), strict=True))
    req = POLICY.model.defaults.effort  # the policy minimums are shown next to the counts
    assert row["Invoice"] == "INV-WORKED-45000"
    assert row["Contact attempts"] == f"12 (min {req.min_contact_attempts})"
    assert row["Demand letters"] == f"3 (min {req.min_demand_letters})"
    assert row["Agency days"] == f"90 (min {req.min_agency_days})"
    assert row["Reason"] == "Uncollectible after collections"
    assert row["Rule"] == "past the write-off age, collection effort exhausted"
    assert int(row["Days past due"]) > 365 and row["Bankruptcy"] == "no" and row["Last payment"] == "none"
    assert subject(view).startswith("controller tier · 45,000.00 USD · US01 — batch ")
    assert "1 invoice (" in subject(view)
