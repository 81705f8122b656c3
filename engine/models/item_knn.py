"""Item-based nearest neighbours through ``implicit`` 0.7 (BM25 or cosine weighting).

implicit learns a sparse item x item matrix holding, for each item, its ``neighbours`` most
similar items (itself included). A member's score is ``history @ item_similarity``: the sum, over the
items the member has, of confidence times similarity. The matrix is exported as is, so serving
scores with one sparse product.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from engine.errors import InvalidInputError
from engine.models.base import (
    FloatArray,
    IndexArray,
    ModelArtifacts,
    TrainData,
    check_history,
    check_rows,
    not_fitted,
    require_choice,
    require_float,
    require_int,
)

SIMILARITIES = ("bm25", "cosine")


@dataclass(frozen=True, slots=True)
class ItemKNNParams:
    """Hyperparameters of :class:`ItemKNNModel`.

    Attributes:
        similarity: ``bm25`` (down-weights very popular items and heavy buyers) or ``cosine``.
        neighbours: similar items kept per item (implicit's ``K``).
        k1, b: BM25 saturation and length normalisation (ignored for cosine).
        num_threads: OpenMP threads (0: all cores). The result does not depend on it.
    """

    similarity: str = "bm25"
    neighbours: int = 50
    k1: float = 1.2
    b: float = 0.75
    num_threads: int = 1

    def __post_init__(self) -> None:
        require_choice("item_knn", "similarity", self.similarity, SIMILARITIES)
        require_int("item_knn", "neighbours", self.neighbours, low=1)
        require_float("item_knn", "k1", self.k1, low=0.0)
        require_float("item_knn", "b", self.b, low=0.0)
        if self.b > 1.0:
            raise InvalidInputError(f"model 'item_knn': parameter b={self.b!r} must be at most 1")
        require_int("item_knn", "num_threads", self.num_threads, low=0)


class ItemKNNModel:
    """Item-item collaborative filtering; exports the sparse similarity matrix."""

    kind = "item_knn"

    def __init__(self, params: ItemKNNParams | None = None) -> None:
        self.params = params or ItemKNNParams()
        self._similarity: sp.csr_matrix | None = None

    def fit(self, data: TrainData) -> None:
        from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight, normalize

        p = self.params
        # What BM25Recommender/CosineRecommender.fit do, but handing implicit the float64 CSR
        # matrix its all_pairs_knn expects (their own fit passes COO: a conversion warning).
        items_members = data.confidence.T
        weighted = (
            bm25_weight(items_members, K1=p.k1, B=p.b)
            if p.similarity == "bm25"
            else normalize(items_members)
        )
        members_items = sp.csr_matrix(weighted.T, dtype=np.float64)
        model = ItemItemRecommender(K=p.neighbours, num_threads=p.num_threads)
        model.fit(members_items, show_progress=False)
        similarity = sp.csr_matrix(model.similarity, dtype=np.float32)
        similarity.eliminate_zeros()
        similarity.sort_indices()
        self._similarity = similarity

    def score(self, member_rows: IndexArray, history: sp.csr_matrix) -> FloatArray:
        similarity = self._similarity
        if similarity is None:
            raise not_fitted(self.kind)
        rows = check_rows(member_rows, None, self.kind)
        check_history(history, rows.shape[0], similarity.shape[0], self.kind)
        scores: FloatArray = np.asarray(
            (history.astype(np.float32) @ similarity).toarray(), dtype=np.float32
        )
        return scores

    def export(self) -> ModelArtifacts:
        if self._similarity is None:
            raise not_fitted(self.kind)
        return ModelArtifacts(
            kind=self.kind,
            params=asdict(self.params),
            item_similarity=self._similarity.copy(),
        )
