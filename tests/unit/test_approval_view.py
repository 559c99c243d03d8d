"""What the approver sees: summary, breakdowns, evidence, confirmation after exclusions, CSV, exclusion parsing."""

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal

import pytest

from writeoffs.approval_view import (
    BatchItem,
    BatchView,
    breakdown,
    check_exclusions,
    confirmation_markdown,
    items_digest,
    parse_invoice_refs,
    subject,
    summary_markdown,
    to_post,
    write_candidates_csv,
)
from writeoffs.approvals import batch_hash_of
from writeoffs.errors import ApprovalError


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


WORKED = view(
    item("INV-WORKED-45000", "45000.00", evidence={"contact_attempts": 12, "demand_letters": 3, "agency_days": 90}),
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
    assert reasons.index("uncollectible_after_collections") < reasons.index("bankruptcy") < reasons.index("small")
    buckets = md.split("#### By aging bucket")[1].split("####")[0]
    assert buckets.index("121-180") < buckets.index("181-365") < buckets.index("365+")
    assert "agency_days=90, contact_attempts=12, demand_letters=3" in md
    assert "Full candidate list (3 rows): https://reports/batch_7.csv" in md
    assert "never shown to customers" in md


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


def test_exclusion_of_an_unknown_invoice_is_refused() -> None:
    assert check_exclusions(WORKED, ["INV-2"]) == ("INV-2",)
    with pytest.raises(ApprovalError, match="INV-9"):
        check_exclusions(WORKED, ["INV-2", "INV-9"])
    with pytest.raises(ApprovalError):
        check_exclusions(WORKED, ["inv-2"])  # refs are case-sensitive: no fuzzy matching on money


def test_breakdown_totals_are_decimal_and_exact() -> None:
    rows = breakdown([item("A", "0.10"), item("B", "0.20"), item("C", "0.30", reason="bankruptcy")], "reason_code")
    # Equal totals: ties break by label, so the order is stable between runs.
    assert rows == [("bankruptcy", 1, Decimal("0.30")), ("uncollectible_after_collections", 2, Decimal("0.30"))]
    assert all(isinstance(t, Decimal) for _, _, t in rows)


def test_subject_names_batch_amount_tier_and_step() -> None:
    assert subject(WORKED).startswith("Approve write-off batch 7: US01 46,250.49 USD (3 invoices, tier controller")
    assert subject(WORKED, "confirm").startswith("Confirm posting of write-off batch 7:")


def test_candidates_csv_lists_every_item(tmp_path) -> None:
    path = write_candidates_csv(tmp_path, WORKED)
    assert path.parent == tmp_path / "batches" and path.name.startswith("batch_7_")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["invoice_ref"] for r in rows] == ["INV-WORKED-45000", "INV-2", "INV-3"]
    assert rows[0]["amount"] == "45000.00" and '"agency_days": 90' in rows[0]["evidence"]
