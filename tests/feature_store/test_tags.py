"""Member tags: declarative rules compiled to polars, validated at load, merged with CRM tags."""

from __future__ import annotations

from datetime import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from feature_store.errors import ConfigError
from feature_store.transforms.tags import (
    apply_tags,
    category_shares,
    category_spend,
    share_column,
    top_categories,
)
from tests.feature_store.test_policy import BASE_TEXT, policy_with_tags, write_policy

RULES = """
[[tags]]
name = "coffee_lover"
description = "at least 40% of spend on coffee, 2+ orders"
all = [
  { feature = "category_share", category = "coffee", op = ">=", value = 0.4 },
  { feature = "frequency", op = ">=", value = 2 },
]

[[tags]]
name = "gold_plus_or_big"
any = [
  { feature = "tier", op = ">=", value = "gold" },
  { feature = "monetary", op = ">", value = 1000 },
]

[[tags]]
name = "birthday"
all = [{ feature = "birthday_this_month", op = "==", value = true }]

[[tags]]
name = "slipping"
all = [
  { feature = "lifecycle", op = "in", value = ["at_risk", "churned"] },
  { feature = "region", op = "not_in", value = ["north"] },
]

[[tags]]
name = "not_staff"
all = [{ feature = "crm_tags", op = "not_contains", value = "staff" }]
"""


def feature_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "member_id": ["a", "b", "c", "d"],
            share_column("coffee"): [0.5, 0.39, 0.9, 0.0],
            "frequency": [2, 5, 1, 0],
            "tier": ["silver", "gold", "regular", "diamond"],
            "monetary": [100.0, 50.0, 1000.5, 0.0],
            "birthday_this_month": [True, False, None, False],
            "lifecycle": ["active", "at_risk", "churned", "churned"],
            "region": ["south", "south", None, "north"],
            "crm_tags": [["staff"], None, ["vip", "staff"], []],
        },
        schema_overrides={"crm_tags": pl.List(pl.String)},
    )


def test_rules_and_crm_tags(tmp_path: Path) -> None:
    policy = policy_with_tags(tmp_path, RULES)
    tagged = apply_tags(feature_frame(), policy.tags, policy.tiers)
    assert dict(tagged.select("member_id", "tags").iter_rows()) == {
        # CRM tags first, then matching rules in rule order
        "a": ["staff", "coffee_lover", "birthday"],
        "b": ["gold_plus_or_big", "slipping", "not_staff"],
        # region null -> "not_in" is false; birthday null -> false
        "c": ["vip", "staff", "gold_plus_or_big"],
        "d": ["gold_plus_or_big", "not_staff"],
    }


def test_crm_tag_equal_to_a_rule_name_is_not_duplicated(tmp_path: Path) -> None:
    policy = policy_with_tags(tmp_path, RULES)
    frame = feature_frame().with_columns(
        pl.Series("crm_tags", [["birthday"], [], [], []], dtype=pl.List(pl.String))
    )
    tagged = apply_tags(frame, policy.tags, policy.tiers)
    assert tagged.filter(pl.col("member_id") == "a")["tags"].to_list() == [
        ["birthday", "coffee_lover", "not_staff"]
    ]


def test_category_features() -> None:
    rows = pl.DataFrame(
        {
            "member_id": ["a", "a", "a", "a", "b", "b"],
            "category": ["coffee", "tea", "coffee", "cake", "tea", "tea"],
            "ts": [dt(2023, 6, 1)] * 5 + [dt(2022, 1, 1)],  # b's second row is outside
            "amount": [30.0, 20.0, 10.0, 40.0, -5.0, 100.0],
        }
    )
    spend = category_spend(rows, 365, dt(2024, 1, 1))
    # a: coffee 40, cake 40, tea 20 -> ties by name; b: tea -5 (not positive -> no top category)
    tops = dict(top_categories(spend).select("member_id", "top_categories").iter_rows())
    assert tops == {"a": ["cake", "coffee", "tea"]}
    shares = category_shares(spend, ["coffee", "tea"]).sort("member_id")
    assert shares[share_column("coffee")].to_list() == [0.4, 0.0]
    assert shares[share_column("tea")].to_list() == [0.2, 0.0]  # b's total is not positive


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            'name = "r1"\nall = [{ feature = "favourite_colour", op = "==", value = "red" }]',
            "tags[r1].all[0].feature: unknown feature 'favourite_colour'",
        ),
        (
            'name = "r2"\nall = [{ feature = "monetary", op = "~=", value = 1 }]',
            "tags[r2].all[0].op: operator '~=' cannot be used with 'monetary'",
        ),
        (
            'name = "r3"\nall = [{ feature = "lifecycle", op = ">", value = "new" }]',
            "tags[r3].all[0].op: operator '>' cannot be used with 'lifecycle'",
        ),
        (
            'name = "r4"\nany = [{ feature = "tier", op = ">=", value = "bronze" }]',
            "tags[r4].any[0].value: 'bronze' is not one of regular, silver",
        ),
        (
            'name = "r5"\nall = [{ feature = "monetary", op = ">", value = "lots" }]',
            "tags[r5].all[0].value: must be a number",
        ),
        (
            'name = "r6"\nall = [{ feature = "category_share", op = ">", value = 0.5 }]',
            "tags[r6].all[0].category: missing required string",
        ),
        ('name = "r7"\ndescription = "nothing to test"', "tags[r7]: needs at least one condition"),
        (
            'name = "r8"\nall = [{ feature = "region", op = "in", value = "north" }]',
            "tags[r8].all[0].value: operator 'in' needs a non-empty list",
        ),
        (
            'name = "r9"\nall = [{ feature = "region", op = "==", value = "n", unit = "x" }]',
            "tags[r9].all[0].unit: unknown key",
        ),
        (
            'name = "r10"\nall = [{ feature = "region", op = "==" }]',
            "tags[r10].all[0].value: missing",
        ),
        ('name = "r11"\nwhen = []', "tags[r11].when: unknown key"),
        ('description = "no name"', "tags[0]: every tag rule needs a non-empty string 'name'"),
    ],
)
def test_bad_rule_fails_at_load_naming_the_rule(tmp_path: Path, rule: str, message: str) -> None:
    path = write_policy(tmp_path, BASE_TEXT + "\n[[tags]]\n" + rule + "\n")
    with pytest.raises(ConfigError) as err:
        policy_with_tags(tmp_path, "\n[[tags]]\n" + rule + "\n")
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_duplicate_rule_names(tmp_path: Path) -> None:
    rule = '\n[[tags]]\nname = "twice"\nall = [{ feature = "frequency", op = ">", value = 1 }]\n'
    with pytest.raises(ConfigError, match=r"tags\[twice\]\.name: tag rule defined twice"):
        policy_with_tags(tmp_path, rule + rule)
