"""Reconciliation checks: recoveries and the allowance for doubtful accounts.

``recoveries`` (within what was written off, ``recovered_amount`` consistent), ``allowance`` (the allowance account
explained by its entries), ``recovery_cash`` (cash received on written-off amounts = cash booked) and
``allowance_sign`` (never in debit; equal to the latest estimate right after its true-up).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from sqlalchemy import Connection, and_, exists, func, literal, or_, select, text, union_all

from writeoffs.accounting import keys
from writeoffs.db.schema import MONEY, accounts, allowance_estimates, invoices, payment_allocations, recoveries
from writeoffs.money import money_str
from writeoffs.reconcile.model import (
    _JE,
    _JL,
    MAX_DOCUMENTS,
    Break,
    Tolerances,
    _capped,
    _dec,
    _group,
    _in_list,
    _more,
    _sum,
    _tol_cte,
    _tol_of,
)

#: Journal sources allowed to move the allowance account (plus reversals of entries of these sources).
ALLOWANCE_SOURCES: tuple[str, ...] = ("allowance", "writeoff", "recovery")


def check_recoveries(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Per invoice: recoveries never exceed the amount written off; ``recovered_amount`` = sum of recoveries rows;
    recoveries are in the invoice currency and have a posted journal entry."""
    tol_sql, params = _tol_cte(conn, tolerance)
    rows = conn.execute(
        text(
            f"""
            WITH {tol_sql},
            r AS (SELECT rc.invoice_id, SUM(rc.amount) AS amount, COUNT(*) AS n,
                         SUM(CASE WHEN e.id IS NULL OR e.status <> 'posted' THEN 1 ELSE 0 END) AS unposted,
                         SUM(CASE WHEN rc.currency <> i.currency THEN 1 ELSE 0 END) AS wrong_currency
                  FROM recoveries rc
                  JOIN invoices i ON i.id = rc.invoice_id
                  LEFT JOIN journal_entries e ON e.id = rc.journal_entry_id
                  GROUP BY rc.invoice_id),
            c AS (
                SELECT i.id, i.invoice_ref, i.entity_code, i.currency, i.written_off_amount, i.recovered_amount,
                       r.amount AS recovered, r.n, r.unposted, r.wrong_currency
                FROM r JOIN invoices i ON i.id = r.invoice_id
                UNION ALL
                SELECT i.id, i.invoice_ref, i.entity_code, i.currency, i.written_off_amount, i.recovered_amount,
                       0, 0, 0, 0
                FROM invoices i
                WHERE i.recovered_amount <> 0 AND NOT EXISTS (SELECT 1 FROM recoveries x WHERE x.invoice_id = i.id)
            )
            SELECT c.*,
                   CASE WHEN ROUND(c.recovered - c.written_off_amount, 4) > {_tol_of("tol")} THEN 1 ELSE 0 END
                       AS exceeds,
                   CASE WHEN ABS(ROUND(c.recovered - c.recovered_amount, 4)) > {_tol_of("tol")} THEN 1 ELSE 0 END
                       AS mismatch
            FROM c LEFT JOIN tol ON tol.currency = c.currency
            WHERE ROUND(c.recovered - c.written_off_amount, 4) > {_tol_of("tol")}
               OR ABS(ROUND(c.recovered - c.recovered_amount, 4)) > {_tol_of("tol")}
               OR c.unposted > 0 OR c.wrong_currency > 0
            ORDER BY c.entity_code, c.currency, c.id
            """
        ),
        params,
    ).all()
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        if r.exceeds:
            groups[(r.entity_code, r.currency, "exceeds")].append(r)
        if r.mismatch:
            groups[(r.entity_code, r.currency, "mismatch")].append(r)
        if r.unposted:
            groups[(r.entity_code, r.currency, "unposted")].append(r)
        if r.wrong_currency:
            groups[(r.entity_code, r.currency, "currency")].append(r)
    out = []
    for (entity, currency, k), items in groups.items():
        docs = [
            {
                "type": "invoice",
                "id": r.id,
                "ref": r.invoice_ref,
                "written_off_amount": money_str(_dec(conn, r.written_off_amount)),
                "recovered_amount": money_str(_dec(conn, r.recovered_amount)),
                "recoveries_total": money_str(_dec(conn, r.recovered)),
                "recoveries": r.n,
            }
            for r in items
        ]
        recovered = _sum(conn, (r.recovered for r in items))
        if k == "exceeds":
            expected = _sum(conn, (r.written_off_amount for r in items))
            what = "recovered more than was written off"
        elif k == "mismatch":
            expected = _sum(conn, (r.recovered_amount for r in items))
            what = "have recovered_amount different from the sum of their recoveries"
        elif k == "unposted":
            expected = recovered
            what = f"have {sum(r.unposted for r in items)} recovery row(s) without a posted journal entry"
        else:
            expected = recovered
            what = "have recoveries in a currency other than the invoice's"
        out.append(
            Break(
                check="recoveries",
                entity=entity,
                currency=currency,
                expected=expected,
                actual=recovered,
                documents=_capped(docs),
                message=(
                    f"{len(items)} invoice(s) of {entity} {what} (limit/recorded {money_str(expected)}, recoveries "
                    f"{money_str(recovered)} {currency}){_more(len(items))}"
                ),
            )
        )
    return out


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
    allowance_lines = f"""
        SELECT l.entity_code, l.currency, l.account_code, l.debit, l.credit, e.id AS entry_id,
               e.idempotency_key, e.source_type,
               CASE WHEN e.source_type IN ({sources})
                      OR (e.source_type = 'reversal' AND o.source_type IN ({sources})) THEN 1 ELSE 0 END AS explained,
               CASE WHEN e.source_type = 'writeoff'
                      OR (e.source_type = 'reversal' AND o.source_type = 'writeoff') THEN 1 ELSE 0 END AS from_writeoff
        FROM journal_lines l
        JOIN journal_entries e ON e.id = l.entry_id AND e.status = 'posted'
        JOIN accounts a ON a.entity_code = l.entity_code AND a.code = l.account_code AND a.role = 'allowance'
        LEFT JOIN journal_entries o ON o.id = e.reverses_entry_id
    """
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
    rows = conn.execute(
        text(
            f"""
            WITH {tol_sql}, al AS ({allowance_lines}),
            gl AS (SELECT entity_code, currency, MIN(account_code) AS account_code,
                          SUM(debit - credit) AS amount
                   FROM al WHERE from_writeoff = 1 GROUP BY entity_code, currency),
            sub AS (SELECT i.entity_code, i.currency, SUM(i.written_off_amount) AS amount, COUNT(*) AS n
                    FROM invoices i JOIN legal_entities le ON le.code = i.entity_code
                    WHERE le.writeoff_method = 'allowance' AND i.written_off_amount > 0
                    GROUP BY i.entity_code, i.currency),
            k AS (SELECT entity_code, currency FROM sub UNION SELECT entity_code, currency FROM gl)
            SELECT k.entity_code, k.currency, gl.account_code, le.writeoff_method,
                   COALESCE(sub.amount, 0) AS expected, COALESCE(gl.amount, 0) AS actual, COALESCE(sub.n, 0) AS n
            FROM k
            JOIN legal_entities le ON le.code = k.entity_code
            LEFT JOIN sub ON sub.entity_code = k.entity_code AND sub.currency = k.currency
            LEFT JOIN gl ON gl.entity_code = k.entity_code AND gl.currency = k.currency
            LEFT JOIN tol ON tol.currency = k.currency
            WHERE ABS(ROUND(COALESCE(gl.amount, 0) - COALESCE(sub.amount, 0), 4)) > {_tol_of("tol")}
            ORDER BY k.entity_code, k.currency
            """
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


#: Journal sources that book cash received on written-off amounts (plus reversals of entries of these sources).
RECOVERY_CASH_SOURCES: tuple[str, ...] = ("recovery", "unapplied_cash")


def check_recovery_cash(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Cash received on written-off amounts = cash booked for it, per invoice (grouped per entity and currency).

    Received: 'recovery' payment allocations dated on or before ``as_of``, plus recoveries booked without such an
    allocation (by hand, or for a payment allocated otherwise). Booked: the cash-role account's debit - credit on
    posted entries of source ``recovery`` or ``unapplied_cash`` (and reversals of those), by the lines' invoice.
    The excess of a recovery allocation over what is still written off must be booked as unapplied cash, so an
    allocation booked only up to the cap shows up here. Regular payments are outside: the ERP books them (AR sync).
    """
    pa = payment_allocations.alias("pa")
    inv = invoices.alias("inv")
    rc = recoveries.alias("rc")
    pa2 = payment_allocations.alias("pa2")
    ln, e, o, a = _JL.alias("l"), _JE.alias("e"), _JE.alias("o"), accounts.alias("a")
    zero = literal(0, type_=MONEY)
    received_alloc = (
        select(inv.c.entity_code, inv.c.currency, pa.c.invoice_id, pa.c.amount.label("received"), zero.label("booked"))
        .select_from(pa.join(inv, inv.c.id == pa.c.invoice_id))
        .where(pa.c.kind == "recovery", pa.c.allocated_on <= as_of)
    )
    received_manual = (
        select(inv.c.entity_code, rc.c.currency, rc.c.invoice_id, rc.c.amount, zero)
        .select_from(rc.join(inv, inv.c.id == rc.c.invoice_id))
        .where(
            ~exists().where(
                pa2.c.kind == "recovery",
                pa2.c.invoice_id == rc.c.invoice_id,
                pa2.c.payment_id == rc.c.payment_id,
                pa2.c.allocated_on <= as_of,
            )
        )
    )
    sources = list(RECOVERY_CASH_SOURCES)
    booked = (
        select(ln.c.entity_code, ln.c.currency, ln.c.invoice_id, zero, (ln.c.debit - ln.c.credit))
        .select_from(
            ln.join(e, and_(e.c.id == ln.c.entry_id, e.c.status == "posted"))
            .join(a, and_(a.c.entity_code == ln.c.entity_code, a.c.code == ln.c.account_code, a.c.role == "cash"))
            .outerjoin(o, o.c.id == e.c.reverses_entry_id)
        )
        .where(or_(e.c.source_type.in_(sources), and_(e.c.source_type == "reversal", o.c.source_type.in_(sources))))
    )
    u = union_all(received_alloc, received_manual, booked).subquery("u")
    per = (
        select(
            u.c.entity_code,
            u.c.currency,
            u.c.invoice_id,
            func.sum(u.c.received).label("received"),
            func.sum(u.c.booked).label("booked"),
        )
        .group_by(u.c.entity_code, u.c.currency, u.c.invoice_id)
        .having(func.round(func.sum(u.c.received) - func.sum(u.c.booked), 4) != 0)
        .subquery("per")
    )
    ref = invoices.alias("ref")
    rows = conn.execute(
        select(per, ref.c.invoice_ref)
        .select_from(per.outerjoin(ref, ref.c.id == per.c.invoice_id))
        .order_by(per.c.entity_code, per.c.currency, per.c.invoice_id)
    ).all()
    groups = _group(
        (r for r in rows if abs(_dec(conn, r.booked) - _dec(conn, r.received)) > tolerance.for_currency(r.currency)),
        lambda r: (r.entity_code, r.currency),
    )
    out = []
    for (entity, currency), items in groups.items():
        expected, actual = _sum(conn, (r.received for r in items)), _sum(conn, (r.booked for r in items))
        docs = [
            {
                "type": "invoice",
                "id": r.invoice_id,
                "ref": r.invoice_ref,
                "received": money_str(_dec(conn, r.received)),
                "booked": money_str(_dec(conn, r.booked)),
            }
            for r in items
        ]
        out.append(
            Break(
                check="recovery_cash",
                entity=entity,
                currency=currency,
                expected=expected,
                actual=actual,
                documents=_capped(docs),
                message=(
                    f"{len(items)} invoice(s) of {entity}: recovery cash received {money_str(expected)} {currency}, "
                    f"booked to cash {money_str(actual)} (recoveries + unapplied cash){_more(len(items))}"
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
    allowance_lines = ln.join(e, and_(e.c.id == ln.c.entry_id, e.c.status == "posted")).join(
        a, and_(a.c.entity_code == ln.c.entity_code, a.c.code == ln.c.account_code, a.c.role == "allowance")
    )
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
    cut = (
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
            .join(a, and_(a.c.entity_code == ln.c.entity_code, a.c.code == ln.c.account_code, a.c.role == "allowance"))
        )
        .group_by(req.c.entity_code, req.c.currency, req.c.day, req.c.req)
        .subquery("cut")
    )
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
            .join(e, and_(e.c.id == ln.c.entry_id, e.c.status == "posted"))
            .join(a, and_(a.c.entity_code == ln.c.entity_code, a.c.code == ln.c.account_code, a.c.role == "allowance"))
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
