"""The precomputed lists of a :class:`~engine.blend.Blender` (:func:`precompute`): every
member's blended items, best first, for serving to read instead of searching.

Most lists are decided from a shallow exact embedding search (:mod:`engine.precompute`) and a
bound on every deeper candidate; the rest are ranked by :meth:`engine.blend.Blender.rank` over
the whole candidate set. The functions here take the :class:`~engine.blend.Blender` whose
lists they compute (its scoring arithmetic, :meth:`~engine.blend.Blender._contributions`, is
shared so both routes give the same floats).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.blend import Blender
from engine.blend_math import (
    _PAIRS_PER_CHUNK,
    FloatArray,
    IntArray,
    SourceArray,
    _batch_stop,
    _check_k,
)
from engine.errors import InvalidInputError
from engine.precompute import NormOrderedItems, capped_top, faiss_threads, product
from engine.ranking.lists import rank_within


@dataclass(frozen=True, slots=True)
class PrecomputedCandidates:
    """Each member's top ``width`` items by the blend without exclusions (``-1`` padded), as
    stored in a bundle (arrays :data:`PRECOMPUTED_ARRAYS`): serving applies the business rules
    to these lists and searches only for members whose lists fall short or who changed since."""

    items: npt.NDArray[np.int32]
    scores: FloatArray
    sources: SourceArray
    #: at most this many items of one category per list (None: the plain top ``width``)
    per_category: int | None = None

    @property
    def width(self) -> int:
        return int(self.items.shape[1])

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        names = PRECOMPUTED_ARRAYS
        return {names[0]: self.items, names[1]: self.scores, names[2]: self.sources}


#: Bundle array names of :class:`PrecomputedCandidates` (items, scores, sources).
PRECOMPUTED_ARRAYS: tuple[str, str, str] = (
    "candidates_items",
    "candidates_scores",
    "candidates_sources",
)


@dataclass(frozen=True, slots=True)
class _ListSpec:
    """What a precomputed list holds: ``width`` items, at most ``per_category`` of a category
    (``codes``, per item), ``code_groups`` category codes + 1 (0 when not capped)."""

    width: int
    codes: IntArray | None
    per_category: int | None
    code_groups: int


class _ListsBuffer:
    """The precomputed lists being filled, one row per member (threads write disjoint rows)."""

    def __init__(self, n_members: int, width: int) -> None:
        self.items = np.full((n_members, width), -1, dtype=np.int32)
        self.scores = np.zeros((n_members, width), dtype=np.float32)
        self.sources = np.full((n_members, width), -1, dtype=np.int8)

    def put(
        self,
        rows: IntArray,
        items: npt.NDArray[np.integer],
        scores: FloatArray,
        sources: npt.NDArray[np.integer],
    ) -> None:
        self.items[rows] = items
        self.scores[rows] = scores
        self.sources[rows] = sources


def precompute(
    blender: Blender,
    width: int,
    *,
    categories: npt.ArrayLike | None = None,
    per_category: int | None = None,
    chunk: int = 4_096,
    threads: int = 1,
    progress: Callable[[int], None] | None = None,
) -> PrecomputedCandidates:
    """Every member's blended items, best first, for serving to read instead of searching
    (:class:`PrecomputedCandidates`): the first ``width`` of the member's whole candidate
    set in blend order, keeping at most ``per_category`` items of any one category
    (``categories``: a code per item, ``-1`` for none, never capped). Without the cap a
    list is the plain top ``width``; with it a list reaches further down the ranking, so
    the serving diversity cap rarely exhausts it. Computed ``chunk`` members at a time, on
    ``threads`` threads (FAISS and the large numpy steps release the GIL, FAISS runs one
    OpenMP thread per worker); ``progress`` is told how many members are done.

    The lists equal :meth:`Blender.rank` over the whole candidate set followed by the cap, computed
    without scoring every item for every member (exact item index only; other indexes
    take that plain route): each member's :data:`PRECOMPUTE_DEPTHS` best items by embedding
    come from an exact search that skips the items too short to compete
    (:class:`engine.precompute.NormOrderedItems`; the same scores as the index). A
    candidate of :meth:`Blender.rank` deeper in the embedding order is neither bought nor among
    the trending candidates, so it scores at most the blend of the next embedding score
    and the best trending value outside the trending candidates (the same float
    arithmetic, which is monotone); a list whose last item scores above that bound is
    final, the others are redone deeper: the whole candidate search, then :meth:`Blender.rank`
    itself. :attr:`Blender.precompute_stages` counts the lists each step decided."""
    _check_k(width)
    codes = None
    if per_category is not None:
        if per_category < 1 or categories is None:
            raise InvalidInputError(
                "precompute: per_category must be at least 1 and needs the item categories"
            )
        codes = np.asarray(categories, dtype=np.int64)
        if codes.shape != (blender.n_items,):
            raise InvalidInputError(
                f"precompute: categories has shape {codes.shape}; expected ({blender.n_items},)"
            )
    n = blender.n_members
    lists = _ListsBuffer(n, width)
    pruned = blender._pruned_search()
    depths = blender._precompute_depths() if pruned is not None else []
    groups = 0 if codes is None else int(codes.max(initial=0)) + 2
    spec = _ListSpec(width, codes, per_category, groups)

    def fill(start: int) -> tuple[int, IntArray]:
        """Lists of one chunk; how many each depth decided, then the plain ranking."""
        stop = min(n, start + chunk)
        pending = np.arange(start, stop, dtype=np.int64)
        decided = np.zeros(len(depths) + 1, dtype=np.int64)
        with faiss_threads(1):
            for stage, depth in enumerate(depths):
                assert pruned is not None
                done = _pruned_lists(blender, pending, depth, spec, pruned, lists)
                decided[stage] = int(done.sum())
                pending = pending[~done]
                if not pending.size:
                    break
            if pending.size:
                lists.put(pending, *_reference_lists(blender, pending, spec))
                decided[-1] = pending.size
        return stop, decided

    starts = range(0, n, chunk)
    done: Iterator[tuple[int, IntArray]]
    if threads <= 1:
        done = map(fill, starts)
    else:
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="precompute")
        done = pool.map(fill, starts)
    totals = np.zeros(len(depths) + 1, dtype=np.int64)
    try:
        for stop, decided in done:
            totals += decided
            if progress is not None:
                progress(stop)
    finally:
        if threads > 1:
            pool.shutdown(wait=True)
    blender.precompute_stages = dict(zip([*map(str, depths), "rank"], totals.tolist(), strict=True))
    return PrecomputedCandidates(
        items=lists.items, scores=lists.scores, sources=lists.sources, per_category=per_category
    )


def _reference_lists(
    blender: Blender, rows: IntArray, spec: _ListSpec
) -> tuple[npt.NDArray[np.int32], FloatArray, SourceArray]:
    """The plain lists of ``rows``: :meth:`Blender.rank` over every candidate, then the cap."""
    width, codes = spec.width, spec.codes
    n_rows = rows.size
    items = np.full((n_rows, width), -1, dtype=np.int32)
    scores = np.zeros((n_rows, width), dtype=np.float32)
    sources = np.full((n_rows, width), -1, dtype=np.int8)
    if not n_rows:
        return items, scores, sources
    indptr = blender._history.indptr
    longest = int((indptr[rows + 1] - indptr[rows]).max())
    # the whole candidate set, as serving's search ranks it (a shorter rank could break a
    # tie at its last place either way), then the cap
    depth = max(width, min(blender.n_items, blender._fixed_width() + longest))
    ranking = blender.rank(rows, depth)
    ranked, taken = ranking.items, ranking.items >= 0
    if codes is not None and spec.per_category is not None:
        flat = np.flatnonzero(taken.ravel())
        item_codes = codes[ranked.ravel()[flat]]
        groups = (flat // depth) * spec.code_groups + item_codes + 1
        capped = (rank_within(groups) >= spec.per_category) & (item_codes >= 0)
        taken.ravel()[flat[capped]] = False
    flat = np.flatnonzero(taken.ravel())
    row_of, position = flat // depth, rank_within(flat // depth)
    keep = position < width
    flat, row_of, position = flat[keep], row_of[keep], position[keep]
    items[row_of, position] = ranked.ravel()[flat]
    scores[row_of, position] = ranking.scores.ravel()[flat]
    sources[row_of, position] = ranking.sources.ravel()[flat]
    return items, scores, sources


def _pruned_lists(
    blender: Blender,
    rows: IntArray,
    depth: int,
    spec: _ListSpec,
    search: NormOrderedItems,
    lists: _ListsBuffer,
) -> npt.NDArray[np.bool_]:
    """Lists of ``rows`` from their ``depth`` best embedding candidates; writes the rows
    whose list this decides (returned mask) into ``lists``, leaves the others."""
    indptr = blender._history.indptr
    lengths = (indptr[rows + 1] - indptr[rows]).astype(np.int64)
    by_length = np.argsort(lengths, kind="stable")  # batches of like histories pad less
    fixed = depth + int(blender._trending_top.size)
    decided = np.zeros(rows.size, dtype=np.bool_)
    start = 0
    while start < rows.size:
        stop = _batch_stop(lengths[by_length], start, fixed)
        part = rows[by_length[start:stop]]
        candidates, scores, contributions, bound = _pruned_batch(blender, part, depth, search)
        positions, counts = capped_top(
            candidates, scores, spec.width, spec.codes, spec.per_category
        )
        chosen = positions >= 0
        at = np.maximum(positions, 0)
        chosen_scores = np.take_along_axis(scores, at, axis=1)
        last = np.take_along_axis(chosen_scores, np.maximum(counts - 1, 0)[:, None], axis=1)
        full = (counts == spec.width) & (last[:, 0] > bound)
        ok = full | (bound == -np.inf)
        if ok.any():
            sources = np.argmax(np.take_along_axis(contributions, at[None], axis=2), axis=0)
            lists.put(
                part[ok],
                np.where(chosen, np.take_along_axis(candidates, at, axis=1), -1)[ok],
                np.where(chosen, chosen_scores, 0.0)[ok],
                np.where(chosen, sources, -1)[ok],
            )
        decided[by_length[start:stop]] = ok
        start = stop
    return decided


def _pruned_batch(
    blender: Blender, rows: IntArray, depth: int, search: NormOrderedItems
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
    """Candidates of ``rows`` (``-1`` padded) made of their ``depth`` best embedding items,
    the trending candidates and their history, scored as :meth:`Blender.rank` scores them (the
    same floats): ``(candidates, scores (-inf where none), contributions, bound)``, where
    ``bound`` caps the score of every other candidate of :meth:`Blender.rank` (``-inf``: none)."""
    n_rows, n_items = rows.size, blender.n_items
    queries = blender._members[rows]
    raw_found, found, rest = search.search(queries, depth)
    top_score: FloatArray = raw_found.max(axis=1)
    trending_top, in_trending = blender._trending_top, blender._trending_slot
    # history entries, each matched to the embedding or trending candidate it repeats
    history = blender._history[rows]
    lengths = np.diff(history.indptr)
    h_rows = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
    h_items = history.indices.astype(np.int64)
    h_values = history.data
    order = np.argsort(found, axis=1)
    keys = (
        np.arange(n_rows, dtype=np.int64)[:, None] * n_items
        + np.take_along_axis(found, order, axis=1)
    ).ravel()
    h_keys = h_rows * n_items + h_items
    at = np.minimum(np.searchsorted(keys, h_keys), keys.size - 1)
    h_found = keys[at] == h_keys
    bought_found = np.zeros(found.shape, dtype=np.float32)
    bought_found[h_rows[h_found], order.ravel()[at[h_found]]] = h_values[h_found]
    # trending candidates: an item found by the search is kept there (rank keeps the first)
    trending_ok = np.ones((n_rows, trending_top.size), dtype=np.bool_)
    found_trending = in_trending[found]
    row, col = np.nonzero(found_trending >= 0)
    trending_ok[row, found_trending[row, col]] = False
    h_trending = (in_trending[h_items] >= 0) & ~h_found
    bought_trending = np.zeros(trending_ok.shape, dtype=np.float32)
    bought_trending[h_rows[h_trending], in_trending[h_items[h_trending]]] = h_values[h_trending]
    raw_trending = product(queries, blender._items[trending_top])
    # the other history items, scored pair by pair as rank scores them
    other = ~h_found & (in_trending[h_items] < 0)
    o_rows, o_items, o_values = h_rows[other], h_items[other], h_values[other]
    o_counts = np.bincount(o_rows, minlength=n_rows)
    o_width = int(o_counts.max(initial=0))
    o_cols = np.arange(o_rows.size) - np.repeat(np.cumsum(o_counts) - o_counts, o_counts)
    own = np.full((n_rows, o_width), -1, dtype=np.int64)
    own[o_rows, o_cols] = o_items
    raw_own = np.zeros(own.shape, dtype=np.float32)
    for lo in range(0, o_rows.size, _PAIRS_PER_CHUNK):
        hi = lo + _PAIRS_PER_CHUNK
        raw_own[o_rows[lo:hi], o_cols[lo:hi]] = np.einsum(
            "pd,pd->p", queries[o_rows[lo:hi]], blender._items[o_items[lo:hi]]
        )
    bought_own = np.zeros(own.shape, dtype=np.float32)
    bought_own[o_rows, o_cols] = o_values

    candidates = np.hstack(
        [
            found,
            np.where(trending_ok, np.broadcast_to(trending_top, trending_ok.shape), -1),
            own,
        ]
    )
    valid = candidates >= 0
    item = np.where(valid, candidates, 0)
    contributions = blender._contributions(
        rows,
        np.hstack([raw_found, raw_trending, raw_own]),
        np.hstack([bought_found, bought_trending, bought_own]),
        blender._trending[item],
        top_score,
    )
    scores: FloatArray = np.where(valid, contributions.sum(axis=0), np.float32(-np.inf))
    # every other candidate of rank: deeper in the embedding order, not bought, not trending
    outside = blender._trending_rest
    bound_terms = blender._contributions(
        rows,
        rest[:, None],
        np.zeros((n_rows, 1), dtype=np.float32),
        np.full((n_rows, 1), max(outside, 0.0), dtype=np.float32),
        top_score,
    )
    bound: FloatArray = bound_terms.sum(axis=0)[:, 0]
    if outside < 0:  # every item is a trending candidate
        bound[:] = -np.inf
    bound[rest == -np.inf] = -np.inf  # the search returned every item
    return candidates, scores, contributions, bound


__all__ = ["PRECOMPUTED_ARRAYS", "PrecomputedCandidates", "precompute"]
