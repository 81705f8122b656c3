"""Snapshot -> numpy columns for audiences (feature_store.member_columns)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.audience import AudienceDefinition, AudienceScorer, Filters, ItemSide, Seed, Size
from engine.ids import IdMap
from feature_store.errors import DataError
from feature_store.member_columns import (
    LIFECYCLE_STAGES,
    RecentPurchases,
    read_audience_columns,
    read_item_columns,
    read_member_columns,
    recent_buyers,
    recent_purchase_table,
)
from feature_store.offline import RECENT_PURCHASES_PER_MEMBER, build_snapshot, open_snapshot

AS_OF = date(2024, 1, 1)

MEMBERS = """member_id,joined_at,tier,tags,birth_date,points_balance,region
m1,2022-01-01,,vip|tea_lover,1980-12-03,120,north
m2,2022-06-01,gold,,,,
m3,2024-01-01,,,,,
m4,2023-05-01,regular,staff,1990-01-15,0,south
m5,2023-02-01,diamond,vip,,75,north
"""
ITEMS = """item_id,category,price,title,tags,min_tier,active
i1,coffee,10,,winter|hot,,
i2,tea,20,,,gold,false
i3,tea,5,,hot,,
"""
# m5 bought i3 once, then 50 lines of i1: the i3 line falls out of its last 50 lines.
HEADER = "order_id,member_id,item_id,ts,quantity,amount\n"
PURCHASES = (
    HEADER
    + """o1,m1,i1,2023-06-01T10:00:00,60,600
o2,m1,i2,2024-01-01T00:00:00,1,5000
o3,m2,i2,2023-12-31T23:59:59.999999,1,20
o4,m4,i2,2023-12-01T10:00:00,-1,-20
o5,m4,i3,2023-11-01T10:00:00,2,10
o6,m5,i3,2023-09-01T10:00:00,1,5
"""
    + "".join(
        f"p{k},m5,i1,2023-10-{1 + k % 28:02d}T{k // 28:02d}:00:00,1,10\n"
        for k in range(RECENT_PURCHASES_PER_MEMBER)
    )
)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("member_columns")
    data = root / "data"
    data.mkdir()
    (data / "members.csv").write_text(MEMBERS)
    (data / "items.csv").write_text(ITEMS)
    (data / "purchases.csv").write_text(PURCHASES)
    return build_snapshot(data, AS_OF, root / "snap").snapshot.path


def test_member_columns(snapshot: Path) -> None:
    m = read_member_columns(snapshot)
    # m3 joined at as_of: not a member yet
    assert m.member_ids.tolist() == ["m1", "m2", "m4", "m5"]
    assert m.member_ids.dtype.kind == "U"
    assert m.as_of == AS_OF
    assert m.tier_names == ("regular", "silver", "gold", "platinum", "diamond")
    tiers = [m.tier_names[c] for c in m.tier_codes.tolist()]
    assert tiers == ["silver", "gold", "regular", "diamond"]  # m1 by policy, others CRM
    assert m.tier_codes.dtype == np.int16
    assert m.lifecycle_names == LIFECYCLE_STAGES
    assert m.lifecycle_codes.dtype == np.int16
    assert m.region_names == ("north", "south")
    assert m.region_codes.tolist() == [0, -1, 1, 0]
    assert m.birth_month.tolist() == [12, 0, 1, 0]
    assert m.birth_month.dtype == np.int8
    assert m.points[[0, 2, 3]].tolist() == [120.0, 0.0, 75.0]
    assert np.isnan(m.points[1])
    assert m.joined_at.dtype == np.dtype("datetime64[us]")
    assert m.joined_at[0] == np.datetime64("2022-01-01T00:00", "us")
    assert m.monetary[0] == 600.0  # o2 at as_of is excluded
    assert len(m) == 4


def test_member_tags_and_segments(snapshot: Path) -> None:
    m = read_member_columns(snapshot)
    assert list(m.tag_names) == sorted(m.tag_names)
    dense = m.tags.toarray()
    assert dense.dtype == np.bool_
    have = {
        member: {m.tag_names[j] for j in np.flatnonzero(dense[i])}
        for i, member in enumerate(m.member_ids.tolist())
    }
    assert {"vip", "tea_lover"} <= have["m1"]
    assert "staff" in have["m4"]
    assert "vip" in have["m5"]
    assert "vip" not in have["m2"]
    # segments: present names sorted; -1 only where nobody purchased
    assert list(m.segment_names) == sorted(m.segment_names)
    assert all(code >= 0 for code in m.segment_codes.tolist())  # everyone bought something


def test_item_columns(snapshot: Path) -> None:
    items = read_item_columns(open_snapshot(snapshot))
    assert items.item_ids.tolist() == ["i1", "i2", "i3"]
    assert items.categories.tolist() == ["coffee", "tea", "tea"]
    assert items.tag_names == ("hot", "winter")
    assert items.tags.toarray().tolist() == [[True, True], [False, False], [True, False]]
    # i1: m1, m5; i2: m2 (m1's purchase is at as_of; m4 only returned); i3: m4, m5
    assert items.buyers.tolist() == [2, 1, 2]


def test_recent_buyers(snapshot: Path) -> None:
    since = datetime(2023, 7, 1)
    assert recent_buyers(snapshot, ["i2"], since).tolist() == ["m2"]  # m4's line is a return
    assert recent_buyers(snapshot, ["i1"], datetime(2023, 1, 1)).tolist() == ["m1", "m5"]
    assert recent_buyers(snapshot, ["i1"], since).tolist() == ["m5"]
    # m5's i3 line is older than its last 50 lines: not seen (documented limit)
    assert recent_buyers(snapshot, ["i3"], since).tolist() == ["m4"]
    assert recent_buyers(snapshot, [], since).tolist() == []
    assert recent_buyers(snapshot, ["nope"], since).tolist() == []


def test_not_a_snapshot(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a feature snapshot"):
        read_member_columns(tmp_path)


def test_columns_drive_an_audience(snapshot: Path) -> None:
    """MemberColumns satisfies engine.audience.MemberAttributes."""
    members = read_member_columns(snapshot)
    items = read_item_columns(snapshot)
    vectors = np.array([[1, 0], [0, 1], [1, 1], [2, 0]], dtype=np.float32)
    side = ItemSide(
        ids=IdMap(items.item_ids),
        vectors=np.array([[1, 0], [0, 1], [0.5, 0.5]], dtype=np.float32),
        categories=items.categories,
        tags=items.tags,
        tag_names=items.tag_names,
        popularity=items.buyers,
    )
    scorer = AudienceScorer(members, vectors, IdMap(members.member_ids), side)
    audience = scorer.build(
        AudienceDefinition(
            seed=Seed(items=("i1",)),
            size=Size(top_n=10),
            filters=Filters(tiers=("silver", "diamond", "regular")),
        )
    )
    assert audience.member_ids.tolist() == ["m5", "m1", "m4"]
    assert audience.tiers.tolist() == ["diamond", "silver", "regular"]


def test_recent_purchase_table_keeps_the_newest_purchase_per_item_and_member() -> None:
    # lines in no particular order; "zz" is not a member; m2's i1 line is a return
    lines = pl.DataFrame(
        {
            "member_id": ["m3", "m1", "zz", "m1", "m2", "m3", "m1"],
            "item_id": ["i2", "i1", "i1", "i1", "i1", "i2", "i2"],
            "ts": [datetime(2024, 1, d) for d in (5, 2, 9, 7, 8, 1, 3)],
            "quantity": [1, 2, 1, 1, -1, 4, 1],
        }
    )
    for members in (["m1", "m2", "m3"], ["m3", "m1", "m2"]):  # sorted, and not
        table, items = recent_purchase_table(pl.Series(members), lines)
        assert items.to_list() == ["i1", "i2"]
        rows = [members[r] for r in table["member_row"].to_list()]
        codes = table["item"].to_list()
        got = list(zip([items[c] for c in codes], rows, table["ts"].to_list(), strict=True))
        assert sorted(got) == [
            ("i1", "m1", datetime(2024, 1, 7)),
            ("i2", "m1", datetime(2024, 1, 3)),
            ("i2", "m3", datetime(2024, 1, 5)),
        ]
        assert table["item"].is_sorted()
        recent = RecentPurchases.from_table(table, items)
        assert len(recent) == 3
        m1, m3 = members.index("m1"), members.index("m3")
        assert recent.buyer_rows(["i2"], datetime(2024, 1, 3)).tolist() == sorted([m1, m3])
        assert recent.buyer_rows(["i2"], datetime(2024, 1, 4)).tolist() == [m3]
        assert recent.buyer_rows(["i1", "i1", "nope"], datetime(2024, 1, 7)).tolist() == [m1]
        assert recent.buyer_rows([], datetime(2020, 1, 1)).tolist() == []
    table, items = recent_purchase_table(pl.Series(["m1"]), lines.clear())  # no lines at all
    assert (table.height, items.len()) == (0, 0)
    assert (
        RecentPurchases.from_table(table, items).buyer_rows(["i1"], datetime(2020, 1, 1)).size == 0
    )


def test_audience_columns_of_a_folder(snapshot: Path) -> None:
    columns = read_audience_columns(snapshot)
    assert columns.members.member_ids.tolist() == read_member_columns(snapshot).member_ids.tolist()
    assert columns.items.item_ids.tolist() == ["i1", "i2", "i3"]
    assert columns.as_of == AS_OF
    ids = columns.members.member_ids
    since = datetime(2023, 7, 1)
    assert ids[columns.recent.buyer_rows(["i1"], since)].tolist() == ["m5"]
