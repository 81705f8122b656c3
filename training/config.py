"""The training configuration: frozen dataclasses read from TOML, every value checked.

``load_config(path)`` reads a file such as ``training/configs/default.toml``; every problem
raises :class:`ConfigError` naming the file and the key (``weights.tier.golden: unknown tier``).
Unknown keys, negative weights and tiers outside the feature policy's ladder are errors, never
ignored. :meth:`TrainConfig.params` flattens everything (every weight included) into the dotted
names logged to MLflow.

Sections (docs/evaluation.md describes the evaluation keys)::

    name                  run name prefix
    [split]               cutoff, test_end (inclusive dates) or test_days
    [features]            policy: the feature policy TOML used for the snapshot
    [weights]             quantity, amount, half_life_days, [weights.tier], [weights.tags],
                          [weights.bm25]: how purchase lines become confidences
    [model]               kind and [model.params] of the embedding model
    [blend]               embedding / buy_again / trending weights and candidate sizes
    [evaluation]          ks, max_members, few_purchases, seed, metric
    [[baselines]]         name, kind, params, weighting = "weighted" | "binary"
    [bundle]              member_index, item_index
    [tracking]            experiment, register, promote
    [search]              the automatic mode: budget_minutes, max_trials, seed, families,
                          objective (training/search.py)
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from engine.blend import BlendWeights
from engine.errors import InvalidInputError
from engine.interactions import InteractionWeights, QuantityTransform
from engine.models import MODEL_KINDS, create_model
from engine.models.base import ParamValue
from feature_store.errors import ConfigError as FeatureConfigError
from feature_store.policy import load_policy

#: Packaged configurations.
CONFIG_DIR: Final[Path] = Path(__file__).parent / "configs"
DEFAULT_CONFIG: Final[Path] = CONFIG_DIR / "default.toml"

WEIGHTINGS: Final[tuple[str, ...]] = ("weighted", "binary")
INDEX_KINDS: Final[tuple[str, ...]] = ("auto", "exact", "hnsw", "none")
#: Model kinds whose export has member and item vectors (what the blend needs).
VECTOR_KINDS: Final[tuple[str, ...]] = ("als", "bpr", "lightfm", "ease", "personal_knn")


class ConfigError(FeatureConfigError):
    """A training configuration is malformed; the message names the file and the key."""


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


# -- loading ---------------------------------------------------------------------------------


def load_config(path: Path | None = None, *, tiers: tuple[str, ...] | None = None) -> TrainConfig:
    """Read and check a training config (None: the packaged default).

    Tier names are checked against ``tiers`` when given, else against the ladder of the
    config's feature policy (``[features] policy``, default: the packaged policy).
    """
    path = DEFAULT_CONFIG if path is None else Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the training config: {exc.strerror or exc}"
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, path, tiers=tiers)


def parse_config(
    data: Mapping[str, Any], path: Path, *, tiers: tuple[str, ...] | None = None
) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed TOML (``path`` is used in messages)."""
    root = _Table(path, "", data)
    name = root.string("name", "default")
    policy = _policy_path(root, path)
    ladder = tiers if tiers is not None else _ladder(policy, path)
    config = TrainConfig(
        name=name,
        source=path,
        split=_split(root.table("split")),
        policy=policy,
        weights=_weights(root.table("weights"), ladder),
        model=_model(root.table("model")),
        blend=_blend(root.table("blend")),
        evaluation=_evaluation(root.table("evaluation")),
        baselines=_baselines(root),
        bundle=_bundle(root.table("bundle")),
        tracking=_tracking(root.table("tracking")),
        search=_search(root.table("search")),
    )
    root.finish()
    if config.model.kind not in VECTOR_KINDS:
        raise root.error(
            "model.kind",
            f"{config.model.kind!r} has no member and item vectors to blend; use one of "
            f"{', '.join(VECTOR_KINDS)} (evaluate the others as [[baselines]])",
        )
    return config


def _policy_path(root: _Table, path: Path) -> Path | None:
    features = root.table("features")
    value = features.optional_string("policy")
    features.finish()
    if value is None:
        return None
    policy = Path(value)
    return policy if policy.is_absolute() else (path.parent / policy).resolve()


def _ladder(policy: Path | None, path: Path) -> tuple[str, ...]:
    try:
        return load_policy(policy).tiers.names
    except FeatureConfigError as exc:
        raise ConfigError(f"{path}: features.policy: {exc}") from exc


def _split(t: _Table) -> SplitConfig:
    cutoff = t.optional_date("cutoff")
    test_end = t.optional_date("test_end")
    test_days = t.integer("test_days", 30, minimum=1)
    validation_days = t.integer("validation_days", 0, minimum=0)
    as_of = t.optional_date("as_of")
    refit = t.boolean("refit", True)
    if cutoff is not None and test_end is not None and test_end < cutoff:
        raise t.error("test_end", f"{test_end} is before the cutoff {cutoff}")
    if cutoff is None and test_end is not None:
        raise t.error("test_end", "needs a cutoff too (or give only test_days)")
    if as_of is not None and cutoff is not None and as_of <= cutoff:
        raise t.error("as_of", f"{as_of} is not after the cutoff {cutoff}")
    t.finish()
    return SplitConfig(
        cutoff=cutoff,
        test_end=test_end,
        test_days=test_days,
        validation_days=validation_days,
        as_of=as_of,
        refit=refit,
    )


def _weights(t: _Table, tiers: tuple[str, ...]) -> WeightsConfig:
    quantity = t.string("quantity", "log1p", choices=tuple(q.value for q in QuantityTransform))
    amount = t.number("amount", 0.0, minimum=0.0)
    half_life = t.number("half_life_days", 0.0, minimum=0.0)
    tier_table = t.table("tier")
    tier: dict[str, float] = {}
    for key in tier_table.names():
        if key not in tiers:
            raise tier_table.error(key, f"unknown tier (the ladder is {', '.join(tiers)})")
        tier[key] = tier_table.number(key, minimum=0.0)
    tier_table.finish()
    tags_table = t.table("tags")
    boost = tags_table.number("boost", 1.0, minimum=0.0)
    prefix = tags_table.string("category_prefix", "", allow_empty=True)
    multipliers_table = tags_table.table("multipliers")
    multipliers = {
        key: multipliers_table.number(key, minimum=0.0) for key in multipliers_table.names()
    }
    multipliers_table.finish()
    tags_table.finish()
    bm25_table = t.table("bm25")
    bm25 = BM25Config(
        enabled=bm25_table.boolean("enabled", False),
        k1=bm25_table.number("k1", 100.0, minimum=0.0),
        b=bm25_table.number("b", 0.8, minimum=0.0, maximum=1.0),
    )
    bm25_table.finish()
    t.finish()
    return WeightsConfig(
        quantity=quantity,
        amount=amount,
        half_life_days=half_life,
        tier=MappingProxyType(tier),
        tags=TagWeights(
            boost=boost, category_prefix=prefix, multipliers=MappingProxyType(multipliers)
        ),
        bm25=bm25,
    )


def _model_params(t: _Table, kind: str, where: str) -> Mapping[str, ParamValue]:
    params_table = t.table("params")
    params: dict[str, ParamValue] = {}
    for key in params_table.names():
        value = params_table.raw(key)
        if not isinstance(value, str | int | float | bool):
            raise params_table.error(key, f"must be a string, number or boolean, got {value!r}")
        params[key] = value
    params_table.finish()
    try:
        create_model(kind, **params)
    except InvalidInputError as exc:
        raise t.error(where, str(exc)) from None
    return MappingProxyType(params)


def _model(t: _Table) -> ModelConfig:
    kind = t.string("kind", "als", choices=MODEL_KINDS)
    params = _model_params(t, kind, "params")
    t.finish()
    return ModelConfig(kind=kind, params=params)


def _blend(t: _Table) -> BlendConfig:
    weights = BlendWeights(
        embedding=t.number("embedding", 1.0, minimum=0.0),
        buy_again=t.number("buy_again", 0.75, minimum=0.0),
        trending=t.number("trending", 0.4, minimum=0.0),
        candidates=t.integer("candidates", 200, minimum=0),
        trending_candidates=t.integer("trending_candidates", 100, minimum=0),
    )
    config = BlendConfig(
        weights=weights,
        buy_again_half_life_days=t.number("buy_again_half_life_days", 365.0, minimum=0.0),
        trending_days=t.integer("trending_days", 30, minimum=1),
    )
    t.finish()
    return config


def _evaluation(t: _Table) -> EvaluationConfig:
    ks = t.integer_list("ks", (5, 10, 20), minimum=1)
    config = EvaluationConfig(
        ks=tuple(sorted(set(ks))),
        max_members=t.integer("max_members", 100_000, minimum=1),
        few_purchases=t.integer("few_purchases", 3, minimum=0),
        seed=t.integer("seed", 0, minimum=0),
        metric=t.string("metric", "ndcg@10/all"),
    )
    metric_name, _, rest = config.metric.partition("@")
    k_text, _, variant = rest.partition("/")
    valid_metrics = ("precision", "recall", "ndcg", "map", "hit_rate")
    if (
        metric_name not in valid_metrics
        or not k_text.isdigit()
        or int(k_text) not in config.ks
        or variant not in ("all", "new")
    ):
        raise t.error(
            "metric",
            f"{config.metric!r} is not NAME@K/VARIANT with NAME in {', '.join(valid_metrics)}, "
            f"K in ks {list(config.ks)} and VARIANT all or new (e.g. ndcg@10/all)",
        )
    t.finish()
    return config


def _baselines(root: _Table) -> tuple[BaselineConfig, ...]:
    out: list[BaselineConfig] = []
    for t in root.table_list("baselines"):
        name = t.string("name")
        kind = t.string("kind", choices=MODEL_KINDS)
        weighting = t.string("weighting", "binary", choices=WEIGHTINGS)
        params = _model_params(t, kind, "params")
        t.finish()
        if any(b.name == name for b in out):
            raise t.error("name", f"baseline {name!r} is defined twice")
        if name == "blend":
            raise t.error("name", "'blend' names the main model; choose another name")
        out.append(BaselineConfig(name=name, kind=kind, params=params, weighting=weighting))
    return tuple(out)


def _bundle(t: _Table) -> BundleConfig:
    config = BundleConfig(
        member_index=t.string("member_index", "exact", choices=INDEX_KINDS),
        item_index=t.string("item_index", "auto", choices=INDEX_KINDS),
        precomputed_candidates=t.integer("precomputed_candidates", 50, minimum=0),
        precomputed_per_category=t.integer("precomputed_per_category", 10, minimum=0),
    )
    t.finish()
    return config


def _tracking(t: _Table) -> TrackingConfig:
    config = TrackingConfig(
        enabled=t.boolean("enabled", True),
        experiment=t.string("experiment", "member-recs"),
        register=t.boolean("register", True),
        promote=t.boolean("promote", True),
    )
    t.finish()
    return config


def _search(t: _Table) -> SearchConfig:
    default = SearchConfig()
    families = t.string_list("families", default.families, choices=VECTOR_KINDS)
    objective = t.string_list("objective", default.objective)
    for i, metric in enumerate(objective):
        name, _, rest = metric.partition("@")
        k_text, _, variant = rest.partition("/")
        if (
            name not in ("ndcg", "recall", "map", "hit_rate", "precision")
            or not k_text.isdecimal()
            or variant not in ("all", "new")
        ):
            raise t.error(f"objective[{i}]", f"{metric!r} is not NAME@K/VARIANT (e.g. ndcg@10/all)")
    config = SearchConfig(
        budget_minutes=t.number("budget_minutes", default.budget_minutes, minimum=0.0),
        max_trials=t.integer("max_trials", 0, minimum=0),
        seed=t.integer("seed", 0),
        families=families,
        objective=objective,
    )
    t.finish()
    return config


class _Table:
    """A TOML table being read: typed getters whose errors name ``file: key``, and a final
    check that no unknown key is left."""

    def __init__(self, path: Path, prefix: str, data: object) -> None:
        self.path = path
        self.prefix = prefix
        if not isinstance(data, Mapping):
            raise self.error("", f"must be a table, got {type(data).__name__}")
        self.data: Mapping[str, object] = data
        self.used: set[str] = set()
        self.asked: set[str] = set()

    def where(self, key: str) -> str:
        if not key:
            return self.prefix or "<root>"
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.where(key)}: {message}")

    def names(self) -> list[str]:
        """The keys present (for tables whose keys are data: tiers, tags, params)."""
        return list(self.data)

    def raw(self, key: str) -> object:
        self.used.add(key)
        return self.data[key]

    def table(self, key: str) -> _Table:
        self.asked.add(key)
        value = self.raw(key) if key in self.data else {}
        return _Table(self.path, self.where(key), value)

    def table_list(self, key: str) -> list[_Table]:
        self.asked.add(key)
        if key not in self.data:
            return []
        value = self.raw(key)
        if not isinstance(value, list):
            raise self.error(key, "must be an array of tables ([[...]])")
        return [_Table(self.path, f"{self.where(key)}[{i}]", v) for i, v in enumerate(value)]

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        self.asked.add(key)
        if key not in self.data:
            if default is None:
                raise self.error(key, "missing required number")
            return default
        value = self.raw(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.error(key, f"must be a finite number, got {value!r}")
        if minimum is not None and value < minimum:
            what = "negative weights are not allowed" if minimum == 0 else f"must be >= {minimum:g}"
            raise self.error(key, f"{value!r}: {what}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"{value!r}: must be <= {maximum:g}")
        return float(value)

    def integer(self, key: str, default: int | None = None, *, minimum: int | None = None) -> int:
        self.asked.add(key)
        if key not in self.data:
            if default is None:
                raise self.error(key, "missing required integer")
            return default
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"{value}: must be >= {minimum}")
        return value

    def integer_list(self, key: str, default: tuple[int, ...], *, minimum: int) -> tuple[int, ...]:
        self.asked.add(key)
        if key not in self.data:
            return default
        value = self.raw(key)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            raise self.error(key, f"must be a non-empty list of integers, got {value!r}")
        if min(value) < minimum:
            raise self.error(key, f"values must be >= {minimum}, got {value!r}")
        return tuple(value)

    def string_list(
        self, key: str, default: tuple[str, ...], *, choices: tuple[str, ...] | None = None
    ) -> tuple[str, ...]:
        self.asked.add(key)
        if key not in self.data:
            return default
        value = self.raw(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a non-empty list of strings, got {value!r}")
        if choices is not None:
            for i, v in enumerate(value):
                if v not in choices:
                    raise self.error(f"{key}[{i}]", f"{v!r} is not one of {', '.join(choices)}")
        return tuple(value)

    def boolean(self, key: str, default: bool) -> bool:
        self.asked.add(key)
        if key not in self.data:
            return default
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def string(
        self,
        key: str,
        default: str | None = None,
        *,
        choices: tuple[str, ...] | None = None,
        allow_empty: bool = False,
    ) -> str:
        self.asked.add(key)
        if key not in self.data:
            if default is None:
                raise self.error(key, "missing required string")
            return default
        value = self.raw(key)
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.error(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if key in self.data else None

    def optional_date(self, key: str) -> date | None:
        self.asked.add(key)
        if key not in self.data:
            return None
        value = self.raw(key)
        if isinstance(value, date) and not hasattr(value, "hour"):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise self.error(key, f"must be a date (YYYY-MM-DD), got {value!r}")

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.asked)) or "none"
            raise self.error(unknown[0], f"unknown key (valid keys here: {known})")


__all__ = [
    "CONFIG_DIR",
    "DEFAULT_CONFIG",
    "BM25Config",
    "BaselineConfig",
    "BlendConfig",
    "BundleConfig",
    "ConfigError",
    "EvaluationConfig",
    "ModelConfig",
    "SearchConfig",
    "SplitConfig",
    "TagWeights",
    "TrackingConfig",
    "TrainConfig",
    "WeightsConfig",
    "load_config",
    "parse_config",
]
