"""Item features: popularity windows, buyers, repeat rate, price bands and defaults."""

from __future__ import annotations

from datetime import datetime as dt

import polars as pl

from feature_store.policy import load_policy
from feature_store.schema import ITEMS, conform
from feature_store.transforms.items import item_features
from tests.feature_store.test_tiers import purchases

AS_OF = dt(2024, 1, 1)


def items() -> pl.DataFrame:
    return conform(
        pl.DataFrame(
            {
                "item_id": ["i1", "i2", "i3", "i4", "j1", "j2", "j3"],
                "category": ["a", "a", "a", "a", "b", "b", "b"],
                "price": [10.0, 20.0, 20.0, 30.0, 5.0, 6.0, 7.0],
                "tags": [["x"], None, None, None, None, None, None],
                "min_tier": [None, None, None, "gold", None, None, None],
                "active": [None, None, False, None, None, None, None],
            }
        ),
        ITEMS,
    )


def rows() -> pl.DataFrame:
    p = purchases(
        [
            ("o1", "m1", dt(2023, 12, 30), 2, 20.0),  # 2 days before as_of
            ("o2", "m1", dt(2023, 12, 1), 1, 10.0),  # 31 days: in 90d only
            ("o3", "m2", dt(2023, 10, 15), 1, 10.0),  # 78 days: in 90d
            ("o4", "m3", dt(2023, 1, 1), 5, 50.0),  # old: buyer, not popular
            ("o5", "m2", dt(2023, 12, 31), -1, -10.0),  # a return: not bought
            ("o6", "m4", dt(2023, 12, 25, 12), 1, 20.0),  # item i2, twice in one order
            ("o6", "m4", dt(2023, 12, 25, 12), 1, 20.0),
            ("o7", "m1", AS_OF, 3, 60.0),  # at as_of: excluded
        ]
    )
    return p.with_columns(pl.Series("item_id", ["i1", "i1", "i1", "i1", "i1", "i2", "i2", "i2"]))


def test_item_features() -> None:
    policy = load_policy()
    out = item_features(items(), rows(), policy.items, policy.tiers, AS_OF)
    assert out["item_id"].to_list() == ["i1", "i2", "i3", "i4", "j1", "j2", "j3"]
    by_id = {r["item_id"]: r for r in out.iter_rows(named=True)}
    i1, i2 = by_id["i1"], by_id["i2"]
    assert (i1["pop_7d"], i1["pop_30d"], i1["pop_90d"]) == (2, 2, 4)
    assert (i1["buyers"], i1["repeat_rate"]) == (3, 1 / 3)  # m1 bought it in two orders
    assert (i2["pop_7d"], i2["pop_30d"], i2["pop_90d"], i2["buyers"]) == (2, 2, 2, 1)
    assert i2["repeat_rate"] == 0.0  # two lines of one order are one order
    assert by_id["i3"]["buyers"] == 0
    assert by_id["i3"]["repeat_rate"] == 0.0


def test_price_bands_within_category_and_defaults() -> None:
    policy = load_policy()
    out = item_features(items(), rows().head(0), policy.items, policy.tiers, AS_OF)
    # a: ranks 1, 2, 2, 4 of 4 -> floor(3 * (rank - 1) / 4) = 0, 0, 0, 2; b: 1, 2, 3 of 3 -> 0, 1, 2
    assert out["price_band"].to_list() == [
        "budget",
        "budget",
        "budget",
        "premium",
        "budget",
        "mid",
        "premium",
    ]
    assert out["min_tier"].to_list() == ["regular"] * 3 + ["gold"] + ["regular"] * 3
    assert out["active"].to_list() == [True, True, False, True, True, True, True]
    assert out["tags"].to_list() == [["x"], [], [], [], [], [], []]
    assert out["pop_90d"].to_list() == [0] * 7


def test_integer_codes_give_the_same_features() -> None:
    """The offline build passes UInt32 codes for ids (another group-by path)."""
    policy = load_policy()
    by_strings = item_features(items(), rows(), policy.items, policy.tiers, AS_OF)
    item_codes = {item: n for n, item in enumerate(items()["item_id"])}
    member_codes = {"m1": 0, "m2": 1, "m3": 2, "m4": 3}
    coded_items = items().with_columns(
        pl.col("item_id").replace_strict(item_codes, return_dtype=pl.UInt32)
    )
    coded_rows = rows().with_columns(
        pl.col("item_id").replace_strict(item_codes, return_dtype=pl.UInt32),
        pl.col("member_id").replace_strict(member_codes, return_dtype=pl.UInt32),
    )
    by_codes = item_features(coded_items, coded_rows, policy.items, policy.tiers, AS_OF)
    assert by_codes["item_id"].to_list() == list(range(7))
    assert by_codes.drop("item_id").equals(by_strings.drop("item_id"))
