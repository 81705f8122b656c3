"""Fitting one configuration: the model on its confidence matrix, then the serving blend over
its vectors. Shared by the automatic search (every trial), the test-window evaluation, the
refit that ships, the ablation and the offline audience evaluation, so all of them fit and
rank the same way."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from engine.blend import Blender
from engine.index import IndexConfig, VectorIndex, build_index
from engine.models import ModelArtifacts, TrainData, create_model
from feature_store.errors import DataError
from feature_store.schema import Col
from training.config import TrainConfig
from training.data import PreparedData, SnapshotFrames, hybrid_features


def fit_model(
    kind: str,
    params: dict[str, Any],
    confidence: sp.csr_matrix,
    data: PreparedData,
    snapshot: SnapshotFrames,
) -> ModelArtifacts:
    """Fit model ``kind`` on the confidence matrix (LightFM also on the snapshot's member and
    item features) and export its vectors."""
    member_features = item_features = None
    if kind == "lightfm":
        member_features, item_features = hybrid_features(snapshot, data)
    model = create_model(kind, **params)
    model.fit(
        TrainData(
            confidence=confidence,
            member_features=member_features,
            item_features=item_features,
            member_tiers=data.members.tier,
            n_tiers=len(data.tiers),
        )
    )
    return model.export()


def fit_config(config: TrainConfig, data: PreparedData, snapshot: SnapshotFrames) -> ModelArtifacts:
    """The configured model fitted on the configured confidences of ``data``."""
    confidence = data.confidence(config.weights)
    return fit_model(config.model.kind, dict(config.model.params), confidence, data, snapshot)


def build_blender(
    artifacts: ModelArtifacts, data: PreparedData, config: TrainConfig
) -> tuple[VectorIndex | None, Blender]:
    """The item index (as configured) and the serving blend over the model's vectors."""
    if artifacts.member_vectors is None or artifacts.item_vectors is None:
        raise DataError(
            f"model {artifacts.kind!r} exported no member and item vectors; the blend needs them"
        )
    index = build_vector_index(artifacts.item_vectors, config.bundle.item_index)
    blender = Blender(
        artifacts.member_vectors,
        artifacts.item_vectors,
        data.history,
        data.trending,
        config.blend.weights,
        index=index,
    )
    return index, blender


def build_vector_index(vectors: Any, kind: str) -> VectorIndex | None:
    """A FAISS index of ``kind`` (auto | exact | hnsw) over ``vectors``, or None for "none"."""
    if kind == "none":
        return None
    return build_index(vectors, IndexConfig(kind=kind))  # type: ignore[arg-type]


def headline_k(metric: str) -> int:
    """K of a metric name such as ``ndcg@10/all``."""
    return int(metric.partition("@")[2].partition("/")[0])


def item_attributes(items: pl.DataFrame) -> dict[str, npt.NDArray[Any]]:
    """Category, min_tier ("" = every tier) and active per item, in the bundle's item order
    (items sorted by id, as :func:`training.data.prepare` maps them)."""
    ordered = items.sort(Col.ITEM_ID)
    return {
        "item_category": ordered.get_column(Col.CATEGORY).fill_null("").to_numpy().astype(np.str_),
        "item_min_tier": ordered.get_column(Col.MIN_TIER).fill_null("").to_numpy().astype(np.str_),
        "item_active": ordered.get_column(Col.ACTIVE).fill_null(True).to_numpy().astype(np.bool_),
    }


__all__ = [
    "build_blender",
    "build_vector_index",
    "fit_config",
    "fit_model",
    "headline_k",
    "item_attributes",
]
