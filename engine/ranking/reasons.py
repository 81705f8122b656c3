"""Why each served item is there: a reason per item, computed for a batch after the ranking and
without changing it.

From the item's source (the term of the blend that contributed most, or the list that filled
it, :mod:`engine.ranking.sources`):

* ``because_you_bought`` (embedding items of a member with purchases), with the **anchor**: of
  the member's recent purchases (the ``ANCHORS`` heaviest of their history, purchases since
  the snapshot first), the one whose item vector has the largest dot product with the item's;
* ``similar_members`` (embedding items of a member without purchases: a vector from features);
* ``buy_again``, ``trending`` (the trending prior, and popular overall, which is that prior),
  ``popular_in_your_tier`` (popular in the member's tier, or in the asked category),
  ``promoted``; ``similar_item`` on similar-item lists, the anchor being the seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from engine.ranking.lists import RankedList
from engine.ranking.sources import (
    SOURCE_BUY_AGAIN,
    SOURCE_MODEL,
    SOURCE_POPULAR,
    SOURCE_POPULAR_IN_CATEGORY,
    SOURCE_POPULAR_IN_TIER,
    SOURCE_PROMOTED,
    SOURCE_SIMILAR,
    SOURCE_TRENDING,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

#: how many of a member's purchases can anchor a ``because_you_bought``
ANCHORS: Final = 30
REASONS: Final[tuple[str, ...]] = (
    "because_you_bought",
    "similar_members",
    "buy_again",
    "trending",
    "popular_in_your_tier",
    "promoted",
    "similar_item",
)
_BY_SOURCE: Final = {
    SOURCE_BUY_AGAIN: "buy_again",
    SOURCE_TRENDING: "trending",
    SOURCE_POPULAR: "trending",
    SOURCE_POPULAR_IN_TIER: "popular_in_your_tier",
    SOURCE_POPULAR_IN_CATEGORY: "popular_in_your_tier",
    SOURCE_PROMOTED: "promoted",
    SOURCE_SIMILAR: "similar_item",
}


@dataclass(frozen=True, slots=True)
class Explained:
    """Per item of one list: its reason and its anchor item (dense id, ``-1``: none)."""

    reasons: tuple[str, ...]
    anchors: IntArray


def explain(
    item_vectors: FloatArray, ranked: RankedList, recent: IntArray, seed: int = -1
) -> Explained:
    """The reasons of one served list; ``recent``: the member's recent purchases (dense ids,
    most telling first, at most :data:`ANCHORS` are used); ``seed``: the item a similar-item
    list starts from."""
    n = len(ranked)
    anchors = np.full(n, -1, dtype=np.int64)
    sources = ranked.sources.tolist()
    model = [i for i, s in enumerate(sources) if s == SOURCE_MODEL]
    history = recent[:ANCHORS]
    if model and history.size:
        scores = item_vectors[ranked.items[model]] @ item_vectors[history].T
        anchors[model] = history[np.argmax(scores, axis=1)]
    reasons = []
    for i, source in enumerate(sources):
        if source == SOURCE_MODEL:
            reasons.append("because_you_bought" if history.size else "similar_members")
        else:
            reasons.append(_BY_SOURCE.get(source, "trending"))
            if source == SOURCE_SIMILAR and seed >= 0:
                anchors[i] = seed
    return Explained(tuple(reasons), anchors)


def explain_many(
    item_vectors: FloatArray, lists: Sequence[RankedList], recents: Sequence[IntArray]
) -> list[Explained]:
    """:func:`explain` for a batch of lists (no seed), vectorized over the batch: one product
    of every embedding item with its member's recent purchases."""
    n = len(lists)
    if n == 0:
        return []
    lengths = np.fromiter((len(r) for r in lists), dtype=np.int64, count=n)
    if not lengths.sum():
        return [Explained((), np.zeros(0, np.int64)) for _ in lists]
    items = np.concatenate([r.items for r in lists])
    sources = np.concatenate([r.sources for r in lists]).astype(np.int64)
    owner = np.repeat(np.arange(n), lengths)
    depth = np.fromiter((min(len(h), ANCHORS) for h in recents), dtype=np.int64, count=n)
    width = int(depth.max())
    anchors = np.full(items.size, -1, dtype=np.int64)
    codes = _CODE_OF_SOURCE[np.clip(sources, 0, _CODE_OF_SOURCE.size - 1)]
    model = sources == SOURCE_MODEL
    has_history = depth[owner] > 0
    codes[model & ~has_history] = _SIMILAR_MEMBERS
    picked = np.flatnonzero(model & has_history)
    if picked.size:
        history = np.full((n, width), -1, dtype=np.int64)
        for row, h in enumerate(recents):
            history[row, : depth[row]] = h[: depth[row]]
        candidates = history[owner[picked]]  # picked x width
        scores = np.einsum(
            "pd,phd->ph",
            item_vectors[items[picked]],
            item_vectors[np.maximum(candidates, 0)],
        )
        scores[candidates < 0] = -np.inf
        anchors[picked] = candidates[np.arange(picked.size), np.argmax(scores, axis=1)]
    names = np.asarray(REASONS, dtype=object)[codes]
    bounds = np.r_[0, np.cumsum(lengths)]
    return [
        Explained(
            tuple(names[bounds[i] : bounds[i + 1]].tolist()), anchors[bounds[i] : bounds[i + 1]]
        )
        for i in range(n)
    ]


#: reason index of each source code (the embedding source is decided per member)
_CODE_OF_SOURCE = np.asarray(
    [
        0 if code == SOURCE_MODEL else REASONS.index(_BY_SOURCE.get(code, "trending"))
        for code in range(max(_BY_SOURCE) + 1)
    ],
    dtype=np.int64,
)
_SIMILAR_MEMBERS = REASONS.index("similar_members")


__all__ = ["ANCHORS", "REASONS", "Explained", "explain", "explain_many"]
