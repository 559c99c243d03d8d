"""The reading pages: an invoice's trail (with the audit chain), reconciliation, KPIs, the report files and the
validation Data Docs."""

from __future__ import annotations

from collections.abc import Sequence

from writeoffs_airflow.workspace.queries import ReconView
from writeoffs_airflow.workspace.render import cut, esc, facts, href, money, page, seg, table


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
