"""The controls table in docs/approvals.md names tests; every one of them must exist (a table an auditor reads must
not point at a test that was renamed or never written)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "approvals.md"
REF = re.compile(r"`((?:tests/[\w/]+/)?\w+\.py)?(?:::(\w+))?`")


def referenced_tests(text: str) -> list[tuple[Path, str | None]]:
    """(test file, test function or None) for every test reference in the controls table's last column."""
    out: list[tuple[Path, str | None]] = []
    table = text.split("## Controls (who may decide)", 1)[1].split("\n\n", 2)[2]
    for line in table.splitlines():
        if not line.startswith("| ") or line.startswith("| #") or line.startswith("|---"):
            continue
        current: Path | None = None
        for file, func in REF.findall(line.rsplit("|", 2)[-2]):
            if file:
                current = ROOT / file if file.startswith("tests/") else ROOT / "tests" / "integration" / file
            assert current is not None, f"{func!r} has no file before it in: {line[:80]}"
            out.append((current, func or None))
    return out


def missing_tests(text: str) -> list[str]:
    missing = []
    for path, func in referenced_tests(text):
        if not path.is_file():
            missing.append(str(path.relative_to(ROOT)))
        elif func and not re.search(rf"^def {func}\(", path.read_text(encoding="utf-8"), re.MULTILINE):
            missing.append(f"{path.relative_to(ROOT)}::{func}")
    return missing


def test_every_test_the_controls_table_names_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert len(referenced_tests(text)) >= 30
    assert missing_tests(text) == []


def test_the_check_catches_a_renamed_test_and_a_missing_file() -> None:
    text = DOC.read_text(encoding="utf-8")
    text = text.replace("::test_system_only_transitions`", "::test_system_only_transitions_renamed`")
    text = text.replace("`test_posting_exactly_once.py`", "`test_posting_twice.py`")
    assert missing_tests(text) == [
        "tests/integration/test_approvals_domain.py::test_system_only_transitions_renamed",
        "tests/integration/test_posting_twice.py",
    ]
