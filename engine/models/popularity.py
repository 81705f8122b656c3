"""Popularity baselines: the same list for everyone, or the list of the member's tier.

Both export vectors, so serving needs no special case:

* ``popularity``: every member vector is ``[1]`` and item vectors are ``[share]``.
* ``popular_in_tier``: a member vector is the one-hot of its tier (column ``n_tiers`` for an
  unknown tier); item vector column ``t`` is the item's share within tier ``t`` plus
  ``global_weight`` times its global share (so items unseen in a tier still rank by overall
  popularity), and column ``n_tiers`` is the global share. A member not seen in training scores
  with the one-hot of its tier (``params["n_tiers"]`` columns plus the unknown column).

Shares are popularity divided by the total, so scores are comparable across fits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

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
)

MEASURES = ("confidence", "members")


@dataclass(frozen=True, slots=True)
class PopularityParams:
    """Hyperparameters of :class:`PopularityModel`.

    Attributes:
        measure: ``confidence`` sums the weighted confidences (recency/tier/tag weights carry
            over: "trending"), ``members`` counts distinct buyers.
    """

    measure: str = "confidence"

    def __post_init__(self) -> None:
        require_choice("popularity", "measure", self.measure, MEASURES)


@dataclass(frozen=True, slots=True)
class TierPopularityParams:
    """Hyperparameters of :class:`TierPopularityModel`.

    Attributes:
        measure: as for :class:`PopularityParams`.
        global_weight: weight of the global share added to each tier's share (tie-breaker and
            fill-in for items the tier never bought).
    """

    measure: str = "confidence"
    global_weight: float = 0.01

    def __post_init__(self) -> None:
        require_choice("popular_in_tier", "measure", self.measure, MEASURES)
        require_float("popular_in_tier", "global_weight", self.global_weight, low=0.0)


class PopularityModel:
    """Global popularity: the most bought items, the same for every member."""

    kind = "popularity"

    def __init__(self, params: PopularityParams | None = None) -> None:
        self.params = params or PopularityParams()
        self._share: NDArray[np.float64] | None = None
        self._n_members = 0

    def fit(self, data: TrainData) -> None:
        self._share = _shares(_signal(data.confidence, self.params.measure))
        self._n_members = data.n_members

    def score(self, member_rows: IndexArray, history: sp.csr_matrix) -> FloatArray:
        share = self._share
        if share is None:
            raise not_fitted(self.kind)
        rows = check_rows(member_rows, self._n_members, self.kind)
        check_history(history, rows.shape[0], share.shape[0], self.kind)
        scores: FloatArray = np.tile(share.astype(np.float32), (rows.shape[0], 1))
        return scores

    def export(self) -> ModelArtifacts:
        if self._share is None:
            raise not_fitted(self.kind)
        return ModelArtifacts(
            kind=self.kind,
            params=asdict(self.params),
            member_vectors=np.ones((self._n_members, 1), dtype=np.float32),
            item_vectors=np.ascontiguousarray(self._share[:, None], dtype=np.float32),
        )


class TierPopularityModel:
    """Popularity within the member's tier (falls back to global popularity for unknown tiers)."""

    kind = "popular_in_tier"

    def __init__(self, params: TierPopularityParams | None = None) -> None:
        self.params = params or TierPopularityParams()
        self._table: NDArray[np.float64] | None = None  # n_items x (n_tiers + 1)
        self._columns: NDArray[np.int64] | None = None  # column of each training member

    def fit(self, data: TrainData) -> None:
        if data.member_tiers is None or data.n_tiers < 1:
            raise InvalidInputError(
                "model 'popular_in_tier' needs TrainData.member_tiers and n_tiers >= 1 "
                "(the tier index of every member)"
            )
        tiers = np.asarray(data.member_tiers, dtype=np.int64)
        columns = np.where(tiers < 0, data.n_tiers, tiers)
        signal = _signal(data.confidence, self.params.measure)
        membership = sp.csr_matrix(
            (np.ones(data.n_members), (columns, np.arange(data.n_members))),
            shape=(data.n_tiers + 1, data.n_members),
        )
        per_tier = np.asarray((membership @ signal).toarray(), dtype=np.float64)[: data.n_tiers]
        global_share = _shares(signal)
        tier_totals = per_tier.sum(axis=1, keepdims=True)
        tier_share = np.divide(
            per_tier, tier_totals, out=np.zeros_like(per_tier), where=tier_totals > 0
        )
        table = np.empty((data.n_items, data.n_tiers + 1), dtype=np.float64)
        table[:, : data.n_tiers] = tier_share.T + self.params.global_weight * global_share[:, None]
        table[:, data.n_tiers] = global_share
        self._table = table
        self._columns = columns

    def score(self, member_rows: IndexArray, history: sp.csr_matrix) -> FloatArray:
        table, columns = self._table, self._columns
        if table is None or columns is None:
            raise not_fitted(self.kind)
        rows = check_rows(member_rows, columns.shape[0], self.kind)
        check_history(history, rows.shape[0], table.shape[0], self.kind)
        scores: FloatArray = np.ascontiguousarray(table[:, columns[rows]].T, dtype=np.float32)
        return scores

    def export(self) -> ModelArtifacts:
        table, columns = self._table, self._columns
        if table is None or columns is None:
            raise not_fitted(self.kind)
        n_columns = table.shape[1]
        one_hot = np.zeros((columns.shape[0], n_columns), dtype=np.float32)
        one_hot[np.arange(columns.shape[0]), columns] = 1.0
        return ModelArtifacts(
            kind=self.kind,
            params={**asdict(self.params), "n_tiers": n_columns - 1},
            member_vectors=one_hot,
            item_vectors=np.ascontiguousarray(table, dtype=np.float32),
        )


def _signal(confidence: sp.csr_matrix, measure: str) -> sp.csr_matrix:
    if measure == "members":
        binary = confidence.copy()
        binary.data = np.ones_like(binary.data)
        return binary
    return confidence


def _shares(signal: sp.csr_matrix) -> NDArray[np.float64]:
    totals = np.asarray(signal.sum(axis=0, dtype=np.float64)).ravel()
    grand = totals.sum()
    result: NDArray[np.float64] = totals / grand if grand > 0 else totals
    return result
