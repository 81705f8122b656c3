"""training.data on a hand-made dataset: the split, tier at purchase time, tag multipliers,
buy-again history, trending prior and test relevance, all computed by hand."""

from __future__ import annotations

from datetime import date, datetime
from types import MappingProxyType

import numpy as np
import polars as pl
import pytest

from feature_store.dataset import Dataset
from feature_store.schema import ITEMS, MEMBERS, PURCHASES, conform
from training.config import BlendConfig, SplitConfig, TagWeights, WeightsConfig
from training.data import SnapshotFrames, prepare
from training.windows import resolve_split

TIERS = ("regular", "silver", "gold")
CUTOFF = date(2025, 6, 1)


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def dataset() -> Dataset:
    members = pl.DataFrame(
        {
            "member_id": ["A", "B", "C"],
            "joined_at": [dt("2025-01-01"), dt("2025-01-01"), dt("2025-06-05")],
        }
    )
    items = pl.DataFrame(
        {
            "item_id": ["i1", "i2", "i3"],
            "category": ["dairy", "bakery", "dairy"],
            "price": [1.0, 2.0, 3.0],
            "tags": [["organic"], ["vip"], []],
        }
    )
    rows = [
        ("A", "i1", "2025-02-01T10:00:00", 2),
        ("A", "i2", "2025-04-01T10:00:00", 1),
        ("A", "i3", "2025-05-31T23:59:59", 1),  # last second of training
        ("A", "i1", "2025-06-01T00:00:00", 1),  # first instant of the test window
        ("A", "i3", "2025-06-10T10:00:00", -1),  # a return in the test window: not relevant
        ("B", "i3", "2025-05-01T10:00:00", 1),
        ("B", "i2", "2025-05-02T10:00:00", -1),  # a return in training
        ("B", "i1", "2025-06-15T10:00:00", 3),
        ("B", "i2", "2025-07-01T00:00:00", 1),  # after the test window
        ("C", "i1", "2025-06-20T10:00:00", 1),  # joined after the cutoff: not in the snapshot
    ]
    purchases = pl.DataFrame(
        {
            "order_id": [f"o{n}" for n in range(len(rows))],
            "member_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "ts": [dt(r[2]) for r in rows],
            "quantity": [r[3] for r in rows],
            "amount": [float(r[3]) for r in rows],
        }
    )
    return Dataset(conform(members, MEMBERS), conform(items, ITEMS), conform(purchases, PURCHASES))


def snapshot() -> SnapshotFrames:
    members = pl.DataFrame(
        {
            "member_id": ["A", "B"],
            "tier": ["gold", "silver"],
            "tags": [["loves-dairy", "vip"], []],
            "lifecycle": ["active", "at_risk"],
            "n_orders": [3, 2],
        }
    )
    history = pl.DataFrame(
        {
            "member_id": ["A", "A"],
            "tier": ["regular", "gold"],
            "valid_from": [dt("2025-01-01"), dt("2025-03-01")],
            "valid_to": [dt("2025-03-01"), None],
            "reason": ["joined", "upgrade"],
        }
    )
    return SnapshotFrames(members, pl.DataFrame(), history, TIERS)


WEIGHTS = WeightsConfig(
    quantity="none",
    tier=MappingProxyType({"regular": 1.0, "silver": 2.0, "gold": 3.0}),
    tags=TagWeights(
        boost=1.5, category_prefix="loves-", multipliers=MappingProxyType({"vip": 3.0})
    ),
)


@pytest.fixture(scope="module")
def prepared():
    data = dataset()
    split = resolve_split(SplitConfig(cutoff=CUTOFF, test_end=date(2025, 6, 30)), data.purchases)
    return prepare(data, snapshot(), split, WEIGHTS, BlendConfig(buy_again_half_life_days=0.0))


def lines_by_pair(prepared) -> dict[tuple[str, str], tuple[int, float]]:
    members = prepared.member_ids.ids_at(prepared.lines.member)
    items = prepared.item_ids.ids_at(prepared.lines.item)
    multiplier = prepared.lines.multiplier
    return {
        (str(m), str(i)): (int(t), float(x))
        for m, i, t, x in zip(members, items, prepared.lines.tier, multiplier, strict=True)
    }


def test_split_instants() -> None:
    split = resolve_split(SplitConfig(cutoff=CUTOFF, test_end=date(2025, 6, 30)), pl.DataFrame())
    assert split.cutoff == dt("2025-06-01")
    assert split.test_end == dt("2025-07-01")
    assert split.test_last_day == "2025-06-30"
    purchases = dataset().purchases
    auto = resolve_split(SplitConfig(test_days=10), purchases)
    # the last purchase is on 2025-07-01: the window is its last 10 days
    assert (auto.cutoff, auto.test_end) == (dt("2025-06-22"), dt("2025-07-02"))


def test_training_lines_are_before_the_cutoff_only(prepared) -> None:
    cutoff = int((dt("2025-06-01") - datetime(1970, 1, 1)).total_seconds())
    assert len(prepared.lines) == 5
    assert int(prepared.lines.ts.max()) < cutoff
    assert prepared.member_ids.ids.tolist() == ["A", "B"]  # C joined after the cutoff


def test_tier_at_purchase_time_and_tag_multipliers(prepared) -> None:
    # A was regular until 2025-03-01, gold after; B has no history rows: its tier at the cutoff.
    # Tags: A's loves-dairy matches the dairy items (boost 1.5), A's vip matches item i2's
    # vip tag (its own multiplier 3.0); B has no tags.
    assert lines_by_pair(prepared) == {
        ("A", "i1"): (0, 1.5),
        ("A", "i2"): (2, 3.0),
        ("A", "i3"): (2, 1.5),
        ("B", "i3"): (1, 1.0),
        ("B", "i2"): (1, 1.0),
    }
    assert prepared.tag_matched_lines == 3


def test_confidence_combines_the_weights(prepared) -> None:
    confidence = prepared.confidence(WEIGHTS).toarray()
    # one unit per line x tier multiplier x tag multiplier; B's return of i2 clips to nothing
    expected = np.array([[1.0 * 1 * 1.5, 1.0 * 3 * 3.0, 1.0 * 3 * 1.5], [0.0, 0.0, 2.0]])
    np.testing.assert_allclose(confidence, expected, rtol=1e-6)
    plain = prepared.confidence(WeightsConfig(quantity="none")).toarray()
    np.testing.assert_allclose(plain, [[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])


def test_history_trending_and_test_relevance(prepared) -> None:
    np.testing.assert_allclose(prepared.history.toarray(), [[1, 1, 1], [0, 0, 1]])
    # trending: distinct buyers from 2025-05-02 on, before the cutoff: only A bought i3
    np.testing.assert_allclose(prepared.trending, [0.0, 0.0, 1.0])
    pairs = sorted(
        zip(
            prepared.member_ids.ids_at(prepared.test_member).tolist(),
            prepared.item_ids.ids_at(prepared.test_item).tolist(),
            strict=True,
        )
    )
    assert pairs == [("A", "i1"), ("B", "i1")]
    assert prepared.members.tier.tolist() == [2, 1]
    assert prepared.members.lifecycle.tolist() == ["active", "at_risk"]
