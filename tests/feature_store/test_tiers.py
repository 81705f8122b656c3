"""Tier history replayed from the policy: upgrades, protected and unprotected downgrades."""

from __future__ import annotations

from datetime import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_store.policy import EvaluationPeriod, TierLevel, TierPolicy, load_policy
from feature_store.schema import PURCHASES
from feature_store.transforms import orders_from_purchases, position_in_run, previous_max
from feature_store.transforms.tiers import qualifying_rank, rank_to_name, tier_history

# regular < silver (100 spent in 180 days) < gold (500); yearly downgrades, 365 days protection
LADDER = (
    TierLevel("regular"),
    TierLevel("silver", min_spend=100.0),
    TierLevel("gold", min_spend=500.0),
)
POLICY = TierPolicy(levels=LADDER, window_days=180, protection_days=365, max_downgrade_steps=1)
AS_OF = dt(2024, 6, 1)


def purchases(rows: list[tuple[str, str, dt, int, float]]) -> pl.DataFrame:
    """(order_id, member_id, ts, quantity, amount) rows of one item."""
    return pl.DataFrame(
        {
            "order_id": [r[0] for r in rows],
            "member_id": [r[1] for r in rows],
            "item_id": ["i1"] * len(rows),
            "ts": [r[2] for r in rows],
            "quantity": [r[3] for r in rows],
            "amount": [r[4] for r in rows],
        },
        schema=PURCHASES.polars_schema(),
    )


def members(joined: dict[str, dt]) -> pl.DataFrame:
    return pl.DataFrame(
        {"member_id": list(joined), "joined_at": list(joined.values())},
        schema_overrides={"joined_at": pl.Datetime("us")},
    )


def history_of(result_history: pl.DataFrame, member: str) -> list[tuple[object, ...]]:
    rows = result_history.filter(pl.col("member_id") == member).select(
        "tier", "valid_from", "valid_to", "reason"
    )
    return list(rows.iter_rows())


def run(
    joined: dict[str, dt], rows: list[tuple[str, str, dt, int, float]], policy: TierPolicy = POLICY
):
    orders = orders_from_purchases(purchases(rows)).collect()
    return tier_history(members(joined), orders, policy, AS_OF)


def test_upgrade_at_qualifying_purchase_and_downgrade_one_step_after_protection() -> None:
    result = run(
        {"A": dt(2022, 1, 10)},
        [
            ("a1", "A", dt(2022, 2, 1), 1, 150.0),  # 150 in window -> silver
            ("a2", "A", dt(2022, 6, 1), 1, 400.0),  # 550 in window -> gold
        ],
    )
    # 2023-01-01: nothing bought in the window, but only 214 days since the upgrade: kept.
    # 2024-01-01: 579 days since the upgrade -> one step down to silver.
    assert history_of(result.history, "A") == [
        ("regular", dt(2022, 1, 10), dt(2022, 2, 1), "joined"),
        ("silver", dt(2022, 2, 1), dt(2022, 6, 1), "upgrade"),
        ("gold", dt(2022, 6, 1), dt(2024, 1, 1), "upgrade"),
        ("silver", dt(2024, 1, 1), None, "downgrade"),
    ]
    current = result.current.row(0, named=True)
    assert current["policy_tier"] == "silver"
    assert current["tier_since"] == dt(2024, 1, 1)


def test_no_downgrade_inside_the_protection_period() -> None:
    result = run(
        {"B": dt(2022, 3, 1)},
        [("b1", "B", dt(2023, 3, 1), 1, 600.0)],  # straight to gold
    )
    # 2024-01-01: window empty, but only 306 days since the upgrade -> still gold
    assert history_of(result.history, "B") == [
        ("regular", dt(2022, 3, 1), dt(2023, 3, 1), "joined"),
        ("gold", dt(2023, 3, 1), None, "upgrade"),
    ]


def test_requalifying_at_period_end_keeps_the_tier() -> None:
    result = run(
        {"K": dt(2021, 1, 1)},
        [
            ("k1", "K", dt(2022, 1, 5), 1, 600.0),  # gold
            ("k3", "K", dt(2023, 12, 1), 1, 500.0),  # gold again in (2023-07-05, 2024-01-01)
        ],
    )
    # 2023-01-01: protected (361 days). 2024-01-01: unprotected, but the window qualifies for gold.
    assert history_of(result.history, "K") == [
        ("regular", dt(2021, 1, 1), dt(2022, 1, 5), "joined"),
        ("gold", dt(2022, 1, 5), None, "upgrade"),
    ]


def test_return_reduces_spend_but_downgrades_wait_for_period_end() -> None:
    result = run(
        {"C": dt(2023, 1, 5)},
        [
            ("c1", "C", dt(2023, 2, 1), 1, 120.0),  # silver
            ("c2", "C", dt(2023, 2, 10), -1, -50.0),  # return: 70 in window, no immediate change
            ("c3", "C", dt(2023, 3, 1), 1, 30.0),  # 100 again: already silver, no new row
        ],
    )
    assert history_of(result.history, "C") == [
        ("regular", dt(2023, 1, 5), dt(2023, 2, 1), "joined"),
        ("silver", dt(2023, 2, 1), None, "upgrade"),
    ]


def test_purchase_at_as_of_is_excluded_and_window_figures_are_point_in_time() -> None:
    result = run(
        {"D": dt(2023, 1, 1), "E": dt(2024, 1, 15)},
        [
            ("d1", "D", dt(2024, 5, 31, 23, 59, 59), 1, 100.0),  # the last second before as_of
            ("d2", "D", AS_OF, 1, 1000.0),  # at as_of 00:00: excluded
        ],
    )
    assert history_of(result.history, "D") == [
        ("regular", dt(2023, 1, 1), dt(2024, 5, 31, 23, 59, 59), "joined"),
        ("silver", dt(2024, 5, 31, 23, 59, 59), None, "upgrade"),
    ]
    assert history_of(result.history, "E") == [("regular", dt(2024, 1, 15), None, "joined")]
    current = {r["member_id"]: r for r in result.current.iter_rows(named=True)}
    assert current["D"]["spend_window"] == 100.0
    assert current["D"]["orders_window"] == 1
    assert current["D"]["growth_points"] == 100.0  # 1 point per currency unit, 0 per order
    assert current["E"]["orders_window"] == 0


def test_unlimited_downgrade_steps_go_straight_to_the_qualifying_tier() -> None:
    policy = TierPolicy(levels=LADDER, window_days=180, protection_days=365, max_downgrade_steps=0)
    result = run(
        {"A": dt(2022, 1, 10)},
        [("a1", "A", dt(2022, 2, 1), 1, 600.0)],
        policy,
    )
    assert history_of(result.history, "A")[-1] == ("regular", dt(2024, 1, 1), None, "downgrade")


def test_quarterly_evaluation_without_protection() -> None:
    policy = TierPolicy(
        levels=LADDER,
        window_days=30,
        evaluation_period=EvaluationPeriod.QUARTERLY,
        protection_days=0,
        max_downgrade_steps=1,
    )
    result = run(
        {"Q": dt(2024, 1, 2)},
        [("q1", "Q", dt(2024, 2, 10), 1, 700.0)],  # gold; window of 30 days is empty by 2024-04-01
        policy,
    )
    assert history_of(result.history, "Q") == [
        ("regular", dt(2024, 1, 2), dt(2024, 2, 10), "joined"),
        ("gold", dt(2024, 2, 10), dt(2024, 4, 1), "upgrade"),
        ("silver", dt(2024, 4, 1), None, "downgrade"),
    ]


def test_orders_count_toward_tiers() -> None:
    ladder = (TierLevel("basic"), TierLevel("plus", min_orders=3))
    policy = TierPolicy(levels=ladder, window_days=365)
    result = run(
        {"F": dt(2023, 1, 1)},
        [
            ("f1", "F", dt(2023, 5, 1), 1, 1.0),
            ("f2", "F", dt(2023, 5, 2), -1, -1.0),  # a return is not an order
            ("f3", "F", dt(2023, 5, 3), 1, 1.0),
            ("f4", "F", dt(2023, 5, 4), 1, 1.0),  # third purchase order -> plus
        ],
        policy,
    )
    assert history_of(result.history, "F")[-1] == ("plus", dt(2023, 5, 4), None, "upgrade")


@settings(max_examples=60, deadline=None)
@given(
    spend=st.floats(min_value=-1000, max_value=30000, allow_nan=False),
    orders=st.integers(min_value=0, max_value=40),
)
def test_vectorized_qualification_matches_the_scalar_rule(spend: float, orders: int) -> None:
    tiers = load_policy().tiers
    points = tiers.growth_points(spend, orders)
    frame = pl.DataFrame({"s": [spend], "o": [orders], "p": [points]})
    rank = frame.select(
        rank_to_name(qualifying_rank(pl.col("s"), pl.col("o"), pl.col("p"), tiers), tiers)
    ).item()
    assert rank == tiers.qualifying_tier(spend, orders, points)


@settings(max_examples=40, deadline=None)
@given(
    runs=st.lists(
        st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=6),
        min_size=1,
        max_size=8,
    )
)
def test_run_helpers_match_window_expressions(runs: list[list[int]]) -> None:
    keys = [k for k, run in enumerate(runs) for _ in run]
    values = [v for run in runs for v in run]
    frame = pl.DataFrame({"k": keys, "v": values}, schema={"k": pl.UInt32, "v": pl.Int8})
    got = frame.select(
        previous_max(pl.col("v"), pl.col("k")).alias("prev"),
        position_in_run(pl.col("k")).alias("pos"),
    )
    want = frame.select(
        pl.col("v").cum_max().shift(1).over("k").cast(pl.Int64).alias("prev"),
        pl.int_range(pl.len()).over("k").cast(pl.Int64).alias("pos"),
    )
    assert got.to_dicts() == want.to_dicts()
