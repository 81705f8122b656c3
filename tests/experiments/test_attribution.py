"""Attribution on a hand-made timeline (engine/experiments/attribution.py).

The data's time zone is Europe/Berlin (UTC+2 in June): purchase times are naive Berlin times,
exposures are served at UTC epoch milliseconds. Exposures::

    r1  m1  champion    [a, b]   2024-06-10 08:00 UTC (10:00 Berlin)
    r2  m1  champion    [a, c]   2024-06-10 10:00 UTC (12:00 Berlin)
    r3  m2  challenger  [x]      2024-06-10 08:00 UTC (10:00 Berlin)
    r4  m3  challenger  [y]      2024-06-10 08:00 UTC

Purchases (Berlin time) and what each is attributed to:

    p1   m1 a  +1  10.0  06-10 13:00  both r1 and r2 showed a within 24 h: the latest, r2
    p1   (the same event again)        counted once
    p2   m1 b  +1   5.0  06-11 11:00  25 h after r1: outside the window, not attributed
    p3   m1 c  +2   8.0  06-10 12:30  r2 (30 minutes after)
    p4   m1 c  -2  -8.0  06-12 09:00  a return of p3: attributed to r2, cancels it
    p5   m1 z  +1   7.0  06-10 13:00  z was never shown: not attributed
    p6   m2 x  +1   3.0  06-10 10:30  r3 (30 minutes after, 08:30 UTC)
    p7   m2 x  +1   3.0  06-10 09:59  07:59 UTC, before r3 was served: not attributed (read as
                                     UTC it would be after, and wrongly attributed)
    p8   m1 b  +1   5.0  06-11 09:59  r1 + 23 h 59 min: attributed to r1
    p9   m1 b  +1   5.0  06-11 10:00  r1 + 24 h exactly: the window is half-open, not attributed
    p10  m3 y  +1   4.0  06-10 11:00  r4
    p11  m3 y  -2  -8.0  06-10 12:00  returns more than the attributed purchase: clipped at 0
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from engine.experiments.attribution import attribute, attributed_by_member, epoch_ms
from engine.experiments.errors import ExperimentInputError

BERLIN = "Europe/Berlin"


def ms(year: int, month: int, day: int, hour: int) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


EXPOSURES = pl.DataFrame(
    {
        "recommendation_id": ["r1", "r2", "r3", "r4"],
        "member_id": ["m1", "m1", "m2", "m3"],
        "variant": ["champion", "champion", "challenger", "challenger"],
        "bundle_id": ["b-champ", "b-champ", "b-chall", "b-chall"],
        "items": [["a", "b"], ["a", "c"], ["x"], ["y"]],
        "served_ms": [
            ms(2024, 6, 10, 8),
            ms(2024, 6, 10, 10),
            ms(2024, 6, 10, 8),
            ms(2024, 6, 10, 8),
        ],
    }
)


def line(event: str, member: str, item: str, when: datetime, quantity: int, amount: float):
    return {
        "event_id": event,
        "member_id": member,
        "order_id": f"o-{event}",
        "item_id": item,
        "ts": when,
        "quantity": quantity,
        "amount": amount,
    }


LINES = [
    line("p1", "m1", "a", datetime(2024, 6, 10, 13), 1, 10.0),
    line("p1", "m1", "a", datetime(2024, 6, 10, 13), 1, 10.0),
    line("p2", "m1", "b", datetime(2024, 6, 11, 11), 1, 5.0),
    line("p3", "m1", "c", datetime(2024, 6, 10, 12, 30), 2, 8.0),
    line("p4", "m1", "c", datetime(2024, 6, 12, 9), -2, -8.0),
    line("p5", "m1", "z", datetime(2024, 6, 10, 13), 1, 7.0),
    line("p6", "m2", "x", datetime(2024, 6, 10, 10, 30), 1, 3.0),
    line("p7", "m2", "x", datetime(2024, 6, 10, 9, 59), 1, 3.0),
    line("p8", "m1", "b", datetime(2024, 6, 11, 9, 59), 1, 5.0),
    line("p9", "m1", "b", datetime(2024, 6, 11, 10, 0), 1, 5.0),
    line("p10", "m3", "y", datetime(2024, 6, 10, 11), 1, 4.0),
    line("p11", "m3", "y", datetime(2024, 6, 10, 12), -2, -8.0),
]
EXPECTED = {
    "p1": "r2", "p2": None, "p3": "r2", "p4": "r2", "p5": None, "p6": "r3", "p7": None,
    "p8": "r1", "p9": None, "p10": "r4", "p11": "r4",
}  # fmt: skip


def purchases(rows: list[dict[str, object]] = LINES) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "event_id": pl.String, "member_id": pl.String, "order_id": pl.String,
            "item_id": pl.String, "ts": pl.Datetime("us"), "quantity": pl.Int64,
            "amount": pl.Float64,
        },
    )  # fmt: skip


@pytest.fixture(scope="module")
def attributed() -> pl.DataFrame:
    return attribute(EXPOSURES, purchases(), data_timezone=BERLIN, window_hours=24)


def test_each_line_is_attributed_to_the_latest_list_within_the_window(
    attributed: pl.DataFrame,
) -> None:
    got = dict(zip(attributed["event_id"], attributed["recommendation_id"], strict=True))
    assert got == EXPECTED
    assert attributed["event_id"].n_unique() == attributed.height == len(EXPECTED)
    # sorted by time
    assert attributed.filter(pl.col("attributed"))["event_id"].to_list() == [
        "p6", "p10", "p11", "p3", "p1", "p8", "p4",
    ]  # fmt: skip
    p1 = attributed.row(by_predicate=pl.col("event_id") == "p1", named=True)
    assert p1["variant"] == "champion"
    assert p1["bundle_id"] == "b-champ"
    assert p1["served_ms"] == ms(2024, 6, 10, 10)
    assert p1["ts_ms"] == ms(2024, 6, 10, 11)  # 13:00 Berlin summer time


def test_per_member_nets_returns_and_clips_at_zero(attributed: pl.DataFrame) -> None:
    per = {r["member_id"]: r for r in attributed_by_member(attributed).iter_rows(named=True)}
    # m1: a 10.0 (r2) + b 5.0 (r1); c bought 2 and returned 2: no longer a recommended purchase
    assert per["m1"]["attributed_revenue"] == pytest.approx(15.0)
    assert per["m1"]["attributed_quantity"] == 2
    assert per["m1"]["attributed_items"] == 2
    assert per["m2"]["attributed_revenue"] == pytest.approx(3.0)
    assert per["m2"]["attributed_items"] == 1
    # m3 returned more than the list sold: the list earned nothing, not a negative amount
    assert per["m3"]["attributed_revenue"] == 0.0
    assert per["m3"]["attributed_items"] == 0


def test_duplicate_event_ids_change_nothing(attributed: pl.DataFrame) -> None:
    doubled = attribute(
        EXPOSURES, purchases(LINES + LINES[::-1]), data_timezone=BERLIN, window_hours=24
    )
    assert doubled.equals(attributed)


def test_time_zone_is_explicit() -> None:
    """Read as UTC, p7 (09:59 Berlin = 07:59 UTC, before r3) would be attributed to r3."""
    as_utc = attribute(EXPOSURES, purchases(), data_timezone="UTC", window_hours=24)
    got = dict(zip(as_utc["event_id"], as_utc["recommendation_id"], strict=True))
    assert got["p7"] == "r3"
    with pytest.raises(ExperimentInputError, match="data_timezone"):
        attribute(EXPOSURES, purchases(), data_timezone="Mars/Olympus", window_hours=24)


def test_window_is_a_parameter() -> None:
    short = attribute(EXPOSURES, purchases(), data_timezone=BERLIN, window_hours=1)
    got = dict(zip(short["event_id"], short["recommendation_id"], strict=True))
    # p1 (1 h after r2) falls out at exactly 1 h; p3 and p6 (30 minutes) stay
    assert got["p1"] is None
    assert got["p3"] == "r2"
    assert got["p6"] == "r3"
    assert got["p8"] is None
    with pytest.raises(ExperimentInputError, match="attribution_hours"):
        attribute(EXPOSURES, purchases(), window_hours=0)


@pytest.mark.parametrize(
    ("local", "fold"),
    [
        (datetime(2024, 10, 27, 2, 30), 0),  # shown twice: the first (summer time)
        (datetime(2024, 3, 31, 2, 30), 0),  # never shown: the offset before the gap
        (datetime(2024, 6, 10, 12, 0), 0),
        (datetime(2024, 12, 10, 12, 0), 0),
    ],
)
def test_local_times_convert_as_zoneinfo_does(local: datetime, fold: int) -> None:
    frame = pl.DataFrame({"ts": [local]}, schema={"ts": pl.Datetime("us")})
    got = frame.select(epoch_ms(pl.col("ts"), BERLIN))["ts"][0]
    expected = local.replace(tzinfo=ZoneInfo(BERLIN), fold=fold).timestamp() * 1000
    assert got == int(expected)


def test_nothing_to_attribute() -> None:
    empty = attribute(EXPOSURES.clear(), purchases(), data_timezone=BERLIN)
    assert empty.height == len(EXPECTED)
    assert not empty["attributed"].any()
    assert attributed_by_member(empty).height == 0
    none = attribute(EXPOSURES, purchases([]), data_timezone=BERLIN)
    assert none.height == 0
