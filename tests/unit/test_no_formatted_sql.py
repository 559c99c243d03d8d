"""Reconciliation, the ingest (its merge above all), KPIs and the allowance hold no SQL built by formatting: their
statements are SQLAlchemy Core or ``.sql`` files with named parameters (``writeoffs.db.sqlfiles``). This fails on an
f-string, ``%`` or ``.format`` whose text reads like SQL, and on ``text()`` / ``exec_driver_sql`` given anything but a
constant or a loaded SQL file. Values then can only travel as bind parameters."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("reconcile", "ingest", "kpi", "allowance")
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|WHERE|JOIN|GROUP BY|VALUES|CREATE|DROP|ALTER|LOCK)\b")
SQL_CALLS = {"text", "exec_driver_sql"}
#: ``text()`` of run-time text that is not built here: (module, variable) pairs, with why.
ALLOWED_TEXT = {
    # A SQL source's query is the deployment's configuration (checked, hashed into the batch's artifacts), run as
    # written with ``:as_of`` bound: it is the input, not a statement of ours.
    ("include/writeoffs/ingest/sources/sql.py", "query"),
}


def _constant_text(node: ast.AST) -> str:
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return ""


def _allowed(arg: ast.AST, module: str) -> bool:
    """A constant; or SQL another module generates (``text(x_sql(...))``: its own formatting is that module's, and is
    scanned where it is written); or an entry of :data:`ALLOWED_TEXT`."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return True
    if isinstance(arg, ast.Call):
        fn = arg.func.attr if isinstance(arg.func, ast.Attribute) else getattr(arg.func, "id", "")
        return fn.endswith("_sql")
    return isinstance(arg, ast.Name) and (module, arg.id) in ALLOWED_TEXT


def findings(source: str, name: str = "<test>") -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.JoinedStr) and SQL_WORDS.search(_constant_text(node)):
            out.append(f"{where}: f-string SQL")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            if SQL_WORDS.search(_constant_text(node.left)):
                out.append(f"{where}: %-formatted SQL")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            if SQL_WORDS.search(_constant_text(node.left) + " " + _constant_text(node.right)):
                out.append(f"{where}: SQL put together with +")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            if SQL_WORDS.search(_constant_text(node.func.value)):
                out.append(f"{where}: .format() SQL")
        if isinstance(node, ast.Call) and node.args:
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            arg = node.args[0]
            if called in SQL_CALLS and not _allowed(arg, name):
                out.append(f"{where}: {called}() of something built at run time")
    return out


def _modules() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / "include/writeoffs" / pkg).rglob("*.py"))]


def test_the_four_areas_build_no_sql_text():
    found = [f for path in _modules() for f in findings(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert not found, "use SQLAlchemy Core or a .sql file (writeoffs.db.sqlfiles):\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        'conn.execute(text(f"SELECT * FROM {table} WHERE id = {i}"))',
        'q = f"""\n  UPDATE invoices SET status = {s}\n"""',
        'q = "DELETE FROM t WHERE id = %s" % i',
        'q = "SELECT {} FROM t".format(col)',
        "conn.execute(text(sql))",
        'conn.exec_driver_sql("ANALYZE " + name)',
        'def merge_sql():\n    return "SELECT a FROM " + table',
    ],
)
def test_the_scan_catches_each_way_of_building_sql(source):
    assert findings(source), source


@pytest.mark.parametrize(
    "source",
    [
        'conn.execute(text("SELECT 1 FROM invoices WHERE id = :id"), {"id": i})',
        'raise ValueError(f"batch {b}: nothing to merge")',
        "conn.execute(sql(__package__, 'merge_invoices'))",
    ],
)
def test_constants_messages_and_sql_files_pass(source):
    assert not findings(source), source
