"""`recsys tune`: search spaces, config overrides, and a small study end to end."""

from __future__ import annotations

import csv
import io
import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from feature_store.synthetic import SynthConfig, write_synthetic
from tests.training.mlflow_helpers import fresh_tracker, migrated_store
from training.config import DEFAULT_CONFIG, ConfigError, load_config
from training.tracking_store import MODEL_NAME, SPLIT_FINGERPRINT_TAG, TAG_PARENT_RUN
from training.tune_space import (
    SearchParam,
    default_space,
    load_space,
    trial_config,
    with_values,
)
from training.tuning import TuneOptions, tune

SPACE = """
[params."model.params.factors"]
type = "int"
low = 8
high = 16
step = 8

[params."blend.buy_again"]
type = "float"
low = 0.0
high = 1.5

[params."weights.quantity"]
type = "categorical"
choices = ["none", "log1p"]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- search spaces ---------------------------------------------------------------------------


def test_space_file_is_read(tmp_path: Path) -> None:
    space = load_space(write(tmp_path / "space.toml", SPACE))
    assert space == (
        SearchParam("model.params.factors", "int", 8.0, 16.0, 8.0),
        SearchParam("blend.buy_again", "float", 0.0, 1.5),
        SearchParam("weights.quantity", "categorical", choices=("none", "log1p")),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[params."split.cutoff"]\ntype = "categorical"\nchoices = ["2024-01-01"]',
            "split.* cannot be searched",
        ),
        (
            '[params."evaluation.ks"]\ntype = "int"\nlow = 1\nhigh = 2',
            "evaluation.* cannot be searched",
        ),
        (
            '[params."blend.trending"]\ntype = "normal"',
            "params.\"blend.trending\".type: 'normal' is not one of int, float, categorical",
        ),
        ('[params."blend.trending"]\ntype = "float"\nlow = 2.0\nhigh = 1.0', "low <= high"),
        (
            '[params."blend.trending"]\ntype = "float"\nlow = 0.0\nhigh = 1.0\nlog = true',
            "log scale needs low > 0",
        ),
        (
            '[params."model.params.factors"]\ntype = "int"\nlow = 8.5\nhigh = 16',
            "integer low, high",
        ),
        (
            '[params."blend.trending"]\ntype = "float"\nlow = 0\nhigh = 1\nspread = 2',
            'params."blend.trending".spread: unknown key',
        ),
        ('[params."blend.trending"]\ntype = "categorical"', "non-empty list 'choices'"),
        ("[other]\nx = 1", "other: unknown key (valid keys here: params)"),
        ("", "nothing to search"),
    ],
)
def test_bad_space_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "space.toml", text)
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        load_space(path)
    assert str(path) in str(raised.value)


def test_default_spaces_cover_each_vector_model() -> None:
    for kind in ("als", "bpr", "lightfm"):
        keys = [param.key for param in default_space(kind)]
        assert "blend.buy_again" in keys
        assert any(key.startswith("model.params.") for key in keys)
    with pytest.raises(ConfigError, match="no default search space for model kind 'svd'"):
        default_space("svd")


def test_values_go_into_the_config_and_are_checked(tmp_path: Path) -> None:
    raw = tomllib.loads(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    changed = with_values(raw, {"model.params.factors": 8, "blend.buy_again": 0.25})
    assert changed["model"]["params"]["factors"] == 8
    assert raw["model"]["params"]["factors"] == 64  # the original is untouched
    config = trial_config(raw, {"model.params.factors": 8, "blend.buy_again": 0.25}, DEFAULT_CONFIG)
    assert config.model.params["factors"] == 8
    assert config.blend.weights.buy_again == 0.25
    assert config.baselines == ()
    assert not config.tracking.register
    with pytest.raises(ConfigError, match=r"blend\.buy_again"):
        trial_config(raw, {"blend.buy_again": -1.0}, DEFAULT_CONFIG)
    with pytest.raises(ConfigError, match=r"model\.params\.factors"):
        with_values(raw, {"model.params.factors.deep": 1})


# -- a small study ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tune-data") / "synth"
    write_synthetic(SynthConfig(members=600, items=120, purchases=12_000, seed=3), folder)
    return folder


def test_study_logs_nested_trials_writes_best_config_and_registers(
    dataset: Path, tmp_path: Path
) -> None:
    tracker = fresh_tracker(migrated_store(), tmp_path / "store")
    space = write(tmp_path / "space.toml", SPACE)
    seen: list[int] = []
    result = tune(
        TuneOptions(
            data=dataset,
            config=DEFAULT_CONFIG,
            out=tmp_path / "tune",
            space=space,
            trials=3,
            seed=1,
            tracking_uri=tracker.tracking_uri,
            register=True,
        ),
        on_trial=lambda trial, best: seen.append(trial.number),
    )
    assert seen == [0, 1, 2]
    assert [t.number for t in result.trials] == [0, 1, 2]
    best = result.best
    assert best.objective == max(t.objective for t in result.trials)
    assert best.objective == best.metrics["ndcg@10/all"]

    # the best config is a full, valid training config holding the best values
    assert result.best_config is not None
    best_config = load_config(result.best_config)
    assert best_config.model.params["factors"] == best.values["model.params.factors"]
    assert best_config.weights.quantity == best.values["weights.quantity"]
    assert len(best_config.baselines) == len(load_config(DEFAULT_CONFIG).baselines)
    # every trial is scored on the validation window's snapshot, built once
    assert (tmp_path / "tune" / "snapshot").is_dir()
    rows = list(csv.DictReader(io.StringIO((tmp_path / "tune" / "trials.csv").read_text())))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2]

    # MLflow: one study run with three children on the same split
    runs = tracker.client.search_runs([tracker.experiment_id])
    study = next(r for r in runs if r.info.run_id == result.study_run_id)
    children = [r for r in runs if r.data.tags.get(TAG_PARENT_RUN) == result.study_run_id]
    assert sorted(r.info.run_name for r in children) == ["trial-000", "trial-001", "trial-002"]
    splits = {r.data.tags[SPLIT_FINGERPRINT_TAG] for r in [*children, study]}
    assert len(splits) == 1
    assert study.data.metrics["ndcg_at_10_all"] == pytest.approx(best.objective)
    child_best = next(r for r in children if r.info.run_id == best.run_id)
    assert child_best.data.params["tune.model.params.factors"] == str(
        best.values["model.params.factors"]
    )
    artifacts = tracker.local_artifacts(study.info.run_id) / "tuning"
    assert {p.name for p in artifacts.iterdir()} == {
        "trials.csv",
        "trials.md",
        "best_config.toml",
        "objective.png",
    }

    # the best config is trained through the pipeline (scored once on the test window, refit)
    # and registered from its own run; with no champion it is promoted
    assert result.registered_version == 1
    assert result.promoted
    champion = tracker.champion()
    assert champion is not None
    assert champion.version == 1
    assert champion.run_id != result.study_run_id
    assert champion.params["model.params.factors"] == str(best.values["model.params.factors"])
    assert champion.split_fingerprint not in splits  # the test window, not the validation one
    assert tracker.list_versions()[0].name == MODEL_NAME


def test_cli_prints_the_comparison_table(dataset: Path, tmp_path: Path) -> None:
    space = write(tmp_path / "space.toml", SPACE)
    result = CliRunner().invoke(
        app,
        [
            "tune",
            "--data",
            str(dataset),
            "--space",
            str(space),
            "--trials",
            "2",
            "--out",
            str(tmp_path / "tune"),
            "--no-track",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 trial(s), best first (objective ndcg@10/all)" in result.stdout
    assert "best trial" in result.stdout
    assert (tmp_path / "tune" / "best_config.toml").is_file()


def test_cli_refuses_a_missing_dataset(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["tune", "--data", str(tmp_path / "nope"), "--no-track"])
    assert result.exit_code == 1
    assert "dataset folder not found" in result.stderr
