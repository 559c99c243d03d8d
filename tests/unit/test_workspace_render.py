"""The workspace's HTML helpers and plugin definition, without a ledger or an api-server."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from writeoffs_airflow.workspace.render import cut, esc, href, money, page, table

ROOT = Path(__file__).resolve().parents[2]


def test_escaping_covers_text_and_attributes() -> None:
    assert esc("<a href=\"x\" onclick='y'>&") == "&lt;a href=&quot;x&quot; onclick=&#x27;y&#x27;&gt;&amp;"
    assert esc(None) == ""
    long = "<b>" + "x" * 500
    out = cut(long, 50)
    assert out.startswith("&lt;b&gt;") and "(503 chars)" in out and len(out) < 80
    assert cut("line\nbreak", 50) == "line\\nbreak"


def test_links_encode_query_values_and_escape_the_attribute() -> None:
    url = href("/writeoffs", "/trail", {"invoice": 'A&B"<x>', "entity": "", "page": 2})
    assert url == "/writeoffs/trail?invoice=A%26B%22%3Cx%3E&amp;page=2"


def test_money_uses_the_currency_minor_unit_and_survives_unknown_codes() -> None:
    assert money(Decimal("1234.5"), "USD") == "1,234.50 USD"
    assert money(Decimal("1234"), "JPY") == "1,234 JPY"
    assert money(Decimal("1"), "<X>") == "1 &lt;X&gt;"


def test_page_and_table_escape_everything_they_are_given() -> None:
    html = page("<t>", table("items", [("<h>", "num")], [["cell"]]), prefix="/w", user="<u>", active="queue")
    assert "<t>" not in html and "<h>" not in html and "<u>" not in html
    assert 'id="nav-queue" data-testid="nav-queue" href="/w/queue" class="active"' in html
    assert '<table id="items" data-testid="items">' in html
    assert "<script" not in html


def test_plugin_import_is_cheap_and_declares_the_app_and_nav_entry() -> None:
    code = (
        "import sys; import writeoffs_airflow.workspace_plugin as p; "
        "assert 'writeoffs_airflow.workspace.app' not in sys.modules; "
        "assert not {'fastapi', 'writeoffs', 'writeoffs_airflow.workspace'} & set(sys.modules), sys.modules.keys(); "
        "w = p.WriteoffsWorkspacePlugin; print(w.fastapi_apps[0]['url_prefix'], w.external_views[0]['href'])"
    )
    env_path = f"{ROOT / 'include'}:{ROOT / 'plugins'}"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": env_path}, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["/writeoffs", "/writeoffs/queue"]
