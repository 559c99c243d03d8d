"""Reconciliation: what was posted is what was approved (checks ``writeoff_lines`` and ``approval_digests``).

Posting turns an approved item (invoice, amount, reason) into one entry of two lines: Dr the reason's expense account
(direct method; the reason map of the policy the item was selected under, ``policy_versions``) or the allowance
account (allowance method), Cr AR control, both for the item's amount and both tagged with its invoice. Afterwards
nothing in the other checks notices a line *moved* to another expense account (the entry still balances, AR is
untouched), nor an item whose amount and entry were changed together. This check compares, set-wise, every item in
status ``posted`` or ``reversed`` with the lines of its entry:

- kind ``account``: the debit is not on the account the item's reason (or the allowance method) requires, or the
  reason has no account in the item's recorded policy (or that policy is not recorded);
- kind ``amount``: the debit, the credit or the AR credit differs from the item's amount;
- kind ``shape``: the entry does not have exactly two lines, or a line names another invoice.

One break per (entity, currency, kind), the items attached. Only the reason maps are read in Python (one parse per
distinct policy of posted items: a handful); the comparison is one query.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select, text

from writeoffs.db.money import from_db_or_zero
from writeoffs.db.schema import invoices, policy_versions

_ITEMS = """
    SELECT w.id, w.invoice_id, w.amount, w.currency, w.reason_code, w.policy_hash, w.journal_entry_id AS entry_id,
           e.entity_code, le.writeoff_method
    FROM writeoffs w
    JOIN journal_entries e ON e.id = w.journal_entry_id AND e.status = 'posted'
    JOIN legal_entities le ON le.code = e.entity_code
    WHERE w.status IN ('posted', 'reversed')
"""


#: A finding's group: (entity, currency, kind).
_Key = tuple[str, str, str]


def _reason_map(conn: Connection) -> list[tuple[str, str, str]]:
    """(policy hash, reason, expense account) for every recorded policy that posted items were selected under."""
    from writeoffs.errors import WriteoffError
    from writeoffs.policy.schema import parse_policy

    hashes = [h for (h,) in conn.execute(text(f"SELECT DISTINCT policy_hash FROM ({_ITEMS}) x"))]
    out: list[tuple[str, str, str]] = []
    for h, content in conn.execute(
        select(policy_versions.c.content_hash, policy_versions.c.content).where(
            policy_versions.c.content_hash.in_(hashes)
        )
    ):
        try:
            policy = parse_policy(content, source=f"policy_versions[{h[:12]}]")
        except WriteoffError:
            continue  # an unreadable policy maps nothing: its items are reported under kind "account"
        if policy.content_hash == h:  # an edited policy text maps nothing either
            out.extend((h, str(reason), str(account)) for reason, account in policy.model.reasons.items())
    return out


def check_writeoff_lines(conn: Connection, as_of: date, tolerance: Any) -> list[Any]:
    """Each posted (or since reversed) write-off item's entry debits the account its reason requires and moves its
    amount: Dr expense-or-allowance / Cr AR control, exactly two lines of its invoice."""
    expected, params = _expected_accounts(_reason_map(conn))
    rows = _line_findings(conn, expected, params)
    # Invoice refs for the offending items only: joining invoices for every posted item would scan the sub-ledger.
    wanted = sorted({r.invoice_id for r in rows})
    refs = {
        i: ref
        for i, ref in conn.execute(select(invoices.c.id, invoices.c.invoice_ref).where(invoices.c.id.in_(wanted)))
    }
    groups, totals = _group_line_findings(conn, rows, refs)
    return _line_breaks(groups, totals)


def _expected_accounts(mapping: list[tuple[str, str, str]]) -> tuple[str, dict[str, object]]:
    """SQL (and its parameters): the reason map as rows (policy hash, reason, account); none when it is empty."""
    params: dict[str, object] = {}
    selects = []
    for n, (h, reason, account) in enumerate(mapping):
        selects.append(f"SELECT :h{n} AS policy_hash, :r{n} AS reason_code, :a{n} AS account_code")
        params |= {f"h{n}": h, f"r{n}": reason, f"a{n}": account}
    expected = " UNION ALL ".join(selects) or (
        "SELECT NULL AS policy_hash, NULL AS reason_code, NULL AS account_code WHERE 1 = 0"
    )
    return expected, params


def _line_findings(conn: Connection, expected: str, params: dict[str, object]) -> list[Any]:
    """The posted items whose entry's lines differ from what the item requires (one query)."""
    return conn.execute(
        text(
            f"""
            WITH expected AS ({expected}),
            lines AS (
                -- Per item, the lines of its entry: one grouped join on the tables themselves (no CTE joined twice:
                -- PostgreSQL's estimates stay sane, so no JIT compilation for a 16,000-item scan).
                SELECT w.id, w.invoice_id, w.amount, w.currency, w.reason_code, w.policy_hash, e.entity_code,
                       le.writeoff_method, COUNT(*) AS n_lines, SUM(l.debit) AS debit, SUM(l.credit) AS credit,
                       MIN(CASE WHEN l.debit > 0 THEN l.account_code END) AS dr_min,
                       MAX(CASE WHEN l.debit > 0 THEN l.account_code END) AS dr_max,
                       SUM(CASE WHEN a.role = 'ar_control' THEN l.credit - l.debit ELSE 0 END) AS ar_credit,
                       SUM(CASE WHEN l.invoice_id = w.invoice_id THEN 0 ELSE 1 END) AS foreign_lines
                FROM writeoffs w
                JOIN journal_entries e ON e.id = w.journal_entry_id AND e.status = 'posted'
                JOIN legal_entities le ON le.code = e.entity_code
                JOIN journal_lines l ON l.entry_id = e.id
                LEFT JOIN accounts a ON a.entity_code = l.entity_code AND a.code = l.account_code
                WHERE w.status IN ('posted', 'reversed')
                GROUP BY w.id, w.invoice_id, w.amount, w.currency, w.reason_code, w.policy_hash, e.entity_code,
                         le.writeoff_method
            ),
            c AS (
                SELECT it.id, it.invoice_id, it.entity_code, it.currency, it.amount, it.reason_code,
                       CASE WHEN it.writeoff_method = 'allowance' THEN al.code ELSE x.account_code END AS want,
                       it.n_lines, it.debit, it.credit, it.ar_credit, it.dr_min, it.dr_max, it.foreign_lines
                FROM lines it
                LEFT JOIN expected x ON x.policy_hash = it.policy_hash AND x.reason_code = it.reason_code
                LEFT JOIN accounts al ON al.entity_code = it.entity_code AND al.role = 'allowance'
            )
            SELECT * FROM c
            WHERE want IS NULL OR dr_min IS NULL OR dr_min <> dr_max OR dr_min <> want
               OR debit <> amount OR credit <> amount OR ar_credit <> amount
               OR n_lines <> 2 OR foreign_lines > 0
            ORDER BY id
            """
        ),
        params,
    ).all()


def _line_kind(r: Any) -> str:
    if r.want is None or r.dr_min is None or r.dr_min != r.dr_max or r.dr_min != r.want:
        return "account"
    if r.n_lines != 2 or r.foreign_lines:
        return "shape"
    return "amount"


def _group_line_findings(
    conn: Connection, rows: list[Any], refs: dict[int, str]
) -> tuple[dict[_Key, list[dict[str, Any]]], dict[_Key, list[tuple[Decimal, Decimal]]]]:
    """Per (entity, currency, kind): the items' documents, and per item (amount approved, amount the entry moved)."""
    groups: dict[_Key, list[dict[str, Any]]] = defaultdict(list)
    totals: dict[_Key, list[tuple[Decimal, Decimal]]] = defaultdict(list)
    for r in rows:
        amount = from_db_or_zero(conn, r.amount)
        debit = from_db_or_zero(conn, r.debit)
        credit = from_db_or_zero(conn, r.credit)
        # What the entry moved instead: the first side that differs from the item's amount.
        moved = next(
            (v for v in (debit, credit, from_db_or_zero(conn, r.ar_credit)) if v != amount),
            amount,
        )
        key = (r.entity_code, r.currency, _line_kind(r))
        groups[key].append(
            {
                "type": "writeoff",
                "id": r.id,
                "invoice_ref": refs.get(r.invoice_id),
                "reason": r.reason_code,
                "amount": format(amount, "f"),
                "expected_account": r.want,
                "debited_account": r.dr_min if r.dr_min == r.dr_max else f"{r.dr_min}..{r.dr_max}",
                "debit": format(debit, "f"),
                "credit": format(credit, "f"),
                "lines": r.n_lines,
            }
        )
        totals[key].append((amount, moved))
    return groups, totals


def _line_breaks(
    groups: dict[_Key, list[dict[str, Any]]],
    totals: dict[_Key, list[tuple[Decimal, Decimal]]],
) -> list[Any]:
    """One break per (entity, currency, kind), the items attached."""
    from writeoffs.reconcile.model import MAX_DOCUMENTS, Break

    out = []
    what = {
        "account": "debited another account than the item's reason requires (line moved, or reason unmapped)",
        "amount": "moved another amount than the item approved",
        "shape": "is not two lines of the item's invoice",
    }
    for (entity, currency, kind), docs in sorted(groups.items()):
        expected_total = sum((a for a, _ in totals[(entity, currency, kind)]), Decimal(0))
        actual_total = sum((d for _, d in totals[(entity, currency, kind)]), Decimal(0))
        out.append(
            Break(
                check="writeoff_lines",
                message=f"{len(docs)} posted write-off(s) of {entity} {currency} whose entry {what[kind]}",
                entity=entity,
                currency=currency,
                account=docs[0]["expected_account"] if kind == "account" else None,
                expected=expected_total if kind == "amount" else None,
                actual=actual_total if kind == "amount" else None,
                documents=tuple(docs[:MAX_DOCUMENTS]),
            )
        )
    return out


def check_approval_digests(conn: Connection, as_of: date, tolerance: Any) -> list[Any]:
    """The items of every posted batch still hash to the digest its approval recorded in the audit log.

    The confirming decision (``approval.confirmed``; ``approval.auto`` for the small-balance tier) records in its
    audit row, which is keyed and anchored, the hash over the ``(invoice_ref, amount, reason)`` of the items it
    approved (``writeoffs.approvals.batch_hash_of``). An item whose amount, reason or invoice was changed after the
    approval, even together with its entry, the invoice and AR, no longer hashes to it. A posted batch with no
    audited approval is a break too (fail closed).
    """
    from writeoffs.approvals import batch_hash_of
    from writeoffs.db.schema import audit_log, writeoff_batches, writeoffs
    from writeoffs.reconcile.checks_writeoffs import POSTED_BATCH_STATUSES
    from writeoffs.reconcile.model import MAX_DOCUMENTS, Break

    b = writeoff_batches
    batches = {
        r.id: r
        for r in conn.execute(
            select(b.c.id, b.c.batch_key, b.c.entity_code, b.c.currency).where(b.c.status.in_(POSTED_BATCH_STATUSES))
        )
    }
    if not batches:
        return []
    witnessed: dict[str, str | None] = {}
    for object_id, details in conn.execute(
        select(audit_log.c.object_id, audit_log.c.details)
        .where(
            audit_log.c.object_type == "writeoff_batch",
            audit_log.c.action.in_(("approval.confirmed", "approval.auto")),
        )
        .order_by(audit_log.c.id)
    ):
        witnessed[str(object_id)] = json.loads(details).get("batch_hash")
    items: dict[int, list[tuple[str, Decimal, str]]] = defaultdict(list)
    w = writeoffs
    for batch_id, ref, amount, reason in conn.execute(
        select(w.c.batch_id, invoices.c.invoice_ref, w.c.amount, w.c.reason_code)
        .select_from(w.join(invoices, invoices.c.id == w.c.invoice_id))
        .join(b, b.c.id == w.c.batch_id)
        .where(b.c.status.in_(POSTED_BATCH_STATUSES), w.c.status != "excluded")
    ):
        items[batch_id].append((ref, amount, reason))
    out = []
    for batch_id, batch in sorted(batches.items()):
        recorded = witnessed.get(str(batch_id))
        digest = batch_hash_of(items.get(batch_id, []))
        if recorded == digest:
            continue
        problem = (
            "has no audited approval (approval.confirmed / approval.auto)"
            if recorded is None
            else f"items no longer hash to the digest its approval recorded ({digest[:12]} != {recorded[:12]})"
        )
        out.append(
            Break(
                check="approval_digests",
                message=f"posted batch {batch_id} ({batch.batch_key}) {problem}",
                entity=batch.entity_code,
                currency=batch.currency,
                documents=tuple(
                    {"invoice_ref": ref, "amount": format(amount, "f"), "reason": reason}
                    for ref, amount, reason in sorted(items.get(batch_id, []))[:MAX_DOCUMENTS]
                ),
            )
        )
    return out
