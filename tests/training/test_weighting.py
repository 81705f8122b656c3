"""The weighting options training adds to engine.interactions: BM25 re-weighting (checked
against implicit's implementation and by hand) and per-line multipliers (per-tag boosts)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from engine.errors import InvalidInputError
from engine.interactions import InteractionWeights, PurchaseLines, bm25_weight, build_confidence


def test_bm25_by_hand() -> None:
    # 4 members; items 0 and 1 bought by 2 members each, item 2 by all 4 (idf < 0: dropped).
    rows = [[2.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0]]
    matrix = sp.csr_matrix(np.array(rows, dtype=np.float32))
    k1, b = 1.0, 0.5
    idf = np.log(4) - np.log1p([2, 2, 4])
    norm = (1 - b) + b * np.array([4, 2, 3, 1]) / 2.5
    expected = np.zeros((4, 3))
    for (u, i), c in np.ndenumerate(matrix.toarray()):
        if c and idf[i] > 0:
            expected[u, i] = c * (k1 + 1) / (k1 * norm[u] + c) * idf[i]
    result = bm25_weight(matrix, k1=k1, b=b)
    np.testing.assert_allclose(result.toarray(), expected, rtol=1e-6)
    assert result.nnz == 4
    assert result.dtype == np.float32


def test_bm25_agrees_with_implicit() -> None:
    from implicit.nearest_neighbours import bm25_weight as implicit_bm25

    rng = np.random.default_rng(3)
    matrix = sp.random(200, 80, density=0.05, random_state=4, format="csr", dtype=np.float64)
    matrix.data = rng.integers(1, 5, matrix.nnz).astype(np.float64)
    ours = bm25_weight(sp.csr_matrix(matrix, dtype=np.float32), k1=100.0, b=0.8)
    theirs = sp.csr_matrix(implicit_bm25(matrix, K1=100, B=0.8))
    theirs.data = np.maximum(theirs.data, 0)
    theirs.eliminate_zeros()
    np.testing.assert_allclose(ours.toarray(), theirs.toarray(), rtol=1e-5, atol=1e-7)


def test_bm25_rejects_bad_parameters() -> None:
    matrix = sp.csr_matrix(np.ones((2, 2), dtype=np.float32))
    with pytest.raises(InvalidInputError, match="bm25 b"):
        bm25_weight(matrix, b=1.5)
    with pytest.raises(InvalidInputError, match="bm25 k1"):
        bm25_weight(matrix, k1=-1.0)


def test_line_multipliers_scale_each_line() -> None:
    lines = PurchaseLines(
        member=np.array([0, 0, 1]),
        item=np.array([0, 0, 1]),
        quantity=np.array([1, 1, 1]),
        multiplier=np.array([2.0, 3.0, 0.5]),
    )
    weights = InteractionWeights(quantity="none")  # type: ignore[arg-type]
    matrix = build_confidence(lines, 2, 2, weights).toarray()
    np.testing.assert_allclose(matrix, [[5.0, 0.0], [0.0, 0.5]])
    bad = PurchaseLines(
        member=np.array([0]),
        item=np.array([0]),
        quantity=np.array([1]),
        multiplier=np.array([-1.0]),
    )
    with pytest.raises(InvalidInputError, match="'multiplier' line 0"):
        build_confidence(bad, 1, 1, weights)
