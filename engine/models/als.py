"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) through ``implicit`` 0.7.

``implicit`` is imported inside :meth:`ALSModel.fit` only, so that importing the engine (and
serving) never loads it. The confidence matrix goes in as ``user_items`` (members x items CSR,
float32) as implicit 0.7 expects; ``alpha`` scales it inside the library.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from engine.models.base import (
    FloatArray,
    IndexArray,
    ModelArtifacts,
    TrainData,
    check_history,
    check_rows,
    not_fitted,
    require_float,
    require_int,
    require_seed,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager


@dataclass(frozen=True, slots=True)
class ALSParams:
    """Hyperparameters of :class:`ALSModel`.

    Attributes:
        factors: latent dimensions.
        regularization: L2 penalty on the factors.
        alpha: multiplier of the confidences (positive examples weigh ``alpha * confidence``).
        iterations: ALS sweeps (members, then items).
        use_cg: conjugate-gradient solver (faster) instead of the exact Cholesky solve.
        random_state: seed of the factor initialisation (None: not reproducible).
        num_threads: OpenMP threads for fitting (0: all cores). BLAS is held at one thread.
    """

    factors: int = 64
    regularization: float = 0.01
    alpha: float = 1.0
    iterations: int = 15
    use_cg: bool = True
    random_state: int | None = 0
    num_threads: int = 1

    def __post_init__(self) -> None:
        require_int("als", "factors", self.factors, low=1)
        require_float("als", "regularization", self.regularization, low=0.0)
        require_float("als", "alpha", self.alpha, low=0.0, strict=True)
        require_int("als", "iterations", self.iterations, low=1)
        require_seed("als", self.random_state)
        require_int("als", "num_threads", self.num_threads, low=0)


class ALSModel:
    """Matrix factorisation by alternating least squares; exports member and item factors."""

    kind = "als"

    def __init__(self, params: ALSParams | None = None) -> None:
        self.params = params or ALSParams()
        self._model: Any = None

    def fit(self, data: TrainData) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        p = self.params
        with single_blas_thread():
            model = AlternatingLeastSquares(
                factors=p.factors,
                regularization=p.regularization,
                alpha=p.alpha,
                dtype=np.float32,
                use_cg=p.use_cg,
                iterations=p.iterations,
                calculate_training_loss=False,
                num_threads=p.num_threads,
                random_state=p.random_state,
            )
            model.fit(data.confidence, show_progress=False)
        self._model = model

    def score(self, member_rows: IndexArray, history: sp.csr_matrix) -> FloatArray:
        return implicit_scores(self.kind, self._model, member_rows, history)

    def export(self) -> ModelArtifacts:
        if self._model is None:
            raise not_fitted(self.kind)
        return ModelArtifacts(
            kind=self.kind,
            params=asdict(self.params),
            member_vectors=np.ascontiguousarray(self._model.user_factors, dtype=np.float32),
            item_vectors=np.ascontiguousarray(self._model.item_factors, dtype=np.float32),
        )


def implicit_scores(
    kind: str, model: Any, member_rows: IndexArray, history: sp.csr_matrix
) -> FloatArray:
    """Dense scores of every item through an implicit matrix-factorisation model's ``recommend``.

    implicit ranks with its own top-k over ``user_factors @ item_factors.T`` (bias columns
    included); asking for all items and scattering them back gives the full score rows.
    """
    if model is None:
        raise not_fitted(kind)
    n_members, n_items = model.user_factors.shape[0], model.item_factors.shape[0]
    rows = check_rows(member_rows, n_members, kind)
    check_history(history, rows.shape[0], n_items, kind)
    scores = np.zeros((rows.shape[0], n_items), dtype=np.float32)
    if rows.size == 0:
        return scores
    ids, values = model.recommend(
        rows.astype(np.int32),
        history,
        N=n_items,
        filter_already_liked_items=False,
    )
    np.put_along_axis(scores, np.asarray(ids, dtype=np.int64), values.astype(np.float32), axis=1)
    return scores


def single_blas_thread() -> AbstractContextManager[object]:
    """Hold OpenBLAS/MKL at one thread while implicit runs (its own OpenMP threads do the work).

    implicit warns, and runs up to 10x slower, when BLAS keeps its own thread pool.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    limits: AbstractContextManager[object] = threadpool_limits(limits=1, user_api="blas")
    return limits
