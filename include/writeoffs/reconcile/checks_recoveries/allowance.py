"""The allowance for doubtful accounts: ``allowance`` (the allowance account explained by its entries) and
``allowance_sign`` (never in debit; equal to the latest estimate right after its true-up)."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, case, func, or_, select

from writeoffs.accounting import keys
from writeoffs.accounting.chart import posted_condition, posted_lines_join, role_condition
from writeoffs.db.schema import accounts, allowance_estimates, invoices, legal_entities
from writeoffs.money import money_str
from writeoffs.reconcile.model import (
    _JE,
    _JL,
    _ONE,
    _ZERO,
    MAX_DOCUMENTS,
    Break,
    Tolerances,
    _dec,
    _round4,
    _sub_vs_gl,
    _tol,
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
    tol, tol_amount = _tol(conn, tolerance)
    al = _allowance_lines().cte("al")
    out = _unexplained_allowance(conn, tol, tol_amount, al)
    out += _allowance_vs_writeoffs(conn, tol, tol_amount, al)
    return out


def _allowance_lines() -> Select:
    """The posted lines of allowance-role accounts, flagged ``explained`` (moved by one of :data:`ALLOWANCE_SOURCES`
    or a reversal of one) and ``from_writeoff`` (SQLAlchemy Core; the sources an expanding bind)."""
    ln, e, a, o = _JL.alias("l"), _JE.alias("e"), accounts.alias("a"), _JE.alias("o")
    sources = bindparam("sources", list(ALLOWANCE_SOURCES), expanding=True)
    reversal = e.c.source_type == "reversal"
    explained = or_(e.c.source_type.in_(sources), and_(reversal, o.c.source_type.in_(sources)))
    from_writeoff = or_(e.c.source_type == "writeoff", and_(reversal, o.c.source_type == "writeoff"))
    return select(
        ln.c.entity_code,
        ln.c.currency,
        ln.c.account_code,
        ln.c.debit,
        ln.c.credit,
        e.c.id.label("entry_id"),
        e.c.idempotency_key,
        e.c.source_type,
        case((explained, _ONE), else_=_ZERO).label("explained"),
        case((from_writeoff, _ONE), else_=_ZERO).label("from_writeoff"),
    ).select_from(posted_lines_join(ln, e, a, "allowance").outerjoin(o, o.c.id == e.c.reverses_entry_id))


def _unexplained_allowance(conn: Connection, tol: Any, tol_amount: Any, al: Any) -> list[Break]:
    """1. Per entity and currency, the allowance balance moved by entries of other sources, with those entries."""
    out: list[Break] = []
    net = al.c.credit - al.c.debit
    unexplained = conn.execute(
        select(
            al.c.entity_code,
            al.c.currency,
            func.min(al.c.account_code).label("account_code"),
            func.sum(net).label("balance"),
            func.sum(case((al.c.explained == _ONE, net), else_=_ZERO)).label("explained"),
        )
        .select_from(al.outerjoin(tol, tol.c.currency == al.c.currency))
        .group_by(al.c.entity_code, al.c.currency, tol.c.amount)
        .having(func.abs(_round4(func.sum(case((al.c.explained == _ZERO, net), else_=_ZERO)))) > tol_amount)
    ).all()
    entries = _unexplained_entries()
    for r in unexplained:
        docs = [
            {
                "type": "journal_entry",
                "id": d.entry_id,
                "key": d.idempotency_key,
                "source_type": d.source_type,
                "net_credit": money_str(_dec(conn, d.net)),
            }
            for d in conn.execute(entries, {"e": r.entity_code, "c": r.currency})
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


def _unexplained_entries() -> Select:
    """The entries of entity ``:e`` and currency ``:c`` that moved the allowance unexplained, with their net credit
    (the first :data:`MAX_DOCUMENTS`)."""
    al = _allowance_lines().subquery("al")
    return (
        select(al.c.entry_id, al.c.idempotency_key, al.c.source_type, func.sum(al.c.credit - al.c.debit).label("net"))
        .where(al.c.explained == _ZERO, al.c.entity_code == bindparam("e"), al.c.currency == bindparam("c"))
        .group_by(al.c.entry_id, al.c.idempotency_key, al.c.source_type)
        .order_by(al.c.entry_id)
        .limit(MAX_DOCUMENTS)
    )


def _allowance_vs_writeoffs(conn: Connection, tol: Any, tol_amount: Any, al: Any) -> list[Break]:
    """2. Per entity and currency, allowance debits from write-offs vs the sub-ledger's written-off amounts."""
    out: list[Break] = []
    gl = (
        select(
            al.c.entity_code,
            al.c.currency,
            func.min(al.c.account_code).label("account_code"),
            func.sum(al.c.debit - al.c.credit).label("amount"),
        )
        .where(al.c.from_writeoff == _ONE)
        .group_by(al.c.entity_code, al.c.currency)
        .cte("gl")
    )
    i, le = invoices.alias("i"), legal_entities.alias("le")
    sub = (
        select(i.c.entity_code, i.c.currency, func.sum(i.c.written_off_amount).label("amount"), func.count().label("n"))
        .select_from(i.join(le, le.c.code == i.c.entity_code))
        .where(le.c.writeoff_method == "allowance", i.c.written_off_amount > _ZERO)
        .group_by(i.c.entity_code, i.c.currency)
        .cte("sub")
    )

    def more(k: Any) -> tuple[list, list]:
        lek = legal_entities.alias("le")
        return [lek.c.writeoff_method], [(lek, lek.c.code == k.c.entity_code)]

    rows = conn.execute(_sub_vs_gl(tol, tol_amount, sub, gl, more)).all()
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
    allowance_lines = posted_lines_join(ln, e, a, "allowance")
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
            .join(a, role_condition(ln, a, "allowance"))
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
            .join(e, posted_condition(ln, e))
            .join(a, role_condition(ln, a, "allowance"))
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
