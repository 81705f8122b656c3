"""Business rules applied to a ranked candidate list: what may be shown, and what fills the gaps.

Serving ranks candidates with the retail blend (:mod:`engine.blend`) and then applies, in one
vectorized pass over the candidates followed by the fallback lists (a *fallback chain*, tried in
order until ``k`` items are found, sharing one exclusion set):

1. **availability**: inactive items are never shown;
2. **tier eligibility**: an item whose ``min_tier`` is above the member's tier is never shown;
3. **category filter** (optional): only items of one category;
4. **exclusions**: items the purchased-item policy drops, the item a "similar" list starts from;
5. **de-duplication**: an item appears once, at its first (best) position;
6. **diversity cap**: at most ``max_per_category`` items of any one category;
7. **fill**: candidates first, then each fallback list in order, until ``k`` items.

:class:`ItemCatalog` holds the item attributes as arrays (built once per model), and precomputes
per tier the eligible mask and the fallback orders (popular within the tier, popular overall,
popular within each category), so a request does array lookups only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInputError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
SourceArray = npt.NDArray[np.int8]

#: Category code of items without a category.
NO_CATEGORY = -1


@dataclass(frozen=True, slots=True)
class RankedList:
    """Items best first, with a score and a source code per item (``-1`` items are padding)."""

    items: IntArray
    scores: FloatArray
    sources: SourceArray

    def __post_init__(self) -> None:
        n = self.items.shape
        if self.items.ndim != 1 or self.scores.shape != n or self.sources.shape != n:
            raise InvalidInputError(
                "RankedList: items, scores and sources must be 1-D arrays of one length"
            )

    @classmethod
    def of(cls, items: npt.ArrayLike, scores: npt.ArrayLike, source: int) -> RankedList:
        """A list whose items all come from one source."""
        ids = np.asarray(items, dtype=np.int64).ravel()
        return cls(
            ids,
            np.asarray(scores, dtype=np.float32).ravel(),
            np.full(ids.shape, source, dtype=np.int8),
        )

    @classmethod
    def empty(cls) -> RankedList:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int8))

    def __len__(self) -> int:
        return int(self.items.shape[0])


@dataclass(frozen=True, slots=True)
class Rules:
    """What one request asks for.

    Attributes:
        k: how many items to return.
        tier: the member's tier rank (0 = lowest); items with a higher ``min_tier`` are hidden.
        category: category code to restrict to, or None.
        exclude: dense item ids never to return (purchased items per policy, the seed item).
        max_per_category: diversity cap (None: no cap).
    """

    k: int
    tier: int = 0
    category: int | None = None
    exclude: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    max_per_category: int | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InvalidInputError(f"k must be at least 1, got {self.k}")
        if self.max_per_category is not None and self.max_per_category < 1:
            raise InvalidInputError(
                f"max_per_category must be at least 1, got {self.max_per_category}"
            )


class ItemCatalog:
    """Item attributes as arrays, and the per-tier masks and fallback orders built from them.

    Args:
        tiers: the tier ladder, lowest first.
        category_codes: per item, an index into ``categories`` (``-1``: none).
        categories: category names.
        min_tier: per item, the rank of the lowest tier allowed to see it.
        active: per item, whether it may be recommended at all.
        popularity: per item, a non-negative popularity (e.g. the blend's trending prior).
        tier_popularity: optional ``n_items x n_tiers`` popularity within each tier.
    """

    def __init__(
        self,
        *,
        tiers: Sequence[str],
        category_codes: npt.ArrayLike,
        categories: Sequence[str],
        min_tier: npt.ArrayLike,
        active: npt.ArrayLike,
        popularity: npt.ArrayLike,
        tier_popularity: npt.ArrayLike | None = None,
    ) -> None:
        self.tiers = tuple(tiers)
        self.categories = tuple(categories)
        if not self.tiers:
            raise InvalidInputError("ItemCatalog: the tier ladder is empty")
        codes = np.asarray(category_codes, dtype=np.int32)
        n = codes.shape[0]
        if codes.ndim != 1:
            raise InvalidInputError("ItemCatalog: category_codes must be 1-D")
        if n and (codes.min() < NO_CATEGORY or codes.max() >= len(self.categories)):
            raise InvalidInputError(
                f"ItemCatalog: category codes must lie in -1..{len(self.categories) - 1}"
            )
        tiers_of = np.asarray(min_tier, dtype=np.int16)
        available = np.asarray(active, dtype=bool)
        pop = np.asarray(popularity, dtype=np.float32)
        for name, array in (("min_tier", tiers_of), ("active", available), ("popularity", pop)):
            if array.shape != (n,):
                raise InvalidInputError(
                    f"ItemCatalog: {name} has shape {array.shape}; expected ({n},), one per item"
                )
        if n and (tiers_of.min() < 0 or tiers_of.max() >= len(self.tiers)):
            raise InvalidInputError(
                f"ItemCatalog: min_tier ranks must lie in 0..{len(self.tiers) - 1}"
            )
        if not np.isfinite(pop).all():
            raise InvalidInputError("ItemCatalog: popularity holds NaN or infinite values")
        self.category_codes = codes
        self.min_tier = tiers_of
        self.active = available
        self.popularity = pop
        if tier_popularity is None:
            per_tier = np.repeat(pop[:, None], len(self.tiers), axis=1)
            self.has_tier_popularity = False
        else:
            per_tier = np.asarray(tier_popularity, dtype=np.float32)
            if per_tier.shape != (n, len(self.tiers)):
                raise InvalidInputError(
                    f"ItemCatalog: tier_popularity has shape {per_tier.shape}; expected "
                    f"({n}, {len(self.tiers)})"
                )
            self.has_tier_popularity = True
        tier_ranks = np.arange(len(self.tiers), dtype=np.int16)
        #: eligible[t, i]: item i may be shown to a member of tier t
        self.eligible: BoolArray = available[None, :] & (tiers_of[None, :] <= tier_ranks[:, None])
        self._tier_orders = tuple(
            _order(per_tier[:, t], self.eligible[t]) for t in range(len(self.tiers))
        )
        self._tier_scores = tuple(
            np.ascontiguousarray(per_tier[order, t]) for t, order in enumerate(self._tier_orders)
        )
        self._popular = _order(pop, available)
        self._popular_scores = np.ascontiguousarray(pop[self._popular])
        self._category_index = {name: code for code, name in enumerate(self.categories)}

    @property
    def n_items(self) -> int:
        return int(self.category_codes.shape[0])

    def tier_rank(self, tier: str | None) -> int:
        """Rank of ``tier``; unknown or missing tiers get the lowest (the safest: shows least)."""
        if tier is None:
            return 0
        try:
            return self.tiers.index(tier)
        except ValueError:
            return 0

    def category_code(self, name: str) -> int | None:
        """Code of a category name, None when no item has it."""
        return self._category_index.get(name)

    @cached_property
    def _by_category(self) -> tuple[IntArray, IntArray]:
        """Active items sorted by (category, popularity desc), and each category's start."""
        codes = np.where(self.active, self.category_codes, NO_CATEGORY)
        keep = np.flatnonzero(codes >= 0)
        order = keep[np.lexsort((-self.popularity[keep], codes[keep]))]
        starts = np.searchsorted(codes[order], np.arange(len(self.categories) + 1))
        return order.astype(np.int64), starts.astype(np.int64)

    def popular_in_tier(self, tier: int) -> tuple[IntArray, FloatArray]:
        """Items eligible for ``tier``, most popular within the tier first, and that popularity."""
        return self._tier_orders[tier], self._tier_scores[tier]

    def popular_overall(self) -> tuple[IntArray, FloatArray]:
        """Active items, most popular first, and their popularity."""
        return self._popular, self._popular_scores

    def popular_in_category(self, category: int) -> tuple[IntArray, FloatArray]:
        """Active items of ``category``, most popular first, and their popularity."""
        order, starts = self._by_category
        items = order[starts[category] : starts[category + 1]]
        return items, self.popularity[items]


def _order(values: npt.NDArray[np.float32], mask: BoolArray) -> IntArray:
    ids = np.flatnonzero(mask)
    return ids[np.argsort(-values[ids], kind="stable")].astype(np.int64)


#: A fallback order: items best first, their scores, and the source code to report.
Fallback = tuple[IntArray, FloatArray, int]


def rank_with_fallbacks(
    catalog: ItemCatalog,
    rules: Rules,
    candidates: RankedList,
    fallbacks: Sequence[Fallback],
) -> RankedList:
    """:func:`apply_rules` over ``candidates`` then each fallback order, in order.

    Fallback orders can be as long as the catalogue; first only their heads are used (long
    enough to fill ``k`` after exclusions and the cap in the usual case), and the whole orders
    only when the heads fell short.
    """
    need = 4 * rules.k + int(rules.exclude.size) + 64
    heads = [RankedList.of(items[:need], scores[:need], src) for items, scores, src in fallbacks]
    ranked = apply_rules(catalog, rules, [candidates, *heads])
    if len(ranked) < rules.k and any(items.size > need for items, _, _ in fallbacks):
        full = [RankedList.of(items, scores, src) for items, scores, src in fallbacks]
        ranked = apply_rules(catalog, rules, [candidates, *full])
    return ranked


def rank_many(
    catalog: ItemCatalog,
    rules: Sequence[Rules],
    candidates: Sequence[RankedList],
    fallbacks: Sequence[Sequence[Fallback]],
) -> list[RankedList]:
    """:func:`rank_with_fallbacks` for many requests at once, vectorized over all of them.

    Row ``i`` is ranked from ``candidates[i]`` then the heads of ``fallbacks[i]`` under
    ``rules[i]``; the result equals ``rank_with_fallbacks(catalog, rules[i], candidates[i],
    fallbacks[i])`` for every row (rows whose heads fall short are redone that way).
    """
    n = len(rules)
    if not (len(candidates) == len(fallbacks) == n):
        raise InvalidInputError(
            "rank_many: rules, candidates and fallbacks need one entry per request"
        )
    if n == 0:
        return []
    needs = [4 * r.k + int(r.exclude.size) + 64 for r in rules]
    parts_of = [
        [
            candidates[i],
            *(RankedList.of(it[: needs[i]], sc[: needs[i]], src) for it, sc, src in fallbacks[i]),
        ]
        for i in range(n)
    ]
    widths = [sum(len(part) for part in parts) for parts in parts_of]
    width = max(1, *widths)
    items = np.full((n, width), -1, dtype=np.int64)
    scores = np.zeros((n, width), dtype=np.float32)
    sources = np.zeros((n, width), dtype=np.int8)
    for i, parts in enumerate(parts_of):  # one small copy per request
        if widths[i]:
            items[i, : widths[i]] = np.concatenate([p.items for p in parts])
            scores[i, : widths[i]] = np.concatenate([p.scores for p in parts])
            sources[i, : widths[i]] = np.concatenate([p.sources for p in parts])
    n_items = catalog.n_items
    valid = (items >= 0) & (items < n_items)
    safe = np.where(valid, items, 0)
    tiers = np.asarray([r.tier for r in rules], dtype=np.int64)
    keep = valid & catalog.eligible[tiers[:, None], safe]
    codes = catalog.category_codes[safe]
    wanted = np.asarray([-2 if r.category is None else r.category for r in rules], dtype=np.int64)
    keep &= (wanted[:, None] == -2) | (codes == wanted[:, None])
    keys = np.arange(n, dtype=np.int64)[:, None] * n_items + safe
    excluded = [np.unique(r.exclude) + i * n_items for i, r in enumerate(rules) if r.exclude.size]
    if excluded:
        keep &= ~np.isin(keys, np.concatenate(excluded))
    flat = np.flatnonzero(keep.ravel())  # row-major: by request, then by rank
    _, first = np.unique(keys.ravel()[flat], return_index=True)
    flat = flat[np.sort(first)]
    no_cap = np.iinfo(np.int64).max
    caps = np.asarray([no_cap if r.max_per_category is None else r.max_per_category for r in rules])
    flat_rows = flat // width
    flat_codes = codes.ravel()[flat].astype(np.int64)
    within = rank_within(flat_rows * (len(catalog.categories) + 1) + flat_codes + 1)
    flat = flat[(within < caps[flat_rows]) | (flat_codes == NO_CATEGORY)]
    flat_rows = flat // width
    limits = np.asarray([r.k for r in rules], dtype=np.int64)
    flat = flat[rank_within(flat_rows) < limits[flat_rows]]
    counts = np.bincount(flat // width, minlength=n)
    bounds = np.r_[0, np.cumsum(counts)]
    out: list[RankedList] = []
    for i in range(n):
        if counts[i] < rules[i].k and any(it.size > needs[i] for it, _, _ in fallbacks[i]):
            out.append(rank_with_fallbacks(catalog, rules[i], candidates[i], fallbacks[i]))
            continue
        chosen = flat[bounds[i] : bounds[i + 1]]
        out.append(
            RankedList(items.ravel()[chosen], scores.ravel()[chosen], sources.ravel()[chosen])
        )
    return out


@dataclass(frozen=True, slots=True)
class Selection:
    """What :func:`select_rows` kept: per row, the first ``k`` passing items (``-1`` padded),
    their scores and sources, how many were found, and whether the row's list decided its
    request (``decided``: ``k`` items found and no category cut could have changed them)."""

    items: IntArray
    scores: FloatArray
    sources: SourceArray
    counts: IntArray
    decided: BoolArray


def select_rows(
    catalog: ItemCatalog,
    items: npt.NDArray[np.integer],
    scores: FloatArray,
    sources: SourceArray,
    tiers: IntArray,
    ks: IntArray,
    caps: IntArray,
    stored_per_category: int | None = None,
) -> Selection:
    """The business rules over a matrix of ranked candidate lists, one request per row, with no
    Python per row: availability and tier eligibility (``tiers[r]``), the diversity cap
    (``caps[r]`` items per category; items without a category are not capped) and the first
    ``ks[r]`` items. Rows hold distinct items (``-1`` padding). No category filter, exclusions
    or fallback fill: requests that need them go through :func:`rank_many`, and so should a
    row that is not ``decided``: fewer than ``k`` items passed, or (lists built keeping at most
    ``stored_per_category`` items of a category) a category the list holds that many of has
    fewer eligible items than the row's cap, so the full ranking could have supplied more."""
    n, width = items.shape
    k_max = int(ks.max()) if n else 0
    out_items = np.full((n, max(k_max, 1)), -1, dtype=np.int64)
    out_scores = np.zeros(out_items.shape, dtype=np.float32)
    out_sources = np.full(out_items.shape, -1, dtype=np.int8)
    if n == 0 or width == 0:
        counts = np.zeros(n, dtype=np.int64)
        return Selection(out_items, out_scores, out_sources, counts, counts >= ks)
    valid = (items >= 0) & (items < catalog.n_items)
    safe = np.where(valid, items, 0)
    eligible = valid & catalog.eligible[tiers[:, None], safe]
    groups = len(catalog.categories) + 1
    decided = np.ones(n, dtype=np.bool_)
    if stored_per_category is not None:
        listed = np.flatnonzero(valid.ravel())
        listed_rows = listed // width
        listed_codes = catalog.category_codes[safe.ravel()[listed]].astype(np.int64)
        keys, inverse = np.unique(listed_rows * groups + listed_codes + 1, return_inverse=True)
        held = np.bincount(inverse)
        usable = np.bincount(inverse, weights=eligible.ravel()[listed])
        key_rows, key_codes = keys // groups, keys % groups - 1
        cut = (held >= stored_per_category) & (usable < caps[key_rows]) & (key_codes >= 0)
        decided[key_rows[cut]] = False
    flat = np.flatnonzero(eligible.ravel())
    rows = flat // width
    codes = catalog.category_codes[safe.ravel()[flat]].astype(np.int64)
    within = rank_within(rows * groups + codes + 1)
    flat = flat[(within < caps[rows]) | (codes == NO_CATEGORY)]
    rows = flat // width
    position = rank_within(rows)
    chosen = position < ks[rows]
    flat, rows, position = flat[chosen], rows[chosen], position[chosen]
    out_items[rows, position] = safe.ravel()[flat]
    out_scores[rows, position] = scores.ravel()[flat]
    out_sources[rows, position] = sources.ravel()[flat]
    counts = np.bincount(rows, minlength=n)
    return Selection(out_items, out_scores, out_sources, counts, decided & (counts >= ks))


def rank_within(groups: npt.NDArray[np.integer]) -> IntArray:
    """For each element, how many earlier elements share its group (0 for the first)."""
    if groups.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(groups, kind="stable")
    ordered = groups[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, ordered.size]))
    within = np.empty(groups.size, dtype=np.int64)
    within[order] = np.arange(groups.size) - group_start
    return within


def apply_rules(catalog: ItemCatalog, rules: Rules, lists: Sequence[RankedList]) -> RankedList:
    """The first ``k`` items of ``lists`` (in order) that pass every rule (module docstring)."""
    parts = [part for part in lists if len(part)]
    if not parts:
        return RankedList.empty()
    items = np.concatenate([p.items for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    sources = np.concatenate([p.sources for p in parts])
    valid = (items >= 0) & (items < catalog.n_items)
    safe = np.where(valid, items, 0)
    keep = valid & catalog.eligible[rules.tier][safe]
    if rules.category is not None:
        keep &= catalog.category_codes[safe] == rules.category
    if rules.exclude.size:
        keep &= ~np.isin(safe, rules.exclude)
    positions = np.flatnonzero(keep)
    # first occurrence of each item among the kept positions (np.unique returns first indexes)
    _, first = np.unique(items[positions], return_index=True)
    positions = positions[np.sort(first)]
    if rules.max_per_category is not None and positions.size:
        positions = _cap_per_category(
            positions, catalog.category_codes[items[positions]], rules.max_per_category
        )
    positions = positions[: rules.k]
    return RankedList(items[positions], scores[positions], sources[positions])


def _cap_per_category(positions: IntArray, codes: npt.NDArray[np.int32], cap: int) -> IntArray:
    """Keep at most ``cap`` positions per category code, in order (no category: uncapped)."""
    groups = codes.astype(np.int64)
    kept: IntArray = positions[(rank_within(groups) < cap) | (groups == NO_CATEGORY)]
    return kept


def category_cap(k: int, share: float) -> int | None:
    """The diversity cap for ``k`` items: ``ceil(share * k)`` per category (None when >= k)."""
    if not 0 < share <= 1:
        raise InvalidInputError(f"the diversity share must be in (0, 1], got {share}")
    cap = max(1, int(np.ceil(share * k - 1e-9)))
    return None if cap >= k else cap


__all__ = [
    "NO_CATEGORY",
    "Fallback",
    "ItemCatalog",
    "RankedList",
    "Rules",
    "Selection",
    "apply_rules",
    "category_cap",
    "rank_many",
    "rank_with_fallbacks",
    "rank_within",
    "select_rows",
]
