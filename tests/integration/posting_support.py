"""Builders shared by the posting, approval, reversal and recovery tests: a proposed batch and its approvals.

A stand-in for what the policy engine writes (batch + items with status 'candidate', batch_hash over all items),
built row-wise on purpose: tests need a handful of items.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from itertools import count

from sqlalchemy import Connection, Engine, insert, select

from tests.factories import PLAIN_TIERS, record_policy
from writeoffs.approvals import batch_hash_of, eligible_answerers, record_decision
from writeoffs.db.schema import invoices, writeoff_batches, writeoffs
from writeoffs.tiers import AUTO_TIER, Tier

#: The default tiers plus a small-balance tolerance (auto tier) of 100 per currency.
_AUTO_LIMITS = {"USD": Decimal("100"), "EUR": Decimal("100")}
TIERS: tuple[Tier, ...] = (Tier(AUTO_TIER, _AUTO_LIMITS, (), batch_limits=dict.fromkeys(_AUTO_LIMITS)), *PLAIN_TIERS)
POLICY_VERSION = "2026.11-test"
POLICY_HASH = "p" * 64
_seq = count(1)
#: Same business date as tests/conftest.py.
AS_OF = date(2026, 11, 24)


def make_batch(
    conn: Connection,
    items: Sequence[tuple[int, str | Decimal, str]],
    *,
    entity: str = "US01",
    currency: str = "USD",
    tier: str = "controller",
    prepared_by: str = "ar_clerk",
    as_of: date = AS_OF,
    status: str = "proposed",
    reasons: dict[str, str] | None = None,
    **policy_top: object,
) -> int:
    """A batch with items ``(invoice_id, amount, reason_code)`` in status 'candidate', under a recorded policy
    (the shipped one, version ``test-<n>``, with ``reasons`` / top-level overrides such as allowance_shortfall)."""
    n = next(_seq)
    policy = record_policy(conn, f"{POLICY_VERSION}-{n}", version=POLICY_VERSION, reasons=reasons, **policy_top)
    refs = dict(
        conn.execute(
            select(invoices.c.id, invoices.c.invoice_ref).where(invoices.c.id.in_([i for i, _, _ in items]))
        ).all()
    )
    digest = batch_hash_of((refs[i], Decimal(str(a)), r) for i, a, r in items)
    batch_id = conn.execute(
        insert(writeoff_batches)
        .values(
            batch_key=f"test:{as_of}:{entity}:{currency}:{tier}:{n}",
            entity_code=entity,
            currency=currency,
            tier=tier,
            as_of_date=as_of,
            policy_version=policy.version,
            policy_hash=policy.content_hash,
            status=status,
            item_count=len(items),
            total_amount=sum((Decimal(str(a)) for _, a, _ in items), Decimal(0)),
            batch_hash=digest,
            prepared_by=prepared_by,
        )
        .returning(writeoff_batches.c.id)
    ).scalar_one()
    conn.execute(
        insert(writeoffs),
        [
            {
                "batch_id": batch_id,
                "invoice_id": inv,
                "as_of_date": as_of,
                "currency": currency,
                "amount": Decimal(str(amount)),
                "reason_code": reason,
                "rule": f"rule_{reason}",
                "evidence": "{}",
                "tier": tier,
                "policy_version": policy.version,
                "policy_hash": policy.content_hash,
                "status": "candidate",
                "idempotency_key": f"wo:{as_of}:{policy.content_hash}:{inv}",
            }
            for inv, amount, reason in items
        ],
    )
    return batch_id


def approve(
    engine: Engine,
    batch_id: int,
    *,
    approver: str = "controller",
    confirmer: str | None = None,
    tiers: Sequence[Tier] = TIERS,
    excluded: Sequence[str] = (),
) -> None:
    """Both steps, each in its own transaction, the way the approvals DAG records them."""
    with engine.begin() as conn:
        record_decision(
            conn,
            batch_id=batch_id,
            step="approve",
            approver=approver,
            decision="approved",
            tiers=tiers,
            comment="reviewed evidence",
            excluded_invoice_refs=excluded,
        )
    with engine.begin() as conn:
        record_decision(
            conn,
            batch_id=batch_id,
            step="confirm",
            approver=confirmer or second_person(conn, batch_id, approver, tiers),
            decision="confirmed",
            tiers=tiers,
        )


def second_person(conn, batch_id: int, approver: str, tiers: Sequence[Tier]) -> str:
    """Who confirms in the tests: the approver themselves where the tier allows it (below its four-eyes amount),
    else the first other confirmer the ledger would ask."""
    people = eligible_answerers(conn, batch_id, "confirm", tiers)
    return approver if approver in people else people[0]
