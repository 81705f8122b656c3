"""Recommendations for external member ids from a model bundle alone, through the ranking
kernel (:class:`engine.ranking.kernel.Ranker`) as the service ranks them: the bundle's blend, its
precomputed lists, its item catalogue (category, min_tier, active) and each member's tier as of
the bundle's snapshot (array ``member_tier``), needing neither implicit nor LightFM.

``recsys recommend`` and the MLflow pyfunc rank through it, so for the same members, tiers and
settings their lists equal the service's (tests/serving/test_one_path.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.blend import Blender
from engine.blend_math import (
    BUY_AGAIN,
    ITEM_INDEX,
    MANIFEST_KEY,
    TRENDING,
    BlendWeights,
    FloatArray,
)
from engine.bundle import Bundle, read_bundle
from engine.errors import BundleError, InvalidInputError
from engine.ids import IdMap, IdsLike
from engine.index import VectorIndex
from engine.ranking.catalog import catalog_of_bundle
from engine.ranking.kernel import Purchased, Ranker, Request
from engine.ranking.lanes import read_precomputed
from engine.ranking.lists import DEFAULT_SHARE
from engine.ranking.query import ListQuery, request_rules
from engine.ranking.sources import SOURCE_NAMES

#: Bundle array: each member's tier rank as of the bundle's snapshot (-1: unknown).
MEMBER_TIER = "member_tier"
#: Manifest key: the diversity share the model was evaluated with.
SERVED_SHARE = "served_share"


def bundle_tiers(bundle: Bundle) -> tuple[str, ...]:
    """The tier ladder the bundle was trained with (manifest ``training.tiers``)."""
    training = bundle.manifest.get("training")
    tiers = training.get("tiers") if isinstance(training, Mapping) else None
    if isinstance(tiers, list) and tiers and all(isinstance(t, str) for t in tiers):
        return tuple(tiers)
    return ("all",)


class BundleRecommender:
    """Recommendations for external member ids from a model bundle alone (module docstring).
    Unknown members get the fallback lists of the lowest tier."""

    def __init__(
        self,
        ranker: Ranker,
        member_ids: IdMap,
        item_ids: IdMap,
        member_tiers: npt.NDArray[np.integer] | None = None,
    ) -> None:
        blender = ranker.blender
        if len(member_ids) != blender.n_members or len(item_ids) != blender.n_items:
            raise InvalidInputError(
                f"BundleRecommender: id maps hold {len(member_ids)} members and {len(item_ids)} "
                f"items, the blender {blender.n_members} and {blender.n_items}"
            )
        tiers = np.zeros(len(member_ids), np.int64) if member_tiers is None else member_tiers
        if np.shape(tiers) != (len(member_ids),):
            raise InvalidInputError("BundleRecommender: one tier rank per member")
        self.ranker = ranker
        self.blender = blender
        self.member_ids = member_ids
        self.item_ids = item_ids
        self.member_tiers = np.maximum(np.asarray(tiers, dtype=np.int64), 0)

    @classmethod
    def from_bundle(cls, bundle: Bundle, *, share: float | None = None) -> BundleRecommender:
        """Build from a loaded bundle; raise :class:`BundleError` naming what is missing.
        ``share``: the diversity cap (default: the share the model was evaluated with)."""
        arrays = bundle.arrays
        missing = [
            name for name in ("member_vectors", "item_vectors", TRENDING) if name not in arrays
        ]
        if BUY_AGAIN not in bundle.sparse:
            missing.append(f"sparse {BUY_AGAIN}")
        blend = bundle.manifest.get(MANIFEST_KEY)
        if not isinstance(blend, Mapping):
            missing.append(f"manifest key {MANIFEST_KEY!r}")
            blend = {}
        if missing:
            raise BundleError(
                f"{bundle.path}: not a blend bundle, it lacks {', '.join(missing)}; "
                "write it with the training pipeline (recsys train)"
            )
        stored = bundle.manifest.get(SERVED_SHARE)
        if share is None:
            share = float(stored) if isinstance(stored, int | float) else DEFAULT_SHARE
        try:
            index = bundle.indexes.get(ITEM_INDEX)
            blender = Blender(
                arrays["member_vectors"],
                arrays["item_vectors"],
                bundle.sparse[BUY_AGAIN],
                arrays[TRENDING],
                BlendWeights.from_dict(blend),
                index=VectorIndex.from_faiss(index) if index is not None else None,
            )
            catalog, _ = catalog_of_bundle(bundle, bundle_tiers(bundle), arrays[TRENDING])
            ranker = Ranker(blender, catalog, share=share, precomputed=read_precomputed(bundle))
            return cls(ranker, bundle.member_ids, bundle.item_ids, arrays.get(MEMBER_TIER))
        except InvalidInputError as exc:
            raise BundleError(f"{bundle.path}: {exc}") from exc

    @classmethod
    def from_path(
        cls, path: Path | str, *, mmap: bool = False, share: float | None = None
    ) -> BundleRecommender:
        """Read the bundle at ``path`` and build from it."""
        return cls.from_bundle(read_bundle(Path(path), mmap=mmap), share=share)

    def recommend(
        self,
        member_ids: IdsLike,
        k: int = 10,
        *,
        exclude_purchased: bool = False,
        query: ListQuery | None = None,
    ) -> Recommendations:
        """Top ``k`` items for each member id, served as the service serves a member whose
        profile has their snapshot tier and who bought nothing since (``query``: the exclude
        list and promotion, as the API takes them)."""
        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        lookup = self.member_ids.lookup(member_ids)
        policy = Purchased.EXCLUDE if exclude_purchased else Purchased.KEEP
        rules = None if query is None else request_rules(query, self.item_ids, self.ranker.catalog)
        category = None if query is None else self.ranker.category_code(query.category)
        requests = [
            Request(
                k=k,
                row=row,
                tier=int(self.member_tiers[row]) if row >= 0 else 0,
                tier_known=row >= 0,
                category=category,
                purchased=policy,
                extra=rules,
            )
            for row in lookup.tolist()
        ]
        return _table(
            member_ids,
            lookup >= 0,
            [r.ranked for r in self.ranker.rank(requests)],
            k,
            self.item_ids,
        )


def _table(
    member_ids: IdsLike, known: npt.NDArray[np.bool_], lists: Sequence[Any], k: int, item_ids: IdMap
) -> Recommendations:
    n = len(lists)
    items = np.full((n, k), "", dtype=object)
    scores = np.full((n, k), np.nan, dtype=np.float32)
    sources = np.full((n, k), "", dtype=object)
    names = np.asarray(SOURCE_NAMES, dtype=object)
    for i, ranked in enumerate(lists):
        m = ranked.items.size
        if m:
            items[i, :m] = item_ids.ids_at(ranked.items)
            scores[i, :m] = ranked.scores
            sources[i, :m] = names[ranked.sources]
    return Recommendations(
        member_ids=np.asarray(member_ids).astype(np.str_),
        item_ids=items.astype(np.str_),
        scores=scores,
        sources=sources.astype(np.str_),
        known=known,
    )


@dataclass(frozen=True, slots=True)
class Recommendations:
    """Recommendations for a list of members, one row per member (rank = column + 1).

    Empty slots (fewer than ``k`` candidates) hold item id ``""``, score NaN and source ``""``.
    ``known`` tells which members the model knew (the others got the popular fallback).
    """

    member_ids: npt.NDArray[np.str_]
    item_ids: npt.NDArray[np.str_]
    scores: FloatArray
    sources: npt.NDArray[np.str_]
    known: npt.NDArray[np.bool_]

    def long_format(self) -> dict[str, npt.NDArray[Any]]:
        """Columns member_id, rank, item_id, score, source: one entry per filled slot."""
        filled = self.item_ids != ""
        row, col = np.nonzero(filled)
        return {
            "member_id": self.member_ids[row],
            "rank": (col + 1).astype(np.int64),
            "item_id": self.item_ids[row, col],
            "score": self.scores[row, col],
            "source": self.sources[row, col],
        }


__all__ = ["MEMBER_TIER", "SERVED_SHARE", "BundleRecommender", "Recommendations", "bundle_tiers"]
