"""The approver's pages: my queue, a batch's items (filters, sorting, paging, the answer form) and what became of
an answer sent from the workspace."""

from __future__ import annotations

from collections.abc import Sequence

from writeoffs.approval_view import EVIDENCE_COLUMNS, evidence_cells, reason_label, rule_label
from writeoffs_airflow.workspace.access import QueueRow
from writeoffs_airflow.workspace.queries import PAGE_SIZES, SORTS, ItemPage, PageQuery
from writeoffs_airflow.workspace.render import cut, esc, facts, href, money, page, seg, table


def _md_cell(text: str) -> str:
    # evidence_cells() returns Markdown-escaped text (backslashes before punctuation); shown as plain text here.
    import re

    unescaped = re.sub(r"\\(.)", r"\1", text).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return cut(unescaped, 60)


def queue_page(rows: Sequence[QueueRow], *, prefix: str, user: str, recent: Sequence = ()) -> str:
    body_rows, attrs = [], []
    for r in rows:
        link = href(prefix, f"/batches/{seg(r.batch_id)}")
        body_rows.append(
            [
                f'<a class="batch-link" data-testid="batch-link" href="{link}">Batch {esc(r.batch_id)}</a>',
                esc(r.entity_code),
                esc(r.tier),
                esc(r.step),
                esc(r.as_of_date.isoformat()),
                esc(r.deadline.strftime("%Y-%m-%d %H:%M %Z").strip()) if r.deadline else "not yet requested",
                esc(r.count),
                money(r.total, r.currency),
            ]
        )
        attrs.append(f' data-batch-id="{esc(r.batch_id)}" data-tier="{esc(r.tier)}"')
    header = [
        ("Batch", ""),
        ("Entity", ""),
        ("Tier", ""),
        ("Step", ""),
        ("Business date", ""),
        ("Answer by", ""),
        ("Invoices", "num"),
        ("Total", "num"),
    ]
    intro = (
        f'<p id="queue-count" data-count="{len(rows)}">{len(rows)} batch(es) wait for your answer. '
        "You are asked only where the ledger lets you answer (tier, preparer, four eyes).</p>"
    )
    others = table(
        "recent-batches",
        [("Batch", ""), ("Entity", ""), ("Tier", ""), ("Status", ""), ("Business date", ""), ("Invoices", "num"),
         ("Total", "num")],
        [
            [
                f'<a class="batch-link" href="{href(prefix, f"/batches/{seg(b.id)}")}">Batch {esc(b.id)}</a>',
                esc(b.entity_code),
                esc(b.tier),
                esc(b.status),
                esc(b.as_of_date.isoformat()),
                esc(b.item_count),
                money(b.total_amount, b.currency),
            ]
            for b in recent
        ],
        row_attrs=[f' data-batch-id="{esc(b.id)}" data-status="{esc(b.status)}"' for b in recent],
        empty="None.",
    )  # fmt: skip
    return page(
        "My queue",
        intro
        + table("queue", header, body_rows, row_attrs=attrs, empty="Nothing waits for you.")
        + "<h2>Batches you may look at (newest first; counts as proposed)</h2>"
        + others,
        prefix=prefix,
        user=user,
        active="queue",
    )


def _sort_link(prefix: str, batch_id: int, q: PageQuery, key: str, label: str) -> str:
    descending = not q.descending if q.sort == key else True
    arrow = (" ▼" if q.descending else " ▲") if q.sort == key else ""
    url = href(
        prefix,
        f"/batches/{seg(batch_id)}",
        {"sort": key, "dir": "desc" if descending else "asc", "reason": q.reason, "size": q.size},
    )
    return f'<a class="sort" id="sort-{esc(key)}" data-testid="sort-{esc(key)}" href="{url}">{esc(label)}{arrow}</a>'


def batch_page(
    batch,
    result: ItemPage,
    q: PageQuery,
    *,
    prefix: str,
    user: str,
    required_action: str | None,
    answerers: Sequence[str],
    may_answer: bool = False,
) -> str:
    """``may_answer``: the signed-in user may answer the batch's approve step now: each item gets a checkbox to
    leave it out, and the page an Approve / Reject form (sent through Airflow's HITL API, workspace.answer)."""
    base = f"/batches/{seg(batch.id)}"
    top = _batch_facts(batch, result, answerers)
    links = _batch_links(prefix, base, result, required_action)
    filters = _batch_filters(prefix, base, result, q)
    items_table = _items_table(batch, result, q, prefix=prefix, may_answer=may_answer)
    pager = _pager(prefix, base, batch, result, q)
    body = top + f'<p id="batch-links">{" · ".join(links)}</p>' + filters + pager + items_table + pager
    if may_answer:
        body += _answer_form(prefix, base)
    return page(f"Batch {batch.id}", body, prefix=prefix, user=user, active="queue")


def _batch_facts(batch, result: ItemPage, answerers: Sequence[str]) -> str:
    n_pending, total_pending = result.pending, result.pending_total
    return facts(
        [
            ("Entity / currency", f"{esc(batch.entity_code)} / {esc(batch.currency)}"),
            ("Tier", esc(batch.tier)),
            ("Status", f'<span id="batch-status">{esc(batch.status)}</span>'),
            ("Business date", esc(batch.as_of_date.isoformat())),
            ("Invoices in play", f'<span id="pending-count">{esc(n_pending)}</span>'),
            ("Total in play", f'<span id="pending-total">{money(total_pending, batch.currency)}</span>'),
            ("Prepared by", cut(batch.prepared_by or "scheduler", 60)),
            ("Who may answer now", cut(", ".join(answerers), 200) or "nobody (decided or closed)"),
            ("Policy", f"{cut(batch.policy_version, 40)} ({esc(batch.policy_hash[:12])})"),
            ("Fingerprint", esc((batch.batch_hash or "")[:16])),
        ],
        "batch-facts",
    )


def _batch_links(prefix: str, base: str, result: ItemPage, required_action: str | None) -> list[str]:
    """The CSV download of every item and, when there is one, the link to the request in Airflow."""
    csv_url = href(prefix, f"{base}/candidates.csv")
    links = [
        f'<a class="csv-download" id="csv-download" data-testid="csv-download" href="{csv_url}" download>'
        f"Download all {esc(sum(n for _, n in result.reasons))} items (CSV)</a>"
    ]
    if required_action:
        links.append(
            f'<a id="required-action" data-testid="required-action" href="{esc(required_action)}" target="_top">'
            "Answer in Airflow (Required Action)</a>"
        )
    return links


def _batch_filters(prefix: str, base: str, result: ItemPage, q: PageQuery) -> str:
    """The filter form: reason, sort key, order and page size."""
    reason_opts = ['<option value="">all reasons</option>'] + [
        f'<option value="{esc(code)}"{" selected" if code == q.reason else ""}>'
        f"{cut(reason_label(code), 60)} ({esc(n)})</option>"
        for code, n in result.reasons
    ]
    size_opts = [f'<option value="{s}"{" selected" if s == q.size else ""}>{s}</option>' for s in PAGE_SIZES]
    sort_opts = [f'<option value="{s}"{" selected" if s == q.sort else ""}>{esc(s)}</option>' for s in SORTS]
    return (
        f'<form id="filters" data-testid="filters" class="inline" method="get" action="{href(prefix, base)}">'
        f'<label>Reason <select name="reason" id="filter-reason">{"".join(reason_opts)}</select></label>'
        f'<label>Sort <select name="sort" id="filter-sort">{"".join(sort_opts)}</select></label>'
        f'<label>Order <select name="dir" id="filter-dir">'
        f'<option value="desc"{" selected" if q.descending else ""}>descending</option>'
        f'<option value="asc"{"" if q.descending else " selected"}>ascending</option></select></label>'
        f'<label>Per page <select name="size" id="filter-size">{"".join(size_opts)}</select></label>'
        '<button type="submit" id="apply-filters">Apply</button></form>'
    )


def _items_table(batch, result: ItemPage, q: PageQuery, *, prefix: str, may_answer: bool) -> str:
    """One page of the batch's items, with sortable column heads and, for someone who may answer, a checkbox per
    item still in play to leave it out."""
    header = [
        ("#", "num"),
        ("Invoice", ""),
        ("Customer", ""),
        ("Amount", "num"),
        ("Reason", ""),
        ("Rule that fired", ""),
        *[(c, "num" if k < 4 else "") for k, c in enumerate(EVIDENCE_COLUMNS)],
        ("Status", ""),
    ]
    if may_answer:
        header.insert(0, ("Exclude", ""))
    sortable = {"Amount": "amount", "Days past due": "days_past_due", "Invoice": "invoice"}
    rows, attrs = [], []
    for k, item in enumerate(result.items, start=q.offset + 1):
        trail = href(prefix, "/trail", {"invoice": item.invoice_ref, "entity": batch.entity_code})
        rows.append(
            [
                esc(k),
                f'<a class="trail-link" href="{trail}">{cut(item.invoice_ref, 40)}</a>',
                f"{cut(item.customer_name, 60)} <span class='muted'>({cut(item.customer_ref, 30)})</span>",
                money(item.amount, batch.currency),
                cut(reason_label(item.reason_code), 60),
                cut(rule_label(item.rule), 80),
                *[_md_cell(c) for c in evidence_cells(item)],
                esc(item.status),
            ]
        )
        if may_answer:
            box = (
                f'<input type="checkbox" form="answer-form" name="exclude" value="{esc(item.invoice_ref)}" '
                f'data-testid="exclude-box" aria-label="leave {cut(item.invoice_ref, 40)} out">'
                if item.status not in ("excluded", "rejected", "expired", "skipped", "reversed")
                else ""
            )
            rows[-1].insert(0, box)
        attrs.append(
            f' data-invoice-ref="{cut(item.invoice_ref, 200)}" data-writeoff-id="{esc(item.writeoff_id)}"'
            f' data-status="{esc(item.status)}"'
        )
    items_table = table("items", header, rows, row_attrs=attrs, empty="No items match.")
    for label, key in sortable.items():
        items_table = items_table.replace(
            f'scope="col">{esc(label)}</th>', f'scope="col">{_sort_link(prefix, batch.id, q, key, label)}</th>', 1
        )
    return items_table


def _pager(prefix: str, base: str, batch, result: ItemPage, q: PageQuery) -> str:
    last = max(1, -(-result.matching // q.size))
    nav = []
    keep = {"sort": q.sort, "dir": "desc" if q.descending else "asc", "reason": q.reason, "size": q.size}
    if q.page > 1:
        prev_url = href(prefix, base, {**keep, "page": q.page - 1})
        nav.append(f'<a id="page-prev" data-testid="page-prev" href="{prev_url}">← previous</a>')
    nav.append(
        f'<span id="page-info" data-page="{q.page}" data-pages="{last}" data-matching="{result.matching}">'
        f"page {q.page} of {last} · {result.matching} item(s), {money(result.matching_total, batch.currency)}</span>"
    )
    if q.page < last:
        next_url = href(prefix, base, {**keep, "page": q.page + 1})
        nav.append(f'<a id="page-next" data-testid="page-next" href="{next_url}">next →</a>')
    return f'<div class="pager" id="pager">{"".join(nav)}</div>'


def _answer_form(prefix: str, base: str) -> str:
    return (
        f'<form id="answer-form" data-testid="answer-form" method="post" action="{href(prefix, base + "/answer")}">'
        "<p>Tick the invoices on this page to leave out, then answer. Your answer goes to Airflow as you "
        "(the same as the Required Action form); a confirmation request follows an approval.</p>"
        "<label>Internal comment (optional, never shown to customers)<br>"
        '<textarea name="comment" id="answer-comment" rows="3" cols="80" maxlength="2000"></textarea></label><br>'
        '<button type="submit" name="decision" value="approve" id="answer-approve">Approve</button> '
        '<button type="submit" name="decision" value="reject" id="answer-reject">Reject</button></form>'
    )


def answer_page(
    batch, status: int, message: str, decision: str, excluded: Sequence[str], *, prefix: str, user: str
) -> str:
    """What became of an answer sent from the workspace: Airflow's verdict, in words."""
    back = href(prefix, f"/batches/{seg(batch.id)}")
    if status == 200:
        left_out = ", ".join(cut(r, 40) for r in excluded[:20]) + (" …" if len(excluded) > 20 else "")
        text = (
            f"Airflow accepted your answer: <b>{esc(decision)}</b>"
            + (f", leaving out {esc(len(excluded))} invoice(s): {left_out}" if excluded else "")
            + ". The ledger records it within seconds (and refuses it, telling you why, if it must)."
        )
    elif status == 403:
        text = f"Airflow refused your answer: you are not assigned to this request ({cut(message, 300)})."
    else:
        text = f"Airflow did not take the answer (HTTP {esc(status)}): {cut(message, 300)}"
    body = f'<p id="answer-result" data-status="{esc(status)}">{text}</p><p><a href="{back}">Back to the batch</a></p>'
    return page(f"Batch {batch.id}: answer", body, prefix=prefix, user=user, active="queue")
