"""Ranking metrics at K for a batch of members, vectorized over the batch.

Inputs
------
``recommendations``
    An ``(n_members, width)`` integer array of dense item indexes, best first. ``-1`` pads rows
    that hold fewer than ``width`` items; padding may appear anywhere and never counts as a hit.
    An item may appear at most once per row. Metrics look at the first ``k`` columns
    (``k`` defaults to ``width``).
``relevance``
    Which items are relevant for each member (for example what they bought in the test period):
    a scipy CSR matrix ``(n_members, n_items)`` whose stored non-zero entries mark relevant
    items, or a sequence of ``n_members`` collections of item indexes. Row ``i`` belongs to
    row ``i`` of ``recommendations``. Relevance is binary; weights are ignored.

Conventions (the caller's responsibility)
-----------------------------------------
* Members with no relevant item have no defined recall, NDCG or average precision. The caller
  excludes them before calling (an evaluation usually only scores members active in the test
  period); passing one raises :class:`~engine.errors.InvalidInputError` naming the row.
* Precision@K divides by ``k`` even when a row holds fewer than ``k`` items (padding is a miss).
* Recall@K divides by ``|rel|``, so it is below 1 whenever ``|rel| > k``.
* NDCG@K uses gains 1/log2(rank + 1) and the ideal DCG of ``min(|rel|, k)`` hits, so a perfect
  ranking scores 1.
* AP@K is the sum of precision@i over the ranks i of hits, divided by ``min(|rel|, k)``; MAP is
  its mean over members. A perfect ranking scores 1.
* Hit rate@K is 1 for a member with at least one hit in the top ``k``, else 0.
* Catalog coverage is the number of distinct items recommended to anyone (top ``k``) divided by
  the catalog size.

Per-member values come back as float64 arrays so that callers can break results down (by tier,
by lifecycle stage) with a boolean mask: ``member_metrics(...).subset(mask).summary(...)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from engine.errors import InvalidInputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
#: Scipy CSR matrix/array (members x items) or one collection of item indexes per member.
Relevance: TypeAlias = sp.csr_matrix | sp.csr_array | Sequence[Collection[int]]


@dataclass(frozen=True, slots=True)
class _Hits:
    """``hits[i, j]``: the item at rank ``j`` of member ``i`` is relevant; ``n_relevant[i]``."""

    hits: npt.NDArray[np.bool_]
    n_relevant: IntArray

    @property
    def k(self) -> int:
        return int(self.hits.shape[1])


def _as_recommendations(recommendations: npt.ArrayLike, k: int | None) -> IntArray:
    recs = np.asarray(recommendations)
    if recs.ndim != 2:
        raise InvalidInputError(
            f"recommendations must be a 2-D (members x k) array, got shape {recs.shape}"
        )
    if recs.size and recs.dtype.kind not in "iu":
        raise InvalidInputError(f"recommendations must hold integer item indexes, got {recs.dtype}")
    width = recs.shape[1]
    k = width if k is None else k
    if not 1 <= k <= width:
        raise InvalidInputError(
            f"k must be between 1 and the {width} recommendation columns, got {k}"
        )
    top = recs[:, :k].astype(np.int64)
    if top.size and top.min() < -1:
        row = int(np.flatnonzero((top < -1).any(axis=1))[0])
        raise InvalidInputError(
            f"recommendations row {row} holds a negative index other than the -1 padding"
        )
    ordered = np.sort(top, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        row = int(np.flatnonzero(repeated.any(axis=1))[0])
        item = int(ordered[row, 1:][repeated[row]][0])
        raise InvalidInputError(
            f"recommendations row {row} lists item {item} more than once; "
            "each item may appear once per member"
        )
    return top


def _relevance_csr(relevance: Relevance, n_members: int, min_items: int) -> sp.csr_array:
    """Relevance as a canonical CSR array (sorted indices, no duplicates, no stored zeros)."""
    if sp.issparse(relevance):
        csr = sp.csr_array(relevance, copy=True)
        csr.eliminate_zeros()
        csr.sum_duplicates()
        csr.sort_indices()
    elif isinstance(relevance, Sequence) and not isinstance(relevance, str | bytes):
        sets: Sequence[Collection[int]] = relevance
        lengths = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
        items = np.fromiter(
            itertools.chain.from_iterable(sets), dtype=np.int64, count=int(lengths.sum())
        )
        if items.size and items.min() < 0:
            raise InvalidInputError("relevance holds a negative item index")
        n_items = max(min_items, int(items.max()) + 1 if items.size else 0)
        rows = np.repeat(np.arange(len(sets), dtype=np.int64), lengths)
        data = np.ones(items.size, dtype=np.int8)
        csr = sp.csr_array((data, (rows, items)), shape=(len(sets), n_items))
        csr.sum_duplicates()
    else:
        raise InvalidInputError(
            "relevance must be a scipy CSR matrix (members x items) or a sequence of item-index "
            f"collections, got {type(relevance).__name__}"
        )
    if csr.shape[0] != n_members:
        raise InvalidInputError(
            f"relevance has {csr.shape[0]} rows but recommendations have {n_members}; "
            "row i of both must describe the same member"
        )
    return csr


def _hits(recommendations: npt.ArrayLike, relevance: Relevance, k: int | None) -> _Hits:
    recs = _as_recommendations(recommendations, k)
    n_members = recs.shape[0]
    max_rec = int(recs.max()) if recs.size else -1
    csr = _relevance_csr(relevance, n_members, max_rec + 1)
    n_items = int(csr.shape[1])
    if max_rec >= n_items:
        raise InvalidInputError(
            f"recommendations hold item index {max_rec} but relevance covers only {n_items} items"
        )
    n_relevant = np.diff(csr.indptr).astype(np.int64)
    empty = np.flatnonzero(n_relevant == 0)
    if empty.size:
        raise InvalidInputError(
            f"member row {int(empty[0])} has no relevant item ({empty.size} such rows); "
            "exclude members without relevant items before computing ranking metrics"
        )
    # Key every (member, item) pair as row * n_items + item: the relevant keys of a canonical
    # CSR are sorted, so one binary search per recommended item finds its hits.
    rows = np.arange(n_members, dtype=np.int64)
    relevant_keys = np.repeat(rows, n_relevant) * n_items + csr.indices.astype(np.int64)
    rec_keys = rows[:, None] * n_items + recs
    hits = np.zeros(recs.shape, dtype=bool)
    if relevant_keys.size:
        pos = np.searchsorted(relevant_keys, rec_keys)
        np.minimum(pos, relevant_keys.size - 1, out=pos)
        hits = (relevant_keys[pos] == rec_keys) & (recs >= 0)
    return _Hits(hits=hits, n_relevant=n_relevant)


def _discounts(k: int) -> FloatArray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _precision(h: _Hits) -> FloatArray:
    return np.asarray(h.hits.sum(axis=1) / float(h.k), dtype=np.float64)


def _recall(h: _Hits) -> FloatArray:
    return np.asarray(h.hits.sum(axis=1) / h.n_relevant, dtype=np.float64)


def _ndcg(h: _Hits) -> FloatArray:
    discounts = _discounts(h.k)
    dcg = h.hits @ discounts
    ideal = np.cumsum(discounts)[np.minimum(h.n_relevant, h.k) - 1]
    return np.asarray(dcg / ideal, dtype=np.float64)


def _average_precision(h: _Hits) -> FloatArray:
    ranks = np.arange(1, h.k + 1, dtype=np.float64)
    precision_at_rank = np.cumsum(h.hits, axis=1) / ranks
    return np.asarray(
        (precision_at_rank * h.hits).sum(axis=1) / np.minimum(h.n_relevant, h.k), dtype=np.float64
    )


def _hit(h: _Hits) -> FloatArray:
    return np.asarray(h.hits.any(axis=1), dtype=np.float64)


def precision_at_k(
    recommendations: npt.ArrayLike, relevance: Relevance, k: int | None = None
) -> FloatArray:
    """Per-member precision@K: hits in the top ``k`` divided by ``k``."""
    return _precision(_hits(recommendations, relevance, k))


def recall_at_k(
    recommendations: npt.ArrayLike, relevance: Relevance, k: int | None = None
) -> FloatArray:
    """Per-member recall@K: hits in the top ``k`` divided by the number of relevant items."""
    return _recall(_hits(recommendations, relevance, k))


def ndcg_at_k(
    recommendations: npt.ArrayLike, relevance: Relevance, k: int | None = None
) -> FloatArray:
    """Per-member NDCG@K with binary gains; the ideal DCG has ``min(|rel|, k)`` hits."""
    return _ndcg(_hits(recommendations, relevance, k))


def average_precision_at_k(
    recommendations: npt.ArrayLike, relevance: Relevance, k: int | None = None
) -> FloatArray:
    """Per-member AP@K, normalized by ``min(|rel|, k)``; its mean is MAP@K."""
    return _average_precision(_hits(recommendations, relevance, k))


def hit_rate_at_k(
    recommendations: npt.ArrayLike, relevance: Relevance, k: int | None = None
) -> FloatArray:
    """Per-member hit@K: 1.0 if any of the top ``k`` items is relevant, else 0.0."""
    return _hit(_hits(recommendations, relevance, k))


def catalog_coverage(
    recommendations: npt.ArrayLike, catalog_size: int, k: int | None = None
) -> float:
    """Distinct items in the top ``k`` of all rows divided by ``catalog_size``."""
    recs = _as_recommendations(recommendations, k)
    if catalog_size <= 0:
        raise InvalidInputError(f"catalog_size must be positive, got {catalog_size}")
    shown = recs[recs >= 0]
    if shown.size and int(shown.max()) >= catalog_size:
        raise InvalidInputError(
            f"recommendations hold item index {int(shown.max())} outside the catalog of "
            f"{catalog_size} items"
        )
    seen = np.zeros(catalog_size, dtype=bool)
    seen[shown] = True
    return float(np.count_nonzero(seen)) / catalog_size


@dataclass(frozen=True, slots=True)
class RankingSummary:
    """Mean metrics over a batch of members (``map`` is the mean AP@K)."""

    k: int
    n_members: int
    precision: float
    recall: float
    ndcg: float
    map: float
    hit_rate: float
    coverage: float

    def as_dict(self) -> dict[str, float]:
        """Flat names such as ``ndcg_at_10`` (valid MLflow metric keys) -> values."""
        out: dict[str, float] = {"n_members": float(self.n_members)}
        for f in fields(self):
            if f.name not in ("k", "n_members"):
                out[f"{f.name}_at_{self.k}"] = float(getattr(self, f.name))
        return out


@dataclass(frozen=True, slots=True)
class MemberMetrics:
    """Per-member metric values (float64 arrays aligned with the recommendation rows)."""

    k: int
    precision: FloatArray
    recall: FloatArray
    ndcg: FloatArray
    average_precision: FloatArray
    hit: FloatArray

    def __len__(self) -> int:
        return int(self.precision.shape[0])

    def subset(self, mask: npt.ArrayLike) -> MemberMetrics:
        """The members selected by a boolean mask or an index array (e.g. one tier)."""
        select = np.asarray(mask)
        return MemberMetrics(
            k=self.k,
            precision=self.precision[select],
            recall=self.recall[select],
            ndcg=self.ndcg[select],
            average_precision=self.average_precision[select],
            hit=self.hit[select],
        )

    def summary(self, coverage: float) -> RankingSummary:
        """Means over the members; ``coverage`` comes from :func:`catalog_coverage`."""
        if len(self) == 0:
            raise InvalidInputError("cannot summarize metrics over zero members")
        return RankingSummary(
            k=self.k,
            n_members=len(self),
            precision=float(self.precision.mean()),
            recall=float(self.recall.mean()),
            ndcg=float(self.ndcg.mean()),
            map=float(self.average_precision.mean()),
            hit_rate=float(self.hit.mean()),
            coverage=coverage,
        )


def member_metrics(
    recommendations: npt.ArrayLike, relevance: Relevance, k: int | None = None
) -> MemberMetrics:
    """All per-member metrics at once (the relevance lookup is done once)."""
    h = _hits(recommendations, relevance, k)
    return MemberMetrics(
        k=h.k,
        precision=_precision(h),
        recall=_recall(h),
        ndcg=_ndcg(h),
        average_precision=_average_precision(h),
        hit=_hit(h),
    )


def ranking_metrics(
    recommendations: npt.ArrayLike,
    relevance: Relevance,
    *,
    catalog_size: int,
    k: int | None = None,
) -> RankingSummary:
    """Mean precision, recall, NDCG, MAP and hit rate at ``k``, plus catalog coverage."""
    per_member = member_metrics(recommendations, relevance, k)
    coverage = catalog_coverage(recommendations, catalog_size, per_member.k)
    return per_member.summary(coverage)
