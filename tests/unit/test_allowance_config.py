"""The allowance configuration: the committed file is valid and carries the default rates; bad files are refused
with a message naming the field (table-driven)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from writeoffs.allowance import DEFAULT_CONFIG_PATH, default_config, load_config, parse_config, parse_rate
from writeoffs.errors import ConfigError

D = Decimal
DEFAULT_RATES = {
    "current": D("0.005"),
    "1-30": D("0.02"),
    "31-60": D("0.05"),
    "61-90": D("0.10"),
    "91-120": D("0.20"),
    "121-180": D("0.35"),
    "181-365": D("0.60"),
    "365+": D("0.90"),
}


def test_committed_config_has_the_default_rates() -> None:
    cfg = load_config(DEFAULT_CONFIG_PATH)
    assert dict(cfg.default_rates) == DEFAULT_RATES
    assert cfg.rates_for("ANY") == DEFAULT_RATES
    assert dict(default_config().default_rates) == DEFAULT_RATES


def test_entity_override_merges_bucket_by_bucket_and_changes_the_hash() -> None:
    base = {"version": "1", "loss_rates": {"current": "1%", "365+": "90%"}}
    cfg = parse_config({**base, "entities": {"EU01": {"loss_rates": {"365+": "100%"}}}})
    assert cfg.rates_for("EU01") == {"current": D("0.01"), "365+": D("1")}
    assert cfg.rates_for("US01") == {"current": D("0.01"), "365+": D("0.9")}
    assert cfg.content_hash != parse_config(base).content_hash
    # Comments and formatting do not change the meaning, nor the hash.
    assert parse_config("version: '1'\nloss_rates: {current: 1%, 365+: 90%}  # c\n").content_hash == (
        parse_config(base).content_hash
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.5%", D("0.005")), ("2 %", D("0.02")), ("0%", D("0")), ("100%", D("1")), ("12.3456%", D("0.123456"))],
)
def test_percentages_parse_exactly(value: str, expected: Decimal) -> None:
    assert parse_rate(value, "x") == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("loss_rates: {current: 1%}", r"version: required"),
        ("version: '1'", r"loss_rates: required"),
        ("version: '1'\nloss_rates: {}", r"loss_rates: expected a mapping"),
        ("version: '1'\nloss_rates: {current: 0.5}", r"loss_rates.current: 0.5 is not a percentage"),
        ("version: '1'\nloss_rates: {current: '0.5'}", r"loss_rates.current: '0.5' must end with '%'"),
        ("version: '1'\nloss_rates: {current: 'abc%'}", r"loss_rates.current: 'abc%' is not a number"),
        ("version: '1'\nloss_rates: {current: 'NaN%'}", r"loss_rates.current: 'NaN%' is not a finite"),
        ("version: '1'\nloss_rates: {current: '-1%'}", r"loss_rates.current: '-1%' must be between 0% and 100%"),
        ("version: '1'\nloss_rates: {current: '101%'}", r"loss_rates.current: '101%' must be between"),
        ("version: '1'\nloss_rates: {current: '0.12345%'}", r"loss_rates.current: '0.12345%' has more than 4 decimals"),
        ("version: '1'\nloss_rates: {current: 1%}\nrates: {}", r"unknown field\(s\) \['rates'\]"),
        ("version: '1'\nloss_rates: {current: 1%}\nentities: [EU01]", r"entities: expected a mapping"),
        (
            "version: '1'\nloss_rates: {current: 1%}\nentities: {EU01: {rates: {current: 2%}}}",
            r"entities.EU01: expected exactly one field, loss_rates",
        ),
        (
            "version: '1'\nloss_rates: {current: 1%}\nentities: {EU01: {loss_rates: {'91-12': 2%}}}",
            r"entities.EU01.loss_rates.91-12: unknown aging bucket '91-12'",
        ),
        ("version: '1'\nloss_rates: [1, 2", r"not valid YAML"),
        ("- a\n- b", r"expected a mapping at the top level"),
    ],
)
def test_invalid_config_is_refused_naming_the_field(content: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(content, source="draft.yaml")
    assert "allowance config draft.yaml" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yaml: cannot read"):
        load_config(tmp_path / "nope.yaml")
