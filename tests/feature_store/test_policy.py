"""The feature policy: loading, validation messages and the scalar rules.

Also the helpers other feature tests use to write policies (default text with edits).
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import get_args

import pytest
import tomli_w

from feature_store.errors import ConfigError
from feature_store.policy import (
    DEFAULT_POLICY_PATH,
    EvaluationPeriod,
    FeaturePolicy,
    ItemPolicy,
    LifecyclePolicy,
    PolicyFile,
    Threshold,
    TierLevel,
    TierPolicy,
    ValuePolicy,
    load_policy,
)
from feature_store.policy_tiers import TiersTable

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
            "tiers.evaluation_period: 'weekly' is not one of monthly, quarterly, yearly",
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


# -- the policy file's models ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "where", "problem"),
    [
        # an unknown key
        (
            "points_per_order = 10.0",
            "points_per_order = 10.0\npoints_per_visit = 1.0",
            "tiers.points_per_visit",
            "unknown key (valid keys here: evaluation_period, levels, max_downgrade_steps, "
            "period_start_month, points_per_currency, points_per_order, protection_days, "
            "window_days)",
        ),
        # a wrong type (TOML values are taken as written: 12.0 is no integer, 1 is no boolean)
        (
            "clv_months = 12",
            'clv_months = "twelve"',
            "value.clv_months",
            "must be an integer, got 'twelve'",
        ),
        (
            "min_orders = 12",
            "min_orders = 12.0",
            "tiers.levels[3].min_orders",
            "must be an integer, got 12.0",
        ),
        ("enabled = true", "enabled = 1", "value.enabled", "must be true or false, got 1"),
        (
            "r = [5]\nfm = [4, 5]",
            'r = [5]\nfm = [4, "5"]',
            "rfm.segments[0].fm[1]",
            "must be an integer, got '5'",
        ),
        # a value out of range
        (
            "period_start_month = 1",
            "period_start_month = 13",
            "tiers.period_start_month",
            "must be <= 12, got 13",
        ),
        (
            "at_risk_below = 0.5",
            "at_risk_below = 1.0",
            "value.at_risk_below",
            "must be < 1, got 1.0",
        ),
        (
            "r = [5]\nfm = [4, 5]",
            "r = [5]\nfm = [4, 6]",
            "rfm.segments[0].fm[1]",
            "must be <= 5, got 6",
        ),
    ],
)
def test_a_bad_key_is_named_by_file_and_dotted_path(
    tmp_path: Path, old: str, new: str, where: str, problem: str
) -> None:
    path = write_policy(tmp_path, edited(old, new))
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    assert str(err.value) == f"{path}: {where}: {problem}"


def test_every_problem_of_a_file_is_named_on_its_own_line(tmp_path: Path) -> None:
    text = edited("window_days = 365\n# Growth", "window_days = 0\n# Growth")
    text = edited("new_days = 30", "new_days = 1.5", text)
    path = write_policy(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    assert str(err.value).splitlines() == [
        f"{path}: tiers.window_days: must be >= 1, got 0",
        f"{path}: lifecycle.new_days: must be an integer, got 1.5",
    ]


def test_a_valid_policy_round_trips_through_its_model(tmp_path: Path) -> None:
    policy = load_policy()
    checked = PolicyFile.model_validate(tomllib.loads(DEFAULT_TEXT))
    path = write_policy(tmp_path, tomli_w.dumps(checked.model_dump(exclude_defaults=True)))
    again = load_policy(path)
    assert again.source == path
    assert replace(again, source=policy.source, sha256=policy.sha256) == policy


def test_absent_keys_and_tables_take_the_defaults(tmp_path: Path) -> None:
    minimal = (
        '[tiers]\n[[tiers.levels]]\nname = "basic"\n[[tiers.levels]]\nname = "plus"\n'
        "min_spend = 100\n"
        + DEFAULT_TEXT[DEFAULT_TEXT.index("[rfm]") : DEFAULT_TEXT.index("[lifecycle]")]
        + "[lifecycle.active]\nmultiplier = 2\nfloor_days = 30\ncap_days = 180\n"
        + "[lifecycle.churn]\nmultiplier = 4\nfloor_days = 90\ncap_days = 365\n"
    )
    policy = load_policy(write_policy(tmp_path, minimal))
    assert policy.tiers == TierPolicy(
        levels=(TierLevel("basic"), TierLevel("plus", min_spend=100.0))
    )
    assert policy.lifecycle == LifecyclePolicy(
        new_days=30,
        default_interval_days=60.0,
        active=Threshold(2.0, 30.0, 180.0),
        churn=Threshold(4.0, 90.0, 365.0),
    )
    assert policy.items == ItemPolicy()
    assert policy.value == ValuePolicy()
    assert policy.tags == ()


def test_the_evaluation_periods_of_the_file_are_those_of_the_policy() -> None:
    choices = get_args(TiersTable.model_fields["evaluation_period"].annotation)
    assert choices == tuple(period.value for period in EvaluationPeriod)


def test_p_alive_takes_its_limit_from_the_value_model(tmp_path: Path) -> None:
    text = edited('rule = "days"', 'rule = "p_alive"')
    policy = load_policy(
        write_policy(tmp_path, edited("at_risk_below = 0.5", "at_risk_below = 0.3", text))
    )
    assert (policy.lifecycle.rule, policy.lifecycle.p_alive_below) == ("p_alive", 0.3)
    off = write_policy(tmp_path, edited("enabled = true", "enabled = false", text), "off.toml")
    with pytest.raises(
        ConfigError, match=r'off\.toml: lifecycle\.rule: "p_alive" needs the value model'
    ):
        load_policy(off)
