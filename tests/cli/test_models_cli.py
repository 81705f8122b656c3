"""`recsys models list|compare|promote` against a tmp MLflow store: exit codes and output.

Store: v1 ndcg@10/all 0.30 (split A, champion), v2 0.25 (A), v3 0.35 (A), v4 0.40 (split B).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.models import EXIT_NOT_PROMOTED
from tests.training.mlflow_helpers import fresh_tracker, migrated_store, write_blend_bundle
from training.tracking import Tracker
from training.tracking_store import CHAMPION, MODEL_NAME, TAG_PROMOTION_FORCED

runner = CliRunner()
VERSIONS = [(0.30, "A"), (0.25, "A"), (0.35, "A"), (0.40, "B")]


@pytest.fixture(scope="module")
def template() -> Path:
    return migrated_store()


@pytest.fixture(scope="module")
def store(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    folder = tmp_path_factory.mktemp("models-cli")
    tracker = fresh_tracker(template, folder / "store")
    bundle = write_blend_bundle(folder / "bundle")
    for number, (ndcg, split) in enumerate(VERSIONS, start=1):
        with tracker.start_run(f"cand-{number}") as run:
            run.log_params({"model": {"factors": 32 * number}})
            run.log_metrics({"ndcg@10/all": ndcg, "ndcg@10/new": 0.1})
            run.set_split_fingerprint(split)
            run.log_bundle(bundle)
    return tracker


@pytest.fixture
def tracker(store: Tracker) -> Tracker:
    """The store with v1 as champion, whatever an earlier test moved."""
    store.client.set_registered_model_alias(MODEL_NAME, CHAMPION, "1")
    return store


def invoke(tracker: Tracker, *args: str):
    return runner.invoke(app, ["models", *args, "--tracking-uri", tracker.tracking_uri])


def test_list_shows_versions_aliases_and_metrics(tracker: Tracker) -> None:
    result = invoke(tracker, "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    v1 = next(line for line in lines if "cand-1" in line)
    assert "champion" in v1
    assert "0.3000" in v1
    v4 = next(line for line in lines if "cand-4" in line)
    assert "0.4000" in v4
    assert "champion" not in v4
    assert result.stdout.index("cand-4") < result.stdout.index("cand-1")  # newest first


def test_list_on_an_empty_store_says_so(template: Path, tmp_path: Path) -> None:
    empty = fresh_tracker(template, tmp_path)
    result = invoke(empty, "list")
    assert result.exit_code == 0
    assert "no registered versions of member-recs" in result.stdout


def test_compare_shows_metrics_side_by_side_and_differing_params(tracker: Tracker) -> None:
    result = invoke(tracker, "compare", "1", "3", "--metric", "ndcg@10/all")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "ndcg_at_10_all" in line)
    assert row.index("0.3000") < row.index("0.3500")
    assert "ndcg_at_10_new" not in result.stdout
    factors = next(line for line in result.stdout.splitlines() if "model.factors" in line)
    assert "32" in factors
    assert "96" in factors


def test_compare_needs_two_versions(tracker: Tracker) -> None:
    result = invoke(tracker, "compare", "1")
    assert result.exit_code == 1
    assert "at least two different versions" in result.stderr


def test_promote_better_version_exits_0_and_moves_alias(tracker: Tracker) -> None:
    result = invoke(tracker, "promote", "3")
    assert result.exit_code == 0, result.output
    assert "version 3 is now the champion" in result.stdout
    assert tracker.champion().version == 3  # type: ignore[union-attr]


def test_promote_worse_version_exits_3_and_keeps_alias(tracker: Tracker) -> None:
    result = invoke(tracker, "promote", "2")
    assert result.exit_code == EXIT_NOT_PROMOTED
    assert "not promoted: version 2 ndcg_at_10_all=0.2500 does not beat" in result.stderr
    assert tracker.champion().version == 1  # type: ignore[union-attr]


def test_promote_other_split_exits_3(tracker: Tracker) -> None:
    result = invoke(tracker, "promote", "4")
    assert result.exit_code == EXIT_NOT_PROMOTED
    assert "evaluated on split B" in result.stderr


def test_promote_force_exits_0_and_is_recorded(tracker: Tracker) -> None:
    result = invoke(tracker, "promote", "2", "--force", "--reason", "rollback drill")
    assert result.exit_code == 0, result.output
    assert "forced: rollback drill" in result.stdout
    assert tracker.version(2).tags[TAG_PROMOTION_FORCED] == "true"


def test_promote_unknown_version_exits_1_naming_it(tracker: Tracker) -> None:
    result = invoke(tracker, "promote", "42")
    assert result.exit_code == 1
    assert "member-recs version 42 not found" in result.stderr
    assert "Traceback" not in result.output


def test_real_entry_point_lists_versions(tracker: Tracker) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "models",
            "list",
            "--tracking-uri",
            tracker.tracking_uri,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "cand-3" in done.stdout
