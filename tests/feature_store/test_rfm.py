"""RFM: window figures, quintile scores (recency reversed), segments and score bounds."""

from __future__ import annotations

from datetime import datetime as dt

import polars as pl

from feature_store.policy import load_policy
from feature_store.transforms import orders_from_purchases
from feature_store.transforms.rfm import return_rate, rfm
from tests.feature_store.test_tiers import members, purchases

AS_OF = dt(2024, 1, 1)  # window: 2023-01-01 00:00 < ts < 2024-01-01 00:00 (365 days)

ROWS = [
    ("a1", "A", dt(2023, 12, 31, 10), 1, 500.0),
    ("a2", "A", dt(2023, 12, 1), 1, 300.0),
    ("b1", "B", dt(2023, 11, 1), 1, 100.0),
    ("c1", "C", dt(2023, 5, 30), 1, 50.0),
    ("c2", "C", dt(2023, 5, 31), 1, 50.0),
    ("c3", "C", dt(2023, 6, 1), 1, 50.0),
    ("c4", "C", dt(2023, 6, 10), -1, -30.0),  # a return: subtracts, is not an order
    ("d1", "D", dt(2023, 3, 1), 1, 1000.0),
    ("e1", "E", dt(2023, 9, 1), 1, 25.0),
    ("e2", "E", dt(2023, 9, 2), 1, 25.0),
    ("e3", "E", dt(2023, 9, 3), 1, 25.0),
    ("e4", "E", dt(2023, 9, 4), 1, 25.0),
    ("f1", "F", dt(2022, 5, 1), 1, 80.0),  # before the window
    ("f2", "F", dt(2023, 1, 1), 1, 80.0),  # exactly at the window start: outside
    ("x1", "A", AS_OF, 1, 9999.0),  # at as_of: excluded
]
JOINED = {m: dt(2022, 1, 1) for m in "ABCDEFG"}  # G never bought


def features() -> dict[str, dict[str, object]]:
    orders = orders_from_purchases(purchases(ROWS)).collect()
    result = rfm(members(JOINED), orders, load_policy().rfm, AS_OF)
    return {r["member_id"]: r for r in result.features.iter_rows(named=True)}


def test_window_figures() -> None:
    f = features()
    # (recency_days, frequency, monetary)
    got = {m: (f[m]["recency_days"], f[m]["frequency"], f[m]["monetary"]) for m in "ABCDEFG"}
    assert got == {
        "A": (0, 2, 800.0),
        "B": (61, 1, 100.0),
        "C": (214, 3, 120.0),
        "D": (306, 1, 1000.0),
        "E": (119, 4, 100.0),
        "F": (None, 0, 0.0),
        "G": (None, 0, 0.0),
    }


def test_quintile_scores_and_segments() -> None:
    # 5 scored members -> score = rank; ties share the lowest rank.
    # recency (fewest days best): D 306 < C 214 < E 119 < B 61 < A 0  -> D1 C2 E3 B4 A5
    # frequency: B=D=1 (rank 1) -> 1, A 2 (rank 3) -> 3, C 3 -> 4, E 4 -> 5
    # monetary: B=E=100 (rank 1) -> 1, C 120 -> 3, A 800 -> 4, D 1000 -> 5
    # fm = (f + m + 1) // 2: A 4, B 1, C 4, D 3, E 3
    f = features()
    scores = {m: (f[m]["r_score"], f[m]["f_score"], f[m]["m_score"]) for m in "ABCDEFG"}
    assert scores == {
        "A": (5, 3, 4),
        "B": (4, 1, 1),
        "C": (2, 4, 3),
        "D": (1, 1, 5),
        "E": (3, 5, 1),
        "F": (1, 1, 1),  # bought, but not in the window
        "G": (None, None, None),  # never bought
    }
    segments = {m: f[m]["rfm_segment"] for m in "ABCDEFG"}
    assert segments == {
        "A": "Champions",  # r5 fm4
        "B": "Promising",  # r4 fm1
        "C": "At Risk",  # r2 fm4
        "D": "At Risk",  # r1 fm3
        "E": "Need Attention",  # r3 fm3
        "F": "Lost",  # r1 fm1
        "G": None,
    }


def test_score_bounds_reproduce_the_scores() -> None:
    orders = orders_from_purchases(purchases(ROWS)).collect()
    bounds = rfm(members(JOINED), orders, load_policy().rfm, AS_OF).bounds
    assert bounds == {
        "recency_days": [214.0, 119.0, 61.0, 0.0],
        "frequency": [2.0, 2.0, 3.0, 4.0],
        "monetary": [120.0, 120.0, 800.0, 1000.0],
    }

    # online scoring rule of docs/feature_snapshot.md gives A's scores back
    def score(value: float, metric: str, reverse: bool = False) -> int:
        reached = [b for b in bounds[metric] if b is not None]
        return 1 + sum((value <= b) if reverse else (b <= value) for b in reached)

    assert score(2, "frequency") == 3
    assert score(800, "monetary") == 4
    assert score(0, "recency_days", reverse=True) == 5
    assert score(306, "recency_days", reverse=True) == 1  # D


def test_return_rate_in_window() -> None:
    rows = [
        ("o1", "A", dt(2023, 6, 1), 4, 40.0),
        ("r1", "A", dt(2023, 6, 5), -1, -10.0),
        ("o2", "B", dt(2023, 6, 1), 2, 20.0),
        ("r0", "B", dt(2022, 6, 5), -2, -20.0),  # outside the window
    ]
    rates = dict(
        return_rate(purchases(rows), 365, AS_OF).select("member_id", "return_rate").iter_rows()
    )
    assert rates == {"A": 0.25, "B": 0.0}


def test_no_purchases_at_all() -> None:
    orders = orders_from_purchases(purchases([])).collect()
    result = rfm(members({"Z": dt(2022, 1, 1)}), orders, load_policy().rfm, AS_OF)
    row = result.features.row(0, named=True)
    assert (row["frequency"], row["rfm_segment"], row["r_score"]) == (0, None, None)
    assert result.bounds["frequency"] == [None, None, None, None]
    assert pl.Series(result.features["monetary"]).to_list() == [0.0]
