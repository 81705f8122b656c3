"""Service settings read from the environment with pydantic-settings (serving/settings.py).

Every bad value fails at once with a SettingsError naming the variable, the value and what is
allowed; names and defaults are those of the module docstring's table.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

import serving.settings
from serving.settings import (
    DEFAULT_MODEL_URI,
    EnvironmentVariables,
    Settings,
    SettingsError,
    load_settings,
)


def _variables() -> dict[str, str]:
    """Variable name -> field name of every EnvironmentVariables field."""
    return {
        str(field.validation_alias): name
        for name, field in EnvironmentVariables.model_fields.items()
    }


def _bounded() -> list[tuple[str, float, float, object]]:
    """(variable, low, high, type) of every numeric variable."""
    found: list[tuple[str, float, float, object]] = []
    for field in EnvironmentVariables.model_fields.values():
        low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
        high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
        if low is not None and high is not None:
            found.append((str(field.validation_alias), low, high, field.annotation))
    return found


def _choices() -> list[tuple[str, tuple[str, ...]]]:
    return [
        (str(field.validation_alias), typing.get_args(field.annotation))
        for field in EnvironmentVariables.model_fields.values()
        if typing.get_origin(field.annotation) is typing.Literal
    ]


# -- the three kinds of bad value, each naming the variable ------------------------------------


def test_a_bad_integer_names_the_variable_the_value_and_the_range() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"RECSYS_HNSW_EF_SEARCH": "lots"})
    assert str(raised.value) == (
        "RECSYS_HNSW_EF_SEARCH='lots' is not an integer; give a whole number in 16..4096"
    )
    assert isinstance(raised.value.__cause__, ValidationError)


def test_an_out_of_range_value_names_the_variable_the_value_and_the_range() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"RECSYS_AUDIENCE_MAX_MEMBERS": "20000001"})
    assert str(raised.value) == "RECSYS_AUDIENCE_MAX_MEMBERS=20000001 is outside 1..20000000"


def test_an_unknown_choice_names_the_variable_the_value_and_the_choices() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"RECSYS_PURCHASED_POLICY": "sometimes"})
    assert str(raised.value) == (
        "RECSYS_PURCHASED_POLICY='sometimes': choose keep, exclude_recent or exclude"
    )


@pytest.mark.parametrize(("variable", "low", "high", "kind"), _bounded())
def test_every_numeric_variable_is_checked(
    variable: str, low: float, high: float, kind: object
) -> None:
    word = "an integer" if kind is int else "a number"
    with pytest.raises(SettingsError, match=f"^{variable}='x' is not {word}; .* in {low}..{high}$"):
        load_settings({variable: "x"})
    too_small = str(low - 1)
    with pytest.raises(SettingsError, match=f"^{variable}={re.escape(too_small)} is outside"):
        load_settings({variable: too_small})
    too_big = str(high * 2 + 1)
    with pytest.raises(SettingsError, match=f"^{variable}={re.escape(too_big)} is outside"):
        load_settings({variable: too_big})
    for fine in (low, high):
        value = getattr(load_settings({variable: str(fine)}), _variables()[variable])
        assert value == fine


@pytest.mark.parametrize(("variable", "choices"), _choices())
def test_every_choice_variable_is_checked(variable: str, choices: tuple[str, ...]) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}='nope': choose .*{choices[-1]}$"):
        load_settings({variable: "nope"})
    for choice in choices:  # any case
        assert getattr(load_settings({variable: choice.upper()}), _variables()[variable]) == choice


def test_every_bad_variable_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"RECSYS_INDEX": "ivf", "RECSYS_CACHE_TTL_SECONDS": "-5"})
    assert "RECSYS_INDEX='ivf'" in str(raised.value)
    assert "RECSYS_CACHE_TTL_SECONDS=-5 is outside 0..604800" in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RECSYS_STORE_AUTO_RESTORE", "maybe", "RECSYS_STORE_AUTO_RESTORE='maybe': use true or"),
        ("RECSYS_DATA_TIMEZONE", "Mars/Olympus", "'Mars/Olympus': not a known time zone"),
        ("RECSYS_POLICY_FILE", "/no/policy.toml", "RECSYS_POLICY_FILE='/no/policy.toml': no such"),
        ("RECSYS_SNAPSHOT", "/", "RECSYS_SNAPSHOT='/': not a feature snapshot folder"),
        ("RECSYS_UPLIFT_MODEL", "/no/uplift.json", "'/no/uplift.json': not a file; fit one"),
    ],
)
def test_checked_values_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings({variable: value})


# -- names, defaults and how the environment is read ----------------------------------------


def test_the_documented_variables_are_the_ones_read() -> None:
    table = re.findall(r"^\| ``([A-Z_]+)`` \|", serving.settings.__doc__ or "", re.MULTILINE)
    assert sorted(table) == sorted(_variables())


def test_defaults_are_the_settings_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = load_settings({})
    expected = Settings(
        campaign_db_url=f"sqlite:///{(tmp_path / 'data' / 'campaigns.db').resolve()}"
    )
    assert dataclasses.asdict(loaded) == dataclasses.asdict(expected)
    assert loaded.model_uri == DEFAULT_MODEL_URI
    assert (loaded.cache_ttl_seconds, loaded.index, loaded.purchased_policy) == (
        300,
        "auto",
        "exclude_recent",
    )


def test_blank_values_are_unset_and_names_are_case_sensitive() -> None:
    loaded = load_settings({"RECSYS_CACHE_TTL_SECONDS": "  ", "recsys_index": "hnsw"})
    assert (loaded.cache_ttl_seconds, loaded.index) == (300, "auto")
    assert load_settings({"RECSYS_CACHE_TTL_SECONDS": " 60 "}).cache_ttl_seconds == 60


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_INDEX", "exact")
    monkeypatch.setenv("RECSYS_MAX_PER_CATEGORY", "0.25")
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/elsewhere.db")
    loaded = load_settings()
    assert (loaded.index, loaded.max_per_category_share) == ("exact", 0.25)
    assert loaded.campaign_db_url == "sqlite:////tmp/elsewhere.db"
    assert EnvironmentVariables().index == "exact"  # pydantic-settings' own reading agrees
    assert load_settings({}).index == "auto"  # a given mapping is all that is read
    monkeypatch.setenv("RECSYS_INDEX", "ivf")
    with pytest.raises(SettingsError, match="RECSYS_INDEX='ivf'"):
        load_settings()


def test_settings_built_in_code_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_CACHE_TTL_SECONDS", "5")
    built = Settings(model_uri="bundle")
    assert built.cache_ttl_seconds == 300
    assert dataclasses.replace(built, cache_ttl_seconds=0).cache_enabled is False
