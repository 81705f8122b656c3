"""Recommendations for external member ids from a model bundle alone: a
:class:`~engine.blend.Blender` built from the bundle's arrays (:mod:`engine.bundle`), with the
external ids mapped in and out, needing neither implicit nor LightFM.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    SOURCES,
    TRENDING,
    BlendWeights,
    FloatArray,
    _assign,
    _check_k,
    _empty,
)
from engine.bundle import Bundle, read_bundle
from engine.errors import BundleError, InvalidInputError
from engine.ids import IdMap, IdsLike
from engine.index import VectorIndex


class BundleRecommender:
    """Recommendations for external member ids from a model bundle alone.

    The bundle holds ``member_vectors`` and ``item_vectors`` (arrays), the buy-again history
    (sparse ``buy_again``), the trending prior (array ``trending``), the blend weights (manifest
    key ``blend``) and optionally the FAISS item index (``items``). Unknown members get the
    popular fallback.
    """

    def __init__(self, blender: Blender, member_ids: IdMap, item_ids: IdMap) -> None:
        if len(member_ids) != blender.n_members or len(item_ids) != blender.n_items:
            raise InvalidInputError(
                f"BundleRecommender: id maps hold {len(member_ids)} members and {len(item_ids)} "
                f"items, the blender {blender.n_members} and {blender.n_items}"
            )
        self.blender = blender
        self.member_ids = member_ids
        self.item_ids = item_ids

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> BundleRecommender:
        """Build from a loaded bundle; raise :class:`BundleError` naming what is missing."""
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
        try:
            weights = BlendWeights.from_dict(blend)
            index = bundle.indexes.get(ITEM_INDEX)
            blender = Blender(
                arrays["member_vectors"],
                arrays["item_vectors"],
                bundle.sparse[BUY_AGAIN],
                arrays[TRENDING],
                weights,
                index=VectorIndex.from_faiss(index) if index is not None else None,
            )
        except InvalidInputError as exc:
            raise BundleError(f"{bundle.path}: {exc}") from exc
        return cls(blender, bundle.member_ids, bundle.item_ids)

    @classmethod
    def from_path(cls, path: Path | str, *, mmap: bool = False) -> BundleRecommender:
        """Read the bundle at ``path`` and build from it."""
        return cls.from_bundle(read_bundle(Path(path), mmap=mmap))

    def recommend(
        self, member_ids: IdsLike, k: int = 10, *, exclude_purchased: bool = False
    ) -> Recommendations:
        """Top ``k`` items for each member id (unknown members: the popular fallback)."""
        _check_k(k)
        lookup = self.member_ids.lookup(member_ids)
        known = lookup >= 0
        ranking = _empty(lookup.shape[0], k)
        if known.any():
            ranked = self.blender.rank(lookup[known], k, exclude_purchased=exclude_purchased)
            _assign(ranking, known, ranked)
        if (~known).any():
            _assign(ranking, ~known, self.blender.popular(int((~known).sum()), k))
        filled = ranking.items >= 0
        items = np.where(filled, self.item_ids.ids_at(np.where(filled, ranking.items, 0)), "")
        source_names = np.asarray(SOURCES)[np.where(filled, ranking.sources, 0)]
        return Recommendations(
            member_ids=np.asarray(member_ids).astype(np.str_),
            item_ids=items,
            scores=np.where(filled, ranking.scores, np.nan).astype(np.float32),
            sources=np.where(filled, source_names, ""),
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


__all__ = ["BundleRecommender", "Recommendations"]
