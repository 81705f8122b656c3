"""The candidate lanes of the kernel (:class:`engine.ranking.kernel.Ranker`): the
precomputed-list lane (a bundle's ``candidates_*`` arrays, read under the business rules) and
the search lanes (the blend over bundle rows, or over vectors given by fold-in or features).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from engine.blend import Blender, Ranking
from engine.blend_precompute import PRECOMPUTED_ARRAYS
from engine.bundle import Bundle
from engine.errors import BundleError
from engine.ranking.catalog import ItemCatalog
from engine.ranking.lists import RankedList, category_cap, select_rows
from engine.ranking.request import Ranked, Request

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class PrecomputedLists:
    """A bundle's precomputed candidate lists (engine.blend_precompute.PrecomputedCandidates)."""

    items: npt.NDArray[np.int32]
    scores: FloatArray
    sources: npt.NDArray[np.int8]
    per_category: int | None

    @property
    def width(self) -> int:
        return int(self.items.shape[1])


def candidate_width(blender: Blender, history_length: int) -> int:
    """How deep the blend ranks a member for the rules: its whole candidate set (the searched
    candidates, the trending candidates and the member's history)."""
    w = blender.weights
    return max(1, min(blender.n_items, w.candidates + w.trending_candidates + history_length))


# -- the precomputed-list lane -------------------------------------------------------------------


def from_precomputed(
    pre: PrecomputedLists | None, catalog: ItemCatalog, share: float, requests: Sequence[Request]
) -> Iterator[tuple[int, Ranked]]:
    """The requests the precomputed lists decide: plain requests (``Request.plain``) with ``k``
    within the list width (:func:`decided`); the others are left to the search lanes."""
    if pre is None:
        return
    lane = [i for i, r in enumerate(requests) if r.plain and r.k <= pre.width]
    if not lane:
        return
    dense = np.asarray([requests[i].row for i in lane], dtype=np.int64)
    found = decided(
        catalog,
        share,
        [requests[i] for i in lane],
        (pre.items[dense], pre.scores[dense], pre.sources[dense]),
        pre.per_category,
    )
    for position, ranked in found:
        yield lane[position], Ranked(ranked, "model", False)


def decided(
    catalog: ItemCatalog,
    share: float,
    requests: Sequence[Request],
    lists: tuple[npt.NDArray[np.integer], FloatArray, npt.NDArray[np.int8]],
    per_category: int | None = None,
) -> Iterator[tuple[int, RankedList]]:
    """The requests whose ranked candidate rows (``lists``: items, scores, sources, one row per
    request, distinct items, ``-1`` padded) decide their served list with no fill: the rules
    run vectorized over all rows (:func:`engine.ranking.lists.select_rows`: availability, tier,
    the diversity cap, ``k``). Only for requests without a category, an exclude list, a
    promotion or purchases since the snapshot; a row that falls short after the rules (or,
    lists stored with at most ``per_category`` items of a category, whose cut could matter) is
    not decided: the caller ranks it with the fallback fill."""
    items, scores, sources = lists
    ks = np.asarray([r.k for r in requests], dtype=np.int64)
    caps = np.asarray([cap_or_k(k, category_cap(k, share)) for k in ks.tolist()], dtype=np.int64)
    picked = select_rows(
        catalog,
        items,
        scores,
        sources,
        np.asarray([r.tier for r in requests], dtype=np.int64),
        ks,
        caps,
        per_category,
    )
    for position in np.flatnonzero(picked.decided).tolist():
        count = int(picked.counts[position])
        yield (
            position,
            RankedList(
                picked.items[position, :count],
                picked.scores[position, :count],
                picked.sources[position, :count],
            ),
        )


def cap_or_k(k: int, cap: int | None) -> int:
    return k if cap is None else cap


def read_precomputed(bundle: Bundle) -> PrecomputedLists | None:
    """The bundle's precomputed candidate lists, checked against its member and item counts;
    None when it has none."""
    if not all(name in bundle.arrays for name in PRECOMPUTED_ARRAYS):
        return None
    items, scores, sources = (bundle.arrays[name] for name in PRECOMPUTED_ARRAYS)
    n_members = len(bundle.member_ids)
    if (
        items.ndim != 2
        or items.shape[0] != n_members
        or scores.shape != items.shape
        or sources.shape != items.shape
    ):
        raise BundleError(
            f"{bundle.path}: precomputed candidates must be {n_members} x width arrays "
            f"({', '.join(PRECOMPUTED_ARRAYS)}), found {items.shape}, {scores.shape}, "
            f"{sources.shape}"
        )
    if items.size and int(items.max()) >= len(bundle.item_ids):
        raise BundleError(f"{bundle.path}: precomputed candidates refer to unknown items")
    cap = bundle.manifest.get("precomputed_per_category")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise BundleError(f"{bundle.path}: precomputed_per_category must be a positive integer")
    return PrecomputedLists(items, scores, sources, cap)


# -- the search lanes ------------------------------------------------------------------------------


def rank_rows(blender: Blender, rows: Sequence[int], exclude_all: bool) -> Ranking:
    """The blend over the whole candidate set of bundle rows, one row each (``-1`` padded)."""
    indptr = blender.history.indptr
    dense = np.asarray(rows, dtype=np.int64)
    longest = int((indptr[dense + 1] - indptr[dense]).max())
    return blender.rank(dense, candidate_width(blender, longest), exclude_purchased=exclude_all)


def rank_vectors(
    blender: Blender, requests: Sequence[Request], exclude_all: bool
) -> list[RankedList]:
    """The blend for members given by vectors (fold-in, features) and their histories (bundle
    row, if any, plus the purchases since the snapshot), through one Blender for all of them:
    building one costs a few sorts over the catalogue."""
    history = blender.history
    rows, cols, values = [], [], []
    for position, request in enumerate(requests):
        start, stop = (
            (int(history.indptr[request.row]), int(history.indptr[request.row + 1]))
            if request.row >= 0
            else (0, 0)
        )
        items = np.r_[history.indices[start:stop].astype(np.int64), request.recent_items]
        weights = np.r_[
            np.asarray(history.data[start:stop], dtype=np.float32), request.recent_weights
        ]
        rows.append(np.full(items.size, position, dtype=np.int64))
        cols.append(items)
        values.append(weights.astype(np.float32))
    own = sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(requests), blender.n_items),
    )
    own.sum_duplicates()
    vectors = np.stack([np.asarray(r.vector, dtype=np.float32) for r in requests])
    members = blender.for_members(vectors, own)
    longest = int(np.diff(own.indptr).max()) if own.nnz else 0
    ranking = members.rank(
        np.arange(len(requests), dtype=np.int64),
        candidate_width(members, longest),
        exclude_purchased=exclude_all,
    )
    return [
        RankedList(ranking.items[i], ranking.scores[i], ranking.sources[i])
        for i in range(len(requests))
    ]


__all__ = [
    "PrecomputedLists",
    "candidate_width",
    "cap_or_k",
    "decided",
    "from_precomputed",
    "rank_rows",
    "rank_vectors",
    "read_precomputed",
]
