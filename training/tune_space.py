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
the result) compare. A space file is checked by :class:`SpaceFile` (see
feature_store.config_model). :func:`trial_config` writes the sampled values into the parsed
TOML and checks it with the config parser, so a bad value fails naming the key.
"""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self, get_args

import tomli_w
from pydantic import Field, PlainValidator, field_validator, model_validator

from feature_store.config_model import ConfigModel, ConfigValueError, Items, validate
from feature_store.config_model import Scalar as CheckedScalar
from feature_store.toml_table import read_toml
from training.config import ConfigError, TrainConfig, load_config, parse_config

#: Config sections a search may not touch (they define what trials are compared on).
FROZEN_SECTIONS: Final[tuple[str, ...]] = ("split", "evaluation", "features", "tracking", "name")
#: How a key is sampled.
ParamKind = Literal["int", "float", "categorical"]
KINDS: Final[tuple[str, ...]] = get_args(ParamKind)

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
    data, _ = read_toml(path, "search space")
    return validate(SpaceFile, data, path).build()


def _bound(value: object) -> int | float:
    """A bound or step as written (an int parameter needs integers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    return value


Bound = Annotated[int | float, PlainValidator(_bound)]


class SearchParamTable(ConfigModel):
    """A ``[params."<config key>"]`` table."""

    type: ParamKind
    low: Bound | None = None
    high: Bound | None = None
    step: Bound | None = None
    log: bool = False
    choices: Items[CheckedScalar] | None = None

    @model_validator(mode="after")
    def _a_range_or_choices(self) -> Self:
        if self.type == "categorical":
            if not self.choices:
                raise ConfigValueError("categorical needs a non-empty list 'choices'", "choices")
            return self
        low, high, step = self.low, self.high, self.step
        if low is None or high is None:
            raise ConfigValueError(f"{self.type} needs numbers low and high")
        if low > high:
            raise ConfigValueError(f"needs finite low <= high, got [{low}, {high}]")
        if self.log and low <= 0:
            raise ConfigValueError(f"a log scale needs low > 0, got {low}", "low")
        if self.type == "int":
            if not all(isinstance(v, int) for v in (low, high, 1 if step is None else step)):
                raise ConfigValueError("an int parameter needs integer low, high and step")
            if step is not None and step < 1:
                raise ConfigValueError("must be >= 1", "step")
        elif step is not None and step <= 0:
            raise ConfigValueError("must be > 0", "step")
        if self.log and step is not None and step != 1:
            raise ConfigValueError("a log scale cannot have a step", "step")
        return self

    def build(self, key: str) -> SearchParam:
        if self.type == "categorical":
            return SearchParam(key, self.type, choices=tuple(self.choices or ()))
        step = None if self.step is None else float(self.step)
        return SearchParam(
            key, self.type, float(self.low or 0), float(self.high or 0), step, self.log
        )


class SpaceFile(ConfigModel):
    """A search space file: one ``[params."<config key>"]`` table per searched key."""

    params: dict[str, SearchParamTable] = Field(default_factory=dict, validate_default=True)

    @field_validator("params")
    @classmethod
    def _searchable(cls, params: dict[str, SearchParamTable]) -> dict[str, SearchParamTable]:
        if not params:
            raise ValueError('no [params."<config key>"] tables: nothing to search')
        for key in params:
            _check_key(key)
        return params

    def build(self) -> tuple[SearchParam, ...]:
        return tuple(table.build(key) for key, table in self.params.items())


def _check_key(key: str) -> None:
    parts = key.split(".")
    if not all(parts):
        raise ConfigValueError(f"{key!r} is not a dotted config key like model.params.factors", key)
    if parts[0] in FROZEN_SECTIONS:
        raise ConfigValueError(
            f"{parts[0]}.* cannot be searched: every trial must be evaluated on the same split "
            "and metric",
            key,
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
