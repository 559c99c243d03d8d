"""The allowance for doubtful accounts: ``allowance`` (the allowance account explained by its entries) and
``allowance_sign`` (never in debit; equal to the latest estimate right after its true-up)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Connection, and_, func, select, text

from writeoffs.accounting import keys
from writeoffs.accounting.chart import posted_lines_joins
from writeoffs.db.schema import accounts, allowance_estimates
from writeoffs.money import money_str
from writeoffs.reconcile.model import (
    _JE,
    _JL,
    MAX_DOCUMENTS,
    Break,
    Tolerances,
    _dec,
    _in_list,
    _of_role,
    _posted,
    _posted_lines_of_role,
    _sub_vs_gl,
    _tol_cte,
    _tol_of,
)

#: Journal sources allowed to move the allowance account (plus reversals of entries of these sources).
ALLOWANCE_SOURCES: tuple[str, ...] = ("allowance", "writeoff", "recovery")


def check_allowance(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """The allowance account is explained by its entries, and write-offs charged to it match the sub-ledger.

    1. Balance (credit - debit) of the allowance account = the part moved by estimates (``allowance``), write-offs,
       recoveries and reversals of those. Anything else (a manual entry, a mis-coded posting) is unexplained.
    2. Per entity and currency, allowance debits from write-off entries (net of their reversals) = the sub-ledger's
       ``written_off_amount`` for allowance-method entities, and 0 for direct-method entities (whose write-offs go
       to bad-debt expense and must not touch the reserve).
    """
    tol_sql, params = _tol_cte(conn, tolerance)
    sources, p2 = _in_list("src", ALLOWANCE_SOURCES)
    params.update(p2)
    allowance_lines = _allowance_lines(sources)
    out = _unexplained_allowance(conn, tol_sql, params, p2, allowance_lines)
    out += _allowance_vs_writeoffs(conn, tol_sql, params, allowance_lines)
    return out


def _allowance_lines(sources: str) -> str:
    """SQL: the posted lines of allowance-role accounts, flagged ``explained`` (moved by one of ``sources`` or a
    reversal of one) and ``from_writeoff``."""
    return f"""
        SELECT l.entity_code, l.currency, l.account_code, l.debit, l.credit, e.id AS entry_id,
               e.idempotency_key, e.source_type,
               CASE WHEN e.source_type IN ({sources})
                      OR (e.source_type = 'reversal' AND o.source_type IN ({sources})) THEN 1 ELSE 0 END AS explained,
               CASE WHEN e.source_type = 'writeoff'
                      OR (e.source_type = 'reversal' AND o.source_type = 'writeoff') THEN 1 ELSE 0 END AS from_writeoff
        FROM journal_lines l
        {posted_lines_joins("allowance")}
        LEFT JOIN journal_entries o ON o.id = e.reverses_entry_id
    """


def _unexplained_allowance(conn: Connection, tol_sql: str, params: dict, p2: dict, allowance_lines: str) -> list[Break]:
    """1. Per entity and currency, the allowance balance moved by entries of other sources, with those entries."""
    out: list[Break] = []
    unexplained = conn.execute(
        text(
            f"""
            WITH {tol_sql}, al AS ({allowance_lines})
            SELECT al.entity_code, al.currency, MIN(al.account_code) AS account_code,
                   SUM(al.credit - al.debit) AS balance,
                   SUM(CASE WHEN al.explained = 1 THEN al.credit - al.debit ELSE 0 END) AS explained
            FROM al LEFT JOIN tol ON tol.currency = al.currency
            GROUP BY al.entity_code, al.currency, tol.amount
            HAVING ABS(ROUND(SUM(CASE WHEN al.explained = 0 THEN al.credit - al.debit ELSE 0 END), 4))
                   > {_tol_of("tol")}
            """
        ),
        params,
    ).all()
    for r in unexplained:
        docs = [
            {
                "type": "journal_entry",
                "id": d.entry_id,
                "key": d.idempotency_key,
                "source_type": d.source_type,
                "net_credit": money_str(_dec(conn, d.net)),
            }
            for d in conn.execute(
                text(
                    f"""
                    SELECT entry_id, idempotency_key, source_type, SUM(credit - debit) AS net
                    FROM ({allowance_lines}) al
                    WHERE explained = 0 AND entity_code = :e AND currency = :c
                    GROUP BY entry_id, idempotency_key, source_type ORDER BY entry_id LIMIT {MAX_DOCUMENTS}
                    """
                ),
                {**p2, "e": r.entity_code, "c": r.currency},
            )
        ]
        expected, actual = _dec(conn, r.explained), _dec(conn, r.balance)
        out.append(
            Break(
                check="allowance",
                entity=r.entity_code,
                currency=r.currency,
                account=r.account_code,
                expected=expected,
                actual=actual,
                documents=tuple(docs),
                message=(
                    f"allowance balance {money_str(actual)} {r.currency} of {r.entity_code}: "
                    f"{money_str(actual - expected)} moved by entries other than estimates, write-offs and "
                    f"recoveries"
                ),
            )
        )
    return out


def _allowance_vs_writeoffs(conn: Connection, tol_sql: str, params: dict, allowance_lines: str) -> list[Break]:
    """2. Per entity and currency, allowance debits from write-offs vs the sub-ledger's written-off amounts."""
    out: list[Break] = []
    rows = conn.execute(
        text(
            _sub_vs_gl(
                f"""{tol_sql}, al AS ({allowance_lines}),
                gl AS (SELECT entity_code, currency, MIN(account_code) AS account_code,
                              SUM(debit - credit) AS amount
                       FROM al WHERE from_writeoff = 1 GROUP BY entity_code, currency),
                sub AS (SELECT i.entity_code, i.currency, SUM(i.written_off_amount) AS amount, COUNT(*) AS n
                        FROM invoices i JOIN legal_entities le ON le.code = i.entity_code
                        WHERE le.writeoff_method = 'allowance' AND i.written_off_amount > 0
                        GROUP BY i.entity_code, i.currency)""",
                columns=", le.writeoff_method",
                joins="\n        JOIN legal_entities le ON le.code = k.entity_code",
            )
        ),
        params,
    ).all()
    for r in rows:
        expected, actual = _dec(conn, r.expected), _dec(conn, r.actual)
        what = (
            f"sub-ledger write-offs {money_str(expected)} on {r.n} invoices"
            if r.writeoff_method == "allowance"
            else "0 expected (direct-method entity)"
        )
        out.append(
            Break(
                check="allowance",
                entity=r.entity_code,
                currency=r.currency,
                account=r.account_code,
                expected=expected,
                actual=actual,
                message=(
                    f"allowance debits from write-offs {money_str(actual)} {r.currency} of {r.entity_code} vs {what}"
                ),
            )
        )
    return out


def check_allowance_sign(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """The allowance account (a contra-asset) never has a debit balance; and right after the latest estimate's
    true-up entry (key ``alw:``, posted on the estimate date) its balance equalled the estimate's required allowance.

    Sign: per entity and currency, credit - debit of the allowance-role account over posted entries; expected >= 0.
    Adequacy: for the latest ``allowance_estimates`` date on or before ``as_of``, the balance over entries up to and
    including that true-up (by entry id, so that the day's later write-offs do not count) = SUM(required_allowance).
    An estimate without a true-up entry (the balance was already right) is not judged.
    """
    ln, e, a = _JL.alias("l"), _JE.alias("e"), accounts.alias("a")
    out = _debit_balances(conn, tolerance, ln, e, a)
    out += _adequacy_breaks(conn, as_of, tolerance, ln, e, a)
    return out


def _debit_balances(conn: Connection, tolerance: Tolerances, ln, e, a) -> list[Break]:
    """Sign: allowance accounts with a debit balance beyond the tolerance."""
    allowance_lines = _posted_lines_of_role(ln, e, a, "allowance")
    out: list[Break] = []
    sign = conn.execute(
        select(
            ln.c.entity_code,
            ln.c.currency,
            func.min(ln.c.account_code).label("account_code"),
            func.sum(ln.c.credit - ln.c.debit).label("balance"),
        )
        .select_from(allowance_lines)
        .group_by(ln.c.entity_code, ln.c.currency)
        .having(func.round(func.sum(ln.c.credit - ln.c.debit), 4) < 0)
        .order_by(ln.c.entity_code, ln.c.currency)
    ).all()
    for r in sign:
        balance = _dec(conn, r.balance)
        if -balance <= tolerance.for_currency(r.currency):
            continue
        out.append(
            Break(
                check="allowance_sign",
                entity=r.entity_code,
                currency=r.currency,
                account=r.account_code,
                expected=_dec(conn, 0),
                actual=balance,
                message=(
                    f"allowance account {r.account_code} of {r.entity_code} has a debit balance of "
                    f"{money_str(-balance)} {r.currency}: write-offs consumed more than the reserve held"
                ),
            )
        )
    return out


def _trueup_cut(as_of: date, ln, e, a):
    """Per entity and currency: the latest estimate date on or before ``as_of``, its required allowance and the last
    true-up entry of that day (``cut``)."""
    ae = allowance_estimates.alias("ae")
    latest = (
        select(ae.c.entity_code, ae.c.currency, func.max(ae.c.as_of_date).label("day"))
        .where(ae.c.as_of_date <= as_of)
        .group_by(ae.c.entity_code, ae.c.currency)
        .subquery("latest")
    )
    req = (
        select(latest.c.entity_code, latest.c.currency, latest.c.day, func.sum(ae.c.required_allowance).label("req"))
        .select_from(
            latest.join(
                ae,
                and_(
                    ae.c.entity_code == latest.c.entity_code,
                    ae.c.currency == latest.c.currency,
                    ae.c.as_of_date == latest.c.day,
                ),
            )
        )
        .group_by(latest.c.entity_code, latest.c.currency, latest.c.day)
        .subquery("req")
    )
    return (
        select(req.c.entity_code, req.c.currency, req.c.day, req.c.req, func.max(e.c.id).label("cut"))
        .select_from(
            req.join(ln, and_(ln.c.entity_code == req.c.entity_code, ln.c.currency == req.c.currency))
            .join(
                e,
                and_(
                    e.c.id == ln.c.entry_id,
                    e.c.status == "posted",
                    e.c.posting_date == req.c.day,
                    e.c.idempotency_key.like(f"{keys.ALLOWANCE_PREFIX}%"),
                ),
            )
            .join(a, _of_role(ln, a, "allowance"))
        )
        .group_by(req.c.entity_code, req.c.currency, req.c.day, req.c.req)
        .subquery("cut")
    )


def _adequacy_breaks(conn: Connection, as_of: date, tolerance: Tolerances, ln, e, a) -> list[Break]:
    """Adequacy: the allowance balance right after the latest true-up vs the estimate's required allowance."""
    cut = _trueup_cut(as_of, ln, e, a)
    out: list[Break] = []
    adequacy = conn.execute(
        select(
            cut.c.entity_code,
            cut.c.currency,
            cut.c.day,
            cut.c.req,
            cut.c.cut,
            func.min(ln.c.account_code).label("account_code"),
            func.sum(ln.c.credit - ln.c.debit).label("balance"),
        )
        .select_from(
            cut.join(
                ln,
                and_(
                    ln.c.entity_code == cut.c.entity_code, ln.c.currency == cut.c.currency, ln.c.entry_id <= cut.c.cut
                ),
            )
            .join(e, _posted(ln, e))
            .join(a, _of_role(ln, a, "allowance"))
        )
        .group_by(cut.c.entity_code, cut.c.currency, cut.c.day, cut.c.req, cut.c.cut)
        .order_by(cut.c.entity_code, cut.c.currency)
    ).all()
    for r in adequacy:
        required, balance = _dec(conn, r.req), _dec(conn, r.balance)
        if abs(balance - required) <= tolerance.for_currency(r.currency):
            continue
        out.append(
            Break(
                check="allowance_sign",
                entity=r.entity_code,
                currency=r.currency,
                account=r.account_code,
                expected=required,
                actual=balance,
                documents=({"type": "journal_entry", "id": r.cut, "estimate_date": str(r.day)},),
                message=(
                    f"allowance of {r.entity_code} after the {r.day} true-up: {money_str(balance)} {r.currency}, "
                    f"the estimate of {r.day} requires {money_str(required)}"
                ),
            )
        )
    return out
