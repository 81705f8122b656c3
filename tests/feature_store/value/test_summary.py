"""Member-value statistics from purchase lines, checked against hand-computed values."""

from __future__ import annotations

import math
from datetime import date, datetime

import numpy as np
import polars as pl
import pytest

from feature_store.schema import PURCHASES, conform
from feature_store.value import (
    MemberValueStats,
    ValueCol,
    model_inputs,
    observation_end,
    purchase_day_counts,
    summaries,
)

AS_OF = date(2024, 1, 11)  # exclusive: lines before 2024-01-11 00:00

# (order_id, member_id, ts, quantity, amount)
LINES = [
    # member A: two orders on Jan 1 -> one purchase day worth 30 + 5 = 35 (the first day)
    ("o1", "A", datetime(2024, 1, 1, 10), 1, 10.0),
    ("o1", "A", datetime(2024, 1, 1, 10), 2, 20.0),
    ("o2", "A", datetime(2024, 1, 1, 15), 1, 5.0),
    # a return (own order id, negative quantity): not a purchase, not in the spend
    ("r1", "A", datetime(2024, 1, 2, 9), -1, -10.0),
    # Jan 5: an order with a returned line (net quantity 1, net amount 25) + another order (10)
    ("o3", "A", datetime(2024, 1, 5, 9), 2, 40.0),
    ("o3", "A", datetime(2024, 1, 5, 9), -1, -15.0),
    ("o4", "A", datetime(2024, 1, 5, 18), 1, 10.0),
    # Jan 10, one microsecond before the cutoff: counts
    ("o5", "A", datetime(2024, 1, 10, 23, 59, 59, 999999), 1, 20.0),
    # on and after the cutoff: ignored
    ("o6", "A", datetime(2024, 1, 11, 0, 0), 1, 99.0),
    ("o7", "A", datetime(2024, 2, 1, 12), 3, 300.0),
    # member B: an order whose lines cancel out (net quantity 0) and a pure return: no purchase
    ("b1", "B", datetime(2024, 1, 3, 12), 1, 8.0),
    ("b1", "B", datetime(2024, 1, 3, 12), -1, -8.0),
    ("b2", "B", datetime(2024, 1, 4, 12), -2, -16.0),
    # member C: one purchase the day before the cutoff
    ("c1", "C", datetime(2024, 1, 10, 8), 1, 12.0),
    # member D: only after the cutoff
    ("d1", "D", datetime(2024, 1, 20, 8), 1, 12.0),
    # member E reuses A's order id "o1" (ids are opaque): still its own order
    ("o1", "E", datetime(2023, 12, 1, 8), 1, 7.0),
    ("o1", "E", datetime(2023, 12, 1, 9), 1, 3.0),
    ("e2", "E", datetime(2023, 12, 20, 8), 1, 0.0),  # a free repeat day: mean value 0
]


def purchases() -> pl.DataFrame:
    frame = pl.DataFrame(
        LINES, schema=["order_id", "member_id", "ts", "quantity", "amount"], orient="row"
    ).with_columns(item_id=pl.lit("i1"))
    return conform(frame, PURCHASES)


def test_hand_computed_statistics() -> None:
    stats = summaries(purchases(), AS_OF)
    assert stats.columns == [
        "member_id",
        ValueCol.PURCHASE_DAYS,
        ValueCol.FIRST_DAY,
        ValueCol.LAST_DAY,
        ValueCol.REPEAT_SPEND,
    ]
    assert stats.schema[ValueCol.PURCHASE_DAYS] == pl.Int64
    assert stats.schema[ValueCol.FIRST_DAY] == pl.Date
    assert stats.schema[ValueCol.REPEAT_SPEND] == pl.Float64
    rows = {r["member_id"]: r for r in stats.iter_rows(named=True)}
    assert sorted(rows) == ["A", "C", "E"]  # B never bought, D only after the cutoff
    a = rows["A"]
    assert a[ValueCol.PURCHASE_DAYS] == 3  # Jan 1, Jan 5, Jan 10
    assert (a[ValueCol.FIRST_DAY], a[ValueCol.LAST_DAY]) == (date(2024, 1, 1), date(2024, 1, 10))
    assert a[ValueCol.REPEAT_SPEND] == pytest.approx(25.0 + 10.0 + 20.0)
    c = rows["C"]
    assert (c[ValueCol.PURCHASE_DAYS], c[ValueCol.REPEAT_SPEND]) == (1, 0.0)
    e = rows["E"]
    assert (e[ValueCol.PURCHASE_DAYS], e[ValueCol.REPEAT_SPEND]) == (2, 0.0)
    assert stats["member_id"].to_list() == sorted(stats["member_id"].to_list())


def test_cutoff_is_exclusive_and_moving_it_changes_the_counts() -> None:
    later = {
        r["member_id"]: r for r in summaries(purchases(), date(2024, 1, 12)).iter_rows(named=True)
    }
    assert later["A"][ValueCol.PURCHASE_DAYS] == 4  # the line at Jan 11 00:00 now counts
    assert later["A"][ValueCol.REPEAT_SPEND] == pytest.approx(55.0 + 99.0)
    assert summaries(purchases(), date(2023, 12, 1)).height == 0


def test_model_inputs_in_days() -> None:
    stats = summaries(purchases(), AS_OF)
    inputs = model_inputs(stats, AS_OF)
    by_id = {m: i for i, m in enumerate(inputs.member_id.to_list())}
    a, c, e = by_id["A"], by_id["C"], by_id["E"]
    assert observation_end(AS_OF) == date(2024, 1, 10)
    # A: x = 2, first Jan 1, last Jan 10, last observed day Jan 10
    assert (inputs.frequency[a], inputs.recency_days[a], inputs.age_days[a]) == (2.0, 9.0, 9.0)
    assert inputs.monetary[a] == pytest.approx(55.0 / 2)
    # C bought yesterday for the first time: T = 0, no monetary
    assert (inputs.frequency[c], inputs.recency_days[c], inputs.age_days[c]) == (0.0, 0.0, 0.0)
    assert math.isnan(inputs.monetary[c])
    # E: a repeat day with mean value 0 is no usable spend observation for Gamma-Gamma
    assert inputs.frequency[e] == 1.0
    assert inputs.monetary[e] == 0.0
    assert inputs.spend_frequency.tolist() == [2.0, 0.0, 0.0]


def test_rows_without_purchase_days_give_nan() -> None:
    stats = pl.DataFrame(
        {
            "member_id": ["x", "y"],
            ValueCol.PURCHASE_DAYS: [0, None],
            ValueCol.FIRST_DAY: [None, None],
            ValueCol.LAST_DAY: [None, None],
            ValueCol.REPEAT_SPEND: [None, None],
        },
        schema_overrides={
            ValueCol.FIRST_DAY: pl.Date,
            ValueCol.LAST_DAY: pl.Date,
            ValueCol.REPEAT_SPEND: pl.Float64,
        },
    )
    inputs = model_inputs(stats, AS_OF)
    for values in (inputs.frequency, inputs.recency_days, inputs.age_days, inputs.monetary):
        assert np.isnan(values).all()


def test_statistics_as_of_a_later_date_are_refused() -> None:
    with pytest.raises(ValueError, match="on or after as_of"):
        model_inputs(summaries(purchases(), AS_OF), date(2024, 1, 5))
    with pytest.raises(ValueError, match="on or after as_of"):  # purchases on Jan 10
        model_inputs(summaries(purchases(), AS_OF), date(2024, 1, 10))


def test_purchase_day_counts_in_a_window() -> None:
    counts = purchase_day_counts(purchases(), date(2024, 1, 5), date(2024, 2, 2))
    assert dict(counts.iter_rows()) == {"A": 4, "C": 1, "D": 1}  # A: Jan 5, 10, 11, Feb 1


def test_event_updates_replay_the_batch_statistics() -> None:
    stats = MemberValueStats()
    # A's purchase orders in time order: (day, net amount)
    for day, amount in [
        (date(2024, 1, 1), 30.0),
        (date(2024, 1, 1), 5.0),
        (date(2024, 1, 5), 25.0),
        (date(2024, 1, 5), 10.0),
        (date(2024, 1, 10), 20.0),
    ]:
        stats = stats.add_purchase(day, amount)
    assert stats == MemberValueStats(3, date(2024, 1, 1), date(2024, 1, 10), 55.0)
    assert stats.inputs(AS_OF) == (2.0, 9.0, 9.0, 27.5)
    # a late event before the last purchase day waits for the next snapshot
    assert stats.add_purchase(date(2024, 1, 3), 50.0) == stats
    assert all(math.isnan(v) for v in MemberValueStats().inputs(AS_OF))
