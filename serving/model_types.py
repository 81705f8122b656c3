"""The request and response types of a served model (:mod:`serving.model`), shared by its
lanes (:mod:`serving.model_lanes`) and fold-in (:mod:`serving.model_foldin`) modules."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from engine.blend import SOURCES, Blender, BlendWeights
from engine.bundle import Bundle
from engine.foldin import FoldIn
from engine.ids import IdMap
from engine.index import VectorIndex
from engine.ranking import ItemCatalog, RankedList
from engine.served import SOURCE_POPULAR_IN_TIER
from feature_store.online.profile import MemberProfile
from serving.settings import Settings

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

#: Source names reported per item: the blend's, then serving's fallbacks and similar items.
SERVING_SOURCES: tuple[str, ...] = (*SOURCES, "popular_in_tier", "popular_in_category", "similar")
SOURCE_POPULAR = SOURCES.index("popular")
SOURCE_POPULAR_IN_CATEGORY, SOURCE_SIMILAR = 5, 6


class PurchasedPolicy(StrEnum):
    """What happens to items the member already bought.

    ``keep``: they may be recommended (buy again). ``exclude_recent`` (default): items bought
    since the snapshot (reported by events) are not, older ones may be. ``exclude``: no
    purchased item is recommended (discovery only).
    """

    KEEP = "keep"
    EXCLUDE_RECENT = "exclude_recent"
    EXCLUDE = "exclude"


@dataclass(frozen=True, slots=True)
class Overlay:
    """What events changed for a member: the folded-in vector and the items bought since the
    snapshot with their confidences (dense ids of this model)."""

    vector: FloatArray
    items: IntArray
    weights: FloatArray


@dataclass(frozen=True, slots=True)
class Ask:
    """One recommendation request, with what the online store said about the member."""

    member_id: str
    profile: MemberProfile | None
    overlay: Overlay | None
    k: int
    category: str | None = None
    policy: PurchasedPolicy = PurchasedPolicy.EXCLUDE_RECENT


@dataclass(frozen=True, slots=True)
class Recommended:
    """A ranked list as external ids, ready for a response."""

    item_ids: list[str]
    scores: list[float]
    sources: list[str]
    categories: list[str | None]
    basis: str
    fallback: bool
    tier: str


@dataclass(frozen=True, slots=True)
class ModelInfo:
    label: str
    uri: str
    bundle_id: str
    path: str
    kind: str
    created_at: str
    loaded_at: str
    registry_version: str | None
    run_id: str | None
    n_members: int
    n_items: int
    dim: int
    index: str
    catalogue: str
    cold_start: str


def bundle_id(path: Any) -> str:
    """A short content id of a bundle: SHA-256 of its manifest (which lists every file's size)."""
    digest = hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
    return digest[:16]


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


class ServedModel(Protocol):
    """What the lanes (:mod:`serving.model_lanes`) and fold-in (:mod:`serving.model_foldin`)
    read of a served model; :class:`serving.model.ServingModel` is the one implementation."""

    bundle: Bundle
    settings: Settings
    blender: Blender
    catalog: ItemCatalog
    index: VectorIndex
    item_vectors: FloatArray
    trending: FloatArray
    weights: BlendWeights
    member_ids: IdMap
    item_ids: IdMap
    fold: FoldIn
    _precomputed: PrecomputedLists | None

    def _history_row(self, row: int) -> tuple[IntArray, FloatArray]: ...

    def _external(
        self, ranked: RankedList, basis: str, *, fallback: bool, tier: int
    ) -> Recommended: ...


__all__ = [
    "SERVING_SOURCES",
    "SOURCE_POPULAR",
    "SOURCE_POPULAR_IN_CATEGORY",
    "SOURCE_POPULAR_IN_TIER",
    "SOURCE_SIMILAR",
    "Ask",
    "FloatArray",
    "IntArray",
    "ModelInfo",
    "Overlay",
    "PrecomputedLists",
    "PurchasedPolicy",
    "Recommended",
    "ServedModel",
    "bundle_id",
]
