"""What a member is served, for many members at once: the blend's whole candidate set, then the
business rules (:mod:`engine.ranking`) and the fallback fill, as the service ranks a plain "for
you" request (no category filter, no events since the snapshot).

Evaluation (training/evaluate.py, the ``served`` row) ranks through :func:`served_rankings`,
so the reported metrics are those of the served lists: tier eligibility, availability, the
diversity cap and the purchased-items policy included. ``tests/serving/test_served_equality.py``
checks that the service answers exactly these lists.

:func:`catalog_from_attributes` builds the :class:`~engine.ranking.ItemCatalog` from the item
attribute arrays a bundle stores (``item_category``, ``item_min_tier``, ``item_active``); the
service builds its catalogue with it too (serving/catalogue.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from engine.blend import SOURCE_POPULAR, Blender
from engine.errors import InvalidInputError
from engine.ranking import (
    NO_CATEGORY,
    Fallback,
    ItemCatalog,
    RankedList,
    Rules,
    category_cap,
    rank_many,
)

IntArray = npt.NDArray[np.int64]

#: source code of the "popular in tier" fill (after the blend's own codes, engine.blend.SOURCES;
#: serving names it ``popular_in_tier``)
SOURCE_POPULAR_IN_TIER = 4


def catalog_from_attributes(
    tiers: Sequence[str],
    *,
    category: npt.NDArray[np.str_] | None,
    min_tier: npt.NDArray[np.str_] | None,
    active: npt.NDArray[np.bool_] | None,
    popularity: npt.ArrayLike,
    tier_popularity: npt.ArrayLike | None = None,
) -> ItemCatalog:
    """The catalogue of items with these attributes (None: unknown: no category, every tier,
    active). An item ``min_tier`` outside ``tiers`` raises :class:`InvalidInputError`."""
    n = int(np.asarray(popularity).shape[0])
    if category is not None:
        names, codes = np.unique(category, return_inverse=True)
        categories = [str(c) for c in names]
        codes = np.where((names == "")[codes], NO_CATEGORY, codes)
    else:
        categories, codes = [], np.full(n, NO_CATEGORY)
    ranks = np.zeros(n, dtype=np.int16) if min_tier is None else tier_ranks(min_tier, tiers)
    return ItemCatalog(
        tiers=tiers,
        category_codes=codes,
        categories=categories,
        min_tier=ranks,
        active=np.ones(n, dtype=bool) if active is None else active,
        popularity=popularity,
        tier_popularity=tier_popularity,
    )


def tier_ranks(values: npt.NDArray[np.str_], tiers: Sequence[str]) -> npt.NDArray[np.int16]:
    """Ladder rank of each tier name (``""``: every tier, rank 0)."""
    ladder = np.asarray(list(tiers))
    order = np.argsort(ladder)
    pos = np.minimum(np.searchsorted(ladder[order], values), len(ladder) - 1)
    found = ladder[order][pos] == values
    empty = values == ""
    bad = ~found & ~empty
    if bad.any():
        raise InvalidInputError(
            f"item min_tier {str(values[bad][0])!r} is not a tier of the feature policy "
            f"({', '.join(tiers)})"
        )
    return np.where(empty, 0, order[pos]).astype(np.int16)


def candidate_width(blender: Blender, history_length: int) -> int:
    """How deep the blend ranks a member for the rules: its whole candidate set (the searched
    candidates, the trending candidates and the member's history)."""
    w = blender.weights
    return max(1, min(blender.n_items, w.candidates + w.trending_candidates + history_length))


def fallbacks(catalog: ItemCatalog, tier: int) -> list[Fallback]:
    """The fill after the candidates: popular in the member's tier, then popular overall."""
    items, scores = catalog.popular_in_tier(tier)
    source = SOURCE_POPULAR_IN_TIER if catalog.has_tier_popularity else SOURCE_POPULAR
    overall, overall_scores = catalog.popular_overall()
    return [(items, scores, source), (overall, overall_scores, SOURCE_POPULAR)]


def served_rankings(
    blender: Blender,
    catalog: ItemCatalog,
    rows: IntArray,
    tiers: IntArray,
    k: int,
    *,
    exclude_purchased: bool,
    share: float,
) -> list[RankedList]:
    """The served top ``k`` of each member row (tier rank per row): the blend over the whole
    candidate set, then eligibility, availability, the purchased-items policy (``exclude``:
    everything the member bought), the diversity cap ``ceil(share * k)`` per category and the
    fallback fill."""
    if rows.size == 0:
        return []
    if tiers.shape != rows.shape:
        raise InvalidInputError("served_rankings: one tier rank per member row")
    history = blender.history
    lengths = np.diff(history.indptr)[rows]
    ranking = blender.rank(
        rows, candidate_width(blender, int(lengths.max())), exclude_purchased=exclude_purchased
    )
    cap = category_cap(k, share)
    empty = np.zeros(0, np.int64)
    rules = [
        Rules(
            k=k,
            tier=int(tier),
            exclude=history.indices[history.indptr[row] : history.indptr[row + 1]].astype(np.int64)
            if exclude_purchased
            else empty,
            max_per_category=cap,
        )
        for row, tier in zip(rows.tolist(), tiers.tolist(), strict=True)
    ]
    candidates = [
        RankedList(ranking.items[i], ranking.scores[i], ranking.sources[i])
        for i in range(rows.size)
    ]
    return rank_many(catalog, rules, candidates, [fallbacks(catalog, int(t)) for t in tiers])


__all__ = [
    "candidate_width",
    "catalog_from_attributes",
    "fallbacks",
    "served_rankings",
    "tier_ranks",
]
