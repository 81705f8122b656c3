"""Outcome extraction on a hand-made purchase frame: the window's edges, returns, orders,
retention periods, conversion days, time zones, events and tier upgrades."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from feature_store.campaigns import (
    InvalidCampaignInputError,
    group_frame,
    member_outcomes,
    outcomes_from_events,
)
from feature_store.schema import PURCHASES, conform

SENT = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
SEEDS = ("S1", "S2")
MEMBERS = group_frame(["A", "B"], ["C", "D"])

LINES = [
    # order, member, item, ts, quantity, amount
    ("o1", "A", "S1", datetime(2025, 2, 28, 12), 1, 10.0),  # before the send: ignored
    ("o2", "A", "X", datetime(2025, 3, 1, 10), 2, 20.0),  # exactly at the send: counted
    ("o3", "A", "S1", datetime(2025, 3, 5, 9), 1, 15.0),  # seed, day 3 (3 d 23 h)
    ("r1", "A", "S1", datetime(2025, 3, 10), -1, -15.0),  # a return: revenue only
    ("o4", "B", "S1", datetime(2025, 3, 31, 10), 1, 12.0),  # send + 30 d: outside a 30-day window
    ("o5", "B", "Y", datetime(2025, 3, 31, 9, 59, 59), 1, 5.0),  # last second of the window
    ("o6", "C", "S2", datetime(2025, 3, 2, 8), 1, 8.0),  # seed, day 0 (22 h)
    ("o6", "C", "Y", datetime(2025, 3, 2, 8), 1, 4.0),  # same order
    ("o7", "C", "Y", datetime(2025, 5, 15, 12), 1, 3.0),  # day 75
    ("o8", "E", "S1", datetime(2025, 3, 3), 1, 99.0),  # not in the campaign
]


def _frame() -> pl.DataFrame:
    cols = list(zip(*LINES, strict=True))
    names = ["order_id", "member_id", "item_id", "ts", "quantity", "amount"]
    return conform(pl.DataFrame(dict(zip(names, cols, strict=True))), PURCHASES)


def _rows(frame: pl.DataFrame) -> dict[str, dict[str, object]]:
    return {r["member_id"]: r for r in frame.iter_rows(named=True)}


def test_thirty_day_window() -> None:
    out = member_outcomes(_frame(), MEMBERS, sent_at=SENT, window_days=30, seed_items=SEEDS)
    rows = _rows(out.frame)
    assert set(rows) == {"A", "B", "C", "D"}
    assert "retained_60" not in out.frame.columns
    assert "retained_90" not in out.frame.columns
    a, b, c, d = rows["A"], rows["B"], rows["C"], rows["D"]
    assert (a["bought_any"], a["bought_seed"], a["orders"], a["conversion_day"]) == (
        True,
        True,
        2,
        3,
    )
    assert a["revenue"] == pytest.approx(20.0)  # 20 + 15 - 15 (the return)
    assert (b["bought_any"], b["bought_seed"], b["orders"], b["revenue"]) == (True, False, 1, 5.0)
    assert b["conversion_day"] == -1
    assert b["retained_30"] is True
    assert (c["bought_seed"], c["orders"], c["revenue"], c["conversion_day"]) == (True, 1, 12.0, 0)
    assert (d["bought_any"], d["orders"], d["revenue"], d["conversion_day"]) == (False, 0, 0.0, -1)
    assert out.observed_days == 30


def test_ninety_day_window_and_retention_periods() -> None:
    out = member_outcomes(_frame(), MEMBERS, sent_at=SENT, window_days=90, seed_items=SEEDS)
    rows = _rows(out.frame)
    b, c = rows["B"], rows["C"]
    assert (b["bought_seed"], b["orders"], b["revenue"], b["conversion_day"]) == (True, 2, 17.0, 30)
    assert (b["retained_30"], b["retained_60"], b["retained_90"]) == (True, True, False)
    assert (c["retained_30"], c["retained_60"], c["retained_90"]) == (True, False, True)
    assert (c["orders"], c["revenue"]) == (2, 15.0)
    assert rows["A"]["retained_60"] is False
    # the data ends on day 75 (+2 h): 76 days observed of 90
    assert out.observed_days == 76


def test_columns_feed_the_report_by_group() -> None:
    out = member_outcomes(_frame(), MEMBERS, sent_at=SENT, window_days=30, seed_items=SEEDS)
    treated = out.columns("treatment")
    assert set(treated) >= {"bought_any", "bought_seed", "revenue", "orders", "conversion_day"}
    assert treated["revenue"].tolist() == [20.0, 5.0]
    with pytest.raises(InvalidCampaignInputError, match="group"):
        out.columns("everyone")


def test_without_seed_items_conversion_is_any_purchase() -> None:
    out = member_outcomes(_frame(), MEMBERS, sent_at=SENT, window_days=30)
    rows = _rows(out.frame)
    assert "bought_seed" not in out.frame.columns
    assert rows["A"]["conversion_day"] == 0
    assert rows["B"]["conversion_day"] == 29


def test_data_time_zone() -> None:
    # 10:00 UTC is 11:00 in Berlin (CET): A's order at 10:00 local time precedes the send
    out = member_outcomes(
        _frame(),
        MEMBERS,
        sent_at=SENT,
        window_days=30,
        seed_items=SEEDS,
        data_timezone="Europe/Berlin",
    )
    assert _rows(out.frame)["A"]["orders"] == 1
    with pytest.raises(InvalidCampaignInputError, match="data_timezone"):
        member_outcomes(_frame(), MEMBERS, sent_at=SENT, window_days=30, data_timezone="Mars/Base")


def test_events_deduplicate_and_accept_aware_times() -> None:
    events = _frame().with_columns(
        pl.col("ts").dt.replace_time_zone("UTC").dt.convert_time_zone("Asia/Tokyo"),
        pl.format("e-{}-{}", pl.col("order_id"), pl.col("item_id")).alias("event_id"),
    )
    doubled = pl.concat([events, events.filter(pl.col("order_id") == "o3")])
    out = outcomes_from_events(doubled, MEMBERS, sent_at=SENT, window_days=30, seed_items=SEEDS)
    expected = member_outcomes(_frame(), MEMBERS, sent_at=SENT, window_days=30, seed_items=SEEDS)
    assert out.frame.equals(expected.frame)


def test_tier_upgrades() -> None:
    change = pl.DataFrame(
        {
            "member_id": ["A", "C", "B"],
            "tier_before": ["regular", "gold", None],
            "tier_after": ["silver", "silver", "gold"],
        }
    )
    out = member_outcomes(
        _frame(), MEMBERS, sent_at=SENT, window_days=30, tier_change=change,
        tiers=("regular", "silver", "gold"),
    )  # fmt: skip
    rows = _rows(out.frame)
    assert [rows[m]["tier_upgraded"] for m in "ABCD"] == [True, False, False, False]


@pytest.mark.parametrize("bad", [0, -5, 4_000, 2.5, "30"])
def test_bad_window_names_the_field(bad: object) -> None:
    with pytest.raises(InvalidCampaignInputError) as info:
        member_outcomes(_frame(), MEMBERS, sent_at=SENT, window_days=bad)  # type: ignore[arg-type]
    assert info.value.field == "window_days"


def test_naive_send_time_is_refused() -> None:
    with pytest.raises(InvalidCampaignInputError, match="sent_at"):
        member_outcomes(_frame(), MEMBERS, sent_at=datetime(2025, 3, 1), window_days=30)
