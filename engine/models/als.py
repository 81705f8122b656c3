"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) through ``implicit`` 0.7.

``implicit`` is imported inside :meth:`ALSModel.fit` only, so that importing the engine (and
serving) never loads it. The confidence matrix goes in as ``user_items`` (members x items CSR,
float32) as implicit 0.7 expects; ``alpha`` scales it inside the library.

A fit may start from a previous fit's factors (:class:`ALSWarmStart`, the pipeline's refit):
implicit's CPU ALS keeps ``user_factors`` / ``item_factors`` that are set before ``fit``, so the
members and items the previous fit knew start where it left them, newcomers get implicit's own
seeded init (uniform in [0, 0.01), the same draw as a cold fit), and fewer sweeps suffice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from engine.errors import InvalidInputError
from engine.models.base import (
    FloatArray,
    IndexArray,
    ModelArtifacts,
    ParamValue,
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


#: rows of previous factors copied at a time into a warm start
_COPY_ROWS = 1 << 16


@dataclass(frozen=True, slots=True)
class ALSWarmStart:
    """Where an ALS fit starts: a previous fit's factors, placed by row of the new matrix.

    Attributes:
        member_vectors: the previous fit's member factors (``n_previous_members x factors``).
        item_vectors: the previous fit's item factors (``n_previous_items x factors``).
        member_rows: per row of the new confidence matrix, that member's row in
            ``member_vectors``, or ``-1`` for a member the previous fit did not know.
        item_rows: the same per column (item).
        iterations: ALS sweeps from this start (replaces ``ALSParams.iterations``).
    """

    member_vectors: FloatArray
    item_vectors: FloatArray
    member_rows: IndexArray
    item_rows: IndexArray
    iterations: int

    def __post_init__(self) -> None:
        require_int("als", "warm start iterations", self.iterations, low=1)
        for side in ("member", "item"):
            vectors = np.asarray(getattr(self, f"{side}_vectors"))
            rows = np.asarray(getattr(self, f"{side}_rows"))
            if vectors.ndim != 2:
                raise InvalidInputError(f"ALSWarmStart.{side}_vectors must be 2-D")
            if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
                raise InvalidInputError(f"ALSWarmStart.{side}_rows must be 1-D integers")
            if rows.size and (rows.min() < -1 or rows.max() >= vectors.shape[0]):
                raise InvalidInputError(
                    f"ALSWarmStart.{side}_rows point outside the {vectors.shape[0]} previous "
                    f"{side} vectors (-1 marks a newcomer)"
                )

    def initial_factors(
        self, n_members: int, n_items: int, factors: int, random_state: int | None
    ) -> tuple[FloatArray, FloatArray]:
        """The starting member and item factors for a matrix of ``n_members x n_items``.

        Newcomers get exactly what a cold fit with ``random_state`` would start them at
        (implicit draws the member block, then the item block, uniform in [0, 0.01)).
        """
        for side, rows, n in (
            ("member", self.member_rows, n_members),
            ("item", self.item_rows, n_items),
        ):
            width = getattr(self, f"{side}_vectors").shape[1]
            if len(rows) != n or width != factors:
                raise InvalidInputError(
                    f"ALSWarmStart: {len(rows)} {side} rows of {width} factors do not fit a "
                    f"matrix with {n} {side}s and a model of {factors} factors"
                )
        rng = np.random.default_rng(random_state)
        members = _start(rng, self.member_vectors, self.member_rows, n_members, factors)
        items = _start(rng, self.item_vectors, self.item_rows, n_items, factors)
        return members, items

    def facts(self, iterations: int) -> dict[str, ParamValue]:
        """What a warm fit records with its parameters (the bundle manifest keeps them)."""
        return {
            "iterations": iterations,
            "warm_start": True,
            "warm_start_members": int(np.count_nonzero(np.asarray(self.member_rows) >= 0)),
            "warm_start_items": int(np.count_nonzero(np.asarray(self.item_rows) >= 0)),
        }


def _start(
    rng: np.random.Generator, previous: FloatArray, rows: IndexArray, n: int, factors: int
) -> FloatArray:
    """implicit's initial factors (``rng.random * 0.01``) with known rows overwritten (copied
    in blocks, so that no second full-size matrix is held: 1M members x 64 factors is 256 MB)."""
    start: FloatArray = rng.random((n, factors), dtype=np.float32)
    start *= np.float32(0.01)
    positions = np.asarray(rows, dtype=np.int64)
    known = np.flatnonzero(positions >= 0)
    source = np.asarray(previous, dtype=np.float32)
    for first in range(0, known.size, _COPY_ROWS):
        block = known[first : first + _COPY_ROWS]
        start[block] = source[positions[block]]
    return start


class ALSModel:
    """Matrix factorisation by alternating least squares; exports member and item factors."""

    kind = "als"

    def __init__(self, params: ALSParams | None = None) -> None:
        self.params = params or ALSParams()
        self._model: Any = None
        self._warm: dict[str, ParamValue] | None = None

    def fit(self, data: TrainData, warm: ALSWarmStart | None = None) -> None:
        """Fit on ``data.confidence``; with ``warm``, start from its factors and run its
        ``iterations`` sweeps instead of ``params.iterations``."""
        from implicit.cpu.als import AlternatingLeastSquares

        p = self.params
        iterations = p.iterations if warm is None else warm.iterations
        with single_blas_thread():
            model = AlternatingLeastSquares(
                factors=p.factors,
                regularization=p.regularization,
                alpha=p.alpha,
                dtype=np.float32,
                use_cg=p.use_cg,
                iterations=iterations,
                calculate_training_loss=False,
                num_threads=p.num_threads,
                random_state=p.random_state,
            )
            if warm is not None:
                model.user_factors, model.item_factors = warm.initial_factors(
                    data.n_members, data.n_items, p.factors, p.random_state
                )
            model.fit(data.confidence, show_progress=False)
        self._model = model
        self._warm = None if warm is None else warm.facts(iterations)

    def score(self, member_rows: IndexArray, history: sp.csr_matrix) -> FloatArray:
        return implicit_scores(self.kind, self._model, member_rows, history)

    def export(self) -> ModelArtifacts:
        if self._model is None:
            raise not_fitted(self.kind)
        return ModelArtifacts(
            kind=self.kind,
            params={**asdict(self.params), **(self._warm or {})},
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
