"""Issue 19: the monthly KPI run catches up the months missed since the latest report (table-driven)."""

from __future__ import annotations

from pathlib import Path

import pytest

from writeoffs.kpi import Period, months_to_report, reported_months

NOV = Period.month(2026, 11)


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        (set(), ["2026-11"]),  # a first run: nothing to catch up
        ({"2026-10"}, ["2026-11"]),  # the usual month
        ({"2026-08"}, ["2026-09", "2026-10", "2026-11"]),  # two runs missed
        ({"2026-08", "2026-11", "2026-12"}, ["2026-09", "2026-10", "2026-11"]),  # later reports do not count
        (
            {"2025-11"},
            [
                "2025-12",
                "2026-01",
                "2026-02",
                "2026-03",
                "2026-04",
                "2026-05",
                "2026-06",
                "2026-07",
                "2026-08",
                "2026-09",
                "2026-10",
                "2026-11",
            ],
        ),  # a year missed: all of it
        ({"2024-01"}, [f"2025-{m:02d}" for m in range(12, 13)] + [f"2026-{m:02d}" for m in range(1, 12)]),  # capped
    ],
)
def test_months_to_report(reported: set[str], expected: list[str]) -> None:
    assert [p.label for p in months_to_report(NOV, reported)] == expected


def test_only_complete_reports_count(tmp_path: Path) -> None:
    folder = tmp_path / "reports" / "kpi"
    folder.mkdir(parents=True)
    for name in ("2026-09.md", "2026-09.json", "2026-10.json", "2026-Q3.md", "2026-10-tax-listing.csv"):
        (folder / name).write_text("x")
    assert reported_months(tmp_path) == {"2026-09"}
    assert reported_months(tmp_path / "nowhere") == set()
