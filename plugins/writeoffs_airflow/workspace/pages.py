"""The workspace pages as HTML strings: my queue, a batch's items, an invoice's trail, reconciliation, sub-ledger.

Each function takes what the route read (already authorised) and returns the page; every source value is escaped
(:mod:`.render`). Stable element ids and ``data-testid`` attributes for browser tests: ``table#queue``,
``table#items``, ``a.csv-download``, ``a#required-action``, ``form#filters``, ``nav a#nav-*``.
"""

from __future__ import annotations

from collections.abc import Sequence

from writeoffs.approval_view import EVIDENCE_COLUMNS, evidence_cells, reason_label, rule_label
from writeoffs_airflow.workspace.access import QueueRow
from writeoffs_airflow.workspace.queries import PAGE_SIZES, SORTS, ItemPage, PageQuery, ReconView
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
    csv_url = href(prefix, f"{base}/candidates.csv")
    n_pending, total_pending = result.pending, result.pending_total
    top = facts(
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
    links = [
        f'<a class="csv-download" id="csv-download" data-testid="csv-download" href="{csv_url}" download>'
        f"Download all {esc(sum(n for _, n in result.reasons))} items (CSV)</a>"
    ]
    if required_action:
        links.append(
            f'<a id="required-action" data-testid="required-action" href="{esc(required_action)}" target="_top">'
            "Answer in Airflow (Required Action)</a>"
        )
    reason_opts = ['<option value="">all reasons</option>'] + [
        f'<option value="{esc(code)}"{" selected" if code == q.reason else ""}>'
        f"{cut(reason_label(code), 60)} ({esc(n)})</option>"
        for code, n in result.reasons
    ]
    size_opts = [f'<option value="{s}"{" selected" if s == q.size else ""}>{s}</option>' for s in PAGE_SIZES]
    sort_opts = [f'<option value="{s}"{" selected" if s == q.sort else ""}>{esc(s)}</option>' for s in SORTS]
    filters = (
        f'<form id="filters" data-testid="filters" class="inline" method="get" action="{href(prefix, base)}">'
        f'<label>Reason <select name="reason" id="filter-reason">{"".join(reason_opts)}</select></label>'
        f'<label>Sort <select name="sort" id="filter-sort">{"".join(sort_opts)}</select></label>'
        f'<label>Order <select name="dir" id="filter-dir">'
        f'<option value="desc"{" selected" if q.descending else ""}>descending</option>'
        f'<option value="asc"{"" if q.descending else " selected"}>ascending</option></select></label>'
        f'<label>Per page <select name="size" id="filter-size">{"".join(size_opts)}</select></label>'
        '<button type="submit" id="apply-filters">Apply</button></form>'
    )
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
    pager = f'<div class="pager" id="pager">{"".join(nav)}</div>'
    body = top + f'<p id="batch-links">{" · ".join(links)}</p>' + filters + pager + items_table + pager
    if may_answer:
        body += (
            f'<form id="answer-form" data-testid="answer-form" method="post" action="{href(prefix, base + "/answer")}">'
            "<p>Tick the invoices on this page to leave out, then answer. Your answer goes to Airflow as you "
            "(the same as the Required Action form); a confirmation request follows an approval.</p>"
            "<label>Internal comment (optional, never shown to customers)<br>"
            '<textarea name="comment" id="answer-comment" rows="3" cols="80" maxlength="2000"></textarea></label><br>'
            '<button type="submit" name="decision" value="approve" id="answer-approve">Approve</button> '
            '<button type="submit" name="decision" value="reject" id="answer-reject">Reject</button></form>'
        )
    return page(f"Batch {batch.id}", body, prefix=prefix, user=user, active="queue")


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


def chain_block(chain, audit_rows: Sequence) -> str:
    """The audit-chain status (``writeoffs.audit_anchor.ChainStatus``) and the invoice's own audit rows."""
    if chain is None:
        return ""
    state = "unknown" if chain.intact is None else ("intact" if chain.intact else "broken")
    cls = {"intact": "ok", "broken": "bad", "unknown": "bad"}[state]
    out = (
        f'<h2>Audit chain</h2><p id="audit-chain" data-testid="audit-chain" data-state="{state}"'
        f' data-broken-at="{esc(chain.broken_at if chain.broken_at is not None else "")}" class="{cls}">'
        f"<b>{cut(chain.headline(), 400)}</b></p>"
        f'<p class="muted" id="audit-chain-basis">Verified: {cut(chain.basis(), 600)}.</p>'
    )
    rows = [
        [
            esc(r.id),
            esc(r.recorded_at),
            cut(r.actor, 60),
            cut(r.action, 64),
            f"{cut(r.object_type, 32)} {cut(r.object_id, 40)}",
            '<span class="bad">broken here</span>' if chain.broken_at == r.id else "",
        ]
        for r in audit_rows
    ]
    return out + table(
        "trail-audit",
        [("Row", "num"), ("Recorded at (UTC)", ""), ("Actor", ""), ("Action", ""), ("Object", ""), ("", "")],
        rows,
        row_attrs=[f' data-audit-row="{esc(r.id)}"' for r in audit_rows],
        empty="No audit rows name this invoice, its write-offs or their batches.",
    )


def trail_page(
    invoice: str,
    entity: str,
    trail: str | None,
    *,
    prefix: str,
    user: str,
    audit_rows: Sequence = (),
    chain=None,
) -> str:
    form = (
        f'<form id="trail-form" data-testid="trail-form" class="inline" method="get" action="{href(prefix, "/trail")}">'
        f'<label>Invoice <input name="invoice" id="trail-invoice" value="{esc(invoice)}" maxlength="200"></label>'
        f'<label>Entity <input name="entity" id="trail-entity" value="{esc(entity)}" maxlength="40"></label>'
        '<button type="submit" id="trail-submit">Show trail</button></form>'
    )
    if trail is None:
        out = '<p class="muted" id="trail-hint">Enter an invoice reference (and its entity if refs repeat).</p>'
    else:
        out = f'<pre id="trail" data-testid="trail">{esc(trail)}</pre>' + chain_block(chain, audit_rows)
    return page("Invoice trail", form + out, prefix=prefix, user=user, active="trail")


def reconciliation_page(view: ReconView, *, prefix: str, user: str) -> str:
    if view.run is None:
        body = '<p id="recon-none" class="muted">No reconciliation has run yet.</p>'
        return page("Reconciliation", body, prefix=prefix, user=user, active="reconciliation")
    run = view.run
    cls = "ok" if run.break_count == 0 else "bad"
    head = facts(
        [
            ("Business date", esc(run.as_of_date.isoformat())),
            ("Run", cut(run.run_key, 80)),
            ("Checks run", esc(run.checks_run)),
            ("Open breaks", f'<span id="recon-breaks" class="{cls}">{esc(run.break_count)}</span>'),
            ("Recorded at", esc(run.created_at)),
        ],
        "recon-facts",
    )
    pairs = table(
        "recon-pairs",
        [("Entity", ""), ("Currency", ""), ("Open breaks", "num")],
        [[esc(e), esc(c), esc(n)] for e, c, n in view.pairs],
        empty="No breaks: every check is clean.",
    )
    breaks = table(
        "recon-break-list",
        [
            ("Entity", ""),
            ("Currency", ""),
            ("Check", ""),
            ("Account", ""),
            ("Expected", "num"),
            ("Actual", "num"),
            ("Difference", "num"),
            ("Details", ""),
            ("Documents", ""),
        ],
        [
            [
                esc(b.entity_code),
                esc(b.currency),
                esc(b.check_name),
                esc(b.account_code),
                esc(b.expected),
                esc(b.actual),
                esc(b.difference),
                cut(b.message, 300),
                cut(b.documents, 200),
            ]
            for b in view.breaks
        ],
        empty="No open breaks.",
    )
    recent = table(
        "recon-runs",
        [("Business date", ""), ("Run", ""), ("Checks", "num"), ("Breaks", "num")],
        [
            [esc(r.as_of_date.isoformat()), cut(r.run_key, 80), esc(r.checks_run), esc(r.break_count)]
            for r in view.recent
        ],
    )
    body = (
        head
        + "<h2>Open breaks per entity and currency (latest run)</h2>"
        + pairs
        + "<h2>Breaks</h2>"
        + breaks
        + "<h2>Recent runs</h2>"
        + recent
    )
    return page("Reconciliation", body, prefix=prefix, user=user, active="reconciliation")


def kpi_page(report, svgs: dict[str, str], period: str, *, prefix: str, user: str) -> str:
    """The period's KPIs: the charts (inline SVG, built by writeoffs.charts with every label escaped), the
    per-entity table and the breakdowns."""
    from writeoffs.kpi import RECOVERY_BENCHMARK

    form = (
        f'<form id="kpi-form" data-testid="kpi-form" class="inline" method="get" action="{href(prefix, "/kpis")}">'
        f'<label>Month <input name="period" id="kpi-period" value="{esc(period)}" pattern="[0-9]{{4}}-[0-9]{{2}}" '
        'maxlength="7"></label><button type="submit" id="kpi-submit">Show</button></form>'
    )

    def pct(v) -> str:
        return "n/a" if v is None else f"{esc(v)} %"

    entities = table(
        "kpi-entities",
        [
            ("Entity", ""),
            ("Currency", ""),
            ("Net written off", "num"),
            ("Count", "num"),
            ("Sales", "num"),
            ("Open AR", "num"),
            ("Rate of sales", "num"),
            ("Class", ""),
            ("Rate of AR", "num"),
            ("Recoveries", "num"),
            ("Recovery rate", "num"),
        ],
        [
            [
                esc(k.entity),
                esc(k.currency),
                money(k.net_written_off, k.currency),
                esc(k.count),
                money(k.sales, k.currency),
                money(k.open_ar, k.currency),
                pct(k.rate_of_sales),
                esc(k.class_of_sales or "n/a"),
                pct(k.rate_of_ar),
                money(k.recoveries, k.currency),
                pct(k.recovery_rate),
            ]
            for k in report.by_entity
        ],
        empty="No activity in this period.",
    )
    breakdowns = []
    for name, rows in report.breakdowns.items():
        breakdowns.append(
            f"<h3>By {esc(name.replace('_', ' '))}</h3>"
            + table(
                f"kpi-by-{name.replace('_', '-')}",
                [("Value", ""), ("Currency", ""), ("Count", "num"), ("Amount", "num")],
                [[cut(r.value, 60), esc(r.currency), esc(r.count), money(r.amount, r.currency)] for r in rows],
                empty="None.",
            )
        )
    charts = "".join(
        f'<figure class="chart-box" id="figure-{esc(name)}" data-testid="chart-{esc(name)}">{svg}</figure>'
        for name, svg in svgs.items()
    )
    body = (
        form + f'<p class="muted">Period {esc(report.period.label)} '
        f"({esc(report.period.start)} to {esc(report.period.end)});"
        f" AR basis: {esc(report.ar_basis)}. Bands: below {esc(report.thresholds.excellent_below)} % excellent, "
        f"above {esc(report.thresholds.concerning_above)} % concerning. Recovery benchmark: "
        f"{cut(RECOVERY_BENCHMARK, 200)}</p>"
        + f'<div class="charts" id="kpi-charts">{charts}</div>'
        + "<h2>By entity (functional currency)</h2>"
        + entities
        + "<h2>Breakdowns</h2>"
        + "".join(breakdowns)
    )
    return page(f"Write-off KPIs {report.period.label}", body, prefix=prefix, user=user, active="kpis")


def reports_page(files, *, prefix: str, user: str) -> str:
    """The report files the DAGs wrote (KPI reports and charts, reconciliation reports), newest first."""

    def link(f) -> str:
        return (
            f'<a class="report-link" href="{href(prefix, f"/reports/{seg(f.folder)}/{seg(f.name)}")}">{cut(f.name)}</a>'
        )

    rows = [
        [
            esc(f.folder),
            link(f),
            esc(f"{f.size:,}"),
            esc(f.modified.strftime("%Y-%m-%d %H:%M UTC")),
        ]
        for f in files
    ]
    body = (
        '<p class="muted">KPI reports and charts and reconciliation reports written by the DAGs. Candidate lists are '
        "on each batch's page.</p>"
        + table(
            "reports",
            [("Kind", ""), ("File", ""), ("Bytes", "num"), ("Written", "")],
            rows,
            empty="No reports written yet.",
        )
    )
    return page("Reports", body, prefix=prefix, user=user, active="reports")


def validation_page(sites: Sequence[str], docs: Sequence, *, prefix: str, user: str) -> str:
    """The validation runs' Data Docs: each site's index and every validation result page, newest first."""

    def link(path: str, label: str, cls: str) -> str:
        url = href(prefix, "/validation/files/" + "/".join(seg(p) for p in path.split("/")))
        return f'<a class="{cls}" href="{url}">{cut(label)}</a>'

    site_rows = [[link(f"{s}/index.html", s, "docs-link docs-site")] for s in sites]
    page_rows = [
        [
            esc(d.site),
            cut(d.suite, 60),
            cut(d.run, 60),
            esc(d.when),
            link(d.path, d.path.rsplit("/", 1)[-1], "docs-link"),
        ]
        for d in docs
    ]
    body = (
        '<p class="muted">The Great Expectations Data Docs of every validation run (one site per business date and '
        "run), made to work offline: no script, nothing loaded from elsewhere. A rebuild keeps earlier pages.</p>"
        + table("validation-sites", [("Site (business date / run)", "")], site_rows, empty="No validation run yet.")
        + "<h2>Validation result pages (newest first)</h2>"
        + table(
            "validation-pages",
            [("Site", ""), ("Suite", ""), ("Run", ""), ("Run time (UTC)", ""), ("Page", "")],
            page_rows,
            empty="None.",
        )
    )
    return page("Validation Data Docs", body, prefix=prefix, user=user, active="validation")


def subledger_page(form: dict[str, str], ask, result, *, prefix: str, user: str, error: str | None = None) -> str:
    """The point-in-time sub-ledger: balances as of a date and what changed between two dates (as known today or
    on a past day); ``form`` is echoed (escaped) into the form, ``ask`` / ``result`` come from
    :mod:`.subledger_view` (None when nothing was asked or the form was refused with ``error``)."""
    from writeoffs.subledger import LEVELS
    from writeoffs_airflow.workspace.subledger_view import CURRENCY_MAX, ENTITY_MAX, REF_MAX, ROW_LIMIT

    def field(name: str, label: str, kind: str = "text", limit: int = 0) -> str:
        extra = f' maxlength="{limit}"' if limit else ""
        return (
            f'<label>{esc(label)} <input type="{kind}" name="{name}" id="sl-{name}" data-testid="sl-{name}" '
            f'value="{cut(form.get(name, ""), 200)}"{extra}></label>'
        )

    chosen = form.get("level") or "entity"
    options = "".join(
        f'<option value="{esc(lv)}"{" selected" if lv == chosen else ""}>{esc(lv)}</option>' for lv in LEVELS
    )
    form_html = (
        f'<form id="subledger-form" data-testid="subledger-form" method="get" action="{href(prefix, "/subledger")}">'
        '<div class="inline">'
        + field("as_of", "Balance as of", "date")
        + f'<label>Level <select name="level" id="sl-level" data-testid="sl-level">{options}</select></label>'
        + field("known_on", "As known on (optional)", "date")
        + '</div><div class="inline">'
        + field("from", "What changed after", "date")
        + field("to", "up to and including", "date")
        + '</div><div class="inline">'
        + field("entity", "Entity", limit=ENTITY_MAX)
        + field("customer", "Customer", limit=REF_MAX)
        + field("invoice", "Invoice", limit=REF_MAX)
        + field("currency", "Currency", limit=CURRENCY_MAX)
        + '<button type="submit" id="sl-submit">Show</button></div></form>'
    )
    title = "Sub-ledger as of a date"
    if error is not None:
        body = form_html + f'<p id="error" data-testid="error" data-status="400" class="bad">{cut(error, 300)}</p>'
        return page(title, body, prefix=prefix, user=user, active="subledger")
    if ask is None or not ask.asked:
        hint = (
            '<p class="muted" id="subledger-hint">Give a date for the balances (per invoice, customer, entity or '
            "currency), or two dates for what changed between them; with an invoice and its entity, also the "
            "invoice's movements. Leave “as known on” empty for what the ledger knows today; a day shows what it "
            "had recorded by the end of that day (UTC), so a late extract is left out.</p>"
        )
        return page(title, form_html + hint, prefix=prefix, user=user, active="subledger")

    known = (
        "as known today" if ask.known_on is None else f"as known at the end of {esc(ask.known_on.isoformat())} (UTC)"
    )
    out = [form_html]
    if ask.as_of is not None:
        out.append(
            f'<h2 id="balances-title">Balances as of {esc(ask.as_of.isoformat())}, {known}, per {esc(ask.level)}</h2>'
        )
        out.append(_balance_table("subledger-balances", ask.level, result.balances))
        if result.more:
            out.append(
                f'<p class="warn" id="subledger-more">Only the first {ROW_LIMIT} rows are shown: narrow with the '
                "filters, or list them all with <code>python -m writeoffs balance</code>.</p>"
            )
    if ask.start is not None:
        span = f"after {esc(ask.start.isoformat())} up to and including {esc(ask.end.isoformat())}"
        out.append(f'<h2 id="changes-title">What changed {span}, {known}</h2>')
        out.append(
            table(
                "subledger-changes",
                [("Entity", ""), ("Currency", ""), ("Kind", ""), ("Movements", "num"), ("Invoices", "num"),
                 ("Change", "num")],
                [
                    [esc(c.entity), esc(c.currency), esc(c.kind), esc(c.movements), esc(c.invoices),
                     money(c.balance_change, c.currency)]
                    for c in result.changes
                ],
                row_attrs=[f' data-kind="{esc(c.kind)}" data-change="{esc(c.balance_change)}"' for c in result.changes],
                empty="Nothing moved between these dates.",
            )
        )  # fmt: skip
        out.append(f"<h3>Balances at both ends, per {esc(result.ends_level)}</h3>")
        out.append(_ends_table(result.ends_level, result.at_start, result.at_end, ask.start, ask.end))
    if result.movements is not None:
        out.append(f'<h2 id="movements-title">Movements of invoice {cut(ask.invoice, 80)} ({esc(ask.entity)})</h2>')
        out.append(
            table(
                "subledger-movements",
                [("Effective", ""), ("Recorded at (UTC)", ""), ("Kind", ""), ("Change", "num"), ("Status", ""),
                 ("Document", "")],
                [
                    [esc(m["effective_date"]), esc(m["recorded_at"]), esc(m["kind"]),
                     money(m["balance_change"], m["currency"]), cut(m["status"], 40), cut(m["ref"], 80)]
                    for m in result.movements
                ],
                row_attrs=[f' data-kind="{esc(m["kind"])}"' for m in result.movements],
                empty="No movement of this invoice in this window (or no such invoice in this entity).",
            )
        )  # fmt: skip
    elif ask.invoice:
        out.append('<p class="muted" id="movements-hint">Give the invoice\'s entity to see its movements.</p>')
    return page(title, "".join(out), prefix=prefix, user=user, active="subledger")


def _key_cells(level: str, b) -> list[str]:
    if level == "currency":
        return [esc(b.currency)]
    return [esc(b.entity), esc(b.currency)] + ([] if level == "entity" else [cut(b.key, 80)])


def _key_header(level: str) -> list[tuple[str, str]]:
    if level == "currency":
        return [("Currency", "")]
    return [("Entity", ""), ("Currency", "")] + ([] if level == "entity" else [(level.capitalize(), "")])


def _balance_table(table_id: str, level: str, rows: Sequence) -> str:
    return table(
        table_id,
        [*_key_header(level), ("Balance", "num"), ("Open invoices", "num")],
        [[*_key_cells(level, b), money(b.balance, b.currency), esc(b.invoices)] for b in rows],
        row_attrs=[f' data-key="{cut(b.key, 200)}" data-balance="{esc(b.balance)}"' for b in rows],
        empty="No invoice raised by this date matches.",
    )


def _ends_table(level: str, at_start: Sequence, at_end: Sequence, start, end) -> str:
    """One row per key present at either end: its balance at both dates and the difference (the changes' sum)."""
    from decimal import Decimal

    first = {(b.entity, b.currency, b.key): b for b in at_start}
    last = {(b.entity, b.currency, b.key): b for b in at_end}
    rows, attrs = [], []
    for k in sorted(first.keys() | last.keys()):
        b = last.get(k) or first[k]
        a, z = (first[k].balance if k in first else Decimal(0)), (last[k].balance if k in last else Decimal(0))
        rows.append([*_key_cells(level, b), money(a, b.currency), money(z, b.currency), money(z - a, b.currency)])
        attrs.append(f' data-key="{cut(b.key, 200)}" data-from="{esc(a)}" data-to="{esc(z)}"')
    return table(
        "subledger-ends",
        [*_key_header(level), (f"At {start.isoformat()}", "num"), (f"At {end.isoformat()}", "num"),
         ("Difference", "num")],
        rows,
        row_attrs=attrs,
        empty="No invoice raised by these dates matches.",
    )  # fmt: skip
