"""The point-in-time sub-ledger page: balances as of a date, what changed between two dates and an invoice's
movements, as known today or on a past day."""

from __future__ import annotations

from collections.abc import Sequence

from writeoffs_airflow.workspace.render import cut, esc, href, money, page, table


def subledger_page(form: dict[str, str], ask, result, *, prefix: str, user: str, error: str | None = None) -> str:
    """The point-in-time sub-ledger: balances as of a date and what changed between two dates (as known today or
    on a past day); ``form`` is echoed (escaped) into the form, ``ask`` / ``result`` come from
    :mod:`.subledger_view` (None when nothing was asked or the form was refused with ``error``)."""
    form_html = _subledger_form(form, prefix)
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
        out += _balances_section(ask, result, known)
    if ask.start is not None:
        out += _changes_section(ask, result, known)
    if result.movements is not None:
        out += _movements_section(ask, result)
    elif ask.invoice:
        out.append('<p class="muted" id="movements-hint">Give the invoice\'s entity to see its movements.</p>')
    return page(title, "".join(out), prefix=prefix, user=user, active="subledger")


def _subledger_form(form: dict[str, str], prefix: str) -> str:
    """The question's form, ``form`` echoed (escaped) into its fields."""
    from writeoffs.subledger import LEVELS
    from writeoffs_airflow.workspace.subledger_view import CURRENCY_MAX, ENTITY_MAX, REF_MAX

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
    return (
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


def _balances_section(ask, result, known: str) -> list[str]:
    from writeoffs_airflow.workspace.subledger_view import ROW_LIMIT

    out = [f'<h2 id="balances-title">Balances as of {esc(ask.as_of.isoformat())}, {known}, per {esc(ask.level)}</h2>']
    out.append(_balance_table("subledger-balances", ask.level, result.balances))
    if result.more:
        out.append(
            f'<p class="warn" id="subledger-more">Only the first {ROW_LIMIT} rows are shown: narrow with the '
            "filters, or list them all with <code>python -m writeoffs balance</code>.</p>"
        )
    return out


def _changes_section(ask, result, known: str) -> list[str]:
    span = f"after {esc(ask.start.isoformat())} up to and including {esc(ask.end.isoformat())}"
    out = [f'<h2 id="changes-title">What changed {span}, {known}</h2>']
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
    return out


def _movements_section(ask, result) -> list[str]:
    out = [f'<h2 id="movements-title">Movements of invoice {cut(ask.invoice, 80)} ({esc(ask.entity)})</h2>']
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
    return out


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
