"""The training configuration's values: frozen dataclasses with their defaults.

Read from TOML by training.config (:func:`training.config.load_config`; the file's tables are
checked by the pydantic models of training.config_toml), which re-exports every name of this
module; docs/evaluation.md describes the evaluation keys.
:meth:`TrainConfig.params` flattens everything (every weight included) into the dotted names
logged to MLflow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

from engine.blend import BlendWeights
from engine.interactions import InteractionWeights, QuantityTransform
from engine.models.base import ParamValue

#: How a baseline's training lines are weighted.
Weighting = Literal["weighted", "binary"]
WEIGHTINGS: Final[tuple[str, ...]] = get_args(Weighting)
#: The nearest-neighbour index of the bundle's member and item vectors.
IndexKind = Literal["auto", "exact", "hnsw", "none"]
INDEX_KINDS: Final[tuple[str, ...]] = get_args(IndexKind)
#: Model kinds whose export has member and item vectors (what the blend needs).
VECTOR_KINDS: Final[tuple[str, ...]] = ("als", "bpr", "lightfm", "ease", "personal_knn")


@dataclass(frozen=True, slots=True)
class SplitConfig:
    """The temporal split. Training sees purchases strictly before ``cutoff`` 00:00; the test
    window runs from ``cutoff`` 00:00 through the end of ``test_end`` (inclusive). Without a
    cutoff the test window is the last ``test_days`` days of the data; without ``test_end`` it
    is ``test_days`` days long."""

    cutoff: date | None = None
    test_end: date | None = None
    test_days: int = 30
    #: length of the validation window just before the test cutoff (0: as long as the test
    #: window); every choice of the automatic mode is made on it, never on the test window
    validation_days: int = 0
    #: the refit (the shipped model) learns from purchases before this date (None: the day
    #: after the last purchase)
    as_of: date | None = None
    #: refit the chosen configuration on all purchases before ``as_of`` and ship that model
    #: (False ships the model evaluated on the test window, for reproduction)
    refit: bool = True
    #: start an ALS refit from the evaluated model's factors (matched by id; newcomers get the
    #: usual seeded init) with a third of the sweeps (training.fitting.warm_iterations);
    #: False refits from scratch. Other model families always refit from scratch.
    warm_refit: bool = True


@dataclass(frozen=True, slots=True)
class BM25Config:
    """Okapi BM25 re-weighting of the confidence matrix (engine.interactions.bm25_weight)."""

    enabled: bool = False
    k1: float = 100.0
    b: float = 0.8


@dataclass(frozen=True, slots=True)
class TagWeights:
    """Boosts of purchase lines whose item matches one of the member's tags.

    A member tag matches an item when it equals one of the item's tags, its category, or
    ``category_prefix + category`` (e.g. ``loves-beauty`` with prefix ``loves-``). A matching
    line is multiplied by the largest multiplier among its matching tags: the tag's own entry
    in ``multipliers``, else ``boost``.
    """

    boost: float = 1.0
    category_prefix: str = ""
    multipliers: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def active(self) -> bool:
        return self.boost != 1.0 or any(m != 1.0 for m in self.multipliers.values())


@dataclass(frozen=True, slots=True)
class WeightsConfig:
    """How purchase lines become confidences (engine.interactions).

    ``half_life_days = 0`` disables recency decay; ``tier`` maps tier names to multipliers
    (tiers not listed weigh 1) and is applied with the member's tier at purchase time.
    """

    quantity: str = "log1p"
    amount: float = 0.0
    half_life_days: float = 0.0
    tier: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    tags: TagWeights = field(default_factory=TagWeights)
    bm25: BM25Config = field(default_factory=BM25Config)

    def interaction_weights(self, tiers: tuple[str, ...]) -> InteractionWeights:
        """The engine's weights, tier multipliers in ladder order (tag boosts go per line)."""
        multipliers = tuple(self.tier.get(t, 1.0) for t in tiers) if self.tier else ()
        return InteractionWeights(
            quantity=QuantityTransform(self.quantity),
            amount_weight=self.amount,
            half_life_days=self.half_life_days or None,
            tier_multipliers=multipliers,
        )


@dataclass(frozen=True, slots=True)
class ModelConfig:
    kind: str = "als"
    params: Mapping[str, ParamValue] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class BlendConfig:
    """The retail blend (engine.blend) and how its inputs are prepared.

    ``buy_again_half_life_days`` weights the lines of the buy-again history (0: no decay);
    ``trending_days`` is the window of the trending prior (distinct recent buyers).
    """

    weights: BlendWeights = field(default_factory=BlendWeights)
    buy_again_half_life_days: float = 365.0
    trending_days: int = 30


@dataclass(frozen=True, slots=True)
class BaselineConfig:
    """A model evaluated beside the blend. ``weighting = "binary"`` fits it on 1 per bought
    (member, item) ("plain" defaults); ``"weighted"`` on the configured confidences."""

    name: str
    kind: str
    params: Mapping[str, ParamValue] = field(default_factory=lambda: MappingProxyType({}))
    weighting: str = "binary"


@dataclass(frozen=True, slots=True)
class EvaluationConfig:
    ks: tuple[int, ...] = (5, 10, 20)
    #: evaluate at most this many test members (a seeded uniform sample beyond it)
    max_members: int = 100_000
    #: members with at most this many orders before the cutoff form the "few purchases" group
    few_purchases: int = 3
    seed: int = 0
    #: the headline metric (the promotion gate compares it): name@k/variant
    metric: str = "ndcg@10/all"
    #: the served lists' diversity cap, ceil(share * k) items of one category (the service's
    #: RECSYS_MAX_PER_CATEGORY), for the "served" row of the report
    served_share: float = 0.5


@dataclass(frozen=True, slots=True)
class BundleConfig:
    member_index: str = "exact"
    item_index: str = "auto"
    #: Each member's top-N blended items stored for serving (0: serving searches every time).
    precomputed_candidates: int = 50
    #: At most this many items of one category per precomputed list (0: no cap), so serving's
    #: diversity cap rarely exhausts a list (it covers k up to this / the serving share).
    precomputed_per_category: int = 10


@dataclass(frozen=True, slots=True)
class TrackingConfig:
    enabled: bool = True
    experiment: str = "member-recs"
    register: bool = True
    promote: bool = True


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """The automatic mode (``recsys train`` without ``--config``): what is searched on the
    validation window and for how long (training/search.py)."""

    #: wall-clock budget of the search (trials started after it are not run)
    budget_minutes: float = 5.0
    #: stop after this many trials even within the budget (0: only the budget stops it)
    max_trials: int = 0
    seed: int = 0
    #: model families tried (vector kinds; EASE only where the catalogue fits its memory)
    families: tuple[str, ...] = ("als", "ease", "personal_knn", "bpr")
    #: metrics summed into the objective, each NAME@K/VARIANT
    objective: tuple[str, ...] = ("ndcg@10/all", "ndcg@10/new")


@dataclass(frozen=True, slots=True)
class TrainConfig:
    name: str = "default"
    source: Path | None = None
    split: SplitConfig = field(default_factory=SplitConfig)
    policy: Path | None = None
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    baselines: tuple[BaselineConfig, ...] = ()
    bundle: BundleConfig = field(default_factory=BundleConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def params(self) -> dict[str, ParamValue]:
        """Every setting as flat dotted names (what MLflow logs as params)."""
        flat: dict[str, ParamValue] = {"name": self.name}
        split = self.split
        flat["split.cutoff"] = split.cutoff.isoformat() if split.cutoff else "auto"
        flat["split.test_end"] = split.test_end.isoformat() if split.test_end else "auto"
        flat["split.test_days"] = split.test_days
        flat["split.validation_days"] = split.validation_days or "auto"
        flat["split.as_of"] = split.as_of.isoformat() if split.as_of else "auto"
        flat["split.refit"] = split.refit
        flat["split.warm_refit"] = split.warm_refit
        flat["features.policy"] = str(self.policy) if self.policy else "default"
        w = self.weights
        flat["weights.quantity"] = w.quantity
        flat["weights.amount"] = w.amount
        flat["weights.half_life_days"] = w.half_life_days
        for tier, value in w.tier.items():
            flat[f"weights.tier.{tier}"] = value
        flat["weights.tags.boost"] = w.tags.boost
        flat["weights.tags.category_prefix"] = w.tags.category_prefix
        for tag, value in w.tags.multipliers.items():
            flat[f"weights.tags.multipliers.{tag}"] = value
        flat["weights.bm25.enabled"] = w.bm25.enabled
        flat["weights.bm25.k1"] = w.bm25.k1
        flat["weights.bm25.b"] = w.bm25.b
        flat["model.kind"] = self.model.kind
        for key, param in self.model.params.items():
            flat[f"model.params.{key}"] = param
        for key, weight in self.blend.weights.as_dict().items():
            flat[f"blend.{key}"] = weight
        flat["blend.buy_again_half_life_days"] = self.blend.buy_again_half_life_days
        flat["blend.trending_days"] = self.blend.trending_days
        e = self.evaluation
        flat["evaluation.ks"] = ",".join(map(str, e.ks))
        flat["evaluation.max_members"] = e.max_members
        flat["evaluation.few_purchases"] = e.few_purchases
        flat["evaluation.seed"] = e.seed
        flat["evaluation.metric"] = e.metric
        flat["baselines"] = ",".join(b.name for b in self.baselines) or "none"
        flat["bundle.member_index"] = self.bundle.member_index
        flat["bundle.item_index"] = self.bundle.item_index
        return flat

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some top-level fields replaced (e.g. for ablations)."""
        return dataclasses.replace(self, **changes)
