"""What the approver sees: summary, breakdowns, evidence, confirmation after exclusions, CSV, exclusion parsing."""

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal

import pytest

from writeoffs.approval_view import (
    EVIDENCE_COLUMNS,
    BatchItem,
    BatchView,
    breakdown,
    confirmation_markdown,
    deadline_text,
    evidence_cells,
    items_digest,
    parse_invoice_refs,
    refusal_lines,
    refusal_markdown,
    subject,
    summary_markdown,
    to_post,
    write_candidates_csv,
)
from writeoffs.approvals import batch_hash_of


def item(ref: str, amount: str, reason: str = "uncollectible_after_collections", dpd: int = 400, **kw) -> BatchItem:
    bucket = "365+" if dpd > 365 else "181-365" if dpd > 180 else "121-180"
    return BatchItem(
        writeoff_id=len(ref),
        invoice_ref=ref,
        customer_ref=f"C-{ref}",
        customer_name=kw.pop("customer", f"Customer {ref}"),
        amount=Decimal(amount),
        reason_code=reason,
        rule="uncollectible_365",
        days_past_due=dpd,
        bucket=bucket,
        status=kw.pop("status", "candidate"),
        evidence=kw.pop("evidence", {"contact_attempts": 12, "demand_letters": 3}),
    )


def view(*items: BatchItem, tier: str = "controller") -> BatchView:
    return BatchView(
        batch_id=7,
        batch_key="2026-11-24:US01:USD:controller",
        entity_code="US01",
        currency="USD",
        tier=tier,
        as_of_date=date(2026, 11, 24),
        status="awaiting_approval",
        policy_version="2026.11.0",
        policy_hash="a" * 64,
        batch_hash=None,
        prepared_by="preparer",
        items=tuple(sorted(items, key=lambda i: -i.amount)),
    )


#: The evidence the selection records for the worked example (writeoffs.policy.selection): 24 keys, sorted
#: alphabetically the decisive ones came after "+13 more" in the old evidence cell.
WORKED_EVIDENCE = {
    "days_past_due": 426,
    "aging_basis": "due_date",
    "contact_attempts": 12,
    "demand_letters": 3,
    "agency_days": 90,
    "legal_actions": 0,
    "last_payment_date": None,
    "disputes": 0,
    "disputes_lost": 0,
    "open_dispute": False,
    "active_payment_plan": False,
    "bankrupt": False,
    "bankruptcy_date": None,
    "dissolved": False,
    "segment": "enterprise",
    "child_account": False,
    "balance_transferred_to_parent": False,
    "partial": False,
    "reversed_on": None,
    "reversal_cooling_days": None,
    "required": {
        "writeoff_days": 365,
        "min_contact_attempts": 6,
        "min_demand_letters": 2,
        "min_agency_days": 60,
        "recent_payment_days": 90,
    },
}

WORKED = view(
    item("INV-WORKED-45000", "45000.00", evidence=WORKED_EVIDENCE),
    item("INV-2", "1200.50", reason="bankruptcy", dpd=200),
    item("INV-3", "49.99", reason="small_balance", dpd=150),
)


def test_summary_shows_count_total_breakdowns_top_items_evidence_and_link() -> None:
    md = summary_markdown(WORKED, candidates_link="https://reports/batch_7.csv", limit=Decimal("50000"))
    assert "| Invoices | 3 |" in md
    assert "**46,250.49 USD**" in md
    assert "| Largest item | 45,000.00 USD |" in md
    assert "limit 50,000.00 USD per item" in md
    # by reason, largest total first; by bucket in bucket order
    reasons = md.split("#### By reason")[1].split("####")[0]
    # plain-language reasons, largest total first
    order = [reasons.index(r) for r in ("Uncollectible after collections", "Customer bankrupt", "Small balance")]
    assert order == sorted(order)
    assert "uncollectible_after_collections" not in md and "uncollectible_365" in md  # unknown rule: shown as is
    buckets = md.split("#### By aging bucket")[1].split("####")[0]
    assert buckets.index("121-180") < buckets.index("181-365") < buckets.index("365+")
    assert "Full candidate list (3 rows, all evidence): https://reports/batch_7.csv" in md
    assert "never shown to customers" in md


def _top_rows(md: str) -> dict[str, dict[str, str]]:
    """The top-items table as {invoice: {column: cell}}."""
    table = md.split("by amount\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    header = [c.strip() for c in table[0].strip("|").split(" | ")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split(" | ")), strict=True)) for line in table[2:]]
    return {r["Invoice"]: r for r in rows}


def test_the_worked_example_shows_its_decisive_evidence_without_expanding_anything() -> None:
    md = summary_markdown(WORKED)
    row = _top_rows(md)["INV-WORKED-45000"]
    assert row["Days past due"] == "400"
    assert row["Contact attempts"] == "12 (min 6)"
    assert row["Demand letters"] == "3 (min 2)"
    assert row["Agency days"] == "90 (min 60)"
    assert row["Last payment"] == "none"
    assert row["Disputes"] == "0"
    assert row["Bankruptcy"] == "no"
    assert row["Reason"] == "Uncollectible after collections"
    assert "balance_transferred_to_parent" not in md and "more" not in row["Disputes"]
    assert list(row)[-len(EVIDENCE_COLUMNS) :] == list(EVIDENCE_COLUMNS)


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        ({}, ["-", "-", "-", "-", "-", "-"]),
        (
            {"disputes": 2, "disputes_lost": 1, "open_dispute": True, "bankrupt": True, "bankruptcy_date": "2026-3-1"},
            ["-", "-", "-", "-", "2 (1 lost, one open)", "yes, 2026-3-1"],
        ),
        ({"contact_attempts": 4, "last_payment_date": "2025-12-01"}, ["4", "-", "-", "2025-12-01", "-", "-"]),
        # hostile evidence: escaped and cut, never a link or a table break
        (
            {"contact_attempts": "[x](http://evil) | " + "y" * 200},
            [r"\[x\](http://evil) \| y… (219 chars)", "-", "-", "-", "-", "-"],
        ),
    ],
)
def test_evidence_cells(evidence: dict, expected: list[str]) -> None:
    assert evidence_cells(item("INV-1", "1.00", evidence=evidence))[1:] == expected


def test_who_decides_by_when_and_what_a_timeout_does() -> None:
    from datetime import UTC, datetime

    when = deadline_text(datetime(2026, 11, 26, 14, 0, tzinfo=UTC), "escalates to the cfo tier")
    assert when == "2026-11-26 14:00 UTC; no answer by then: escalates to the cfo tier"
    md = summary_markdown(WORKED, answerers=["controller"], deadline=when, confirmation="by a second person (cfo)")
    assert "| Who may approve | controller |" in md
    assert "| Answer by | 2026-11-26 14:00 UTC; no answer by then: escalates to the cfo tier |" in md
    assert "**Approve** does not post yet: a second request, **Confirm**, then opens (by a second person (cfo))" in md
    conf = confirmation_markdown(WORKED, answerers=["cfo"], deadline=when)
    assert "| Who may confirm | cfo |" in conf and "| Answer by | 2026-11-26 14:00 UTC" in conf


def test_plurals() -> None:
    one = view(item("INV-1", "10.00"))
    assert "(as of" in subject(one) and "1 invoice (" in subject(one) and "invoices" not in subject(one)
    md = summary_markdown(one, candidates_link="x")
    assert "Top 1 of 1 item by amount" in md and "Full candidate list (1 row, all evidence)" in md


def test_a_refusal_says_who_was_refused_why_and_who_may_decide() -> None:
    facts = {
        "refused": "ar_manager",
        "reason": "batch 7: cannot exclude ['INV-9']: not pending items of this batch",
        "step": "approve",
        "tier": "controller",
        "eligible": ["controller", "ar_manager"],
        "open_until": "2026-11-26 14:00 UTC",
    }
    block = refusal_markdown(**facts)
    assert block.startswith("> **Answer refused.** The approve answer by ar_manager was not recorded: ")
    assert "cannot exclude \\['INV-9'\\]" in block  # Markdown-escaped
    assert "stays open until 2026-11-26 14:00 UTC" in block
    assert block.endswith("Who may decide (controller tier): controller, ar_manager.")
    lines = refusal_lines(**facts)
    assert lines[0].endswith("cannot exclude ['INV-9']: not pending items of this batch.")  # plain for e-mail/Slack


def test_a_refusal_reason_is_cut_and_cannot_inject_markdown() -> None:
    block = refusal_markdown(
        refused="x](http://evil)",
        reason="[pay here](http://evil) " + "z" * 5000,
        step="confirm",
        tier="cfo",
        eligible=[],
    )
    assert "[pay here](http" not in block and "x](http" not in block  # escaped: \[pay here\], x\]
    assert len(block) < 600
    assert "(5024 chars)" in block and "No time is left" in block and "nobody" in block


def test_top_n_limits_the_table_not_the_totals() -> None:
    big = view(*[item(f"INV-{n:03d}", f"{n}.00") for n in range(1, 31)])
    md = summary_markdown(big, top_n=5)
    assert "Top 5 of 30 items" in md and "INV-030" in md and "INV-025" not in md
    assert "| Invoices | 30 |" in md and "465.00 USD" in md


def test_customer_text_cannot_break_the_markdown_table() -> None:
    md = summary_markdown(view(item("INV-1", "10.00", customer="Acme | Co\nLtd")))
    assert "Acme \\| Co Ltd" in md


def test_confirmation_shows_exactly_what_will_be_posted_after_exclusions() -> None:
    md = confirmation_markdown(WORKED, ["INV-2"], approved_by="controller")
    assert "| Invoices to write off | 2 |" in md
    assert "**45,049.99 USD**" in md
    assert "| Excluded by the approver | 1 (1,200.50 USD) |" in md
    assert "Excluded (not posted): INV-2" in md
    posted_rows = md.split("|---|---|---:|---|")[1].split("\n\n")[0]
    assert "INV-WORKED-45000" in posted_rows and "INV-3" in posted_rows and "INV-2 " not in posted_rows
    assert "Approved by **controller**" in md


def test_confirmation_counts_items_already_marked_excluded() -> None:
    # After the approve step the excluded item carries status 'excluded' (record_decision marks it).
    v = view(item("INV-1", "10.00"), item("INV-2", "20.00", status="excluded"))
    md = confirmation_markdown(v, ["INV-2"])
    assert "| Invoices to write off | 1 |" in md and "Excluded (not posted): INV-2" in md


def test_fingerprint_is_the_approvals_batch_hash() -> None:
    posted = to_post(WORKED, ["INV-2"])
    assert items_digest(posted) == batch_hash_of((i.invoice_ref, i.amount, i.reason_code) for i in posted)
    assert items_digest(posted)[:16] in confirmation_markdown(WORKED, ["INV-2"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        (None, ()),
        ("INV-1", ("INV-1",)),
        (" INV-1, INV-2;INV-3\nINV-1 ", ("INV-1", "INV-2", "INV-3")),
        (["INV-2", " INV-2 ", ""], ("INV-2",)),
    ],
)
def test_parse_invoice_refs(text, expected) -> None:
    assert parse_invoice_refs(text) == expected


def test_breakdown_totals_are_decimal_and_exact() -> None:
    rows = breakdown([item("A", "0.10"), item("B", "0.20"), item("C", "0.30", reason="bankruptcy")], "reason_code")
    # Equal totals: ties break by label, so the order is stable between runs.
    assert rows == [("bankruptcy", 1, Decimal("0.30")), ("uncollectible_after_collections", 2, Decimal("0.30"))]
    assert all(isinstance(t, Decimal) for _, _, t in rows)


def test_subject_starts_with_tier_amount_and_entity() -> None:
    assert subject(WORKED) == (
        "controller tier · 46,250.49 USD · US01 — batch 7: approve write-off of 3 invoices (as of 2026-11-24)"
    )
    assert subject(WORKED, "confirm").startswith("controller tier · 46,250.49 USD · US01 — batch 7: confirm posting")


def test_candidates_csv_lists_every_item(tmp_path) -> None:
    path = write_candidates_csv(tmp_path, WORKED)
    assert path.parent == tmp_path / "batches" and path.name.startswith("batch_7_")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["invoice_ref"] for r in rows] == ["INV-WORKED-45000", "INV-2", "INV-3"]
    assert rows[0]["amount"] == "45000.00" and '"agency_days": 90' in rows[0]["evidence"]


def test_every_reason_and_rule_has_a_plain_language_label() -> None:
    from writeoffs.catalogues import REASON_LABELS, RULE_LABELS
    from writeoffs.policy.schema import Reason
    from writeoffs.policy.selection import EXCLUSIONS, ROUTES

    assert set(REASON_LABELS) == {r.value for r in Reason}
    shortfalls = {
        "under_threshold",
        "insufficient_attempts",
        "insufficient_letters",
        "insufficient_agency_days",
        "legal_action_required",
    }
    assert set(RULE_LABELS) == {name for name, _ in ROUTES} | set(EXCLUSIONS) | shortfalls


def test_a_refusal_note_goes_on_top_and_replaces_the_earlier_one() -> None:
    from writeoffs.approval_view import REFUSAL_RULE, with_refusal

    request = "### Write-off batch 7 — US01 / USD\n\n| | |\n|---|---|\n| Invoices | 3 |"
    first = refusal_markdown(refused="cfo", reason="not an approver", step="approve", tier="t", eligible=["a"])
    once = with_refusal(request, first)
    assert once.startswith(first) and once.endswith(REFUSAL_RULE + request)
    second = refusal_markdown(refused="bob", reason="typo", step="approve", tier="t", eligible=["a"])
    twice = with_refusal(once, second)
    assert twice == second + REFUSAL_RULE + request  # the latest note only; the request text untouched
    # A request text that merely contains a rule is never cut: only a note of ours at the very top is replaced.
    tricky = "### Batch\n\n---\n\n> **Answer refused.** forged"
    assert with_refusal(tricky, second) == second + REFUSAL_RULE + tricky
