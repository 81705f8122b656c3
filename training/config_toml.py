"""The tables of a training configuration file as pydantic models (see training.config).

Each ``*Table`` model checks one table (feature_store.config_model: frozen, strict, unknown keys
are errors) and builds its frozen dataclass of training.config_schema; an absent table reads as
empty, so every default applies. :class:`TrainConfigFile` is the whole file: its validator checks
what spans tables (the model kind has vectors to blend, the tier multipliers name tiers of the
feature policy's ladder). Errors are the one :class:`ConfigError` of the code base, naming the
file and the key (``weights.tier.golden: unknown tier``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from engine.blend import BlendWeights
from engine.errors import InvalidInputError
from engine.interactions import QuantityTransform
from engine.models import MODEL_KINDS, create_model
from engine.models.base import ParamValue
from feature_store.config_model import (
    ConfigModel,
    ConfigValueError,
    Items,
    Scalar,
    Text,
    TomlDate,
    one_of,
)
from feature_store.errors import ConfigError
from feature_store.policy import load_policy
from training.config_schema import (
    VECTOR_KINDS,
    BaselineConfig,
    BlendConfig,
    BM25Config,
    BundleConfig,
    EvaluationConfig,
    IndexKind,
    ModelConfig,
    SearchConfig,
    SplitConfig,
    TagWeights,
    TrackingConfig,
    TrainConfig,
    Weighting,
    WeightsConfig,
)

#: A weight or multiplier: a number >= 0.
Weight = Annotated[float, Field(ge=0)]

_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate")


def _check_params(kind: str, params: Mapping[str, ParamValue]) -> None:
    try:
        create_model(kind, **params)
    except InvalidInputError as exc:
        raise ConfigValueError(str(exc), "params") from None


def _metric_parts(metric: str) -> tuple[str, str, str]:
    """``NAME@K/VARIANT`` split into its three parts."""
    name, _, rest = metric.partition("@")
    k, _, variant = rest.partition("/")
    return name, k, variant


# -- the tables ------------------------------------------------------------------------------


class SplitTable(ConfigModel):
    cutoff: TomlDate | None = None
    test_end: TomlDate | None = None
    test_days: int = Field(default=30, ge=1)
    validation_days: int = Field(default=0, ge=0)
    as_of: TomlDate | None = None
    refit: bool = True
    warm_refit: bool = True

    @model_validator(mode="after")
    def _windows_in_order(self) -> Self:
        cutoff, test_end, as_of = self.cutoff, self.test_end, self.as_of
        if cutoff is not None and test_end is not None and test_end < cutoff:
            raise ConfigValueError(f"{test_end} is before the cutoff {cutoff}", "test_end")
        if cutoff is None and test_end is not None:
            raise ConfigValueError("needs a cutoff too (or give only test_days)", "test_end")
        if as_of is not None and cutoff is not None and as_of <= cutoff:
            raise ConfigValueError(f"{as_of} is not after the cutoff {cutoff}", "as_of")
        return self

    def build(self) -> SplitConfig:
        return SplitConfig(**dict(self))


class FeaturesTable(ConfigModel):
    #: the feature policy TOML of the snapshot (relative to the config file)
    policy: Text | None = None

    def policy_path(self, config_path: Path | None) -> Path | None:
        """The policy file, a relative one resolved beside the config file (None: the
        current directory)."""
        if self.policy is None:
            return None
        policy = Path(self.policy)
        if policy.is_absolute():
            return policy
        return ((config_path.parent if config_path else Path()) / policy).resolve()


class TagWeightsTable(ConfigModel):
    boost: Weight = 1.0
    category_prefix: str = ""
    multipliers: dict[str, Weight] = Field(default_factory=dict)

    def build(self) -> TagWeights:
        return TagWeights(
            boost=self.boost,
            category_prefix=self.category_prefix,
            multipliers=MappingProxyType(dict(self.multipliers)),
        )


class BM25Table(ConfigModel):
    enabled: bool = False
    k1: float = Field(default=100.0, ge=0)
    b: float = Field(default=0.8, ge=0, le=1)

    def build(self) -> BM25Config:
        return BM25Config(**dict(self))


class WeightsTable(ConfigModel):
    quantity: Annotated[str, one_of([q.value for q in QuantityTransform])] = "log1p"
    amount: Weight = 0.0
    half_life_days: float = Field(default=0.0, ge=0)
    #: tier name -> multiplier (the names are checked against the ladder by TrainConfigFile)
    tier: dict[str, Weight] = Field(default_factory=dict)
    tags: TagWeightsTable = Field(default_factory=TagWeightsTable)
    bm25: BM25Table = Field(default_factory=BM25Table)

    def build(self) -> WeightsConfig:
        return WeightsConfig(
            quantity=self.quantity,
            amount=self.amount,
            half_life_days=self.half_life_days,
            tier=MappingProxyType(dict(self.tier)),
            tags=self.tags.build(),
            bm25=self.bm25.build(),
        )


class ModelTable(ConfigModel):
    kind: Annotated[str, one_of(MODEL_KINDS)] = "als"
    params: dict[str, Scalar] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _params_fit_the_kind(self) -> Self:
        _check_params(self.kind, self.params)
        return self

    def build(self) -> ModelConfig:
        return ModelConfig(kind=self.kind, params=MappingProxyType(dict(self.params)))


class BlendTable(ConfigModel):
    embedding: Weight = 1.0
    buy_again: Weight = 0.75
    trending: Weight = 0.4
    candidates: int = Field(default=200, ge=0)
    trending_candidates: int = Field(default=100, ge=0)
    buy_again_half_life_days: float = Field(default=365.0, ge=0)
    trending_days: int = Field(default=30, ge=1)

    def build(self) -> BlendConfig:
        return BlendConfig(
            weights=BlendWeights(
                embedding=self.embedding,
                buy_again=self.buy_again,
                trending=self.trending,
                candidates=self.candidates,
                trending_candidates=self.trending_candidates,
            ),
            buy_again_half_life_days=self.buy_again_half_life_days,
            trending_days=self.trending_days,
        )


class EvaluationTable(ConfigModel):
    ks: Items[Annotated[int, Field(ge=1)]] = Field(default=(5, 10, 20), min_length=1)
    max_members: int = Field(default=100_000, ge=1)
    few_purchases: int = Field(default=3, ge=0)
    seed: int = Field(default=0, ge=0)
    metric: Text = "ndcg@10/all"
    served_share: float = Field(default=0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _metric_is_evaluated(self) -> Self:
        name, k, variant = _metric_parts(self.metric)
        if (
            name not in _METRICS
            or not k.isdigit()
            or int(k) not in self.ks
            or variant
            not in (
                "all",
                "new",
            )
        ):
            raise ConfigValueError(
                f"{self.metric!r} is not NAME@K/VARIANT with NAME in {', '.join(_METRICS)}, "
                f"K in ks {sorted(set(self.ks))} and VARIANT all or new (e.g. ndcg@10/all)",
                "metric",
            )
        return self

    def build(self) -> EvaluationConfig:
        return EvaluationConfig(**{**dict(self), "ks": tuple(sorted(set(self.ks)))})


class BaselineTable(ConfigModel):
    name: Text
    kind: Annotated[str, one_of(MODEL_KINDS)]
    params: dict[str, Scalar] = Field(default_factory=dict)
    weighting: Weighting = "binary"

    @model_validator(mode="after")
    def _a_model_beside_the_blend(self) -> Self:
        _check_params(self.kind, self.params)
        if self.name == "blend":
            raise ConfigValueError("'blend' names the main model; choose another name", "name")
        return self

    def build(self) -> BaselineConfig:
        return BaselineConfig(
            name=self.name,
            kind=self.kind,
            params=MappingProxyType(dict(self.params)),
            weighting=self.weighting,
        )


class BundleTable(ConfigModel):
    member_index: IndexKind = "exact"
    item_index: IndexKind = "auto"
    precomputed_candidates: int = Field(default=50, ge=0)
    precomputed_per_category: int = Field(default=10, ge=0)

    def build(self) -> BundleConfig:
        return BundleConfig(**dict(self))


class TrackingTable(ConfigModel):
    enabled: bool = True
    experiment: Text = "member-recs"
    # the key is `register` (a name pydantic's models already have)
    register_: bool = Field(default=True, alias="register")
    promote: bool = True

    def build(self) -> TrackingConfig:
        return TrackingConfig(
            enabled=self.enabled,
            experiment=self.experiment,
            register=self.register_,
            promote=self.promote,
        )


def _objective_metric(metric: str) -> str:
    name, k, variant = _metric_parts(metric)
    if name not in _METRICS or not k.isdecimal() or variant not in ("all", "new"):
        raise ValueError(f"{metric!r} is not NAME@K/VARIANT (e.g. ndcg@10/all)")
    return metric


class SearchTable(ConfigModel):
    budget_minutes: float = Field(default=5.0, ge=0)
    max_trials: int = Field(default=0, ge=0)
    seed: int = 0
    families: Items[Annotated[str, one_of(VECTOR_KINDS)]] = Field(
        default=("als", "ease", "personal_knn", "bpr"), min_length=1
    )
    objective: Items[Annotated[str, AfterValidator(_objective_metric)]] = Field(
        default=("ndcg@10/all", "ndcg@10/new"), min_length=1
    )

    def build(self) -> SearchConfig:
        return SearchConfig(**dict(self))


class TrainConfigFile(ConfigModel):
    """A training configuration file (training/configs/default.toml shows every table).

    Validated with the context ``path`` (the file, for a relative policy path) and ``tiers``
    (the tier ladder; None: the ladder of the file's feature policy, which is then loaded)."""

    name: Text = "default"
    split: SplitTable = Field(default_factory=SplitTable)
    features: FeaturesTable = Field(default_factory=FeaturesTable)
    weights: WeightsTable = Field(default_factory=WeightsTable)
    model: ModelTable = Field(default_factory=ModelTable)
    blend: BlendTable = Field(default_factory=BlendTable)
    evaluation: EvaluationTable = Field(default_factory=EvaluationTable)
    baselines: Items[BaselineTable] = ()
    bundle: BundleTable = Field(default_factory=BundleTable)
    tracking: TrackingTable = Field(default_factory=TrackingTable)
    search: SearchTable = Field(default_factory=SearchTable)

    @field_validator("baselines")
    @classmethod
    def _distinct_names(cls, baselines: tuple[BaselineTable, ...]) -> tuple[BaselineTable, ...]:
        for i, baseline in enumerate(baselines):
            if any(baseline.name == other.name for other in baselines[:i]):
                raise ConfigValueError(f"baseline {baseline.name!r} is defined twice", i, "name")
        return baselines

    @model_validator(mode="after")
    def _across_tables(self, info: ValidationInfo) -> Self:
        if self.model.kind not in VECTOR_KINDS:
            raise ConfigValueError(
                f"{self.model.kind!r} has no member and item vectors to blend; use one of "
                f"{', '.join(VECTOR_KINDS)} (evaluate the others as [[baselines]])",
                "model",
                "kind",
            )
        context = info.context or {}
        ladder = context.get("tiers")
        if ladder is None:
            policy = self.features.policy_path(context.get("path"))
            try:
                ladder = load_policy(policy).tiers.names
            except ConfigError as exc:
                raise ConfigValueError(str(exc), "features", "policy") from None
        for tier in self.weights.tier:
            if tier not in ladder:
                raise ConfigValueError(
                    f"unknown tier (the ladder is {', '.join(ladder)})", "weights", "tier", tier
                )
        return self

    def build(self, path: Path) -> TrainConfig:
        return TrainConfig(
            name=self.name,
            source=path,
            split=self.split.build(),
            policy=self.features.policy_path(path),
            weights=self.weights.build(),
            model=self.model.build(),
            blend=self.blend.build(),
            evaluation=self.evaluation.build(),
            baselines=tuple(b.build() for b in self.baselines),
            bundle=self.bundle.build(),
            tracking=self.tracking.build(),
            search=self.search.build(),
        )


__all__ = [
    "BM25Table",
    "BaselineTable",
    "BlendTable",
    "BundleTable",
    "ConfigError",
    "EvaluationTable",
    "FeaturesTable",
    "ModelTable",
    "SearchTable",
    "SplitTable",
    "TagWeightsTable",
    "TrackingTable",
    "TrainConfigFile",
    "WeightsTable",
]
