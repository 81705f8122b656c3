"""The request and response types of a served model (:mod:`serving.model`), shared with its
fold-in module (:mod:`serving.model_foldin`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from engine.bundle import Bundle
from engine.foldin import FoldIn
from engine.ids import IdMap
from engine.ranking.query import ListQuery
from engine.ranking.request import Purchased as PurchasedPolicy
from engine.ranking.sources import (
    SOURCE_NAMES,
    SOURCE_POPULAR,
    SOURCE_POPULAR_IN_CATEGORY,
    SOURCE_POPULAR_IN_TIER,
    SOURCE_SIMILAR,
)
from feature_store.online.profile import MemberProfile

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

#: Source names reported per item (engine.ranking.sources).
SERVING_SOURCES: tuple[str, ...] = SOURCE_NAMES


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
    #: the request's fields beyond k, category and the policy (exclude list, promotion)
    query: ListQuery | None = None


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
    #: why each item is there (engine.ranking.reasons) and its anchor item (None: none)
    reasons: list[str]
    anchors: list[str | None]


def item_rows(ranked: Recommended) -> list[dict[str, Any]]:
    """The items of a ranked list as response rows (serving/schemas.py ``RecommendedItem``)."""
    return [
        {
            "item_id": i,
            "score": s,
            "source": src,
            "category": c,
            "reason": why,
            "anchor_item_id": anchor,
        }
        for i, s, src, c, why, anchor in zip(
            ranked.item_ids,
            ranked.scores,
            ranked.sources,
            ranked.categories,
            ranked.reasons,
            ranked.anchors,
            strict=True,
        )
    ]


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


class ServedModel(Protocol):
    """What fold-in (:mod:`serving.model_foldin`) reads of a served model;
    :class:`serving.model.ServingModel` is the one implementation."""

    bundle: Bundle
    member_ids: IdMap
    item_ids: IdMap
    fold: FoldIn

    def _history_row(self, row: int) -> tuple[IntArray, FloatArray]: ...


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
    "PurchasedPolicy",
    "Recommended",
    "ServedModel",
    "bundle_id",
    "item_rows",
]
