"""THE ranking kernel: candidates -> blend scores -> rules (as data) -> fallback fill, for a batch
of requests at once.

Every list a member is shown or scored on is ranked here: the service's "for you" and "similar
items" lanes, evaluation (``training/evaluate.py``), ``recsys recommend`` and the MLflow pyfunc
(both through :class:`engine.bundle_recommender.BundleRecommender`). The training precompute
(:mod:`engine.blend_precompute`) writes the candidate lists the first lane reads; the rules are
applied to them here, at request time.

Which candidates a request gets (its *basis*):

* **model**: a member row of the bundle without recent purchases: the row's precomputed list
  when it decides the request (:func:`engine.ranking.lanes.from_precomputed`), else the blend
  over the row's whole candidate set (embedding search, trending, history);
* **fold_in** / **features**: a member given by a vector (re-estimated after recent purchases,
  or built from the member's features) and a history (the bundle row's plus the recent
  purchases): the blend over that;
* **popular_in_tier** / **popular**: none: the fallback lists alone (flagged ``fallback``).

Then the rules (:mod:`engine.ranking.lists`), vectorized over the batch: availability, tier
eligibility, category, the purchased-items policy, the request's exclude list, the diversity cap,
promotions, and the fill from the fallback chain (popular in the member's tier, popular overall;
popular in the category under a category filter).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from engine.blend import Blender
from engine.errors import InvalidInputError
from engine.index import IdFilter
from engine.ranking import lanes
from engine.ranking.catalog import ItemCatalog
from engine.ranking.lanes import PrecomputedLists
from engine.ranking.lists import (
    Fallback,
    RankedList,
    Rules,
    category_cap,
    rank_many,
    rank_with_fallbacks,
)
from engine.ranking.request import Purchased, Ranked, Request
from engine.ranking.sources import (
    SOURCE_POPULAR,
    SOURCE_POPULAR_IN_CATEGORY,
    SOURCE_POPULAR_IN_TIER,
    SOURCE_SIMILAR,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
_NONE = np.zeros(0, np.int64)


def _fill_free(request: Request) -> bool:
    """Whether the blend's list of a bundle row can decide the request by the vectorized rules
    alone: no category, exclude list, promotion or purchases since the snapshot (bought items
    are already out of an ``exclude`` ranking)."""
    return request.category is None and request.extra is None and request.recent_items.size == 0


class Ranker:
    """The kernel over one model: its blend, its item catalogue and (optionally) the precomputed
    candidate lists; ``share`` sets the diversity cap, ``ceil(share * k)`` items per category."""

    def __init__(
        self,
        blender: Blender,
        catalog: ItemCatalog,
        *,
        share: float,
        precomputed: PrecomputedLists | None = None,
    ) -> None:
        if catalog.n_items != blender.n_items:
            raise InvalidInputError(
                f"Ranker: the catalogue holds {catalog.n_items} items, the blend {blender.n_items}"
            )
        category_cap(1, share)  # checks the share
        self.blender = blender
        self.catalog = catalog
        self.share = share
        self.precomputed = precomputed
        norms = np.linalg.norm(blender.item_vectors, axis=1)
        self._item_norms = np.where(norms > 0, norms, 1.0).astype(np.float32)
        self._tier_filters = tuple(
            None if bool(mask.all()) else IdFilter(mask) for mask in catalog.eligible
        )

    # -- requests ----------------------------------------------------------------------------

    def category_code(self, name: str | None) -> int | None:
        """The code of a category filter; a category no item has filters everything out."""
        if name is None:
            return None
        code = self.catalog.category_code(name)
        return len(self.catalog.categories) if code is None else code

    def history_items(self, row: int) -> IntArray:
        """Dense ids of what bundle row ``row`` bought (none for ``-1``)."""
        if row < 0:
            return _NONE
        history = self.blender.history
        items: IntArray = history.indices[history.indptr[row] : history.indptr[row + 1]]
        return items.astype(np.int64)

    def recent_purchases(self, request: Request, limit: int) -> IntArray:
        """The member's most telling purchases: those since the snapshot, then the bundle
        history's heaviest (the buy-again weights, which decay with time), at most ``limit``."""
        history = self.blender.history
        if request.row >= 0:
            start, stop = int(history.indptr[request.row]), int(history.indptr[request.row + 1])
            own: IntArray = history.indices[start:stop].astype(np.int64)
            if stop - start > limit:  # only then does the choice of the heaviest matter
                weights = np.asarray(history.data[start:stop])
                own = own[np.argsort(-weights, kind="stable")[:limit]]
        else:
            own = _NONE
        recent = request.recent_items[::-1]
        if not recent.size:
            return own
        merged = np.concatenate([recent, own])
        _, first = np.unique(merged, return_index=True)
        kept: IntArray = merged[np.sort(first)][:limit]
        return kept

    def rank(self, requests: Sequence[Request]) -> list[Ranked]:
        """The served list of each request (module docstring), in order."""
        done: dict[int, Ranked] = dict(
            lanes.from_precomputed(self.precomputed, self.catalog, self.share, requests)
        )
        found: dict[int, tuple[RankedList, str]] = {}
        for exclude_all in (False, True):
            group = [
                i
                for i, r in enumerate(requests)
                if i not in done and (r.purchased is Purchased.EXCLUDE) == exclude_all
            ]
            by_row = [i for i in group if requests[i].vector is None and requests[i].row >= 0]
            if by_row:
                ranking = lanes.rank_rows(
                    self.blender, [requests[i].row for i in by_row], exclude_all
                )
                # rows the blend's own list decides (no fill needed): ranked as a matrix
                simple = [p for p, i in enumerate(by_row) if _fill_free(requests[i])]
                if simple:
                    rows = np.asarray(simple, dtype=np.int64)
                    matrix = (ranking.items[rows], ranking.scores[rows], ranking.sources[rows])
                    reqs = [requests[by_row[p]] for p in simple]
                    for at, ranked in lanes.decided(self.catalog, self.share, reqs, matrix):
                        done[by_row[simple[at]]] = Ranked(ranked, "model", False)
                for p, i in enumerate(by_row):
                    if i not in done:
                        candidates = RankedList(
                            ranking.items[p], ranking.scores[p], ranking.sources[p]
                        )
                        found[i] = (candidates, "model")
            by_vector = [i for i in group if requests[i].vector is not None]
            if by_vector:
                vectored = lanes.rank_vectors(
                    self.blender, [requests[i] for i in by_vector], exclude_all
                )
                found.update(
                    (i, (c, requests[i].basis)) for i, c in zip(by_vector, vectored, strict=True)
                )
        rest = [i for i in range(len(requests)) if i not in done]
        if rest:
            chosen = [found.get(i) or self._no_candidates(requests[i]) for i in rest]
            lists = rank_many(
                self.catalog,
                [self.rules(requests[i]) for i in rest],
                [candidates for candidates, _ in chosen],
                [self.fallbacks(requests[i]) for i in rest],
            )
            for i, final, (_, basis) in zip(rest, lists, chosen, strict=True):
                done[i] = Ranked(final, basis, basis.startswith("popular"))
        return [done[i] for i in range(len(requests))]

    def rank_rows(
        self, rows: IntArray, tiers: IntArray, k: int, *, purchased: Purchased = Purchased.KEEP
    ) -> list[RankedList]:
        """The served lists of bundle rows with these tier ranks and one policy (evaluation and
        batch export: nothing happened since the snapshot)."""
        if tiers.shape != rows.shape:
            raise InvalidInputError("rank_rows: one tier rank per member row")
        requests = [
            Request(k=k, row=row, tier=tier, tier_known=True, purchased=purchased)
            for row, tier in zip(rows.tolist(), tiers.tolist(), strict=True)
        ]
        return [r.ranked for r in self.rank(requests)]

    def rules(self, request: Request) -> Rules:
        """The rules of a request (module docstring of :mod:`engine.ranking.lists`)."""
        excluded = []
        if request.purchased is not Purchased.KEEP and request.recent_items.size:
            excluded.append(request.recent_items)
        if request.purchased is Purchased.EXCLUDE:
            excluded.append(self.history_items(request.row))
        rules = Rules(
            k=request.k,
            tier=request.tier,
            category=request.category,
            exclude=np.concatenate(excluded) if excluded else _NONE,
            max_per_category=None
            if request.category is not None
            else category_cap(request.k, self.share),
        )
        return rules if request.extra is None else request.extra.merge_into(rules)

    def fallbacks(self, request: Request) -> list[Fallback]:
        """The fill after the candidates: popular in the category under a category filter,
        else popular in the member's tier then popular overall; promoted items last (so a
        promotion always has its items to place)."""
        catalog = self.catalog
        chain: list[Fallback] = []
        if request.category is not None:
            if request.category < len(catalog.categories):
                items, scores = catalog.popular_in_category(request.category)
                chain.append((items, scores, SOURCE_POPULAR_IN_CATEGORY))
        else:
            items, scores = catalog.popular_in_tier(request.tier)
            source = SOURCE_POPULAR_IN_TIER if catalog.has_tier_popularity else SOURCE_POPULAR
            overall, overall_scores = catalog.popular_overall()
            chain += [(items, scores, source), (overall, overall_scores, SOURCE_POPULAR)]
        if request.extra is not None:
            chain += request.extra.fallbacks(catalog)
        return chain

    @staticmethod
    def _no_candidates(request: Request) -> tuple[RankedList, str]:
        return RankedList.empty(), "popular_in_tier" if request.tier_known else "popular"

    # -- similar items -----------------------------------------------------------------------

    def similar(self, seed: int, *, k: int, tier: int, category: int | None) -> RankedList:
        """Items like ``seed`` by cosine among its nearest inner-product neighbours in the item
        index, under the same rules; filled from the seed's category, then as "for you"."""
        index = self.blender.index
        if index is None:
            raise InvalidInputError("similar items need an item index; the blend has none")
        vectors = self.blender.item_vectors
        fetch = min(self.catalog.n_items, max(50, 5 * k) + 1)
        found = index.search(vectors[seed], fetch, where=self._tier_filters[tier])
        ids = found.ids[0]
        ids = ids[ids >= 0]
        norms = self._item_norms
        cosine = found.scores[0][: ids.size] / (norms[seed] * norms[ids])
        order = np.argsort(-cosine, kind="stable")
        candidates = RankedList.of(ids[order], cosine[order], SOURCE_SIMILAR)
        request = Request(k=k, tier=tier, category=category)
        rules = Rules(k=k, tier=tier, category=category, exclude=np.asarray([seed]))
        chain: list[Fallback] = []
        seed_category = int(self.catalog.category_codes[seed])
        if category is None and seed_category >= 0:
            items, scores = self.catalog.popular_in_category(seed_category)
            chain.append((items, scores, SOURCE_POPULAR_IN_CATEGORY))
        chain += self.fallbacks(request)
        return rank_with_fallbacks(self.catalog, rules, candidates, chain)


__all__ = ["Purchased", "Ranked", "Ranker", "Request"]
