"""Small row builders for tests (row-wise on purpose: tests build a handful of rows, never bulk data).

Every builder takes an open connection inside the caller's transaction and returns the new row's id.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from itertools import count

from sqlalchemy import Connection, insert

from writeoffs import ledger
from writeoffs.db.schema import collection_activities, customers, holds, invoices, payment_allocations, payments
from writeoffs.tiers import Tier

_CURRENCIES = ("USD", "EUR", "GBP")

#: Fixed tiers for tests that must not move when include/config/policy.yaml does: the shipped tiers' limits and
#: people, without the shipped restrictions, every tier expiring on timeout. (The policy file is the only home of the
#: product's tiers; tests/unit/test_policy_schema.py pins what it ships.)
PLAIN_TIERS: tuple[Tier, ...] = (
    Tier(
        "ar_manager",
        {"USD": Decimal("5000"), "EUR": Decimal("5000"), "GBP": Decimal("4000")},
        ("ar_manager",),
        48,
        batch_limits={"USD": Decimal("25000"), "EUR": Decimal("25000"), "GBP": Decimal("20000")},
        confirmers=("ar_manager", "controller"),
        four_eyes_above={"USD": Decimal("10000"), "EUR": Decimal("10000"), "GBP": Decimal("8000")},
    ),
    Tier(
        "controller",
        {"USD": Decimal("50000"), "EUR": Decimal("50000"), "GBP": Decimal("40000")},
        ("controller",),
        72,
        batch_limits={"USD": Decimal("250000"), "EUR": Decimal("250000"), "GBP": Decimal("200000")},
        confirmers=("controller", "cfo"),
    ),
    Tier(
        "cfo",
        dict.fromkeys(_CURRENCIES),
        ("cfo",),
        120,
        batch_limits=dict.fromkeys(_CURRENCIES),
        confirmers=("controller",),
    ),
)

_seq = count(1)


def entity(
    conn: Connection,
    code: str = "US01",
    currency: str = "USD",
    method: str = "direct",
    periods_from: date = date(2024, 1, 1),
    periods_to: date = date(2027, 12, 31),
) -> str:
    ledger.bootstrap_entity(
        conn,
        code=code,
        name=f"Entity {code}",
        functional_currency=currency,
        method=method,
        periods_from=periods_from,
        periods_to=periods_to,
    )
    return code


def customer(
    conn: Connection,
    entity_code: str = "US01",
    ref: str | None = None,
    *,
    parent_id: int | None = None,
    segment: str = "default",
    bankrupt: bool = False,
    bankruptcy_date: date | None = None,
    dissolved: bool = False,
) -> int:
    ref = ref or f"C{next(_seq):06d}"
    return conn.execute(
        insert(customers)
        .values(
            entity_code=entity_code,
            customer_ref=ref,
            name=f"Customer {ref}",
            parent_id=parent_id,
            segment=segment,
            bankruptcy_flag=bankrupt,
            bankruptcy_date=bankruptcy_date,
            dissolved=dissolved,
        )
        .returning(customers.c.id)
    ).scalar_one()


def invoice(
    conn: Connection,
    customer_id: int,
    *,
    entity_code: str = "US01",
    ref: str | None = None,
    amount: str | Decimal = "1000.00",
    open_balance: str | Decimal | None = None,
    currency: str = "USD",
    invoice_date: date | None = None,
    due_date: date | None = None,
    days_past_due: int | None = None,
    as_of: date = date(2026, 11, 24),
    fx_rate: str | Decimal = "1",
    status: str = "open",
    transferred_to_parent: bool = False,
) -> int:
    """An invoice; ``days_past_due`` (relative to ``as_of``) sets net-30 dates conveniently."""
    if days_past_due is not None:
        due_date = as_of - timedelta(days=days_past_due)
        invoice_date = due_date - timedelta(days=30)
    invoice_date = invoice_date or as_of - timedelta(days=10)
    due_date = due_date or invoice_date + timedelta(days=30)
    amount = Decimal(str(amount))
    return conn.execute(
        insert(invoices)
        .values(
            entity_code=entity_code,
            invoice_ref=ref or f"INV{next(_seq):07d}",
            customer_id=customer_id,
            source="test",
            invoice_date=invoice_date,
            due_date=due_date,
            currency=currency,
            amount=amount,
            open_balance=Decimal(str(open_balance)) if open_balance is not None else amount,
            fx_rate=Decimal(str(fx_rate)),
            status=status,
            balance_transferred_to_parent=transferred_to_parent,
        )
        .returning(invoices.c.id)
    ).scalar_one()


def activity(
    conn: Connection,
    customer_id: int,
    invoice_id: int | None,
    activity_type: str,
    activity_date: date,
    end_date: date | None = None,
    outcome: str | None = None,
) -> int:
    return conn.execute(
        insert(collection_activities)
        .values(
            customer_id=customer_id,
            invoice_id=invoice_id,
            activity_type=activity_type,
            activity_date=activity_date,
            end_date=end_date,
            outcome=outcome,
            source="test",
        )
        .returning(collection_activities.c.id)
    ).scalar_one()


def hold(
    conn: Connection,
    customer_id: int,
    invoice_id: int | None,
    hold_type: str = "dispute",
    start_date: date = date(2026, 1, 1),
    end_date: date | None = None,
    resolution: str | None = None,
) -> int:
    return conn.execute(
        insert(holds)
        .values(
            customer_id=customer_id,
            invoice_id=invoice_id,
            hold_type=hold_type,
            start_date=start_date,
            end_date=end_date,
            resolution=resolution,
        )
        .returning(holds.c.id)
    ).scalar_one()


def payment(
    conn: Connection,
    customer_id: int,
    invoice_id: int,
    amount: str | Decimal,
    payment_date: date,
    *,
    entity_code: str = "US01",
    currency: str = "USD",
    kind: str = "regular",
) -> int:
    amount = Decimal(str(amount))
    pid = conn.execute(
        insert(payments)
        .values(
            entity_code=entity_code,
            payment_ref=f"PAY{next(_seq):07d}",
            customer_id=customer_id,
            payment_date=payment_date,
            currency=currency,
            amount=amount,
            source="test",
        )
        .returning(payments.c.id)
    ).scalar_one()
    conn.execute(
        insert(payment_allocations).values(
            payment_id=pid, invoice_id=invoice_id, amount=amount, allocated_on=payment_date, kind=kind
        )
    )
    return pid


def worked_example(conn: Connection, as_of: date = date(2026, 11, 24)) -> dict[str, int]:
    """The worked example: $45,000 consulting invoice 14 months old, 12 attempts, 3 letters, 90 days at an agency."""
    entity(conn)
    cid = customer(conn, ref="C-NORTHWIND", segment="it_services")
    inv_date = date(as_of.year - 1, as_of.month - 2, 15) if as_of.month > 2 else date(as_of.year - 2, 12, 15)
    iid = invoice(
        conn,
        cid,
        ref="INV-WORKED-45000",
        amount="45000.00",
        invoice_date=inv_date,
        due_date=inv_date + timedelta(days=30),
    )
    for i in range(12):
        activity(conn, cid, iid, "contact_attempt", inv_date + timedelta(days=35 + 14 * i))
    for i in range(3):
        activity(conn, cid, iid, "demand_letter", inv_date + timedelta(days=60 + 30 * i))
    placed = inv_date + timedelta(days=200)
    activity(conn, cid, iid, "agency_placement", placed, placed + timedelta(days=90), outcome="unsuccessful")
    return {"customer_id": cid, "invoice_id": iid}


def record_policy(
    conn: Connection, tag: str, *, version: str | None = None, reasons: dict[str, str] | None = None, **top: object
):
    """Record (in ``policy_versions``) the shipped policy with optional overrides; returns it.

    Posting reads accounts from the policy recorded on the batch, so test batches record a real policy. Each ``tag``
    gives a distinct content hash (an empty segment layer named after it, which no customer has): tests rely on
    distinct hashes per batch for the per-(date, policy, invoice) key.
    """
    import yaml

    from writeoffs.policy import registry
    from writeoffs.policy.schema import DEFAULT_POLICY_PATH, parse_policy

    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    raw["version"] = (version or tag)[:32]
    raw["segments"] = {**(raw.get("segments") or {}), f"_test_{tag}": {}}
    if reasons:
        raw["reasons"] = {**raw.get("reasons", {}), **reasons}
    raw.update(top)
    policy = parse_policy(yaml.safe_dump(raw, sort_keys=False), source=f"test:{tag}")
    registry.record(conn, policy)
    return policy


def fund_allowance(conn: Connection, entity: str, currency: str, amount: str, day: date = date(2026, 10, 31)) -> int:
    """Fund the entity's allowance (``Dr Bad Debt Expense / Cr Allowance``) as an estimate would; returns the entry
    id."""
    from writeoffs.accounting import entries
    from writeoffs.accounting.chart import resolve_accounts

    accts = resolve_accounts(conn, entity)
    amt = Decimal(amount)
    entry = entries.allowance_adjustment(
        accts,
        key=f"alw:{entity}:{currency}:{day.isoformat()}:test",
        posting_date=day,
        currency=currency,
        change=amt,
        functional_change=amt if currency == accts.functional_currency else Decimal(0),
        description=f"test funding of the allowance {entity} {currency}",
        memo="test funding",
    )
    result = ledger.post_entries(conn, [entry], created_by="test")
    return {**result.posted, **result.already}[entry.key]


def opening_ar(conn: Connection, entity: str, currency: str, amount: str, day: date, *, key: str = "") -> int:
    """Opening AR in the GL (``Dr AR control / Cr Suspense``) for invoices a test inserted directly; returns the entry
    id. Functional amount at rate 1 (tests use it for functional-currency invoices)."""
    import dataclasses

    from writeoffs.accounting import entries
    from writeoffs.accounting.chart import resolve_accounts

    entry = entries.opening_balance(
        resolve_accounts(conn, entity),
        as_of=day,
        currency=currency,
        amount=Decimal(amount),
        functional_amount=Decimal(amount),
        source_id="test",
        memo="test opening AR",
        description=f"test opening AR {entity} {currency}",
    )
    if key:
        entry = dataclasses.replace(entry, key=f"{entry.key}:{key}")
    result = ledger.post_entries(conn, [entry], created_by="test")
    return {**result.posted, **result.already}[entry.key]
