"""The retail blend: embedding score + buy-again + trending, ranked over a candidate set.

Repeat purchases dominate retail baskets, so the final ranker mixes what the embedding model
predicts with what the member already buys and what is selling now. For member ``u`` and a
candidate item ``i``::

    score(u, i) = w_embedding * max(0, s(u, i)) / max_j s(u, j)      # embedding, max-normalised
                + w_buy_again * h(u, i) / max_j h(u, j)               # buy again, row-normalised
                + w_trending  * t(i)                                  # trending prior in [0, 1]

* ``s(u, i) = member_vectors[u] . item_vectors[i]``; the divisor is the member's best embedding
  score (the top candidate of the item index). A member whose best score is <= 0 gets 0.
* ``h`` is the member's buy-again history (members x items CSR, e.g. purchase lines weighted by
  recency); ``t`` is a per-item trending array already scaled to [0, 1] (the trainer stores
  ``log1p(recent distinct buyers) / max``).
* Candidates are the member's ``candidates`` best items by embedding score (searched in a FAISS
  index, :mod:`engine.index`), every item in the member's history, and the ``trending_candidates``
  items with the highest positive trending value. Other items are not ranked.
* ``exclude_purchased`` ranks only items outside the member's history ("new", discovery).

Each recommended item carries a *source*: the term with the largest weighted contribution
(``model``, ``buy_again`` or ``trending``; ties in that order), or ``popular`` for members the
model does not know (ranked by the trending array alone).

:class:`Blender` does the arithmetic on dense member rows; evaluation (training), serving and
batch export all rank through it. :class:`engine.bundle_recommender.BundleRecommender` builds
one from a model bundle (:mod:`engine.bundle`) and maps external ids, needing neither implicit
nor LightFM; :func:`engine.blend_precompute.precompute` computes every member's list for
serving. Everything is vectorized over a batch of members: no Python loop over members or
items.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from engine.blend_math import (
    BUY_AGAIN,
    ITEM_INDEX,
    MANIFEST_KEY,
    SOURCE_BUY_AGAIN,
    SOURCE_MODEL,
    SOURCE_POPULAR,
    SOURCE_TRENDING,
    SOURCES,
    TRENDING,
    BlendWeights,
    FloatArray,
    IntArray,
    Ranking,
    SourceArray,
    _batch_stop,
    _check_k,
    _concat,
    _history,
    _history_scores,
    _lookup,
    _matrix,
    _padded_rows,
    _rows,
    _top_k,
    _trending,
    _unique_per_row,
)
from engine.errors import InvalidInputError
from engine.index import IndexConfig, VectorIndex, build_index
from engine.precompute import NormOrderedItems

#: Embedding search depths :func:`engine.blend_precompute.precompute` tries before the whole candidate search.
#: On the 20M benchmark bundle (blend weights 1 / 10 / 0.5, lists of 50 with at most 10 of a
#: category) depth 99 decides 96.7% of the lists, the full 200 nearly all the rest.
PRECOMPUTE_DEPTHS: tuple[int, ...] = (99,)


class Blender:
    """Ranks items for dense member rows with the retail blend (see the module docstring).

    Args:
        member_vectors: ``n_members x d`` float32.
        item_vectors: ``n_items x d`` float32.
        history: ``n_members x n_items`` CSR buy-again weights (non-negative); its non-zero
            cells are the member's purchased items.
        trending: ``n_items`` trending prior in [0, 1].
        weights: the blend weights.
        index: an inner-product index over ``item_vectors`` for the embedding candidates; built
            (exact) when not given.
    """

    def __init__(
        self,
        member_vectors: npt.ArrayLike,
        item_vectors: npt.ArrayLike,
        history: Any,
        trending: npt.ArrayLike,
        weights: BlendWeights,
        *,
        index: VectorIndex | None = None,
    ) -> None:
        members = _matrix("member_vectors", member_vectors)
        items = _matrix("item_vectors", item_vectors)
        if members.shape[1] != items.shape[1]:
            raise InvalidInputError(
                f"blend: member vectors have {members.shape[1]} dimensions, item vectors "
                f"{items.shape[1]}"
            )
        n_members, n_items = members.shape[0], items.shape[0]
        self._history = _history(history, n_members, n_items)
        self._trending = _trending(trending, n_items)
        self.weights = weights
        self._members = members
        self._items = items
        if index is not None and (index.size != n_items or index.dim != items.shape[1]):
            raise InvalidInputError(
                f"blend: the item index holds {index.size} vectors of dimension {index.dim}; "
                f"expected {n_items} of dimension {items.shape[1]}"
            )
        if index is None and n_items and weights.embedding > 0 and weights.candidates > 0:
            index = build_index(items, IndexConfig(kind="exact"))
        self._index = index
        row_max = self._history.max(axis=1)
        self._history_max = np.asarray(row_max.toarray(), dtype=np.float32).ravel()
        positive = np.flatnonzero(self._trending > 0)
        order = positive[np.argsort(-self._trending[positive], kind="stable")]
        self._trending_top = order[: weights.trending_candidates].astype(np.int64)
        #: each item's column among the trending candidates (-1: not one)
        self._trending_slot = np.full(n_items, -1, dtype=np.int64)
        self._trending_slot[self._trending_top] = np.arange(self._trending_top.size)
        outside = self._trending_slot < 0
        #: the best trending value outside the trending candidates (-1: every item is one)
        self._trending_rest = float(self._trending[outside].max()) if outside.any() else -1.0
        #: lists the last :meth:`precompute` decided at each search depth, then with rank
        self.precompute_stages: dict[str, int] = {}
        self._popular_order = np.argsort(-self._trending, kind="stable").astype(np.int64)

    @property
    def n_members(self) -> int:
        return int(self._members.shape[0])

    @property
    def n_items(self) -> int:
        return int(self._items.shape[0])

    @property
    def history(self) -> sp.csr_matrix:
        """The buy-again history (members x items CSR, canonical)."""
        return self._history

    @property
    def item_vectors(self) -> FloatArray:
        return self._items

    @property
    def trending(self) -> FloatArray:
        return self._trending

    @property
    def index(self) -> VectorIndex | None:
        """The item index the embedding candidates are searched in (None: no search)."""
        return self._index

    def for_members(self, member_vectors: npt.ArrayLike, history: Any) -> Blender:
        """The same blend (items, trending, weights, index) for other members: vectors given
        by fold-in or features, with their histories (``len(member_vectors) x n_items``)."""
        return Blender(
            member_vectors, self._items, history, self._trending, self.weights, index=self._index
        )

    def rank(
        self, member_rows: npt.ArrayLike, k: int, *, exclude_purchased: bool = False
    ) -> Ranking:
        """The top ``k`` blended items of each member row (``0 <= row < n_members``)."""
        return self._rank(member_rows, k, (exclude_purchased,))[0]

    def rank_both(self, member_rows: npt.ArrayLike, k: int) -> tuple[Ranking, Ranking]:
        """(all, new): :meth:`rank` without and with ``exclude_purchased``, from one scoring
        of the candidates (what evaluation needs, at the cost of one search)."""
        both = self._rank(member_rows, k, (False, True))
        return both[0], both[1]

    def _rank(
        self, member_rows: npt.ArrayLike, k: int, variants: tuple[bool, ...]
    ) -> list[Ranking]:
        rows = _rows(member_rows, self.n_members)
        _check_k(k)
        parts: list[list[Ranking]] = [[] for _ in variants]
        start = 0
        indptr = self._history.indptr  # history lengths of the requested rows only
        lengths = (indptr[rows + 1] - indptr[rows]).astype(np.int64)
        fixed = self._fixed_width()
        while start < rows.size:
            stop = _batch_stop(lengths, start, fixed)
            candidates, scores, sources, bought = self._score_batch(rows[start:stop])
            for part, exclude in zip(parts, variants, strict=True):
                blocked = (candidates < 0) | bought if exclude else candidates < 0
                part.append(_top_k(candidates, scores, sources, k, blocked))
            start = stop
        return [_concat(part, k) for part in parts]

    def _precompute_depths(self) -> list[int]:
        """Embedding search depths tried in turn by :meth:`precompute` (at most the whole
        candidate search)."""
        searched = self._searched_candidates()
        return sorted({min(depth, searched) for depth in (*PRECOMPUTE_DEPTHS, searched)})

    def _pruned_search(self) -> NormOrderedItems | None:
        """The norm-ordered copy of the item index, when the precompute may search it instead
        of the index: an exact index, a weighted embedding and a candidate search."""
        if self._index is None or self._index.kind != "exact" or not self._searched_candidates():
            return None
        return NormOrderedItems(self._index.vectors)

    def popular(self, n: int, k: int) -> Ranking:
        """The fallback ranking for ``n`` members the model does not know: by trending alone."""
        _check_k(k)
        take = min(k, self.n_items)
        items = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        sources = np.full((n, k), -1, dtype=np.int8)
        top = self._popular_order[:take]
        items[:, :take] = top
        scores[:, :take] = self._trending[top]
        sources[:, :take] = SOURCE_POPULAR
        return Ranking(items=items, scores=scores, sources=sources)

    # -- one batch ---------------------------------------------------------------------------

    def _fixed_width(self) -> int:
        searched = self._searched_candidates()
        return searched + int(self._trending_top.size)

    def _searched_candidates(self) -> int:
        if self._index is None or self.weights.embedding <= 0:
            return 0
        return min(self.weights.candidates, self.n_items)

    def _score_batch(
        self, rows: IntArray
    ) -> tuple[IntArray, FloatArray, SourceArray, npt.NDArray[np.bool_]]:
        """Candidates (-1 padded), their blended scores and sources, and which are bought."""
        w = self.weights
        n_rows = rows.shape[0]
        queries = self._members[rows]
        history = self._history[rows]
        # candidate blocks (item ids, -1 padded) with their raw embedding scores
        ids: list[IntArray] = []
        raw: list[FloatArray] = []
        top_score = np.zeros(n_rows, dtype=np.float32)  # divisor of the max-normalisation
        searched = self._searched_candidates()
        if searched and self._index is not None:
            found = self._index.search(queries, searched)
            ids.append(found.ids)
            raw.append(np.where(found.ids >= 0, found.scores, 0.0).astype(np.float32))
            top_score = np.where(found.ids[:, 0] >= 0, found.scores[:, 0], 0.0).astype(np.float32)
        elif w.embedding > 0 and self.n_items:
            # no candidate search: the best score still normalises (one product per member)
            top_score = (queries @ self._items.T).max(axis=1).astype(np.float32)
        if self._trending_top.size:
            ids.append(np.broadcast_to(self._trending_top, (n_rows, self._trending_top.size)))
            raw.append(queries @ self._items[self._trending_top].T)
        bought, bought_raw = _padded_rows(history), None
        if w.embedding > 0:
            bought_raw = _history_scores(queries, self._items, history, bought.shape[1])
        ids.append(bought)
        raw.append(bought_raw if bought_raw is not None else np.zeros(bought.shape, np.float32))
        candidates, embedding_raw = _unique_per_row(np.hstack(ids), np.hstack(raw))

        valid = candidates >= 0
        item = np.where(valid, candidates, 0)
        bought_value = _lookup(history, np.arange(n_rows)[:, None], item)
        contributions = self._contributions(
            rows, embedding_raw, bought_value, self._trending[item], top_score
        )
        scores: FloatArray = contributions.sum(axis=0)
        sources: SourceArray = np.argmax(contributions, axis=0).astype(np.int8)
        return candidates, scores, sources, bought_value > 0

    def _contributions(
        self,
        rows: IntArray,
        embedding_raw: FloatArray,
        bought_value: FloatArray,
        trend: FloatArray,
        top_score: FloatArray,
    ) -> FloatArray:
        """The weighted terms (embedding, buy-again, trending; ``3 x rows x candidates``,
        float32) of candidates with these raw embedding scores, history values and trending
        values: the one arithmetic of :meth:`rank` and :meth:`precompute` (their scores are
        ``.sum(axis=0)`` of it, so both give the same floats)."""
        w = self.weights
        embedding: FloatArray = np.zeros(embedding_raw.shape, dtype=np.float32)
        if w.embedding > 0:
            divisor = np.where(top_score > 0, top_score, np.inf)[:, None]
            embedding = (np.maximum(embedding_raw, 0.0) / divisor).astype(np.float32)
        row_max = self._history_max[rows][:, None]
        buy_again = bought_value / np.where(row_max > 0, row_max, np.inf)
        contributions: FloatArray = np.stack(
            [w.embedding * embedding, w.buy_again * buy_again, w.trending * trend]
        ).astype(np.float32, copy=False)
        return contributions


__all__ = [
    "BUY_AGAIN",
    "ITEM_INDEX",
    "MANIFEST_KEY",
    "PRECOMPUTE_DEPTHS",
    "SOURCES",
    "SOURCE_BUY_AGAIN",
    "SOURCE_MODEL",
    "SOURCE_POPULAR",
    "SOURCE_TRENDING",
    "TRENDING",
    "BlendWeights",
    "Blender",
    "Ranking",
]
