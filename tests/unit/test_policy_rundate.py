"""Business date of a run: param, then asset event extra, then data interval, then run_after."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from writeoffs.errors import ConfigError
from writeoffs.policy.rundate import resolve_as_of

T = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("param", "extras", "interval_end", "run_after", "expected"),
    [
        ("2026-11-20", [{"as_of": "2026-11-24"}], T, T, date(2026, 11, 20)),
        (None, [{"as_of": "2026-11-23"}, {"as_of": "2026-11-24"}], T, T, date(2026, 11, 24)),
        (None, [{}], T, None, date(2026, 11, 25)),
        (None, [], None, T, date(2026, 11, 25)),
    ],
)
def test_resolve(param, extras, interval_end, run_after, expected) -> None:
    assert resolve_as_of(param, extras, interval_end, run_after) == expected


def test_bad_dates() -> None:
    with pytest.raises(ConfigError, match="as_of"):
        resolve_as_of("24/11/2026")
    with pytest.raises(ConfigError, match="no business date"):
        resolve_as_of(None)
