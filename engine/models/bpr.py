"""Bayesian Personalized Ranking through ``implicit`` 0.7 (imported inside ``fit`` only).

BPR treats every nonzero confidence as "bought" (the values are ignored). implicit stores the item
bias as the last item-factor column and a constant 1 as the last member-factor column, so the
exported vectors are already folded: ``member_vectors @ item_vectors.T`` is the model's score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from engine.models.als import implicit_scores, single_blas_thread
from engine.models.base import (
    FloatArray,
    IndexArray,
    ModelArtifacts,
    TrainData,
    not_fitted,
    require_float,
    require_int,
    require_seed,
)


@dataclass(frozen=True, slots=True)
class BPRParams:
    """Hyperparameters of :class:`BPRModel`.

    Attributes:
        factors: latent dimensions (the exported vectors have one more: the item bias).
        learning_rate: SGD step.
        regularization: L2 penalty.
        iterations: epochs over the bought pairs.
        verify_negative_samples: resample negatives the member actually bought (better, slower).
        random_state: seed (None: not reproducible; reproducible only with ``num_threads=1``).
        num_threads: OpenMP threads (0: all cores).
    """

    factors: int = 64
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    verify_negative_samples: bool = True
    random_state: int | None = 0
    num_threads: int = 1

    def __post_init__(self) -> None:
        require_int("bpr", "factors", self.factors, low=1)
        require_float("bpr", "learning_rate", self.learning_rate, low=0.0, strict=True)
        require_float("bpr", "regularization", self.regularization, low=0.0)
        require_int("bpr", "iterations", self.iterations, low=1)
        require_seed("bpr", self.random_state)
        require_int("bpr", "num_threads", self.num_threads, low=0)


class BPRModel:
    """Pairwise-ranking matrix factorisation; exports bias-folded member and item vectors."""

    kind = "bpr"

    def __init__(self, params: BPRParams | None = None) -> None:
        self.params = params or BPRParams()
        self._model: Any = None

    def fit(self, data: TrainData) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        p = self.params
        with single_blas_thread():
            model = BayesianPersonalizedRanking(
                factors=p.factors,
                learning_rate=p.learning_rate,
                regularization=p.regularization,
                dtype=np.float32,
                iterations=p.iterations,
                num_threads=p.num_threads,
                verify_negative_samples=p.verify_negative_samples,
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
