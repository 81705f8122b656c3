"""The training configuration: frozen dataclasses read from TOML, every value checked.

``load_config(path)`` reads a file such as ``training/configs/default.toml``; every problem
raises :class:`ConfigError` naming the file and the key (``weights.tier.golden: unknown tier``).
Unknown keys, negative weights and tiers outside the feature policy's ladder are errors, never
ignored. :meth:`TrainConfig.params` flattens everything (every weight included) into the dotted
names logged to MLflow.

Sections (docs/evaluation.md describes the evaluation keys)::

    name                  run name prefix
    [split]               cutoff, test_end (inclusive dates) or test_days; validation_days,
                          as_of, refit, warm_refit (the refit starts ALS from the evaluated fit)
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

The values are the dataclasses of training.config_schema; the tables are checked by the
pydantic models of training.config_toml (one per table, :class:`TrainConfigFile` for the
file). This module reads the file and re-exports the names callers use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from feature_store.config_model import validate
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
from training.config_toml import ConfigError, TrainConfigFile

#: Packaged configurations.
CONFIG_DIR: Final[Path] = Path(__file__).parent / "configs"
DEFAULT_CONFIG: Final[Path] = CONFIG_DIR / "default.toml"


def load_config(path: Path | None = None, *, tiers: tuple[str, ...] | None = None) -> TrainConfig:
    """Read and check a training config (None: the packaged default).

    Tier names are checked against ``tiers`` when given, else against the ladder of the
    config's feature policy (``[features] policy``, default: the packaged policy).
    """
    path = DEFAULT_CONFIG if path is None else Path(path)
    data, _ = read_toml(path, "training config")
    return parse_config(data, path, tiers=tiers)


def parse_config(
    data: Mapping[str, Any], path: Path, *, tiers: tuple[str, ...] | None = None
) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed TOML (``path`` is used in messages and to
    resolve a relative feature policy)."""
    checked = validate(TrainConfigFile, data, path, context={"path": path, "tiers": tiers})
    return checked.build(path)


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
