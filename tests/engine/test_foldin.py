"""ALS fold-in against a hand-computed case and against implicit's own recalculation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from engine.errors import InvalidInputError
from engine.foldin import FoldIn


def test_hand_computed_two_dimensions() -> None:
    items = np.asarray([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    fold = FoldIn(items, regularization=0.5, alpha=2.0)
    # history: item 1 with r = 1.5 -> c = 3; A = Y^T Y + 0.5 I + (c - 1) y y^T
    # = diag(1.5, 4.5 + 2 * 4) = diag(1.5, 12.5); b = c * y = (0, 6) -> x = (0, 0.48)
    assert fold.vector([1], [1.5]) == pytest.approx([0.0, 0.48])
    # repeated items are summed: 1.0 + 0.5 gives the same
    assert fold.vector([1, 1], [1.0, 0.5]) == pytest.approx([0.0, 0.48])
    assert fold.vector([], []) == pytest.approx([0.0, 0.0])


def test_matches_implicit_recalculate_user() -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    rng = np.random.default_rng(3)
    dense = (rng.random((40, 30)) < 0.15) * rng.integers(1, 4, (40, 30))
    matrix = sp.csr_matrix(dense.astype(np.float32))
    model = AlternatingLeastSquares(
        factors=6,
        regularization=0.05,
        alpha=2.0,
        iterations=5,
        use_cg=False,
        random_state=1,
        num_threads=1,
    )
    model.fit(matrix, show_progress=False)
    fold = FoldIn(model.item_factors, regularization=0.05, alpha=2.0)
    for member in (0, 7, 21):
        row = matrix[member]
        expected = model.recalculate_user(member, row)
        got = fold.vector(row.indices, row.data)
        assert got == pytest.approx(np.asarray(expected).ravel(), abs=1e-4)


def test_bad_inputs() -> None:
    fold = FoldIn(np.eye(2, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="item ids must lie"):
        fold.vector([2], [1.0])
    with pytest.raises(InvalidInputError, match="one per item"):
        fold.vector([0, 1], [1.0])
    with pytest.raises(InvalidInputError, match="finite and >= 0"):
        fold.vector([0], [-1.0])
    with pytest.raises(InvalidInputError, match="alpha"):
        FoldIn(np.eye(2), alpha=0.0)
