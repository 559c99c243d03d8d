"""Which (entity, currency) pairs an estimate covers, which are already done, and the refusals before any write."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, Date, bindparam, func, or_, select, union

from writeoffs.accounting.chart import posted_lines
from writeoffs.allowance.config import AllowanceConfig
from writeoffs.allowance.model import ENTRY_PREFIX, SOURCE_TYPE, entry_key
from writeoffs.allowance.sql import _aged
from writeoffs.db.schema import allowance_estimates, journal_entries
from writeoffs.errors import ConfigError, LedgerError


def _check_rates_cover_aging(
    conn: Connection, as_of: date, rates: Mapping[str, Mapping[str, Decimal]], config: AllowanceConfig
) -> None:
    s = _aged(conn, as_of)
    rows = conn.execute(select(s.c.entity_code, s.c.bucket).distinct(), {"d": as_of}).all()
    missing = sorted((e, b) for e, b in rows if e in rates and b not in rates[e])
    if missing:
        detail = ", ".join(f"{e}: {b!r}" for e, b in missing)
        raise ConfigError(
            f"allowance config {config.source}: loss_rates has no rate for aging bucket(s) holding open balances "
            f"on {as_of} ({detail})"
        )


def _scope(conn: Connection, as_of: date, entities: Sequence[str]) -> list[tuple[str, str]]:
    """(entity, currency) pairs to estimate: open AR as of the date, or a non-zero allowance balance to release."""
    s = _aged(conn, as_of)
    aged = select(s.c.entity_code, s.c.currency).where(s.c.entity_code.in_(bindparam("entities", expanding=True)))
    # The pairs with a non-zero allowance balance (accounting.chart: the one home of "an account's posted lines").
    p = posted_lines("allowance", through=bindparam("d", type_=Date))
    l = p.l  # noqa: E741
    released = (
        select(l.c.entity_code, l.c.currency)
        .select_from(p.join)
        .where(l.c.entity_code.in_(bindparam("entities", expanding=True)))
        .group_by(l.c.entity_code, l.c.currency)
        .having(
            or_(
                func.round(func.sum(l.c.credit - l.c.debit), 4) != 0,
                func.round(func.sum(l.c.functional_credit - l.c.functional_debit), 4) != 0,
            )
        )
    )
    pairs = union(aged, released)
    rows = conn.execute(pairs, {"d": as_of, "entities": list(entities)}).all()
    return sorted({(r[0], r[1]) for r in rows})


def _done_pairs(conn: Connection, as_of: date, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
    """Pairs already estimated for ``as_of`` (stored estimate rows or a posted entry) -> their entry id, if any."""
    if not pairs:
        return {}
    keys = {entry_key(e, c, as_of): (e, c) for e, c in pairs}
    entries = dict(
        conn.execute(
            select(journal_entries.c.idempotency_key, journal_entries.c.id).where(
                journal_entries.c.idempotency_key.in_(list(keys))
            )
        ).all()
    )
    stored = {
        (r.entity_code, r.currency)
        for r in conn.execute(
            select(allowance_estimates.c.entity_code, allowance_estimates.c.currency)
            .where(allowance_estimates.c.as_of_date == as_of)
            .distinct()
        )
    }
    out: dict[tuple[str, str], int | None] = {}
    for key, pair in keys.items():
        if key in entries or pair in stored:
            out[pair] = entries.get(key)
    return out


def _refuse_out_of_order(conn: Connection, as_of: date, todo: Sequence[tuple[str, str]]) -> None:
    later = conn.execute(
        select(journal_entries.c.entity_code, journal_entries.c.idempotency_key, journal_entries.c.posting_date).where(
            journal_entries.c.source_type == SOURCE_TYPE,
            journal_entries.c.posting_date > as_of,
            journal_entries.c.idempotency_key.like(f"{ENTRY_PREFIX}%"),
            journal_entries.c.entity_code.in_(sorted({e for e, _ in todo})),
        )
    ).all()
    wanted = {f"{ENTRY_PREFIX}{e}:{c}:" for e, c in todo}
    clash = sorted(r.idempotency_key for r in later if r.idempotency_key.rsplit(":", 1)[0] + ":" in wanted)
    if clash:
        raise LedgerError(
            f"allowance estimate for {as_of} refused: a later estimate is already booked ({', '.join(clash[:5])}); "
            "estimates are booked in date order"
        )
