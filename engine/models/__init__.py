"""Recommendation models behind one small interface, chosen by name.

    from engine.models import create_model, TrainData
    model = create_model("als", factors=64, iterations=15)
    model.fit(TrainData(confidence=matrix))
    artifacts = model.export()

Each kind lives in its own module, imported only when that kind is created: importing this package
loads neither implicit nor LightFM (serving only needs :class:`ModelArtifacts`).

Kinds: ``als``, ``bpr`` (implicit), ``lightfm`` (LightFM hybrid with features, cold start),
``item_knn`` (implicit BM25/cosine), ``popularity``, ``popular_in_tier``, ``buy_again``,
``ease`` (EASE closed-form item x item regression) and ``personal_knn`` (own plus neighbours'
normalised purchase frequencies, TIFU-KNN style). The last two score with a member x item matrix
and export it as member and item vectors (exact, or its best rank-``dims`` approximation:
:mod:`engine.models.factor_form`).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from engine.errors import InvalidInputError
from engine.models.base import (
    ColdStartRecommender,
    ModelArtifacts,
    NotFittedError,
    ParamValue,
    Recommender,
    TrainData,
)

#: kind -> (module, model class, params class)
_KINDS: dict[str, tuple[str, str, str]] = {
    "als": ("engine.models.als", "ALSModel", "ALSParams"),
    "bpr": ("engine.models.bpr", "BPRModel", "BPRParams"),
    "lightfm": ("engine.models.lightfm_hybrid", "LightFMModel", "LightFMParams"),
    "item_knn": ("engine.models.item_knn", "ItemKNNModel", "ItemKNNParams"),
    "popularity": ("engine.models.popularity", "PopularityModel", "PopularityParams"),
    "popular_in_tier": ("engine.models.popularity", "TierPopularityModel", "TierPopularityParams"),
    "buy_again": ("engine.models.buy_again", "BuyAgainModel", "BuyAgainParams"),
    "ease": ("engine.models.ease", "EASEModel", "EASEParams"),
    "personal_knn": ("engine.models.personal_knn", "PersonalKNNModel", "PersonalKNNParams"),
}

MODEL_KINDS: tuple[str, ...] = tuple(_KINDS)


def create_model(kind: str, **params: ParamValue) -> Recommender:
    """A new, untrained model of ``kind`` with the given hyperparameters.

    Raises :class:`~engine.errors.InvalidInputError` for an unknown kind, an unknown parameter
    name (listing the valid ones) or an invalid value.
    """
    if kind not in _KINDS:
        raise InvalidInputError(
            f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}"
        )
    module_name, model_name, params_name = _KINDS[kind]
    module = importlib.import_module(module_name)
    params_type: Any = getattr(module, params_name)
    allowed = [f.name for f in dataclasses.fields(params_type)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InvalidInputError(
            f"model {kind!r}: unknown parameter(s) {', '.join(unknown)}; "
            f"valid: {', '.join(allowed) or '(none)'}"
        )
    model: Recommender = getattr(module, model_name)(params_type(**params))
    return model


__all__ = [
    "MODEL_KINDS",
    "ColdStartRecommender",
    "ModelArtifacts",
    "NotFittedError",
    "Recommender",
    "TrainData",
    "create_model",
]
