"""The business rules, as data (:class:`Rules`), applied to ranked candidate lists: what may be
shown, and what fills the gaps.

The kernel (:mod:`engine.ranking.kernel`) ranks candidates with the retail blend
(:mod:`engine.blend`) and then applies, in one vectorized pass over the candidates followed by
the fallback lists (a *fallback chain*, tried in order until ``k`` items are found, sharing one
exclusion set):

1. **availability**: inactive items are never shown;
2. **tier eligibility**: an item whose ``min_tier`` is above the member's tier is never shown;
3. **category filter** (optional): only items of one category;
4. **exclusions**: items the purchased-item policy drops, the item a "similar" list starts from,
   the request's own exclude list;
5. **de-duplication**: an item appears once, at its first (best) position;
6. **diversity cap**: at most ``max_per_category`` items of any one category;
7. **promotion** (optional): the promoted items get ``ceil(share * k)`` of the ``k`` slots
   (fewer when fewer pass the rules), chosen best first among them; every item keeps its
   place in the ranked order, so a promoted item sits where its score puts it;
8. **fill**: candidates first, then each fallback list in order, until ``k`` items.

Adding a per-request rule touches three places: the rule here (a field of :class:`Rules` and
of :class:`RequestRules`, which carries it from the request and merges it in, and its step in
:func:`apply_rules`), its request field (:class:`engine.ranking.query.ListQuery` and
:func:`~engine.ranking.query.request_rules`, which every caller parses), and its test. The
kernel, the service, ``recsys recommend`` and the pyfunc pass it on without naming it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInputError
from engine.ranking.catalog import NO_CATEGORY, ItemCatalog
from engine.ranking.sources import SOURCE_PROMOTED

#: The diversity cap's default share: ``ceil(0.5 * k)`` items of one category at most.
DEFAULT_SHARE = 0.5

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
SourceArray = npt.NDArray[np.int8]


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
class Promotion:
    """Promoted items (dense ids) and the share of the slots they get (Amazon Personalize's
    promotions): ``ceil(share * k)`` slots, or fewer when fewer promoted items pass the rules."""

    items: IntArray
    share: float

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise InvalidInputError(f"the promotion share must be in (0, 1], got {self.share}")

    def slots(self, k: int) -> int:
        return min(k, max(1, math.ceil(self.share * k - 1e-9)))


@dataclass(frozen=True, slots=True)
class Rules:
    """What one request asks for.

    Attributes:
        k: how many items to return.
        tier: the member's tier rank (0 = lowest); items with a higher ``min_tier`` are hidden.
        category: category code to restrict to, or None.
        exclude: dense item ids never to return (purchased items per policy, the seed item,
            the request's exclude list).
        max_per_category: diversity cap (None: no cap).
        promotion: promoted items and their share of the slots, or None.
    """

    k: int
    tier: int = 0
    category: int | None = None
    exclude: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    max_per_category: int | None = None
    promotion: Promotion | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InvalidInputError(f"k must be at least 1, got {self.k}")
        if self.max_per_category is not None and self.max_per_category < 1:
            raise InvalidInputError(
                f"max_per_category must be at least 1, got {self.max_per_category}"
            )


#: A fallback order: items best first, their scores, and the source code to report.
Fallback = tuple[IntArray, FloatArray, int]


@dataclass(frozen=True, slots=True)
class RequestRules:
    """The rules one request adds beyond its member, ``k``, category and purchased-items
    policy, in dense ids (built from the query by :func:`engine.ranking.query.request_rules`).
    The kernel merges them into the :class:`Rules` and the fallback chain without knowing
    what they are: a new per-request rule is a field here, its step in :func:`apply_rules`,
    its query field, and its test."""

    exclude: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    promotion: Promotion | None = None

    def merge_into(self, rules: Rules) -> Rules:
        """``rules`` with this request's exclude list and promotion."""
        exclude = (
            np.concatenate([rules.exclude, self.exclude]) if self.exclude.size else rules.exclude
        )
        return replace(rules, exclude=exclude, promotion=self.promotion)

    def fallbacks(self, catalog: ItemCatalog) -> list[Fallback]:
        """Fill lists this request needs after the usual chain: the promoted items by
        popularity (so a promotion always has its items to place)."""
        if self.promotion is None or not self.promotion.items.size:
            return []
        promoted = np.unique(self.promotion.items)
        order = promoted[np.argsort(-catalog.popularity[promoted], kind="stable")]
        return [(order, catalog.popularity[order], SOURCE_PROMOTED)]


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
    promoted = [i for i, r in enumerate(rules) if r.promotion is not None]
    if promoted:  # rare: ranked one by one, the rest vectorized
        return _rank_promoted_apart(catalog, rules, candidates, fallbacks, promoted)
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


def _rank_promoted_apart(
    catalog: ItemCatalog,
    rules: Sequence[Rules],
    candidates: Sequence[RankedList],
    fallbacks: Sequence[Sequence[Fallback]],
    promoted: list[int],
) -> list[RankedList]:
    rest = [i for i in range(len(rules)) if rules[i].promotion is None]
    ranked = rank_many(
        catalog,
        [rules[i] for i in rest],
        [candidates[i] for i in rest],
        [fallbacks[i] for i in rest],
    )
    out: list[RankedList | None] = [None] * len(rules)
    for i, lst in zip(rest, ranked, strict=True):
        out[i] = lst
    for i in promoted:
        out[i] = rank_with_fallbacks(catalog, rules[i], candidates[i], fallbacks[i])
    return [lst for lst in out if lst is not None]


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
    codes = catalog.category_codes[items[positions]]
    if rules.promotion is not None:
        promoted = np.isin(items[positions], rules.promotion.items)
        positions = positions[_promote(promoted, codes, rules)]
        sources = sources.copy()
        sources[positions[np.isin(items[positions], rules.promotion.items)]] = SOURCE_PROMOTED
    elif rules.max_per_category is not None and positions.size:
        positions = _cap_per_category(positions, codes, rules.max_per_category)
    positions = positions[: rules.k]
    return RankedList(items[positions], scores[positions], sources[positions])


def _promote(promoted: BoolArray, codes: npt.NDArray[np.int32], rules: Rules) -> IntArray:
    """Which of the ranked candidates (``promoted`` flags, category ``codes``) fill the ``k``
    slots: at most ``slots`` promoted and ``k - slots`` others, in ranked order, under the
    diversity cap (counted over the shown items only); a second pass lifts the quotas when one
    side is short. Returns indexes into the candidates, in ranked order."""
    k, cap = rules.k, rules.max_per_category
    quota = {True: rules.promotion.slots(k) if rules.promotion else 0}
    quota[False] = k - quota[True]
    chosen: list[int] = []
    seen: set[int] = set()
    per_category: dict[int, int] = {}
    taken = {True: 0, False: 0}
    for bounded in (True, False):
        for i, (flag, code) in enumerate(zip(promoted.tolist(), codes.tolist(), strict=True)):
            if len(chosen) == k:
                break
            if i in seen or (bounded and taken[flag] >= quota[flag]):
                continue
            if cap is not None and code >= 0 and per_category.get(code, 0) >= cap:
                continue
            chosen.append(i)
            seen.add(i)
            taken[flag] += 1
            per_category[code] = per_category.get(code, 0) + 1
    return np.sort(np.asarray(chosen, dtype=np.int64))


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
    "DEFAULT_SHARE",
    "Fallback",
    "Promotion",
    "RankedList",
    "RequestRules",
    "Rules",
    "Selection",
    "apply_rules",
    "category_cap",
    "rank_many",
    "rank_with_fallbacks",
    "rank_within",
    "select_rows",
]
