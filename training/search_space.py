"""What the automatic mode searches: model families with their hyperparameters, interaction
weights and the blend, as Optuna define-by-run samples turned into training-config values.

A trial's *values* are dotted training-config keys (``model.kind``, ``model.params.factors``,
``weights.half_life_days``, ``blend.buy_again``, ...), applied to the starting config's TOML by
:func:`apply_values`, so every trial is an ordinary config: checked by the config parser, and
written out as ``best_config.toml`` for ``recsys train --config`` to reproduce.

Baselines are candidates like any trial (:data:`BASELINE_TRIALS`): "the member's own most
frequent items, then the best-sellers" and plain implicit ALS with textbook settings, each
expressed as a blend configuration so that the winner, whatever it is, ships through the same
bundle and serving path.

Tier multipliers are searched only where the data has more than one tier, tag boosts only
where a member tag matches an item; elsewhere they are inert and the report says so. The tier
segment (``[tier_segment]``, training/tier_segment.py: weight 0 = off, 0.25, 0.5, 1; factors 8,
16, 32) is searched where the data has more than one tier once the training config parses that
table (:data:`TIER_SEGMENT_CONFIGURABLE`); the baseline candidates always have it off.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from training.tune_space import Scalar, with_values

#: whether the training config parses ``[tier_segment]`` (weight, tiers, factors); until it
#: does, trials neither sample nor neutralise it (see training/tier_segment.py)
TIER_SEGMENT_CONFIGURABLE: Final[bool] = False
#: the tier segment's searched values: weight (0 = off) and factors
TIER_SEGMENT_WEIGHTS: Final[tuple[float, ...]] = (0.0, 0.25, 0.5, 1.0)
TIER_SEGMENT_FACTORS: Final[tuple[int, ...]] = (8, 16, 32)

#: name -> values of the fixed baseline candidates (applied like any trial's values)
BASELINE_TRIALS: Final[dict[str, dict[str, Scalar]]] = {
    # ranked by the member's purchase count per item (no decay), then by distinct buyers over
    # the whole history; the embedding term is off (its vectors still serve audiences)
    "own_frequent_then_bestsellers": {
        "model.kind": "als",
        "model.params.factors": 32,
        "model.params.iterations": 5,
        "weights.quantity": "none",
        "weights.half_life_days": 0.0,
        "weights.bm25.enabled": False,
        "blend.embedding": 0.0,
        "blend.buy_again": 1.0,
        "blend.trending": 0.0001,
        "blend.buy_again_half_life_days": 0.0,
        "blend.trending_days": 36500,
        "blend.trending_candidates": 200,
    },
    # implicit ALS with its textbook settings on one unit per bought item, ranked alone
    "als_plain": {
        "model.kind": "als",
        "model.params.factors": 64,
        "model.params.regularization": 0.01,
        "model.params.iterations": 15,
        "model.params.alpha": 1.0,
        "weights.quantity": "none",
        "weights.half_life_days": 0.0,
        "weights.bm25.enabled": False,
        "blend.embedding": 1.0,
        "blend.buy_again": 0.0,
        "blend.trending": 0.0,
    },
}


@dataclass(frozen=True, slots=True)
class SpaceFacts:
    """What the data allows the search to vary."""

    families: tuple[str, ...]
    tiers: tuple[str, ...]
    #: the data has members in more than one tier (tier multipliers can matter)
    tiered: bool
    #: some training line's item matches a member tag (tag boosts can matter)
    tagged: bool


def sample(trial: Any, facts: SpaceFacts) -> dict[str, Scalar]:
    """One trial's config values, sampled with Optuna's define-by-run API."""
    family = str(trial.suggest_categorical("family", list(facts.families)))
    values: dict[str, Scalar] = {"model.kind": family}
    values.update(_model_values(trial, family))
    values["weights.quantity"] = trial.suggest_categorical("quantity", ["none", "log1p"])
    decay = trial.suggest_categorical("decay", [False, True])
    values["weights.half_life_days"] = (
        round(trial.suggest_float("half_life_days", 7.0, 730.0, log=True), 2) if decay else 0.0
    )
    bm25 = trial.suggest_categorical("bm25", [False, True])
    values["weights.bm25.enabled"] = bm25
    if bm25:
        values["weights.bm25.k1"] = round(trial.suggest_float("bm25_k1", 1.0, 500.0, log=True), 3)
        values["weights.bm25.b"] = round(trial.suggest_float("bm25_b", 0.2, 1.0), 3)
    if facts.tiered:
        slope = trial.suggest_float("tier_slope", 0.0, 3.0)
        last = max(1, len(facts.tiers) - 1)
        for position, tier in enumerate(facts.tiers):
            values[f"weights.tier.{tier}"] = round(1.0 + slope * position / last, 4)
    if facts.tagged:
        values["weights.tags.boost"] = round(trial.suggest_float("tag_boost", 1.0, 4.0), 3)
    values.update(_tier_segment_values(trial, facts))
    values["blend.embedding"] = 1.0
    values["blend.buy_again"] = round(trial.suggest_float("buy_again", 0.01, 100.0, log=True), 4)
    values["blend.trending"] = round(trial.suggest_float("trending", 0.0, 2.0), 4)
    values["blend.candidates"] = trial.suggest_categorical("candidates", [100, 200, 400])
    values["blend.buy_again_half_life_days"] = float(
        trial.suggest_categorical("buy_again_half_life_days", [0.0, 30.0, 90.0, 365.0])
    )
    values["blend.trending_days"] = trial.suggest_categorical("trending_days", [7, 14, 30, 90])
    return values


#: Optuna parameters of each family's first trial: textbook hyperparameters with a neutral
#: blend, so every family is tried once before the sampler narrows the search
_COMMON_START: Final[dict[str, Any]] = {
    "quantity": "log1p",
    "decay": False,
    "bm25": True,
    "bm25_k1": 100.0,
    "bm25_b": 0.8,
    "tier_slope": 0.0,
    "tag_boost": 1.0,
    "buy_again": 1.0,
    "trending": 0.4,
    "candidates": 200,
    "buy_again_half_life_days": 365.0,
    "trending_days": 30,
}
_FAMILY_START: Final[dict[str, dict[str, Any]]] = {
    "als": {"als.factors": 64, "als.regularization": 0.05, "als.alpha": 1.0, "als.iterations": 15},
    "bpr": {
        "bpr.factors": 64,
        "bpr.learning_rate": 0.01,
        "bpr.regularization": 0.01,
        "bpr.iterations": 100,
    },
    "ease": {"ease.regularization": 250.0, "ease.dims": 256},
    "personal_knn": {"personal_knn.neighbours": 100, "personal_knn.alpha": 0.7},
    "lightfm": {"lightfm.components": 32, "lightfm.epochs": 15},
}


def starting_points(facts: SpaceFacts) -> list[dict[str, Any]]:
    """One first trial per family (Optuna parameters), in the configured family order."""
    points = []
    for family in facts.families:
        point = {"family": family, **_COMMON_START, **_FAMILY_START.get(family, {})}
        if not facts.tiered:
            point.pop("tier_slope")
        if not facts.tagged:
            point.pop("tag_boost")
        if _searches_tier_segment(facts):
            # the measured default (docs/synthetic_data.md, "Tier-specific taste")
            point.update(tier_segment_weight=0.5, tier_segment_factors=16)
        points.append(point)
    return points


def _searches_tier_segment(facts: SpaceFacts) -> bool:
    return TIER_SEGMENT_CONFIGURABLE and facts.tiered


def _tier_segment_values(trial: Any, facts: SpaceFacts) -> dict[str, Scalar]:
    """The tier segment's weight (0: off) and, when on, its factors; nothing where the data
    has one tier or the config cannot hold them yet."""
    if not _searches_tier_segment(facts):
        return {}
    weight = float(trial.suggest_categorical("tier_segment_weight", list(TIER_SEGMENT_WEIGHTS)))
    values: dict[str, Scalar] = {"tier_segment.weight": weight}
    if weight > 0:
        factors = trial.suggest_categorical("tier_segment_factors", list(TIER_SEGMENT_FACTORS))
        values["tier_segment.factors"] = int(factors)
    return values


def _model_values(trial: Any, family: str) -> dict[str, Scalar]:
    p = f"{family}."
    if family == "als":
        return {
            "model.params.factors": trial.suggest_categorical(p + "factors", [32, 64, 128]),
            "model.params.regularization": round(
                trial.suggest_float(p + "regularization", 1e-3, 10.0, log=True), 5
            ),
            "model.params.alpha": round(trial.suggest_float(p + "alpha", 0.1, 50.0, log=True), 4),
            "model.params.iterations": trial.suggest_int(p + "iterations", 8, 30),
        }
    if family == "bpr":
        return {
            "model.params.factors": trial.suggest_categorical(p + "factors", [32, 64, 128]),
            "model.params.learning_rate": round(
                trial.suggest_float(p + "learning_rate", 0.005, 0.1, log=True), 5
            ),
            "model.params.regularization": round(
                trial.suggest_float(p + "regularization", 1e-4, 0.1, log=True), 6
            ),
            "model.params.iterations": trial.suggest_int(p + "iterations", 50, 300, step=50),
        }
    if family == "ease":
        # the truncated serving form is faster to search and, measured on Online Retail's
        # validation window, no worse than the exact one (docs/evaluation.md)
        return {
            "model.params.regularization": round(
                trial.suggest_float(p + "regularization", 1.0, 5000.0, log=True), 3
            ),
            "model.params.dims": trial.suggest_categorical(p + "dims", [128, 256, 512]),
        }
    if family == "personal_knn":
        return {
            "model.params.neighbours": trial.suggest_int(p + "neighbours", 10, 500, log=True),
            "model.params.alpha": round(trial.suggest_float(p + "alpha", 0.0, 1.0), 4),
        }
    if family == "lightfm":
        return {
            "model.params.components": trial.suggest_categorical(p + "components", [16, 32, 64]),
            "model.params.epochs": trial.suggest_int(p + "epochs", 5, 30, step=5),
        }
    raise ValueError(f"no search space for model family {family!r}")


def apply_values(
    raw: Mapping[str, Any], values: Mapping[str, Scalar], *, neutral: bool = False
) -> dict[str, Any]:
    """The starting TOML with a trial's values: the model table is rebuilt from the values
    (another family's hyperparameters would not parse), keeping only the starting config's
    ``random_state`` and ``num_threads`` where the family has them. ``neutral`` (baselines)
    also drops the starting config's tier multipliers and tag boosts and turns the tier
    segment off."""
    out = copy.deepcopy(dict(raw))
    if neutral:
        weights = out.setdefault("weights", {})
        if isinstance(weights, dict):
            weights.pop("tier", None)
            weights.pop("tags", None)
        if TIER_SEGMENT_CONFIGURABLE:
            out["tier_segment"] = {"weight": 0.0}
    model = out.get("model")
    kept: dict[str, Any] = {}
    if isinstance(model, dict) and isinstance(model.get("params"), dict):
        kept = {k: v for k, v in model["params"].items() if k in ("random_state", "num_threads")}
    kind = values.get("model.kind")
    if kind is not None and (not isinstance(model, dict) or model.get("kind") != kind):
        out["model"] = {"kind": kind, "params": _threads_and_seed(str(kind), kept)}
    # tier multipliers of a trial replace the starting ones, never mix with them
    if any(key.startswith("weights.tier.") for key in values):
        weights = out.setdefault("weights", {})
        if isinstance(weights, dict):
            weights.pop("tier", None)
    return with_values(out, values)


def _threads_and_seed(kind: str, kept: Mapping[str, Any]) -> dict[str, Any]:
    if kind in ("als", "bpr"):
        return dict(kept)
    if kind == "lightfm":
        return {k: v for k, v in kept.items() if k == "random_state"}
    return {}


__all__ = [
    "BASELINE_TRIALS",
    "TIER_SEGMENT_CONFIGURABLE",
    "TIER_SEGMENT_FACTORS",
    "TIER_SEGMENT_WEIGHTS",
    "SpaceFacts",
    "apply_values",
    "sample",
    "starting_points",
]
