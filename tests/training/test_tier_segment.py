"""The tier segment (training/tier_segment.py) on small hand-made matrices: what it appends to
the vectors, when it is inert (the artifacts come back unchanged, so the lists are identical)
and what the report says then. The effect on tier-taste data: tests/training/test_tier_aware.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
import scipy.sparse as sp

from engine.models import ModelArtifacts, create_model
from engine.models.base import TrainData
from training.comparisons import inert_weights
from training.config import load_config
from training.data import PreparedData
from training.tier_segment import (
    OFF,
    TierSegment,
    add_tier_segment,
    describe,
    inert_reason,
    main_part,
    segment_dims,
    segment_mask,
    segment_tiers,
    tier_blind_members,
)

LADDER = ("regular", "silver", "gold", "platinum", "diamond")


def purchases(n_members: int = 60, n_items: int = 30, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_members, n_items)) < 0.2) * rng.integers(1, 4, (n_members, n_items))
    dense[:, 0] = 1  # every member holds a purchase
    return sp.csr_matrix(dense.astype(np.float32))


def main_model(confidence: sp.csr_matrix) -> ModelArtifacts:
    model = create_model("als", factors=8, iterations=5, random_state=0, num_threads=1)
    model.fit(TrainData(confidence=confidence))
    return model.export()


def tiers_of(n_members: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    return (np.arange(n_members) % len(LADDER)).astype(np.int64)


def test_settings_are_checked() -> None:
    assert TierSegment().enabled
    assert not OFF.enabled
    with pytest.raises(ValueError, match="weight"):
        TierSegment(weight=-1.0)
    with pytest.raises(ValueError, match="weight"):
        TierSegment(weight=float("nan"))
    with pytest.raises(ValueError, match="factors"):
        TierSegment(factors=0)
    with pytest.raises(ValueError, match="tiers"):
        TierSegment(tiers=("gold", "gold"))


def test_the_segment_is_the_top_two_tiers_unless_named() -> None:
    assert segment_tiers(TierSegment(), LADDER) == (3, 4)
    assert segment_tiers(TierSegment(tiers=("diamond", "gold")), LADDER) == (2, 4)
    with pytest.raises(ValueError, match="not on the feature policy's tier ladder"):
        segment_tiers(TierSegment(tiers=("vip",)), LADDER)
    mask = segment_mask(TierSegment(), LADDER, np.asarray([0, 3, 4, -1, 2]))
    assert mask.tolist() == [False, True, True, False, False]


def test_segment_members_get_the_segments_score_added_and_the_others_do_not() -> None:
    confidence = purchases()
    tiers = tiers_of(confidence.shape[0])
    plain = main_model(confidence)
    members, items = plain.member_vectors, plain.item_vectors
    assert members is not None
    assert items is not None
    settings = TierSegment(weight=0.5, factors=4)
    aware = add_tier_segment(plain, confidence, tiers, LADDER, settings)

    assert segment_dims(aware) == 4
    assert aware.member_vectors is not None
    assert aware.item_vectors is not None
    assert aware.member_vectors.shape[1] == members.shape[1] + 4
    facts = describe(aware)
    assert facts["tier_segment_tiers"] == "platinum,diamond"
    assert facts["tier_segment_members"] == int((tiers >= 3).sum())
    assert facts["tier_segment_scale"] > 0

    main_scores = members @ items.T
    scores = aware.member_vectors @ aware.item_vectors.T
    inside = tiers >= 3
    np.testing.assert_allclose(scores[~inside], main_scores[~inside], rtol=1e-6, atol=1e-6)
    assert not np.allclose(scores[inside], main_scores[inside])
    # a member outside the segment has zeros in the segment's columns
    assert not aware.member_vectors[~inside, -4:].any()

    # the main model comes back exactly, and the tier-blind members score as it does
    back = main_part(aware)
    assert back.member_vectors is not None
    np.testing.assert_array_equal(back.member_vectors, members)
    np.testing.assert_array_equal(back.item_vectors, items)
    assert describe(back) == {}
    blind = tier_blind_members(aware)
    assert blind is not None
    np.testing.assert_allclose(blind @ aware.item_vectors.T, main_scores, rtol=1e-6, atol=1e-6)

    # seeded: the same inputs give the same vectors
    again = add_tier_segment(plain, confidence, tiers, LADDER, settings)
    np.testing.assert_array_equal(again.member_vectors, aware.member_vectors)
    with pytest.raises(ValueError, match="already"):
        add_tier_segment(aware, confidence, tiers, LADDER, settings)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("off", "weight 0"),
        ("one tier", "fewer than two tiers"),
        ("empty segment", "has purchases"),
        ("everyone", "every member with a tier is in the segment"),
    ],
)
def test_inert_cases_return_the_artifacts_unchanged(case: str, reason: str) -> None:
    confidence = purchases()
    n = confidence.shape[0]
    tiers, settings = tiers_of(n), TierSegment()
    if case == "off":
        settings = OFF
    elif case == "one tier":
        tiers = np.zeros(n, dtype=np.int64)
    elif case == "empty segment":
        tiers = np.minimum(tiers, 2)
    else:
        tiers = np.where(np.arange(n) % 2 == 0, 3, 4).astype(np.int64)
    plain = main_model(confidence)
    found = inert_reason(settings, LADDER, tiers, confidence)
    assert found is not None
    assert reason in found
    assert add_tier_segment(plain, confidence, tiers, LADDER, settings) is plain


def test_the_report_says_the_segment_is_inert_on_data_with_one_tier() -> None:
    confidence = purchases()
    n = confidence.shape[0]
    one_tier = SimpleNamespace(
        tiers=LADDER,
        members=SimpleNamespace(tier=np.zeros(n, dtype=np.int64)),
        history=confidence,
        lines=SimpleNamespace(tier=np.zeros(n, dtype=np.int64)),
        tag_matched_lines=1,
    )
    config = load_config()
    notes = inert_weights(config, cast(PreparedData, one_tier), TierSegment())
    assert any("tier segment" in note and "fewer than two tiers" in note for note in notes)
    tiered = SimpleNamespace(**{**vars(one_tier), "members": SimpleNamespace(tier=tiers_of(n))})
    notes = inert_weights(config, cast(PreparedData, tiered), TierSegment())
    assert not any("tier segment" in note for note in notes)
    assert not any("tier segment" in note for note in inert_weights(config, cast(Any, one_tier)))
