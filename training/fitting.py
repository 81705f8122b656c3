"""Fitting one configuration: the model on its confidence matrix, then the serving blend over
its vectors. Shared by the automatic search (every trial), the test-window evaluation, the
refit that ships, the ablation and the offline audience evaluation, so all of them fit and
rank the same way.

The refit may start ALS from the evaluated model's factors (:func:`warm_refit_start`, ``[split]
warm_refit``): the refit's matrix holds the evaluated model's members and items plus the
newcomers of the test window, so the known ones start where the evaluated fit left them and
:func:`warm_iterations` sweeps replace the configured count."""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from engine.blend import Blender
from engine.index import IndexConfig, VectorIndex, build_index
from engine.models import ModelArtifacts, TrainData, create_model
from engine.models.als import ALSModel, ALSParams, ALSWarmStart
from feature_store.errors import DataError
from feature_store.schema import Col
from training.config import TrainConfig
from training.data import PreparedData, SnapshotFrames, hybrid_features

#: the warm refit's share of the configured ALS sweeps (see :func:`warm_iterations`)
WARM_SHARE: Final[float] = 1 / 3
#: the warm refit runs at least this many sweeps
WARM_MIN_ITERATIONS: Final[int] = 2


def fit_model(
    kind: str,
    params: dict[str, Any],
    confidence: sp.csr_matrix,
    data: PreparedData,
    snapshot: SnapshotFrames,
    warm: ALSWarmStart | None = None,
) -> ModelArtifacts:
    """Fit model ``kind`` on the confidence matrix (LightFM also on the snapshot's member and
    item features) and export its vectors; ``warm`` (ALS only) is where the fit starts."""
    member_features = item_features = None
    if kind == "lightfm":
        member_features, item_features = hybrid_features(snapshot, data)
    model = create_model(kind, **params)
    train = TrainData(
        confidence=confidence,
        member_features=member_features,
        item_features=item_features,
        member_tiers=data.members.tier,
        n_tiers=len(data.tiers),
    )
    if warm is None:
        model.fit(train)
    elif isinstance(model, ALSModel):
        model.fit(train, warm=warm)
    else:
        raise DataError(f"model {kind!r} cannot start from previous factors (ALS only)")
    return model.export()


def fit_config(
    config: TrainConfig,
    data: PreparedData,
    snapshot: SnapshotFrames,
    warm: ALSWarmStart | None = None,
) -> ModelArtifacts:
    """The configured model fitted on the configured confidences of ``data`` (from ``warm``'s
    factors when given)."""
    confidence = data.confidence(config.weights)
    params = dict(config.model.params)
    return fit_model(config.model.kind, params, confidence, data, snapshot, warm)


def warm_iterations(iterations: int) -> int:
    """ALS sweeps of a warm refit for a configured count: ``max(2, ceil(iterations / 3))``
    (15 -> 5), never more than configured. Measured in docs/evaluation.md ("Warm refit"):
    on the validation window this start costs no NDCG@10 against a cold fit of all sweeps."""
    return min(iterations, max(WARM_MIN_ITERATIONS, math.ceil(iterations * WARM_SHARE)))


def warm_refit_start(
    config: TrainConfig,
    previous: ModelArtifacts,
    previous_data: PreparedData,
    data: PreparedData,
) -> ALSWarmStart | None:
    """The start of a warm ALS fit of ``config`` on ``data`` from ``previous`` (fitted on
    ``previous_data``), its members and items matched by external id; None when the model is
    not ALS or ``previous`` has no factors of the configured width (then fit cold)."""
    if config.model.kind != "als" or previous.kind != "als":
        return None
    members, items = previous.member_vectors, previous.item_vectors
    if members is None or items is None:
        return None
    params = ALSParams(**config.model.params)  # type: ignore[arg-type]
    if members.shape[1] != params.factors or items.shape[1] != params.factors:
        return None
    return ALSWarmStart(
        member_vectors=members,
        item_vectors=items,
        member_rows=previous_data.member_ids.lookup(data.member_ids.ids),
        item_rows=previous_data.item_ids.lookup(data.item_ids.ids),
        iterations=warm_iterations(params.iterations),
    )


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
    "warm_iterations",
    "warm_refit_start",
]
