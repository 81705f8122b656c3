from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.bundle import read_bundle, write_bundle
from engine.errors import InvalidInputError
from engine.index import (
    SMALL_FILTER_MAX,
    IdFilter,
    IndexConfig,
    IndexKind,
    VectorIndex,
    build_index,
    set_threads,
)

KINDS: list[IndexKind] = ["exact", "hnsw"]
#: Recall@10 of HNSW (M=32, efSearch=128) against exact search on the structured vectors
#: below. Measured about 0.99-1.0; a drop below this threshold is a real regression.
HNSW_MIN_RECALL = 0.95


def als_like(n: int, dim: int, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank vectors plus noise with popularity-like norms (like ALS factors), and queries."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, dim))
    mix = rng.dirichlet(np.full(rank, 0.3), size=n)
    vectors = mix @ basis + 0.5 * rng.standard_normal((n, dim))
    vectors *= (rng.lognormal(0.0, 0.8, size=n) / np.linalg.norm(vectors, axis=1))[:, None]
    queries = rng.dirichlet(np.full(rank, 0.3), size=200) @ basis
    queries += 0.5 * rng.standard_normal(queries.shape)
    return vectors.astype(np.float32), queries.astype(np.float32)


def brute_force(
    vectors: np.ndarray, queries: np.ndarray, k: int, allowed: np.ndarray
) -> np.ndarray:
    scores = queries @ vectors.T
    scores[:, ~allowed] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return als_like(n=6000, dim=32, rank=12, seed=1)


@pytest.fixture(scope="module")
def indexes(data: tuple[np.ndarray, np.ndarray]) -> dict[str, VectorIndex]:
    vectors, _ = data
    return {kind: build_index(vectors, IndexConfig(kind=kind)) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_checkerboard_each_member_finds_its_own_item(kind: IndexKind) -> None:
    """Member u's best item is item u (the shared contract of every index type)."""
    n = 48
    items = np.eye(n, dtype=np.float32) + 0.01
    members = 2 * np.eye(n, dtype=np.float32)
    index = build_index(items, IndexConfig(kind=kind))
    assert index.kind == kind
    result = index.search(members, 3)
    assert result.ids[:, 0].tolist() == list(range(n))
    assert result.scores[:, 0] == pytest.approx(np.full(n, 2.02))


def test_exact_search_equals_brute_force(
    data: tuple[np.ndarray, np.ndarray], indexes: dict[str, VectorIndex]
) -> None:
    vectors, queries = data
    result = indexes["exact"].search(queries, 10)
    expected = brute_force(vectors, queries, 10, np.ones(len(vectors), bool))
    np.testing.assert_array_equal(result.ids, expected)
    expected_scores = np.take_along_axis(queries @ vectors.T, expected, axis=1)
    np.testing.assert_allclose(result.scores, expected_scores, rtol=1e-5)
    assert result.ids.dtype == np.int64
    assert result.scores.dtype == np.float32


def test_hnsw_recall_against_exact(
    data: tuple[np.ndarray, np.ndarray], indexes: dict[str, VectorIndex]
) -> None:
    _, queries = data
    exact = indexes["exact"].search(queries, 10).ids
    approximate = indexes["hnsw"].search(queries, 10).ids
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approximate, exact, strict=True)])
    assert recall >= HNSW_MIN_RECALL


@pytest.mark.parametrize("kind", KINDS)
def test_blocked_ids_are_never_returned(
    data: tuple[np.ndarray, np.ndarray], indexes: dict[str, VectorIndex], kind: IndexKind
) -> None:
    vectors, queries = data
    index = indexes[kind]
    favourites = index.search(queries, 5).ids.ravel()
    blocked = np.unique(favourites)  # block the top results of every query
    where = IdFilter.block(blocked, index.size)
    assert where.count > SMALL_FILTER_MAX  # served by FAISS with an IDSelectorBitmap
    result = index.search(queries, 10, where=where)
    assert not np.isin(result.ids, blocked).any()
    assert (result.ids >= 0).all()
    if kind == "exact":
        allowed = np.ones(len(vectors), bool)
        allowed[blocked] = False
        np.testing.assert_array_equal(result.ids, brute_force(vectors, queries, 10, allowed))


@pytest.mark.parametrize("kind", KINDS)
def test_small_allowed_sets_are_searched_exactly(
    data: tuple[np.ndarray, np.ndarray], indexes: dict[str, VectorIndex], kind: IndexKind
) -> None:
    vectors, queries = data
    allowed_ids = np.arange(0, len(vectors), 7)
    where = IdFilter.allow(allowed_ids, len(vectors)) & IdFilter.block([0, 7, 14], len(vectors))
    assert where.count == allowed_ids.size - 3
    result = indexes[kind].search(queries, 10, where=where)
    mask = np.zeros(len(vectors), bool)
    mask[allowed_ids[3:]] = True
    np.testing.assert_array_equal(result.ids, brute_force(vectors, queries, 10, mask))
    expected_scores = np.take_along_axis(queries @ vectors.T, result.ids, axis=1)
    np.testing.assert_allclose(result.scores, expected_scores, rtol=1e-5)


def test_fewer_matches_than_k_are_padded(
    indexes: dict[str, VectorIndex], data: tuple[np.ndarray, np.ndarray]
) -> None:
    _, queries = data
    index = indexes["exact"]
    result = index.search(queries[:2], 4, where=IdFilter.allow([5, 9], index.size))
    assert sorted(result.ids[0, :2].tolist()) == [5, 9]
    assert result.ids[:, 2:].tolist() == [[-1, -1], [-1, -1]]
    assert np.isneginf(result.scores[:, 2:]).all()
    nothing = index.search(queries[:1], 3, where=IdFilter.allow([], index.size))
    assert nothing.ids.tolist() == [[-1, -1, -1]]
    tiny = build_index(np.eye(3, dtype=np.float32))
    padded = tiny.search(np.ones(3, np.float32), 5)  # k above the collection size, 1-D query
    assert padded.ids.shape == (1, 5)
    assert sorted(padded.ids[0, :3].tolist()) == [0, 1, 2]
    assert padded.ids[0, 3:].tolist() == [-1, -1]
    assert np.isneginf(padded.scores[0, 3:]).all()


@pytest.mark.parametrize("kind", KINDS)
def test_search_with_exclusions(
    data: tuple[np.ndarray, np.ndarray], indexes: dict[str, VectorIndex], kind: IndexKind
) -> None:
    vectors, queries = data
    queries = queries[:20]
    index = indexes[kind]
    top = index.search(queries, 30).ids
    # Query i excludes its own best i results (query 0 excludes nothing).
    exclude = [top[i, :i] for i in range(len(queries))]
    result = index.search_with_exclusions(queries, 10, exclude)
    assert (result.ids >= 0).all()
    for i, row in enumerate(result.ids):
        assert not np.isin(row, exclude[i]).any()
    if kind == "exact":
        for i, row in enumerate(result.ids):
            allowed = np.ones(len(vectors), bool)
            allowed[exclude[i]] = False
            np.testing.assert_array_equal(
                row, brute_force(vectors, queries[i : i + 1], 10, allowed)[0]
            )
    # The same exclusions as rows of a sparse matrix (e.g. purchases) give the same answer.
    rows = np.repeat(np.arange(len(queries)), [len(e) for e in exclude])
    matrix = sp.csr_array(
        (np.ones(rows.size), (rows, np.concatenate(exclude))), shape=(len(queries), len(vectors))
    )
    np.testing.assert_array_equal(index.search_with_exclusions(queries, 10, matrix).ids, result.ids)


def test_exclusions_combine_with_a_filter(
    indexes: dict[str, VectorIndex], data: tuple[np.ndarray, np.ndarray]
) -> None:
    _, queries = data
    index = indexes["exact"]
    where = IdFilter.allow(np.arange(100), index.size)
    exclude = [np.arange(0, 100, 2), np.arange(50), [-1, 10**9]]  # out-of-range ids are ignored
    result = index.search_with_exclusions(queries[:3], 60, exclude, where=where)
    assert set(result.ids[0][result.ids[0] >= 0]) == set(range(1, 100, 2))
    assert (result.ids[0, 50:] == -1).all()
    assert set(result.ids[1, :50]) == set(range(50, 100))
    assert set(result.ids[2]) <= set(range(100))
    assert (result.ids[2] >= 0).all()


@settings(max_examples=40, deadline=None)
@given(
    blocked=st.sets(st.integers(0, 199), max_size=199),
    k=st.integers(1, 12),
    kind=st.sampled_from(KINDS),
)
def test_filtered_search_never_returns_blocked_ids(
    blocked: set[int], k: int, kind: IndexKind
) -> None:
    rng = np.random.default_rng(len(blocked))
    vectors = rng.standard_normal((200, 8)).astype(np.float32)
    index = _small_indexes(kind)
    result = index.search(vectors[:5], k, where=IdFilter.block(sorted(blocked), 200))
    returned = result.ids[result.ids >= 0]
    assert not np.isin(returned, sorted(blocked)).any()
    if kind == "exact":
        assert (result.ids >= 0).sum(axis=1).tolist() == [min(k, 200 - len(blocked))] * 5


_SMALL: dict[str, VectorIndex] = {}


def _small_indexes(kind: IndexKind) -> VectorIndex:
    if kind not in _SMALL:
        vectors = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
        _SMALL[kind] = build_index(vectors, IndexConfig(kind=kind))
    return _SMALL[kind]


def test_bundle_round_trip_keeps_results(
    tmp_path: Path, indexes: dict[str, VectorIndex], data: tuple[np.ndarray, np.ndarray]
) -> None:
    vectors, queries = data
    path = write_bundle(
        tmp_path / "bundle",
        manifest={"kind": "test"},
        arrays={"item_vectors": vectors},
        member_ids=["m0"],
        item_ids=[f"i{i}" for i in range(len(vectors))],
        indexes={"items": indexes["hnsw"].faiss_index, "items_exact": indexes["exact"].faiss_index},
    )
    bundle = read_bundle(path)
    hnsw = VectorIndex.from_faiss(bundle.indexes["items"])
    assert hnsw.kind == "hnsw"
    assert hnsw.ef_search == indexes["hnsw"].ef_search
    np.testing.assert_array_equal(
        hnsw.search(queries, 10).ids, indexes["hnsw"].search(queries, 10).ids
    )
    exact = VectorIndex.from_faiss(bundle.indexes["items_exact"])
    np.testing.assert_array_equal(exact.vectors, vectors)
    np.testing.assert_array_equal(
        exact.search(queries, 10).ids, indexes["exact"].search(queries, 10).ids
    )


def test_auto_kind_and_config_validation() -> None:
    config = IndexConfig(exact_max=100)
    assert config.resolve(100) == "exact"
    assert config.resolve(101) == "hnsw"
    assert build_index(np.eye(4, dtype=np.float32), IndexConfig(exact_max=3)).kind == "hnsw"
    with pytest.raises(InvalidInputError, match=r"IndexConfig\.ef_search must be positive"):
        IndexConfig(ef_search=0)
    with pytest.raises(InvalidInputError, match="auto, exact or hnsw"):
        IndexConfig(kind="ivf")  # type: ignore[arg-type]


def test_threads_are_set_deliberately() -> None:
    build_index(np.eye(4, dtype=np.float32), IndexConfig(threads=2))
    assert faiss.omp_get_max_threads() == 2
    build_index(np.eye(4, dtype=np.float32))
    assert faiss.omp_get_max_threads() == 1
    with pytest.raises(InvalidInputError, match="threads must be at least 1"):
        set_threads(0)


def test_bad_input_is_rejected(indexes: dict[str, VectorIndex]) -> None:
    index = indexes["exact"]
    with pytest.raises(InvalidInputError, match="queries have dimension 3, the index has 32"):
        index.search(np.zeros((2, 3)), 5)
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        index.search(np.full((1, 32), np.nan), 5)
    with pytest.raises(InvalidInputError, match="k must be at least 1"):
        index.search(np.zeros((1, 32)), 0)
    with pytest.raises(InvalidInputError, match="filter covers 10 ids, the index holds 6000"):
        index.search(np.zeros((1, 32)), 5, where=IdFilter.block([], 10))
    with pytest.raises(InvalidInputError, match="exclude has 1 entries, there are 2 queries"):
        index.search_with_exclusions(np.zeros((2, 32)), 5, [[1]])
    with pytest.raises(InvalidInputError, match=r"id 10 is outside 0\.\.9"):
        IdFilter.allow([10], 10)
    with pytest.raises(InvalidInputError, match="cannot build an index over zero vectors"):
        build_index(np.zeros((0, 4), np.float32))
    with pytest.raises(InvalidInputError, match="only inner-product indexes"):
        VectorIndex(faiss.IndexFlatL2(4))
    with pytest.raises(InvalidInputError, match="unsupported FAISS index type"):
        VectorIndex(faiss.index_factory(4, "SQ8", faiss.METRIC_INNER_PRODUCT))
