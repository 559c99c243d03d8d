"""The policy file: defaults, layering, hashing and clear errors naming the field (Airflow- and DB-free)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.factories import PLAIN_TIERS
from writeoffs.errors import ConfigError
from writeoffs.policy.schema import DEFAULT_POLICY_PATH, POLICY_PATH_ENV, _deep_merge, load_policy, parse_policy
from writeoffs.tiers import AUTO_TIER, tier_for

TEXT = Path(DEFAULT_POLICY_PATH).read_text()


def variant(over: dict[str, Any]) -> str:
    return yaml.safe_dump(_deep_merge(yaml.safe_load(TEXT), over))


def test_default_policy_matches_the_documented_defaults() -> None:
    p = parse_policy(TEXT)
    r = p.rules_for("US01", "default")
    assert (r.charge_off_days, r.writeoff_days) == (120, 365)
    assert [t.name for t in p.tiers] == ["ar_manager", "controller", "cfo"]
    # what the shipped file states, pinned: people, deadlines, escalation, and the one restriction
    assert [(t.name, t.approvers, t.confirmers, t.response_timeout_hours, t.on_timeout) for t in p.tiers] == [
        ("ar_manager", ("ar_manager",), ("ar_manager", "controller"), 48, "escalate"),
        ("controller", ("controller",), ("controller", "cfo"), 72, "escalate"),
        ("cfo", ("cfo",), ("controller",), 120, "expire"),
    ]
    assert [(r.kind, r.value, dict(r.limits)) for r in p.tiers[0].restrictions] == [
        ("reason", "settlement_remainder", {"USD": Decimal("2500"), "EUR": Decimal("2500"), "GBP": Decimal("2000")})
    ]
    assert p.tiers[0].four_eyes_above == {"USD": Decimal("10000"), "EUR": Decimal("10000"), "GBP": Decimal("8000")}
    assert tier_for(Decimal("45000"), "USD", p.tiers).name == "controller"
    assert {t.name: dict(t.limits) for t in p.tiers} == {t.name: dict(t.limits) for t in PLAIN_TIERS}
    assert {t.name: dict(t.batch_limits) for t in p.tiers} == {t.name: dict(t.batch_limits) for t in PLAIN_TIERS}
    assert p.reason_account("bankruptcy") == "6110" and p.reason_account("small_balance") == "6120"
    assert p.reason_account("settlement_remainder") == "6130" and p.reason_account("dispute_lost") == "6130"
    assert p.small_balance_tolerance("usd", "US01") == Decimal("50.00")


def test_layers_most_specific_wins() -> None:
    p = parse_policy(
        variant({"entities": {"US01": {"writeoff_days": 400, "segments": {"small_business": {"writeoff_days": 200}}}}})
    )
    assert p.rules_for("DE01", "default").writeoff_days == 365
    assert p.rules_for("DE01", "small_business").writeoff_days == 270  # global segment layer
    assert p.rules_for("US01", "default").writeoff_days == 400
    assert p.rules_for("US01", "small_business").writeoff_days == 200
    assert p.rules_for("US01", "small_business").effort.min_agency_days == 30  # inherited from the segment layer


def test_hash_ignores_comments_and_layout_but_not_meaning() -> None:
    a = parse_policy(TEXT)
    b = parse_policy("# reformatted\n" + yaml.safe_dump(yaml.safe_load(TEXT), default_flow_style=False))
    c = parse_policy(variant({"defaults": {"writeoff_days": 366}}))
    assert a.content_hash == b.content_hash != c.content_hash
    assert len(a.content_hash) == 64


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"defaults": {"writeoff_days": -1}}, "defaults.writeoff_days"),
        ({"defaults": {"charge_off_days": 400}}, "defaults"),
        ({"defaults": {"effort": {"min_letters": 2}}}, "defaults.effort.min_letters"),
        ({"defaults": {"small_balance": {"tolerance": {"USD": 50.5}}}}, "defaults.small_balance.tolerance.USD"),
        ({"defaults": {"small_balance": {"tolerance": {"XXX": "1"}}}}, "defaults.small_balance.tolerance"),
        ({"reasons": {"goodwill": "6100"}}, "reasons.goodwill"),
        ({"segments": {"retail": {"writeoff_days": "soon"}}}, "segments.retail.writeoff_days"),
        ({"entities": {"US01": {"segments": {"x": {"exclusions": {"recent_payment_days": -3}}}}}},
         "entities.US01.segments.x.exclusions.recent_payment_days"),
        ({"version": ""}, "version"),
    ],
)  # fmt: skip
def test_invalid_policy_names_the_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_policy(variant(over))
    assert f"{field}" in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([{"name": "a", "approvers": ["x"], "limits": {"USD": "10"}}], "top tier"),
        ([{"name": "a", "approvers": ["x"], "limits": {"USD": "10"}}, {"name": "a", "approvers": ["y"]}], "unique"),
        ([{"name": "a", "approvers": ["x"], "limits": {"USD": "10"}, "batch_limits": {"USD": "10"}},
          {"name": "b", "approvers": ["x"], "limits": {"USD": "5"}, "batch_limits": {"USD": "50"}},
          {"name": "c", "approvers": ["z"]}], "limits for USD must increase"),
        ([{"name": "a", "approvers": ["x"], "limits": {"USD": "10"}, "batch_limits": {"USD": "100"}},
          {"name": "b", "approvers": ["x"], "limits": {"USD": "50"}, "batch_limits": {"USD": "90"}},
          {"name": "c", "approvers": ["z"]}], "batch_limits for USD must increase"),
        # Fail closed: a lower tier without a limit for a currency is refused, never read as "unlimited".
        ([{"name": "a", "approvers": ["x"], "limits": {"USD": "10", "EUR": "10"}, "batch_limits": {"USD": "100"}},
          {"name": "c", "approvers": ["z"]}], "tier 'a' has no batch_limits for EUR"),
        ([{"name": "a", "approvers": ["x"], "limits": {"USD": "10"}, "batch_limits": {"USD": "100"}},
          {"name": "b", "approvers": ["x"], "limits": {"EUR": "10"}, "batch_limits": {"EUR": "100"}},
          {"name": "c", "approvers": ["z"]}], "tier 'a' has no limits for EUR"),
        ([{"name": "a", "approvers": ["x"], "limits": {"USD": "10"}, "batch_limits": {"USD": "5"}},
          {"name": "c", "approvers": ["z"]}], "batch limit 5 USD is below its item limit"),
        ([{"name": AUTO_TIER, "approvers": ["x"]}], "reserved"),
        ([{"name": "a", "approvers": []}], "approval.tiers.0.approvers"),
        ([{"name": "a", "approvers": ["x"], "on_timeout": "escalate"}], "cannot escalate"),
    ],
)  # fmt: skip
def test_invalid_tiers(tiers: list[dict[str, Any]], message: str) -> None:
    raw = yaml.safe_load(TEXT)
    raw["approval"] = {"tiers": tiers}  # currencies: those the lower tiers name
    with pytest.raises(ConfigError, match=message):
        parse_policy(yaml.safe_dump(raw))


def test_listed_currencies_bind_every_lower_tier() -> None:
    raw = yaml.safe_load(TEXT)
    raw["approval"]["currencies"] = ["USD", "EUR", "GBP", "CHF"]
    with pytest.raises(ConfigError, match="tier 'ar_manager' has no limits for CHF"):
        parse_policy(yaml.safe_dump(raw))
    raw["approval"]["currencies"] = ["USD", "EUR"]
    with pytest.raises(ConfigError, match=r"tier .ar_manager. limits name GBP, not in approval\.currencies"):
        parse_policy(yaml.safe_dump(raw))


def test_top_tier_alone_needs_named_currencies() -> None:
    raw = yaml.safe_load(TEXT)
    raw["approval"] = {"tiers": [{"name": "cfo", "approvers": ["cfo"], "confirmers": ["controller"]}]}
    with pytest.raises(ConfigError, match=r"approval\.currencies is empty"):
        parse_policy(yaml.safe_dump(raw))
    raw["approval"]["currencies"] = ["USD"]
    (top,) = parse_policy(yaml.safe_dump(raw)).tiers
    assert top.covers(Decimal("1e12"), "USD") and not top.covers(Decimal("1"), "CHF")


def test_a_currency_without_a_limit_is_refused_by_every_tier() -> None:
    """The attack: a 10,000,000 CHF write-off under a policy that never names CHF. It used to route to the lowest
    tier (no CHF limit = no limit) and an AR manager approved it."""
    tiers = parse_policy(TEXT).tiers
    big, small = Decimal("10000000"), Decimal("1")
    for t in tiers:
        assert not t.covers(small, "CHF") and not t.covers_batch(small, "CHF")
        assert "no limit configured for CHF" in (t.problem("CHF", big, big) or "")
    with pytest.raises(ConfigError, match="no approval tier has a limit for CHF"):
        tier_for(big, "CHF", tiers)
    # The top tier approves any amount, but only in the listed currencies.
    assert tiers[-1].problem("USD", big, big * 1000) is None


def test_batch_limit_routes_a_batch_of_small_items_up() -> None:
    """The attack: 4,999 items of 100 USD (499,900 USD in all) passed the AR manager's 5,000 per-item limit."""
    tiers = parse_policy(TEXT).tiers
    ar_manager = tiers[0]
    item, total = Decimal("100"), Decimal("499900")
    assert ar_manager.covers(item, "USD") and not ar_manager.covers_batch(total, "USD")
    assert "batch total 499,900.00 USD exceeds tier 'ar_manager' batch limit 25,000.00 USD" in (
        ar_manager.problem("USD", item, total) or ""
    )
    assert tier_for(item, "USD", tiers, total=total).name == "cfo"
    assert tier_for(item, "USD", tiers, total=Decimal("20000")).name == "ar_manager"
    assert tier_for(item, "USD", tiers, total=Decimal("561739.61")).name == "cfo"  # the controller's lone batch


def test_unknown_reason_is_refused() -> None:
    with pytest.raises(ConfigError, match="catalogue"):
        parse_policy(TEXT).reason_account("goodwill")


def test_not_yaml_and_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_policy("version: [unclosed")
    with pytest.raises(ConfigError, match="mapping"):
        parse_policy("- a list")


def test_path_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(variant({"version": "from-env"}))
    monkeypatch.setenv(POLICY_PATH_ENV, str(f))
    assert load_policy().version == "from-env"
    monkeypatch.setenv(POLICY_PATH_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy()
