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
)
from engine.blend_precompute import precompute
from engine.bundle import write_bundle
from engine.bundle_recommender import BundleRecommender
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
    # served as the service serves: m1's one blend candidate, then the popular fill
    assert result.item_ids.tolist() == [["i2", "i1", "i3"], ["i2", "i1", "i3"], ["i0", "i1", "i3"]]
    assert result.sources.tolist() == [
        ["model", "popular", "popular"],
        ["popular", "popular", "popular"],
        ["model", "model", "buy_again"],
    ]
    assert result.known.tolist() == [True, False, True]
    np.testing.assert_allclose(result.scores[2], [1.0, 0.85, 0.55], rtol=1e-6)
    long = result.long_format()
    assert long["member_id"].tolist() == ["m1"] * 3 + ["nobody"] * 3 + ["m0"] * 3
    assert long["rank"].tolist() == [1, 2, 3] * 3


def test_bundle_recommender_equals_the_blender_on_dense_rows(tmp_path: Path) -> None:
    recommender = BundleRecommender.from_path(write_blend_bundle(tmp_path / "bundle"), mmap=True)
    direct = blender().rank(np.array([0, 1]), 4, exclude_purchased=True)
    via_bundle = recommender.recommend(["m0", "m1"], 4, exclude_purchased=True)
    names = np.array(["i0", "i1", "i2", "i3"])
    for row in range(2):  # the blend's list first, then the fill (never a bought item)
        blended = names[direct.items[row][direct.items[row] >= 0]].tolist()
        assert via_bundle.item_ids[row][: len(blended)].tolist() == blended
    assert via_bundle.item_ids.tolist() == [["i0", "i2", "", ""], ["i2", "i1", "i3", "i0"]]


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


# -- precomputed lists -------------------------------------------------------------------------


def _plain_lists(
    blender: Blender, width: int, codes: np.ndarray | None, per_category: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference: rank over every candidate (the whole item set is deep enough), then a
    walk down each ranking keeping at most ``per_category`` of a category, first ``width``."""
    n = blender.n_members
    items = np.full((n, width), -1, dtype=np.int32)
    scores = np.zeros((n, width), dtype=np.float32)
    sources = np.full((n, width), -1, dtype=np.int8)
    full = blender.rank(np.arange(n), blender.n_items)
    for row in range(n):
        seen: dict[int, int] = {}
        kept = 0
        for col, item in enumerate(full.items[row]):
            if item < 0 or kept == width:
                break
            code = -1 if codes is None else int(codes[item])
            if per_category is not None and code >= 0:
                if seen.get(code, 0) >= per_category:
                    continue
                seen[code] = seen.get(code, 0) + 1
            items[row, kept] = item
            scores[row, kept] = full.scores[row, col]
            sources[row, kept] = full.sources[row, col]
            kept += 1
    return items, scores, sources


def _tied_blender(seed: int, weights: BlendWeights) -> tuple[Blender, np.ndarray]:
    """Small-integer vectors (every dot product exact, many equal), integer-valued history and
    a trending prior on a coarse grid: ties everywhere, and norms skewed as with ALS vectors
    (popular items long), so the norm-ordered search skips blocks."""
    rng = np.random.default_rng(seed)
    n_members, n_items = 240, 3_000
    scale = rng.choice([1, 1, 1, 2, 3, 6], size=n_items)[:, None]
    items = (rng.integers(-2, 3, size=(n_items, 6)) * scale).astype(np.float32)
    members = rng.integers(-2, 3, size=(n_members, 6)).astype(np.float32)
    members[:12] = 0  # members the model knows nothing about
    lengths = rng.integers(0, 40, size=n_members)
    lengths[12:20] = 400  # a few long histories
    rows = np.repeat(np.arange(n_members), lengths)
    cols = rng.integers(0, n_items, size=rows.size)
    values = rng.integers(1, 4, size=rows.size).astype(np.float32)
    history = sp.csr_matrix((values, (rows, cols)), shape=(n_members, n_items))
    trending = (rng.integers(0, 5, size=n_items) / 4).astype(np.float32)
    codes = rng.integers(-1, 8, size=n_items)
    return Blender(members, items, history, trending, weights), codes


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Norm-ordered search blocks small enough that the test data spans many of them."""
    import engine.blend
    from engine.precompute import NormOrderedItems

    def small(vectors: np.ndarray) -> NormOrderedItems:
        return NormOrderedItems(vectors, first=128, block=96)

    monkeypatch.setattr(engine.blend, "NormOrderedItems", small)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize(
    ("width", "per_category"), [(1, None), (7, None), (40, None), (7, 1), (25, 3), (60, 2)]
)
@pytest.mark.parametrize(
    "weights",
    [
        BlendWeights(embedding=1.0, buy_again=2.0, trending=0.25, candidates=150),
        BlendWeights(
            embedding=1.0, buy_again=0.5, trending=1.0, candidates=60, trending_candidates=7
        ),
    ],
)
def test_precompute_equals_rank_then_cap_on_tied_data(
    width: int, per_category: int | None, weights: BlendWeights
) -> None:
    """Exact arithmetic, so every float must match: items, scores and sources."""
    blender, codes = _tied_blender(width, weights)
    lists = precompute(
        blender,
        width,
        categories=codes if per_category else None,
        per_category=per_category,
        chunk=100,
    )
    expected = _plain_lists(blender, width, codes if per_category else None, per_category)
    np.testing.assert_array_equal(lists.items, expected[0])
    np.testing.assert_array_equal(lists.scores, expected[1])
    np.testing.assert_array_equal(lists.sources, expected[2])
    stages = blender.precompute_stages
    assert sum(stages.values()) == blender.n_members
    if weights.trending < 1 and width < 60:  # most lists come from the first search depth
        assert stages["99"] > blender.n_members // 2
    if weights.trending < 1 and (width, per_category) == (25, 3):  # some from each stage
        assert all(count > 0 for count in stages.values()), stages


def test_precompute_equals_rank_then_cap_on_skewed_float_vectors() -> None:
    """ALS-like float vectors (norms spread over orders of magnitude), on two threads: the same
    items and sources; scores equal up to the rounding of one dot product."""
    rng = np.random.default_rng(7)
    n_members, n_items = 600, 6_000
    items = rng.standard_normal((n_items, 16)).astype(np.float32)
    items *= (rng.pareto(1.5, n_items) + 0.05).astype(np.float32)[:, None]
    members = rng.standard_normal((n_members, 16)).astype(np.float32)
    history = sp.random(
        n_members, n_items, density=0.004, random_state=3, format="csr", dtype=np.float32
    )
    trending = rng.random(n_items).astype(np.float32) ** 3
    codes = rng.integers(-1, 12, size=n_items)
    weights = BlendWeights(buy_again=10.0, trending=0.5)
    blender = Blender(members, items, history, trending, weights)
    lists = precompute(blender, 50, categories=codes, per_category=10, chunk=256, threads=2)
    expected = _plain_lists(blender, 50, codes, 10)
    np.testing.assert_array_equal(lists.items, expected[0])
    np.testing.assert_array_equal(lists.sources, expected[2])
    np.testing.assert_allclose(lists.scores, expected[1], rtol=1e-5)
    assert blender.precompute_stages["99"] > n_members // 2


@pytest.mark.parametrize("kind", ["no embedding weight", "hnsw"])
def test_precompute_without_an_exact_search_takes_the_plain_ranking(kind: str) -> None:
    """Nothing to search, or an approximate index (whose candidates the exact search would not
    reproduce): every list comes from rank."""
    if kind == "hnsw":
        weights = BlendWeights(buy_again=1.0, trending=1.0, candidates=50)
        tied, codes = _tied_blender(3, weights)
        index = build_index(tied._items, IndexConfig(kind="hnsw"))
        blender = Blender(
            tied._members, tied._items, tied.history, tied._trending, weights, index=index
        )
    else:
        weights = BlendWeights(embedding=0.0, buy_again=1.0, trending=1.0, candidates=50)
        blender, codes = _tied_blender(3, weights)
    lists = precompute(blender, 20, categories=codes, per_category=2)
    expected = _plain_lists(blender, 20, codes, 2)
    np.testing.assert_array_equal(lists.items, expected[0])
    np.testing.assert_array_equal(lists.scores, expected[1])
    assert blender.precompute_stages == {"rank": blender.n_members}


@pytest.mark.parametrize("k", [1, 5, 99, 150, 700])
def test_norm_ordered_search_is_exact(k: int) -> None:
    from engine.precompute import NormOrderedItems

    rng = np.random.default_rng(k)
    vectors = rng.standard_normal((700, 8)).astype(np.float32)
    vectors *= rng.choice([0.01, 0.1, 1.0, 10.0], size=700).astype(np.float32)[:, None]
    queries = rng.standard_normal((60, 8)).astype(np.float32)
    queries[:3] = 0  # scores 0 everywhere
    search = NormOrderedItems(vectors, first=64, block=50)
    scores, ids, rest = search.search(queries, k)
    truth = queries @ vectors.T
    np.testing.assert_allclose(scores, np.take_along_axis(truth, ids, axis=1), rtol=1e-5, atol=1e-5)
    ordered = -np.sort(-truth, axis=1)
    np.testing.assert_allclose(
        np.sort(scores, axis=1)[:, ::-1], ordered[:, :k], rtol=1e-5, atol=1e-5
    )
    assert all(len(set(row)) == min(k, 700) for row in ids.tolist())
    if k < 700:
        np.testing.assert_allclose(rest, ordered[:, k], rtol=1e-5, atol=1e-5)
    else:
        assert np.isneginf(rest).all()


@pytest.mark.parametrize("depth", [None, 3, 1_000])
def test_capped_top_orders_ties_by_item_and_caps_categories(depth: int | None) -> None:
    from engine.precompute import capped_top

    rng = np.random.default_rng(11)
    n_rows, n_cols, width, cap = 200, 30, 8, 2
    items = np.stack([rng.permutation(60)[:n_cols] for _ in range(n_rows)]).astype(np.int64)
    scores = (rng.integers(0, 6, size=(n_rows, n_cols)) / 2).astype(np.float32)
    scores[rng.random((n_rows, n_cols)) < 0.2] = -np.inf  # not candidates
    items[scores == -np.inf] = -1
    codes = rng.integers(-1, 4, size=60)
    positions, counts = capped_top(items, scores, width, codes, cap, depth=depth)
    for row in range(n_rows):
        order = sorted(
            (c for c in range(n_cols) if scores[row, c] > -np.inf),
            key=lambda c: (-scores[row, c], items[row, c]),
        )
        expected: list[int] = []
        seen: dict[int, int] = {}
        for col in order:
            code = int(codes[items[row, col]])
            if code >= 0 and seen.get(code, 0) >= cap:
                continue
            seen[code] = seen.get(code, 0) + 1
            expected.append(col)
        expected = expected[:width]
        assert positions[row, : counts[row]].tolist() == expected
        assert (positions[row, counts[row] :] == -1).all()
