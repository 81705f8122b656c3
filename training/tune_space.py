"""Search spaces of ``recsys tune`` and how sampled values become a trial's configuration.

A *search space* names config keys (dotted, as in the training TOML) and how to sample them::

    [params."model.params.factors"]
    type = "int"            # int | float | categorical
    low = 32
    high = 128
    step = 32

    [params."blend.buy_again"]
    type = "float"
    low = 0.0
    high = 2.0
    log = false             # sample on a log scale (low > 0)

    [params."weights.quantity"]
    type = "categorical"
    choices = ["none", "log1p"]

Without a space file :func:`default_space` searches the model's main hyperparameters and the
interaction and blend weights. The split, the evaluation, the features and tracking cannot be
searched (:data:`FROZEN_SECTIONS`): every trial is evaluated on the same split, so trials (and
the result) compare. :func:`trial_config` writes the sampled values into the parsed TOML and
checks it with the config parser, so a bad value fails naming the key.
"""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import tomli_w

from feature_store.toml_table import read_toml
from training.config import ConfigError, TrainConfig, load_config, parse_config

#: Config sections a search may not touch (they define what trials are compared on).
FROZEN_SECTIONS: Final[tuple[str, ...]] = ("split", "evaluation", "features", "tracking", "name")
KINDS: Final[tuple[str, ...]] = ("int", "float", "categorical")

Scalar = int | float | str | bool


@dataclass(frozen=True, slots=True)
class SearchParam:
    """How one dotted config key is sampled."""

    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    choices: tuple[Scalar, ...] = ()

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"one of {list(self.choices)}"
        scale = ", log" if self.log else ""
        step = f", step {self.step:g}" if self.step is not None else ""
        return f"{self.kind} in [{self.low:g}, {self.high:g}]{step}{scale}"


# -- search spaces ---------------------------------------------------------------------------


def _int(key: str, low: int, high: int, step: int = 1) -> SearchParam:
    return SearchParam(key, "int", low, high, step)


def _float(key: str, low: float, high: float, *, log: bool = False) -> SearchParam:
    return SearchParam(key, "float", low, high, None, log)


_COMMON: Final[tuple[SearchParam, ...]] = (
    _float("weights.half_life_days", 7.0, 365.0, log=True),
    _float("weights.tags.boost", 1.0, 3.0),
    _float("blend.buy_again", 0.0, 2.0),
    _float("blend.trending", 0.0, 1.0),
)
_MODEL_SPACES: Final[dict[str, tuple[SearchParam, ...]]] = {
    "als": (
        _int("model.params.factors", 32, 128, 32),
        _float("model.params.regularization", 1e-3, 1.0, log=True),
        _float("model.params.alpha", 0.1, 50.0, log=True),
        _int("model.params.iterations", 8, 25),
    ),
    "bpr": (
        _int("model.params.factors", 32, 128, 32),
        _float("model.params.learning_rate", 1e-3, 0.1, log=True),
        _float("model.params.regularization", 1e-4, 0.1, log=True),
        _int("model.params.iterations", 50, 300, 50),
    ),
    "lightfm": (
        _int("model.params.components", 16, 64, 16),
        _float("model.params.learning_rate", 0.01, 0.1, log=True),
        _int("model.params.epochs", 5, 30, 5),
        _float("model.params.item_alpha", 1e-8, 1e-4, log=True),
        _float("model.params.user_alpha", 1e-8, 1e-4, log=True),
    ),
}


def default_space(model_kind: str) -> tuple[SearchParam, ...]:
    """The model's main hyperparameters plus recency, tag and blend weights."""
    if model_kind not in _MODEL_SPACES:
        raise ConfigError(
            f"no default search space for model kind {model_kind!r}; give one with --space "
            f"(known: {', '.join(sorted(_MODEL_SPACES))})"
        )
    return _MODEL_SPACES[model_kind] + _COMMON


def load_space(path: Path) -> tuple[SearchParam, ...]:
    """Read a search space TOML (see the module docstring); errors name file and key."""
    data, _ = read_toml(path, "search space", ConfigError)
    unknown = sorted(set(data) - {"params"})
    if unknown:
        raise ConfigError(f'{path}: unknown key(s) {", ".join(unknown)}; expected [params."..."]')
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f'{path}: no [params."<config key>"] tables: nothing to search')
    return tuple(_search_param(path, key, spec) for key, spec in params.items())


def _search_param(path: Path, key: str, spec: object) -> SearchParam:
    where = f"{path}: params.{key!r}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a table with type = int | float | categorical")
    _check_key(key, where)
    allowed = {"type", "low", "high", "step", "log", "choices"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    kind = spec.get("type")
    if kind not in KINDS:
        raise ConfigError(f"{where}: type is {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: categorical needs a non-empty list 'choices'")
        if not all(isinstance(c, int | float | str | bool) for c in choices):
            raise ConfigError(f"{where}: choices must be numbers, strings or booleans")
        return SearchParam(key, kind, choices=tuple(choices))
    low = _number(spec, "low", where)
    high = _number(spec, "high", where)
    if low is None or high is None:
        raise ConfigError(f"{where}: {kind} needs numbers low and high")
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{where}: needs finite low <= high, got [{low}, {high}]")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, got {low}")
    step = _number(spec, "step", where)
    if kind == "int":
        if not all(isinstance(spec.get(name, 1), int) for name in ("low", "high", "step")):
            raise ConfigError(f"{where}: an int parameter needs integer low, high and step")
        if step is not None and step < 1:
            raise ConfigError(f"{where}: step must be >= 1")
    elif step is not None and step <= 0:
        raise ConfigError(f"{where}: step must be > 0")
    if log and step is not None and step != 1:
        raise ConfigError(f"{where}: a log scale cannot have a step")
    return SearchParam(key, kind, low, high, step, log)


def _number(spec: Mapping[str, object], name: str, where: str) -> float | None:
    value = spec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
    return float(value)


def _check_key(key: str, where: str) -> None:
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{where}: {key!r} is not a dotted config key like model.params.factors")
    if parts[0] in FROZEN_SECTIONS:
        raise ConfigError(
            f"{where}: {parts[0]}.* cannot be searched: every trial must be evaluated on the "
            "same split and metric"
        )


# -- applying values to a config -------------------------------------------------------------


def with_values(raw: Mapping[str, Any], values: Mapping[str, Scalar]) -> dict[str, Any]:
    """A deep copy of the parsed TOML ``raw`` with each dotted key set to its value."""
    out = copy.deepcopy(dict(raw))
    for key, value in values.items():
        *parents, leaf = key.split(".")
        table = out
        for i, part in enumerate(parents):
            child = table.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"search key {key!r}: {'.'.join(parents[: i + 1])} is a value, not a table"
                )
            table = child
        table[leaf] = value
    return out


def read_raw(path: Path) -> dict[str, Any]:
    """The parsed TOML of the config at ``path``, once the config itself is checked."""
    load_config(path)  # the starting point must be valid itself (errors name the key)
    return tomllib.loads(path.read_text(encoding="utf-8"))


def trial_config(raw: Mapping[str, Any], values: Mapping[str, Scalar], path: Path) -> TrainConfig:
    """The config of a trial: sampled values in, baselines out, no tracking or promotion."""
    trial = with_values(raw, values)
    trial.pop("baselines", None)
    trial["tracking"] = {**dict(trial.get("tracking", {})), "register": False, "promote": False}
    return parse_config(trial, path)


def best_config_text(raw: Mapping[str, Any], values: Mapping[str, Scalar], path: Path) -> str:
    """The starting config with the best values, as TOML (relative paths made absolute)."""
    best = with_values(raw, values)
    features = best.get("features")
    if isinstance(features, dict) and isinstance(features.get("policy"), str):
        policy = Path(features["policy"])
        if not policy.is_absolute():
            features["policy"] = str((path.parent / policy).resolve())
    header = (
        f"# Written by `recsys tune` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {path}.\n"
        "# Searched values: "
        + ", ".join(f"{key} = {value!r}" for key, value in values.items())
        + "\n"
    )
    return header + tomli_w.dumps(best)


__all__ = [
    "FROZEN_SECTIONS",
    "KINDS",
    "Scalar",
    "SearchParam",
    "best_config_text",
    "default_space",
    "load_space",
    "read_raw",
    "trial_config",
    "with_values",
]
