"""Lifecycle stages from each member's own purchase rhythm, and the figures behind them."""

from __future__ import annotations

from datetime import datetime as dt
from datetime import timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_store.policy import load_policy
from feature_store.transforms import orders_from_purchases
from feature_store.transforms.lifecycle import lifecycle, stage_expr
from tests.feature_store.test_tiers import members, purchases

AS_OF = dt(2024, 1, 1)
# default policy: new < 30 days since joining; default interval 60 days;
# active <= clamp(2 x interval, 30, 180); at_risk <= clamp(4 x interval, 90, 365)


def days_ago(n: float) -> dt:
    return AS_OF - timedelta(days=n)


def test_stages_and_rhythm_features() -> None:
    joined = {
        "new": days_ago(10),  # joined 10 days ago, already bought
        "never": days_ago(100),  # joined long ago, never bought
        "rhythm10": days_ago(400),  # every 10 days, last 25 days ago -> active (limit 30)
        "late10": days_ago(400),  # every 10 days, last 40 days ago -> at_risk (30 < 40 <= 90)
        "once": days_ago(400),  # one order 150 days ago: default 60 -> 120 < 150 <= 240 at_risk
        "gone": days_ago(900),  # every 100 days, last 366 days ago -> churned (cap 365)
    }
    rows = [
        ("n1", "new", days_ago(2), 1, 10.0),
        ("r1", "rhythm10", days_ago(45), 1, 10.0),
        ("r2", "rhythm10", days_ago(35), 1, 10.0),
        ("r3", "rhythm10", days_ago(25), 1, 10.0),
        ("r4", "rhythm10", days_ago(20), -1, -10.0),  # a return: not an order, still spend
        ("l1", "late10", days_ago(60), 1, 10.0),
        ("l2", "late10", days_ago(50), 1, 10.0),
        ("l3", "late10", days_ago(40), 1, 10.0),
        ("o1", "once", days_ago(150.5), 1, 99.0),
        ("g1", "gone", days_ago(566), 1, 5.0),
        ("g2", "gone", days_ago(466), 1, 5.0),
        ("g3", "gone", days_ago(366), 1, 5.0),
        ("zz", "once", AS_OF, 1, 1.0),  # at as_of: excluded
    ]
    orders = orders_from_purchases(purchases(rows)).collect()
    out = lifecycle(members(joined), orders, load_policy().lifecycle, AS_OF)
    got = {
        r["member_id"]: (
            r["lifecycle"],
            r["n_orders"],
            r["days_since_last_purchase"],
            r["avg_interpurchase_days"],
            r["days_since_joined"],
        )
        for r in out.iter_rows(named=True)
    }
    assert got == {
        "new": ("new", 1, 2, None, 10),
        "never": ("churned", 0, None, None, 100),
        "rhythm10": ("active", 3, 25, 10.0, 400),
        "late10": ("at_risk", 3, 40, 10.0, 400),
        "once": ("at_risk", 1, 150, None, 400),  # 150.5 days -> 150 whole days
        "gone": ("churned", 3, 366, 100.0, 900),
    }
    rhythm = out.filter(pl.col("member_id") == "rhythm10").row(0, named=True)
    assert rhythm["total_spend"] == 20.0
    assert rhythm["first_purchase_at"] == days_ago(45)
    assert rhythm["last_purchase_at"] == days_ago(25)


@settings(max_examples=80, deadline=None)
@given(
    days_joined=st.integers(0, 2000),
    days_last=st.one_of(st.none(), st.integers(0, 2000)),
    avg=st.one_of(st.none(), st.floats(0.0, 500.0)),
    n_orders=st.integers(0, 50),
)
def test_vectorized_stage_matches_the_scalar_rule(
    days_joined: int, days_last: int | None, avg: float | None, n_orders: int
) -> None:
    policy = load_policy().lifecycle
    frame = pl.DataFrame(
        {"j": [days_joined], "l": [days_last], "a": [avg], "n": [n_orders]},
        schema={"j": pl.Int64, "l": pl.Int64, "a": pl.Float64, "n": pl.Int64},
    )
    vector = frame.select(
        stage_expr(pl.col("j"), pl.col("l"), pl.col("a"), pl.col("n"), policy)
    ).item()
    assert vector == policy.stage(days_joined, days_last, avg, n_orders)
