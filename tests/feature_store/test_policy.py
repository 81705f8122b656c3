"""The feature policy: loading, validation messages and the scalar rules.

Also the helpers other feature tests use to write policies (default text with edits).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import pytest

from feature_store.errors import ConfigError
from feature_store.policy import (
    DEFAULT_POLICY_PATH,
    EvaluationPeriod,
    FeaturePolicy,
    LifecyclePolicy,
    Threshold,
    TierLevel,
    TierPolicy,
    load_policy,
)

DEFAULT_TEXT = DEFAULT_POLICY_PATH.read_text()
#: The default policy without its tag rules (everything before the first [[tags]]).
BASE_TEXT = DEFAULT_TEXT[: DEFAULT_TEXT.index("[[tags]]")]


def edited(old: str, new: str, text: str = DEFAULT_TEXT) -> str:
    """``text`` with the one occurrence of ``old`` replaced (fails loudly if not exactly one)."""
    if text.count(old) != 1:
        raise ValueError(f"{old!r} occurs {text.count(old)} times in the policy text")
    return text.replace(old, new)


def write_policy(folder: Path, text: str, name: str = "policy.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def policy_with_tags(folder: Path, tags_toml: str) -> FeaturePolicy:
    return load_policy(write_policy(folder, BASE_TEXT + tags_toml))


def test_default_policy_loads_with_its_file_and_hash() -> None:
    policy = load_policy()
    assert policy.tiers.names == ("regular", "silver", "gold", "platinum", "diamond")
    assert policy.source == DEFAULT_POLICY_PATH
    assert policy.sha256 == hashlib.sha256(DEFAULT_POLICY_PATH.read_bytes()).hexdigest()
    assert [t.name for t in policy.tags][:2] == ["big_spender", "birthday_month"]
    assert policy.items.price_bands == ("budget", "mid", "premium")


def test_qualifying_tier_is_the_highest_tier_whose_rules_hold() -> None:
    tiers = (
        load_policy().tiers
    )  # silver 500 pts, gold 1500, platinum 4000 & 12 orders, diamond 10000 & 24
    assert tiers.qualifying_tier(0.0, 0, 0.0) == "regular"
    assert tiers.qualifying_tier(499.0, 0, 499.99) == "regular"
    assert tiers.qualifying_tier(500.0, 0, 500.0) == "silver"
    assert tiers.qualifying_tier(9000.0, 11, 9110.0) == "gold"  # platinum also needs 12 orders
    assert tiers.qualifying_tier(9000.0, 12, 9120.0) == "platinum"
    assert tiers.qualifying_tier(20000.0, 30, 20300.0) == "diamond"


def test_growth_points_combine_spend_and_orders() -> None:
    tiers = load_policy().tiers  # 1 point per currency unit, 10 per order
    assert tiers.growth_points(250.5, 3) == pytest.approx(280.5)
    assert tiers.growth_points(-20.0, 0) == pytest.approx(-20.0)


def test_match_any_needs_one_threshold() -> None:
    tiers = TierPolicy(
        levels=(TierLevel("basic"), TierLevel("plus", min_spend=100.0, min_orders=5, match="any"))
    )
    assert tiers.qualifying_tier(100.0, 0, 0.0) == "plus"
    assert tiers.qualifying_tier(0.0, 5, 0.0) == "plus"
    assert tiers.qualifying_tier(99.0, 4, 0.0) == "basic"


def test_period_starts_yearly_quarterly_and_fiscal_year() -> None:
    levels = (TierLevel("a"), TierLevel("b", min_spend=1.0))
    yearly = TierPolicy(levels=levels)
    assert yearly.period_starts(datetime(2022, 1, 1), datetime(2024, 1, 1)) == [
        datetime(2023, 1, 1),
        datetime(2024, 1, 1),
    ]
    quarterly = TierPolicy(levels=levels, evaluation_period=EvaluationPeriod.QUARTERLY)
    assert quarterly.period_starts(datetime(2023, 2, 15), datetime(2023, 10, 1)) == [
        datetime(2023, 4, 1),
        datetime(2023, 7, 1),
        datetime(2023, 10, 1),
    ]
    fiscal = TierPolicy(levels=levels, period_start_month=4)
    assert fiscal.period_starts(datetime(2022, 5, 1), datetime(2024, 3, 31)) == [
        datetime(2023, 4, 1)
    ]


def test_lifecycle_stage_relative_to_own_rhythm() -> None:
    # new < 30 days; active <= clamp(2 x interval, 30, 180); at_risk <= clamp(4 x interval, 90, 365)
    life = LifecyclePolicy(
        new_days=30,
        default_interval_days=60.0,
        active=Threshold(2.0, 30.0, 180.0),
        churn=Threshold(4.0, 90.0, 365.0),
    )
    assert life.stage(10, 5, None, 1) == "new"
    assert life.stage(100, None, None, 0) == "churned"  # never bought
    # one order: default interval 60 -> active <= 120, at_risk <= 240
    assert life.stage(400, 120, None, 1) == "active"
    assert life.stage(400, 121, None, 1) == "at_risk"
    assert life.stage(400, 241, None, 1) == "churned"
    # every 10 days -> active <= 30 (floor), at_risk <= 90 (floor)
    assert life.stage(400, 30, 10.0, 3) == "active"
    assert life.stage(400, 31, 10.0, 3) == "at_risk"
    assert life.stage(400, 91, 10.0, 3) == "churned"
    # every 100 days -> active <= 180 (cap), at_risk <= 365 (cap)
    assert life.stage(900, 181, 100.0, 5) == "at_risk"
    assert life.stage(900, 366, 100.0, 5) == "churned"


def test_rfm_segment_map() -> None:
    rfm = load_policy().rfm
    assert rfm.segment(5, 5, 4) == "Champions"  # fm = (5 + 4 + 1) // 2 = 5
    assert rfm.segment(5, 1, 1) == "New"
    assert rfm.segment(4, 1, 1) == "Promising"
    assert rfm.segment(4, 1, 2) == "Potential Loyalist"  # fm = (1 + 2 + 1) // 2 = 2
    assert rfm.segment(3, 3, 3) == "Need Attention"
    assert rfm.segment(3, 1, 1) == "About to Sleep"
    assert rfm.segment(1, 5, 5) == "Cannot Lose Them"
    assert rfm.segment(2, 4, 3) == "At Risk"
    assert rfm.segment(2, 1, 1) == "Hibernating"
    assert rfm.segment(1, 1, 2) == "Lost"
    assert set(rfm.segment_grid) == {
        "Champions",
        "Loyal",
        "Potential Loyalist",
        "New",
        "Promising",
        "Need Attention",
        "About to Sleep",
        "At Risk",
        "Cannot Lose Them",
        "Hibernating",
        "Lost",
    }


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "window_days = 365\n# Growth",
            "window_dayz = 365\n# Growth",
            "tiers.window_dayz: unknown key",
        ),
        (
            "protection_days = 365",
            'protection_days = "a year"',
            "tiers.protection_days: must be an integer",
        ),
        (
            'evaluation_period = "yearly"',
            'evaluation_period = "weekly"',
            "tiers.evaluation_period: must be one of",
        ),
        (
            'name = "regular"\n',
            'name = "regular"\nmin_spend = 1.0\n',
            "tiers.levels[0]: the lowest tier",
        ),
        (
            'name = "silver"',
            'name = "regular"',
            "tiers.levels[1].name: tier 'regular' is defined twice",
        ),
        (
            "min_growth_points = 500.0",
            "min_growth_points = -5.0",
            "tiers.levels[1].min_growth_points: must be >= 0",
        ),
        (
            'name = "Lost"\nr = [1]',
            'name = "Lost"\nr = [1, 2]',
            "overlaps 'Hibernating' at r=2, fm=1",
        ),
        (
            'name = "Lost"\nr = [1]\nfm = [1, 2]',
            'name = "Lost"\nr = [1]\nfm = [1]',
            "leaves cells without a segment: r=1,fm=2",
        ),
        ("cap_days = 180.0", "cap_days = 10.0", "lifecycle.active.cap_days: must be >= floor_days"),
        ("new_days = 30", "new_days = -1", "lifecycle.new_days: must be >= 0"),
    ],
)
def test_invalid_policy_names_file_and_key(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = write_policy(tmp_path, edited(old, new))
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_missing_section_and_bad_toml(tmp_path: Path) -> None:
    no_rfm = '[tiers]\n[[tiers.levels]]\nname = "basic"\n'
    with pytest.raises(ConfigError, match=r"rfm: missing required table"):
        load_policy(write_policy(tmp_path, no_rfm, "a.toml"))
    with pytest.raises(ConfigError, match=r"rfm_settings: unknown key"):
        load_policy(write_policy(tmp_path, DEFAULT_TEXT + "[rfm_settings]\nx = 1\n", "c.toml"))
    with pytest.raises(ConfigError, match=r"b\.toml: not valid TOML"):
        load_policy(write_policy(tmp_path, "[tiers\n", "b.toml"))
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read the feature policy"):
        load_policy(tmp_path / "nope.toml")
