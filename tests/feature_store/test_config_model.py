"""The shared reader of configuration models: values as TOML wrote them, and one ConfigError whose
lines name the file, the dotted key and the problem."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Literal, Self

import pytest
from pydantic import Field, model_validator

from feature_store.config_model import (
    ConfigModel,
    ConfigValueError,
    Items,
    Loc,
    Text,
    TomlDate,
    validate,
    where,
)
from feature_store.errors import ConfigError

PATH = Path("conf.toml")


class Inner(ConfigModel):
    size: int = Field(default=1, ge=1)
    low: float = 0.0
    high: float = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.high < self.low:
            raise ConfigValueError(f"must be >= low ({self.low:g})", "high")
        return self


class Outer(ConfigModel):
    name: Text
    mode: Literal["fast", "exact"] = "fast"
    inner: Inner = Field(default_factory=Inner)
    rows: Items[Inner] = ()
    sizes: Items[int] = ()
    day: TomlDate | None = None
    flag: bool = False
    weights: dict[str, float] = Field(default_factory=dict)


def problems(data: object) -> list[str]:
    with pytest.raises(ConfigError) as err:
        validate(Outer, data, PATH)
    return str(err.value).splitlines()


def test_values_are_taken_as_toml_wrote_them() -> None:
    checked = validate(
        Outer,
        {"name": "x", "inner": {"low": 1, "high": 2}, "sizes": [1, 2], "day": "2025-01-31"},
        PATH,
    )
    assert checked.inner.low == 1.0
    assert isinstance(checked.inner.low, float)
    assert checked.sizes == (1, 2)
    assert checked.day == date(2025, 1, 31)
    assert problems({"name": "x", "inner": {"size": True}, "flag": 1, "sizes": [1, "2"]}) == [
        "conf.toml: inner.size: must be an integer, got True",
        "conf.toml: sizes[1]: must be an integer, got '2'",
        "conf.toml: flag: must be true or false, got 1",
    ]


def test_missing_unknown_and_out_of_range_keys() -> None:
    assert problems({"inner": {"size": 0, "colour": "red"}, "mode": "slow"}) == [
        "conf.toml: name: missing required string",
        "conf.toml: mode: 'slow' is not one of fast, exact",
        "conf.toml: inner.size: must be >= 1, got 0",
        "conf.toml: inner.colour: unknown key (valid keys here: high, low, size)",
    ]


def test_a_validator_names_the_key_at_fault() -> None:
    assert problems({"name": "x", "rows": [{}, {"low": 2.0, "high": 1.0}]}) == [
        "conf.toml: rows[1].high: must be >= low (2)"
    ]


def test_tables_arrays_dates_and_blank_strings() -> None:
    assert problems({"name": " ", "inner": 3, "rows": {"a": 1}, "day": datetime(2025, 1, 1)}) == [
        "conf.toml: name: must be a non-empty string, got ' '",
        "conf.toml: inner: must be a table, got 3",
        "conf.toml: rows: must be an array of tables ([[...]]), got {'a': 1}",
        "conf.toml: day: must be a date (YYYY-MM-DD), got datetime.datetime(2025, 1, 1, 0, 0)",
    ]
    assert problems({"name": "x", "weights": {"a.b": "heavy"}}) == [
        "conf.toml: weights.\"a.b\": must be a number, got 'heavy'"
    ]


def test_where_writes_toml_paths_and_labels() -> None:
    assert where(()) == "<root>"
    assert where(("tiers", "levels", 2, "name")) == "tiers.levels[2].name"
    assert where(("params", "blend.trending", "low")) == 'params."blend.trending".low'
    labels: dict[Loc, str] = {("tags", 3): "tags[vip]"}
    assert where(("tags", 3, "all", 0, "op"), labels) == "tags[vip].all[0].op"
    assert where(("tags", 2, "name"), labels) == "tags[2].name"
