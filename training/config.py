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

The values are the dataclasses of training.config_schema and the tables are read by
training.config_toml; this module reads the sections and re-exports both modules' names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from engine.blend import BlendWeights
from engine.errors import InvalidInputError
from engine.interactions import QuantityTransform
from engine.models import MODEL_KINDS, create_model
from engine.models.base import ParamValue
from feature_store.errors import ConfigError as FeatureConfigError
from feature_store.policy import load_policy
from feature_store.toml_table import read_toml
from training.config_schema import (
    INDEX_KINDS,
    VECTOR_KINDS,
    WEIGHTINGS,
    BaselineConfig,
    BlendConfig,
    BM25Config,
    BundleConfig,
    EvaluationConfig,
    ModelConfig,
    SearchConfig,
    SplitConfig,
    TagWeights,
    TrackingConfig,
    TrainConfig,
    WeightsConfig,
)
from training.config_toml import ConfigError, ConfigTable

#: Packaged configurations.
CONFIG_DIR: Final[Path] = Path(__file__).parent / "configs"
DEFAULT_CONFIG: Final[Path] = CONFIG_DIR / "default.toml"


# -- loading ---------------------------------------------------------------------------------


def load_config(path: Path | None = None, *, tiers: tuple[str, ...] | None = None) -> TrainConfig:
    """Read and check a training config (None: the packaged default).

    Tier names are checked against ``tiers`` when given, else against the ladder of the
    config's feature policy (``[features] policy``, default: the packaged policy).
    """
    path = DEFAULT_CONFIG if path is None else Path(path)
    data, _ = read_toml(path, "training config", ConfigError)
    return parse_config(data, path, tiers=tiers)


def parse_config(
    data: Mapping[str, Any], path: Path, *, tiers: tuple[str, ...] | None = None
) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed TOML (``path`` is used in messages)."""
    root = ConfigTable(path, "", data)
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


def _policy_path(root: ConfigTable, path: Path) -> Path | None:
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


def _split(t: ConfigTable) -> SplitConfig:
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


def _weights(t: ConfigTable, tiers: tuple[str, ...]) -> WeightsConfig:
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


def _model_params(t: ConfigTable, kind: str, where: str) -> Mapping[str, ParamValue]:
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


def _model(t: ConfigTable) -> ModelConfig:
    kind = t.string("kind", "als", choices=MODEL_KINDS)
    params = _model_params(t, kind, "params")
    t.finish()
    return ModelConfig(kind=kind, params=params)


def _blend(t: ConfigTable) -> BlendConfig:
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


def _evaluation(t: ConfigTable) -> EvaluationConfig:
    ks = t.integer_list("ks", (5, 10, 20), minimum=1)
    config = EvaluationConfig(
        ks=tuple(sorted(set(ks))),
        max_members=t.integer("max_members", 100_000, minimum=1),
        few_purchases=t.integer("few_purchases", 3, minimum=0),
        seed=t.integer("seed", 0, minimum=0),
        metric=t.string("metric", "ndcg@10/all"),
        served_share=t.number("served_share", 0.5, minimum=1e-9, maximum=1.0),
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


def _baselines(root: ConfigTable) -> tuple[BaselineConfig, ...]:
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


def _bundle(t: ConfigTable) -> BundleConfig:
    config = BundleConfig(
        member_index=t.string("member_index", "exact", choices=INDEX_KINDS),
        item_index=t.string("item_index", "auto", choices=INDEX_KINDS),
        precomputed_candidates=t.integer("precomputed_candidates", 50, minimum=0),
        precomputed_per_category=t.integer("precomputed_per_category", 10, minimum=0),
    )
    t.finish()
    return config


def _tracking(t: ConfigTable) -> TrackingConfig:
    config = TrackingConfig(
        enabled=t.boolean("enabled", True),
        experiment=t.string("experiment", "member-recs"),
        register=t.boolean("register", True),
        promote=t.boolean("promote", True),
    )
    t.finish()
    return config


def _search(t: ConfigTable) -> SearchConfig:
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


__all__ = [
    "CONFIG_DIR",
    "DEFAULT_CONFIG",
    "INDEX_KINDS",
    "VECTOR_KINDS",
    "WEIGHTINGS",
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
