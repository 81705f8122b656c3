from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidInputError
from engine.metrics import (
    average_precision_at_k,
    catalog_coverage,
    hit_rate_at_k,
    member_metrics,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

# Two members, k = 3, catalog of 6 items.
#   member 0: recommended [3, 1, 2], relevant {1, 5}: one hit at rank 2.
#   member 1: recommended [0, 4, -1] (padded), relevant {0, 4, 2}: hits at ranks 1 and 2.
RECS = np.array([[3, 1, 2], [0, 4, -1]])
REL = [{1, 5}, {0, 4, 2}]
LOG3 = math.log2(3)
LOG4 = math.log2(4)


def test_precision_divides_by_k_and_counts_padding_as_a_miss() -> None:
    assert precision_at_k(RECS, REL).tolist() == pytest.approx([1 / 3, 2 / 3])
    assert precision_at_k(RECS, REL, k=1).tolist() == pytest.approx([0.0, 1.0])


def test_recall_divides_by_the_number_of_relevant_items() -> None:
    assert recall_at_k(RECS, REL).tolist() == pytest.approx([1 / 2, 2 / 3])
    assert recall_at_k(RECS, REL, k=2).tolist() == pytest.approx([1 / 2, 2 / 3])


def test_ndcg_with_ideal_dcg_over_min_of_relevant_and_k() -> None:
    member0 = (1 / LOG3) / (1 + 1 / LOG3)
    member1 = (1 + 1 / LOG3) / (1 + 1 / LOG3 + 1 / LOG4)
    assert ndcg_at_k(RECS, REL).tolist() == pytest.approx([member0, member1])
    # At k = 1 member 1's ideal DCG has one hit only, and its first item is a hit.
    assert ndcg_at_k(RECS, REL, k=1).tolist() == pytest.approx([0.0, 1.0])


def test_average_precision_normalized_by_min_of_relevant_and_k() -> None:
    # member 0: precision 1/2 at the hit on rank 2, over min(2, 3) = 2 relevant items.
    # member 1: precision 1 and 1 at ranks 1 and 2, over min(3, 3) = 3.
    assert average_precision_at_k(RECS, REL).tolist() == pytest.approx([0.25, 2 / 3])
    # At k = 2, member 1 can hold at most 2 hits, and has them: AP = 1.
    assert average_precision_at_k(RECS, REL, k=2).tolist() == pytest.approx([0.25, 1.0])


def test_hit_rate() -> None:
    assert hit_rate_at_k(RECS, REL).tolist() == [1.0, 1.0]
    assert hit_rate_at_k(RECS, REL, k=1).tolist() == [0.0, 1.0]


def test_catalog_coverage_counts_distinct_items_in_the_top_k() -> None:
    assert catalog_coverage(RECS, catalog_size=6) == pytest.approx(5 / 6)  # 0,1,2,3,4
    assert catalog_coverage(RECS, catalog_size=6, k=1) == pytest.approx(2 / 6)  # 3, 0
    assert catalog_coverage(np.full((2, 3), -1), catalog_size=6) == 0.0
    with pytest.raises(InvalidInputError, match="item index 4 outside the catalog of 3 items"):
        catalog_coverage(RECS, catalog_size=3)


def test_summary_means_and_flat_names() -> None:
    summary = ranking_metrics(RECS, REL, catalog_size=6)
    assert summary.k == 3
    assert summary.n_members == 2
    assert summary.precision == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert summary.map == pytest.approx((0.25 + 2 / 3) / 2)
    assert summary.coverage == pytest.approx(5 / 6)
    flat = summary.as_dict()
    assert set(flat) == {
        "n_members",
        "precision_at_3",
        "recall_at_3",
        "ndcg_at_3",
        "map_at_3",
        "hit_rate_at_3",
        "coverage_at_3",
    }
    assert flat["recall_at_3"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_csr_relevance_equals_sets_and_ignores_weights_and_stored_zeros() -> None:
    dense = np.array([[0, 2.5, 0, 0, 0, 1], [7, 0, 1, 0, 3, 0]], dtype=np.float32)
    csr = sp.csr_matrix(dense)
    csr.data[0] = 0.0  # explicitly stored zero: member 0's item 1 is no longer relevant
    assert csr.nnz == 5
    metrics = member_metrics(RECS, csr)
    assert metrics.precision.tolist() == pytest.approx([0.0, 2 / 3])
    expected = member_metrics(RECS, sp.csr_array(np.where(dense > 0, 1, 0)))
    assert member_metrics(RECS, REL).ndcg.tolist() == pytest.approx(expected.ndcg.tolist())


def test_subset_breaks_results_down_by_group() -> None:
    metrics = member_metrics(RECS, REL)
    second = metrics.subset(np.array([False, True]))
    assert len(second) == 1
    assert second.summary(coverage=0.5).precision == pytest.approx(2 / 3)
    with pytest.raises(InvalidInputError, match="zero members"):
        metrics.subset(np.array([False, False])).summary(coverage=0.0)


@pytest.mark.parametrize(
    ("recs", "relevance", "k", "message"),
    [
        (RECS, [{1}, set()], None, "member row 1 has no relevant item"),
        (np.array([[1, 2, 1]]), [{1}], None, "row 0 lists item 1 more than once"),
        (np.array([[1, -2, 0]]), [{1}], None, "negative index other than the -1 padding"),
        (RECS, [{1}], None, "relevance has 1 rows but recommendations have 2"),
        (RECS, REL, 4, "k must be between 1 and the 3 recommendation columns"),
        (RECS, REL, 0, "k must be between 1"),
        (np.array([1, 2]), [{1}], None, "must be a 2-D"),
        (np.array([[1.0, 2.0]]), [{1}], None, "integer item indexes"),
        (RECS, sp.csr_array((2, 4)), None, "item index 4 but relevance covers only 4 items"),
        (RECS, "12", None, "relevance must be a scipy CSR matrix"),
    ],
)
def test_bad_inputs_are_rejected(
    recs: np.ndarray, relevance: object, k: int | None, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        member_metrics(recs, relevance, k)


def test_repeated_padding_is_not_a_duplicate() -> None:
    assert precision_at_k(np.array([[4, -1, -1]]), [{4}]).tolist() == pytest.approx([1 / 3])


# -- an independent, straightforward reference implementation ------------------------------


def reference(recs: list[int], relevant: set[int], k: int) -> dict[str, float]:
    top = [item for item in recs[:k]]
    gains = [1.0 if item >= 0 and item in relevant else 0.0 for item in top]
    n_hits = sum(gains)
    dcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    ap = 0.0
    seen = 0
    for rank, g in enumerate(gains, start=1):
        if g:
            seen += 1
            ap += seen / rank
    return {
        "precision": n_hits / k,
        "recall": n_hits / len(relevant),
        "ndcg": dcg / ideal,
        "average_precision": ap / min(len(relevant), k),
        "hit": 1.0 if n_hits else 0.0,
    }


@st.composite
def batches(draw: st.DrawFn) -> tuple[np.ndarray, list[set[int]], int]:
    n_items = draw(st.integers(1, 30))
    width = draw(st.integers(1, 8))
    n_members = draw(st.integers(1, 12))
    rows = []
    relevance = []
    for _ in range(n_members):
        row = draw(st.lists(st.integers(0, n_items - 1), unique=True, max_size=min(width, n_items)))
        padding_at = draw(st.permutations(range(width)))
        full = np.full(width, -1)
        full[sorted(padding_at[: len(row)])] = row
        rows.append(full)
        relevance.append(draw(st.sets(st.integers(0, n_items - 1), min_size=1)))
    k = draw(st.integers(1, width))
    return np.array(rows), relevance, k


@settings(max_examples=150, deadline=None)
@given(batches())
def test_vectorized_metrics_match_the_reference(
    batch: tuple[np.ndarray, list[set[int]], int],
) -> None:
    recs, relevance, k = batch
    metrics = member_metrics(recs, relevance, k)
    for name in ("precision", "recall", "ndcg", "average_precision", "hit"):
        expected = [
            reference(row.tolist(), rel, k)[name] for row, rel in zip(recs, relevance, strict=True)
        ]
        values = getattr(metrics, name)
        assert values.tolist() == pytest.approx(expected), name
        assert np.all((values >= 0) & (values <= 1 + 1e-12)), name
    # The same relevance as a CSR matrix gives the same numbers.
    n_items = max(max(max(r) for r in relevance), int(recs.max())) + 1
    rows = np.repeat(np.arange(len(relevance)), [len(r) for r in relevance])
    cols = np.concatenate([sorted(r) for r in relevance])
    csr = sp.csr_matrix((np.ones(cols.size), (rows, cols)), shape=(len(relevance), n_items))
    assert member_metrics(recs, csr, k).ndcg.tolist() == pytest.approx(metrics.ndcg.tolist())


@settings(max_examples=100, deadline=None)
@given(
    relevance=st.lists(
        st.sets(st.integers(0, 40), min_size=1, max_size=12), min_size=1, max_size=10
    ),
    k=st.integers(1, 10),
    extra=st.integers(0, 5),
)
def test_a_perfect_ranking_scores_one(relevance: list[set[int]], k: int, extra: int) -> None:
    """Relevant items first (then other items or padding): NDCG, MAP and hit rate are 1."""
    width = k + extra
    recs = np.full((len(relevance), width), -1)
    for i, rel in enumerate(relevance):
        ranked = sorted(rel)[:width]
        recs[i, : len(ranked)] = ranked
    metrics = member_metrics(recs, relevance, k)
    sizes = np.array([len(r) for r in relevance])
    assert metrics.ndcg.tolist() == pytest.approx([1.0] * len(relevance))
    assert metrics.average_precision.tolist() == pytest.approx([1.0] * len(relevance))
    assert metrics.hit.tolist() == [1.0] * len(relevance)
    assert metrics.precision.tolist() == pytest.approx((np.minimum(sizes, k) / k).tolist())
    assert metrics.recall.tolist() == pytest.approx((np.minimum(sizes, k) / sizes).tolist())


def test_ndcg_agrees_with_scikit_learn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    n_members, n_items, k = 40, 25, 6
    recs = np.array([rng.permutation(n_items)[:k] for _ in range(n_members)])
    truth = (rng.random((n_members, n_items)) < 0.2).astype(float)
    truth[truth.sum(axis=1) == 0, 0] = 1.0
    # Scores that rank the recommended items first, in order; all others tie far below.
    scores = np.zeros((n_members, n_items))
    np.put_along_axis(scores, recs, np.arange(k, 0, -1, dtype=float)[None, :], axis=1)
    expected = [
        sklearn_metrics.ndcg_score(truth[i : i + 1], scores[i : i + 1], k=k)
        for i in range(n_members)
    ]
    ours = ndcg_at_k(recs, sp.csr_matrix(truth))
    assert ours.tolist() == pytest.approx(expected)
