"""Buy again: recommend the member's own most-bought items.

The score of an item is the member's confidence for it, so it inherits every weight of the
history matrix: build that matrix with ``InteractionWeights.half_life_days`` to make recent
purchases rank first, and with returns netted out. The export is the identity item x item matrix
(``history @ I = history``), so serving scores it like item-kNN; ``exclude_history`` is False
because these recommendations *are* the history. Items the member never bought score 0 and are
left to the next source of a fallback chain.
"""

from __future__ import annotations

from dataclasses import dataclass

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
)


@dataclass(frozen=True, slots=True)
class BuyAgainParams:
    """Buy-again has no hyperparameters; recency comes from the history's weights."""


class BuyAgainModel:
    """The member's history, ranked by (recency-weighted) confidence."""

    kind = "buy_again"

    def __init__(self, params: BuyAgainParams | None = None) -> None:
        self.params = params or BuyAgainParams()
        self._n_items: int | None = None

    def fit(self, data: TrainData) -> None:
        self._n_items = data.n_items

    def score(self, member_rows: IndexArray, history: sp.csr_matrix) -> FloatArray:
        if self._n_items is None:
            raise not_fitted(self.kind)
        rows = check_rows(member_rows, None, self.kind)
        check_history(history, rows.shape[0], self._n_items, self.kind)
        scores: FloatArray = np.asarray(history.toarray(), dtype=np.float32)
        return scores

    def export(self) -> ModelArtifacts:
        if self._n_items is None:
            raise not_fitted(self.kind)
        return ModelArtifacts(
            kind=self.kind,
            params={},
            item_similarity=sp.identity(self._n_items, dtype=np.float32, format="csr"),
            exclude_history=False,
        )
