"""The ranking lanes of a served model (:class:`serving.model.ServingModel`): the
precomputed-list lane (the bundle's ``candidates_*`` arrays, read under the business rules) and
the search lanes (the blend over bundle rows, or over vectors given by fold-in or features).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from engine.blend import Blender
from engine.blend_precompute import PRECOMPUTED_ARRAYS
from engine.bundle import Bundle
from engine.errors import BundleError
from engine.ranking import RankedList, category_cap, select_rows
from engine.served import candidate_width
from serving.model_types import (
    Ask,
    FloatArray,
    Overlay,
    PrecomputedLists,
    PurchasedPolicy,
    Recommended,
    ServedModel,
)

# -- the precomputed-list lane -----------------------------------------------------------------------


def from_precomputed(
    model: ServedModel, asks: Sequence[Ask], rows: Sequence[int], tiers: Sequence[int]
) -> dict[int, Recommended] | None:
    """Requests answered from the bundle's precomputed lists (``candidates_*`` arrays):
    members of the bundle without recent events, no category filter, a policy that
    excludes nothing for them (``keep``, or ``exclude_recent`` with no recent purchase),
    ``k`` within the list width. The rules run vectorized over all of them
    (:func:`engine.ranking.select_rows`); a list that cannot decide its request (too short
    after the rules, or a category cut at precompute time) is left to the search path. None when the bundle has no precomputed lists."""
    pre = model._precomputed
    if pre is None:
        return None
    lane = [
        i
        for i, ask in enumerate(asks)
        if rows[i] >= 0
        and ask.overlay is None
        and ask.category is None
        and ask.policy is not PurchasedPolicy.EXCLUDE
        and ask.k <= pre.width
    ]
    if not lane:
        return {}
    dense = np.asarray([rows[i] for i in lane], dtype=np.int64)
    ks = np.asarray([asks[i].k for i in lane], dtype=np.int64)
    share = model.settings.max_per_category_share
    caps = np.asarray([cap_or_k(k, category_cap(k, share)) for k in ks.tolist()], dtype=np.int64)
    picked = select_rows(
        model.catalog,
        pre.items[dense],
        pre.scores[dense],
        pre.sources[dense],
        np.asarray([tiers[i] for i in lane], dtype=np.int64),
        ks,
        caps,
        pre.per_category,
    )
    out: dict[int, Recommended] = {}
    for position, i in enumerate(lane):
        if not picked.decided[position]:
            continue  # the list cannot decide this request: the search path ranks it
        count = int(picked.counts[position])
        ranked = RankedList(
            picked.items[position, :count],
            picked.scores[position, :count],
            picked.sources[position, :count],
        )
        out[i] = model._external(ranked, "model", fallback=False, tier=tiers[i])
    return out


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


def rank_rows(model: ServedModel, rows: Sequence[int], exclude_all: bool) -> list[RankedList]:
    indptr = model.blender.history.indptr
    dense = np.asarray(rows, dtype=np.int64)
    longest = int((indptr[dense + 1] - indptr[dense]).max())
    ranking = model.blender.rank(
        dense, candidate_width(model.blender, longest), exclude_purchased=exclude_all
    )
    return [
        RankedList(ranking.items[i], ranking.scores[i], ranking.sources[i])
        for i in range(dense.size)
    ]


def rank_vectors(
    model: ServedModel,
    vectors: Sequence[FloatArray],
    members: Sequence[tuple[int, Overlay | None]],
    exclude_all: bool,
) -> list[RankedList]:
    """The blend for members given by vectors (fold-in, features) and their histories
    (bundle row, if any, plus the overlay's purchases), through one Blender for all of
    them: building one costs a few sorts over the catalogue."""
    rows, cols, values = [], [], []
    for position, (row, overlay) in enumerate(members):
        items, weights = (
            model._history_row(row)
            if row >= 0
            else (np.zeros(0, np.int64), np.zeros(0, np.float32))
        )
        if overlay is not None and overlay.items.size:
            items = np.r_[items, overlay.items]
            weights = np.r_[weights, overlay.weights]
        rows.append(np.full(items.size, position, dtype=np.int64))
        cols.append(items)
        values.append(weights.astype(np.float32))
    history = sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(members), model.catalog.n_items),
    )
    history.sum_duplicates()
    blender = Blender(
        np.asarray(np.stack(vectors), dtype=np.float32),
        model.item_vectors,
        history,
        model.trending,
        model.weights,
        index=model.index,
    )
    longest = int(np.diff(history.indptr).max()) if history.nnz else 0
    ranking = blender.rank(
        np.arange(len(members), dtype=np.int64),
        candidate_width(blender, longest),
        exclude_purchased=exclude_all,
    )
    return [
        RankedList(ranking.items[i], ranking.scores[i], ranking.sources[i])
        for i in range(len(members))
    ]


__all__ = [
    "cap_or_k",
    "from_precomputed",
    "rank_rows",
    "rank_vectors",
    "read_precomputed",
]
