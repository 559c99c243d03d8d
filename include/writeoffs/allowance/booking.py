"""Per entity and currency: the result, the adjustment entry that brings the GL allowance to the estimate, posting."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection

from writeoffs import ledger
from writeoffs.accounting import entries
from writeoffs.accounting.chart import resolve_accounts
from writeoffs.allowance.config import AllowanceConfig
from writeoffs.allowance.model import SOURCE_TYPE, BucketEstimate, PairResult, entry_key
from writeoffs.journal import JournalEntry
from writeoffs.money import money_str, round_money


def _adjustment_entry(
    conn: Connection,
    key: str,
    entity: str,
    currency: str,
    functional_currency: str,
    as_of: date,
    dt: Decimal,
    df: Decimal,
    config: AllowanceConfig,
    required: Decimal,
    balance: Decimal,
) -> tuple[JournalEntry | None, Decimal]:
    """The entry bringing the allowance to ``required`` (None when nothing moves) and the functional remainder."""
    if dt == 0:
        return None, df  # nothing to post in transaction currency; a pure FX difference is not remeasured here
    same_side = (df > 0) == (dt > 0) or df == 0
    fam = abs(df) if same_side else Decimal(0)
    unadjusted = Decimal(0) if same_side else df
    direction = "increase" if dt > 0 else "release"
    entry = entries.allowance_adjustment(
        resolve_accounts(conn, entity),
        key=key,
        posting_date=as_of,
        currency=currency,
        change=dt,
        functional_change=fam,
        description=(
            f"Allowance for doubtful accounts {entity} {currency} as of {as_of}: required {money_str(required)}, "
            f"balance {money_str(balance)}, {direction} {money_str(abs(dt))} (loss rates {config.version})"
        ),
        memo=f"allowance estimate {as_of.isoformat()}",
        source_type=SOURCE_TYPE,
        source_id=f"{entity}:{currency}:{as_of.isoformat()}",
        policy_version=config.version[:32],
    )
    return entry, unadjusted


def _already_result(
    entity: str,
    cur: str,
    functional_currency: str,
    buckets: tuple[BucketEstimate, ...],
    as_of: date,
    entry_id: int | None,
) -> PairResult:
    """A pair estimated before for this date: its stored estimate and its entry, if one was posted."""
    required = sum((b.required for b in buckets), Decimal(0))
    key = entry_key(entity, cur, as_of)
    return PairResult(
        entity,
        cur,
        functional_currency,
        "already",
        required,
        buckets,
        entry_key=key,
        entry_id=entry_id,
    )


def _adjust_pair(
    conn: Connection,
    as_of: date,
    config: AllowanceConfig,
    entity: str,
    cur: str,
    functional_currency: str,
    buckets: tuple[BucketEstimate, ...],
    balance: tuple[Decimal, Decimal],
    req_f: Decimal,
) -> tuple[PairResult, JournalEntry | None]:
    """A pair estimated now: its result and the entry to post (None when nothing moves)."""
    required = sum((b.required for b in buckets), Decimal(0))
    key = entry_key(entity, cur, as_of)
    bal_t, bal_f = balance
    dt = round_money(required - bal_t, cur)
    df = round_money(req_f - bal_f, functional_currency)
    entry, unadjusted = _adjustment_entry(
        conn, key, entity, cur, functional_currency, as_of, dt, df, config, required, bal_t
    )
    result = PairResult(
        entity,
        cur,
        functional_currency,
        "posted" if entry is not None else "no_change",
        required,
        buckets,
        balance_before=bal_t,
        adjustment=dt,
        functional_required=req_f,
        functional_adjustment=df - unadjusted,
        functional_unadjusted=unadjusted,
        entry_key=key if entry is not None else None,
    )
    return result, entry


def _post_adjustments(
    conn: Connection, results: list[PairResult], adjustments: list[JournalEntry], actor: str
) -> list[PairResult]:
    """Post the adjustment entries in one call; each posted pair gets its entry id."""
    ids: dict[str, int] = {}
    if adjustments:
        res = ledger.post_entries(conn, adjustments, created_by=actor)
        ids = {**res.posted, **res.already}
    return [
        r if r.status != "posted" else _with_id(r, ids[r.entry_key])  # type: ignore[index]
        for r in results
    ]


def _with_id(r: PairResult, entry_id: int) -> PairResult:
    return replace(r, entry_id=entry_id)
