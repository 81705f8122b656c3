"""The retail blend (engine.blend) on hand-computed cases, and the bundle recommender."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from engine.blend import (
    BUY_AGAIN,
    ITEM_INDEX,
    MANIFEST_KEY,
    SOURCE_BUY_AGAIN,
    SOURCE_MODEL,
    SOURCE_POPULAR,
    SOURCE_TRENDING,
    TRENDING,
    Blender,
    BlendWeights,
    BundleRecommender,
)
from engine.bundle import write_bundle
from engine.errors import BundleError, InvalidInputError
from engine.index import IndexConfig, build_index

# Two members, four items, two dimensions. Embedding scores:
#   member 0: [2, 1, 0, -1] (best 2)  -> max-normalised [1, 0.5, 0, 0]
#   member 1: [0, 1, 3, 0]  (best 3)  -> max-normalised [0, 1/3, 1, 0]
MEMBERS = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
ITEMS = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0], [-1.0, 0.0]], dtype=np.float32)
# member 0 bought item 3 (weight 2) and item 1 (weight 1): row-normalised 1 and 0.5
HISTORY = sp.csr_matrix(np.array([[0, 1, 0, 2], [0, 0, 0, 0]], dtype=np.float32))
TRENDING_PRIOR = np.array([0.0, 0.5, 1.0, 0.25], dtype=np.float32)
WEIGHTS = BlendWeights(
    embedding=1.0, buy_again=0.5, trending=0.2, candidates=1, trending_candidates=1
)


def blender(weights: BlendWeights = WEIGHTS) -> Blender:
    return Blender(MEMBERS, ITEMS, HISTORY, TRENDING_PRIOR, weights)


def test_scores_sources_and_candidates_by_hand() -> None:
    # member 0 candidates: embedding top-1 {0}, trending top-1 {2}, bought {1, 3}
    #   item 0: 1.0 * 1            = 1.00 (model)
    #   item 1: 1.0 * 0.5 + 0.5 * 0.5 + 0.2 * 0.5 = 0.85 (model: 0.5 is the largest part)
    #   item 3: 0 + 0.5 * 1 + 0.2 * 0.25 = 0.55 (buy_again)
    #   item 2: 0.2 * 1            = 0.20 (trending)
    # member 1 candidates: embedding top-1 {2} = trending top-1 {2}: 1 + 0.2 = 1.2
    ranking = blender().rank(np.array([0, 1]), 4)
    assert ranking.items.tolist() == [[0, 1, 3, 2], [2, -1, -1, -1]]
    np.testing.assert_allclose(ranking.scores[0], [1.0, 0.85, 0.55, 0.2], rtol=1e-6)
    np.testing.assert_allclose(ranking.scores[1, :1], [1.2], rtol=1e-6)
    assert np.isneginf(ranking.scores[1, 1:]).all()
    assert ranking.sources.tolist() == [
        [SOURCE_MODEL, SOURCE_MODEL, SOURCE_BUY_AGAIN, SOURCE_TRENDING],
        [SOURCE_MODEL, -1, -1, -1],
    ]


def test_all_items_as_candidates_and_negative_scores_clipped() -> None:
    # member 1 over every item: [0, 1/3 + 0.2*0.5, 1 + 0.2, 0 (score -0 clipped) + 0.2*0.25]
    weights = BlendWeights(1.0, 0.5, 0.2, candidates=4, trending_candidates=0)
    ranking = blender(weights).rank(np.array([1]), 4)
    assert ranking.items.tolist() == [[2, 1, 3, 0]]
    np.testing.assert_allclose(ranking.scores[0], [1.2, 1 / 3 + 0.1, 0.05, 0.0], rtol=1e-6)


def test_exclude_purchased_drops_history_items() -> None:
    ranking = blender().rank(np.array([0]), 4, exclude_purchased=True)
    assert ranking.items.tolist() == [[0, 2, -1, -1]]


def test_member_with_no_positive_score_gets_no_embedding_term() -> None:
    members = np.array([[0.0, -1.0]], dtype=np.float32)  # scores [0, -1, -3, 0]: best is 0
    history = sp.csr_matrix((1, 4), dtype=np.float32)
    weights = BlendWeights(1.0, 0.5, 0.2, candidates=4, trending_candidates=0)
    ranking = Blender(members, ITEMS, history, TRENDING_PRIOR, weights).rank(np.array([0]), 2)
    # only the trending term is left: items 2 (0.2) and 1 (0.1)
    assert ranking.items.tolist() == [[2, 1]]
    np.testing.assert_allclose(ranking.scores[0], [0.2, 0.1], rtol=1e-6)
    assert ranking.sources.tolist() == [[SOURCE_TRENDING, SOURCE_TRENDING]]


def test_popular_fallback_ranks_by_trending() -> None:
    ranking = blender().popular(2, 3)
    assert ranking.items.tolist() == [[2, 1, 3], [2, 1, 3]]
    assert (ranking.sources == SOURCE_POPULAR).all()


def test_batches_of_wide_histories_give_the_same_ranking() -> None:
    rng = np.random.default_rng(0)
    members = rng.standard_normal((300, 8)).astype(np.float32)
    items = rng.standard_normal((500, 8)).astype(np.float32)
    history = sp.random(300, 500, density=0.2, random_state=1, format="csr", dtype=np.float32)
    trending = rng.random(500).astype(np.float32)
    b = Blender(members, items, history, trending, BlendWeights(candidates=50))
    whole = b.rank(np.arange(300), 10)
    one_by_one = [b.rank(np.array([row]), 10).items[0] for row in (0, 150, 299)]
    assert [whole.items[row].tolist() for row in (0, 150, 299)] == [r.tolist() for r in one_by_one]
    # best first, no repeats
    assert (np.diff(whole.scores, axis=1) <= 0).all()
    assert all(len(set(row)) == 10 for row in whole.items.tolist())


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(InvalidInputError, match="blend weight buy_again"):
        BlendWeights(buy_again=-1.0)
    with pytest.raises(InvalidInputError, match="history has shape"):
        Blender(MEMBERS, ITEMS, sp.csr_matrix((3, 4), dtype=np.float32), TRENDING_PRIOR, WEIGHTS)
    with pytest.raises(InvalidInputError, match="member row 5"):
        blender().rank(np.array([5]), 3)
    with pytest.raises(InvalidInputError, match="unknown key"):
        BlendWeights.from_dict({"embedding": 1.0, "boost": 2.0})


def write_blend_bundle(path: Path) -> Path:
    index = build_index(ITEMS, IndexConfig(kind="exact"))
    return write_bundle(
        path,
        manifest={"kind": "als", MANIFEST_KEY: WEIGHTS.as_dict()},
        arrays={"member_vectors": MEMBERS, "item_vectors": ITEMS, TRENDING: TRENDING_PRIOR},
        sparse={BUY_AGAIN: HISTORY},
        member_ids=["m0", "m1"],
        item_ids=["i0", "i1", "i2", "i3"],
        indexes={ITEM_INDEX: index.faiss_index},
    )


def test_bundle_recommender_maps_ids_and_falls_back_for_unknown_members(tmp_path: Path) -> None:
    recommender = BundleRecommender.from_path(write_blend_bundle(tmp_path / "bundle"))
    result = recommender.recommend(["m1", "nobody", "m0"], 3)
    assert result.item_ids.tolist() == [["i2", "", ""], ["i2", "i1", "i3"], ["i0", "i1", "i3"]]
    assert result.sources.tolist() == [
        ["model", "", ""],
        ["popular", "popular", "popular"],
        ["model", "model", "buy_again"],
    ]
    assert result.known.tolist() == [True, False, True]
    np.testing.assert_allclose(result.scores[2], [1.0, 0.85, 0.55], rtol=1e-6)
    assert np.isnan(result.scores[0, 1:]).all()
    long = result.long_format()
    assert long["member_id"].tolist() == ["m1", "nobody", "nobody", "nobody", "m0", "m0", "m0"]
    assert long["rank"].tolist() == [1, 1, 2, 3, 1, 2, 3]


def test_bundle_recommender_equals_the_blender_on_dense_rows(tmp_path: Path) -> None:
    recommender = BundleRecommender.from_path(write_blend_bundle(tmp_path / "bundle"), mmap=True)
    direct = blender().rank(np.array([0, 1]), 4, exclude_purchased=True)
    via_bundle = recommender.recommend(["m0", "m1"], 4, exclude_purchased=True)
    expected = np.where(direct.items >= 0, np.array(["i0", "i1", "i2", "i3"])[direct.items], "")
    assert via_bundle.item_ids.tolist() == expected.tolist()


def test_a_bundle_without_blend_inputs_is_refused(tmp_path: Path) -> None:
    path = write_bundle(
        tmp_path / "plain",
        manifest={"kind": "als"},
        arrays={"member_vectors": MEMBERS, "item_vectors": ITEMS},
        member_ids=["m0", "m1"],
        item_ids=["i0", "i1", "i2", "i3"],
    )
    with pytest.raises(
        BundleError, match=r"lacks trending, sparse buy_again, manifest key 'blend'"
    ):
        BundleRecommender.from_path(path)
