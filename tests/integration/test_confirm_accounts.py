"""The confirm step names the accounts the entries will use, resolved as posting resolves them; unmapped is said."""

from __future__ import annotations

from sqlalchemy import Engine, update

from tests import factories as f
from tests.integration.posting_support import make_batch
from writeoffs.approval_view import confirmation_markdown, load_batch_view
from writeoffs.approval_view.load import confirmation_facts, entry_accounts
from writeoffs.db.schema import accounts


def _batch(engine: Engine, method: str, reasons: dict[str, str] | None = None) -> int:
    with engine.begin() as conn:
        f.entity(conn, method=method)
        cid = f.customer(conn)
        a = f.invoice(conn, cid, ref="INV-A", amount="100.00", days_past_due=400)
        b = f.invoice(conn, cid, ref="INV-B", amount="50.00", days_past_due=400)
        c = f.invoice(conn, cid, ref="INV-C", amount="20.00", days_past_due=400)
        items = [
            (a, "100.00", "bankruptcy"),
            (b, "50.00", "uncollectible_after_collections"),
            (c, "20.00", "statute_expired"),
        ]
        return make_batch(conn, items, reasons=reasons)


def test_direct_method_names_each_reasons_expense_account_and_the_ar_control(ledger: Engine) -> None:
    batch = _batch(ledger, "direct")
    with ledger.connect() as conn:
        view = load_batch_view(conn, batch)
        debit, credit = entry_accounts(conn, view)
        assert debit == (
            "6110 Bad Debt Expense - Bankruptcy (bankruptcy), "
            "6100 Bad Debt Expense (statute_expired, uncollectible_after_collections)"
        )
        assert credit == "1100 Accounts Receivable (control)"
        # Excluding the bankruptcy item leaves one account.
        assert entry_accounts(conn, view, ["INV-A"])[0] == "6100 Bad Debt Expense"
        md = confirmation_markdown(view, debit_account=debit, credit_account=credit)
        assert "Dr 6110 Bad Debt Expense - Bankruptcy (bankruptcy), 6100 Bad Debt Expense" in md
        assert "/ Cr 1100 Accounts Receivable (control) 170.00 USD" in md


def test_allowance_method_names_the_allowance_account(ledger: Engine) -> None:
    batch = _batch(ledger, "allowance")
    with ledger.connect() as conn:
        facts = confirmation_facts(conn, load_batch_view(conn, batch))
    assert (facts.debit_account, facts.credit_account) == (
        "1190 Allowance for Doubtful Accounts",
        "1100 Accounts Receivable (control)",
    )


def test_a_reason_the_policy_does_not_map_is_said_not_guessed(ledger: Engine) -> None:
    """Fail closed: the batch's policy version maps no account for a reason: the confirm step says so (posting
    refuses the same batch), it does not show a default account."""
    batch = _batch(ledger, "direct", reasons={"bankruptcy": "6999"})  # 6999 is not in the chart
    with ledger.connect() as conn:
        debit, credit = entry_accounts(conn, load_batch_view(conn, batch))
    assert debit == credit and debit.startswith("cannot be resolved: ") and "6999" in debit
    assert debit.endswith("(posting will refuse)")


def test_account_names_from_the_chart_are_escaped_in_the_markdown(ledger: Engine) -> None:
    batch = _batch(ledger, "allowance")
    with ledger.begin() as conn:
        conn.execute(update(accounts).where(accounts.c.code == "1190").values(name="Allowance | [x](http://evil)"))
    with ledger.connect() as conn:
        view = load_batch_view(conn, batch)
        debit, credit = entry_accounts(conn, view)
    md = confirmation_markdown(view, debit_account=debit, credit_account=credit)
    assert "[x](http://evil)" not in md and "Allowance | [x]" not in md


def test_an_excluded_item_with_an_unmapped_reason_still_blocks_as_in_posting(ledger: Engine) -> None:
    """Posting checks the reason of every item of the batch, excluded ones too: so does the confirm step (it must
    not show accounts for a batch posting will refuse)."""
    batch = _batch(ledger, "direct", reasons={"bankruptcy": "6999"})
    with ledger.connect() as conn:
        debit, _credit = entry_accounts(conn, load_batch_view(conn, batch), ["INV-A"])  # INV-A: the bankruptcy
    assert debit.startswith("cannot be resolved: ") and "6999" in debit
