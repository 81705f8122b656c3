"""Tracker: where runs go, what a run records, names, nested and failed runs, registration."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

from tests.training.mlflow_helpers import fresh_tracker, migrated_store, write_blend_bundle
from training.tracking import Tracker, TrackingError
from training.tracking_store import (
    MODEL_NAME,
    SPLIT_FINGERPRINT_TAG,
    TAG_GIT_COMMIT,
    TAG_PARENT_RUN,
    default_tracking_uri,
    flatten_params,
    metric_key,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> Path:
    return migrated_store()


@pytest.fixture
def tracker(template: Path, tmp_path: Path) -> Tracker:
    return fresh_tracker(template, tmp_path / "store")


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("ndcg@10/all", "ndcg_at_10_all"),
        ("recall@20/new/tier=gold", "recall_at_20_new_tier_gold"),
        ("hit_rate@5/lifecycle:at risk", "hit_rate_at_5_lifecycle_at_risk"),
        ("coverage", "coverage"),
        ("map@10/few-purchases", "map_at_10_few-purchases"),
        ("ndcg_at_10_all", "ndcg_at_10_all"),  # idempotent
        ("/p@5//all/", "p_at_5_all"),
    ],
)
def test_metric_key_mapping(name: str, key: str) -> None:
    assert metric_key(name) == key
    assert metric_key(key) == key


def test_metric_key_without_letters_is_an_error() -> None:
    with pytest.raises(TrackingError, match="'/ /'"):
        metric_key("/ /")


def test_flatten_params_uses_dots_and_json_for_lists_and_booleans() -> None:
    flat = flatten_params(
        {"weights": {"tier": {"gold": 1.5}, "half_life_days": 30}, "ks": [5, 10], "bm25": True}
    )
    assert flat == {
        "weights.tier.gold": "1.5",
        "weights.half_life_days": "30",
        "ks": "[5, 10]",
        "bm25": "true",
    }


# -- where runs go ---------------------------------------------------------------------------


def test_default_store_is_sqlite_under_repo_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri() == f"sqlite:///{REPO / 'mlflow' / 'mlflow.db'}"


def test_environment_uri_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert default_tracking_uri() == "http://tracking.example:5000"


def test_relative_sqlite_uri_is_made_absolute_and_artifacts_go_beside_it(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "mlflow.db").write_bytes(template.read_bytes())
    monkeypatch.chdir(tmp_path)
    tracker = Tracker("sqlite:///rel/mlflow.db")
    assert tracker.tracking_uri == f"sqlite:///{tmp_path / 'rel' / 'mlflow.db'}"
    with tracker.start_run("where") as run:
        run.log_dict({"a": 1}, "a.json")
    artifact_uri = tracker.client.get_run(run.run_id).info.artifact_uri
    assert artifact_uri.startswith((tmp_path / "rel" / "artifacts").as_uri())


# -- what a run records ----------------------------------------------------------------------


def test_run_records_params_metrics_tags_and_artifacts(tracker: Tracker, tmp_path: Path) -> None:
    extra = tmp_path / "report.md"
    extra.write_text("# report\n")
    folder = tmp_path / "tables"
    folder.mkdir()
    (folder / "per_tier.csv").write_text("tier,ndcg\ngold,0.4\n")
    figure, axes = plt.subplots()
    axes.plot([1, 2], [3, 4])
    with tracker.start_run("als-64", tags={"model": "als"}) as run:
        run.log_params({"weights": {"tier": {"gold": 1.5}}, "model": {"factors": 64}})
        run.log_metrics({"ndcg@10/all": 0.25, "ndcg@10/new": 0.1})
        run.log_metrics({"loss": 3.0}, step=2)
        run.set_split_fingerprint("split-abc")
        run.log_dict({"tiers": ["gold"]}, "evaluation/summary.json")
        run.log_artifact(extra)
        run.log_artifact(folder, artifact_path="evaluation")
        run.log_figure(figure, "evaluation/per_tier.png")
    plt.close(figure)

    recorded = tracker.client.get_run(run.run_id)
    assert recorded.info.status == "FINISHED"
    assert recorded.info.run_name == "als-64"
    assert recorded.data.params == {
        "weights.tier.gold": "1.5",
        "model.factors": "64",
        SPLIT_FINGERPRINT_TAG: "split-abc",
    }
    assert recorded.data.metrics == {"ndcg_at_10_all": 0.25, "ndcg_at_10_new": 0.1, "loss": 3.0}
    history = tracker.client.get_metric_history(run.run_id, "loss")
    assert [m.step for m in history] == [2]
    assert recorded.data.tags["model"] == "als"
    assert recorded.data.tags[SPLIT_FINGERPRINT_TAG] == "split-abc"
    assert len(recorded.data.tags[TAG_GIT_COMMIT]) == 40

    root = Path(tracker.local_artifacts(run.run_id))
    assert json.loads((root / "evaluation" / "summary.json").read_text()) == {"tiers": ["gold"]}
    assert (root / "report.md").read_text() == "# report\n"
    assert (root / "evaluation" / "tables" / "per_tier.csv").is_file()
    assert (root / "evaluation" / "per_tier.png").read_bytes()[:4] == b"\x89PNG"
    params = json.loads((root / "params.json").read_text())
    assert params["weights.tier.gold"] == "1.5"


def test_long_param_values_are_cut_and_kept_in_full_in_params_json(tracker: Tracker) -> None:
    long_value = "x" * 7000
    with tracker.start_run("long") as run:
        run.log_params({"tags": {"list": long_value}})
    stored = tracker.client.get_run(run.run_id).data.params["tags.list"]
    assert len(stored) <= 6000
    assert stored.endswith("[truncated; full value in params.json]")
    root = Path(tracker.local_artifacts(run.run_id))
    assert json.loads((root / "params.json").read_text())["tags.list"] == long_value


def test_many_params_are_logged_in_batches(tracker: Tracker) -> None:
    with tracker.start_run("many") as run:
        run.log_params({f"p{i}": i for i in range(250)})
    assert len(tracker.client.get_run(run.run_id).data.params) == 250


def test_metric_names_mapping_to_one_key_are_refused(tracker: Tracker) -> None:
    with tracker.start_run("clash") as run, pytest.raises(TrackingError, match="ndcg_at_10_all"):
        run.log_metrics({"ndcg@10/all": 0.1, "ndcg@10 all": 0.2})


def test_nested_runs_point_to_their_parent(tracker: Tracker) -> None:
    with tracker.start_run("study") as parent:
        with tracker.start_run("trial-0", nested=True) as child:
            pass
        with tracker.start_run("trial-1", nested=True) as second:
            pass
    assert tracker.client.get_run(child.run_id).data.tags[TAG_PARENT_RUN] == parent.run_id
    assert tracker.client.get_run(second.run_id).data.tags[TAG_PARENT_RUN] == parent.run_id
    assert TAG_PARENT_RUN not in tracker.client.get_run(parent.run_id).data.tags


def test_nested_run_without_parent_is_an_error(tracker: Tracker) -> None:
    with pytest.raises(TrackingError, match="nested=True needs an open parent"):  # noqa: SIM117
        with tracker.start_run("orphan", nested=True):
            pass


def test_a_run_whose_block_raises_ends_failed(tracker: Tracker) -> None:
    with pytest.raises(ValueError, match="boom"):  # noqa: SIM117
        with tracker.start_run("broken") as run:
            raise ValueError("boom")
    assert tracker.client.get_run(run.run_id).info.status == "FAILED"


def test_artifact_that_does_not_exist_is_named(tracker: Tracker, tmp_path: Path) -> None:
    with tracker.start_run("missing") as run, pytest.raises(TrackingError, match=r"nope\.txt"):
        run.log_artifact(tmp_path / "nope.txt")


# -- registration ----------------------------------------------------------------------------


def test_log_bundle_registers_a_version_holding_the_bundle(
    tracker: Tracker, tmp_path: Path
) -> None:
    bundle = write_blend_bundle(tmp_path / "bundle")
    with tracker.start_run("registered") as run:
        run.set_split_fingerprint("split-1")
        first = run.log_bundle(bundle)
    with tracker.start_run("registered-again") as run2:
        second = run2.log_bundle(bundle)
    assert (first.name, first.version, first.run_id) == (MODEL_NAME, 1, run.run_id)
    assert (second.version, second.uri) == (2, f"models:/{MODEL_NAME}/2")

    versions = tracker.list_versions()
    assert [v.version for v in versions] == [2, 1]
    assert versions[1].run_name == "registered"
    assert versions[1].split_fingerprint == "split-1"
    assert versions[0].split_fingerprint is None
    assert tracker.champion() is None

    resolved = tracker.resolve_bundle(first.uri)
    assert (resolved / "manifest.json").read_bytes() == (bundle / "manifest.json").read_bytes()
    assert str(resolved).startswith(str(tmp_path / "store" / "artifacts"))  # not copied
    assert tracker.resolve_bundle(f"runs:/{run.run_id}/model") == resolved
    assert tracker.resolve_bundle(str(bundle)) == bundle
    assert tracker.resolve_bundle(bundle.as_uri()) == bundle


def test_log_bundle_refuses_a_folder_that_is_not_a_bundle(tracker: Tracker, tmp_path: Path) -> None:
    with tracker.start_run("bad") as run, pytest.raises(TrackingError, match=r"no manifest\.json"):
        run.log_bundle(tmp_path)


def test_empty_registry_lists_nothing(tracker: Tracker) -> None:
    assert tracker.list_versions() == []
    assert tracker.champion() is None


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/member-recs@champion", "no version of 'member-recs' has the alias 'champion'"),
        ("runs:/0123456789abcdef/model", "no run 0123456789abcdef"),
        ("s3://bucket/model", "expected models:/<name>@<alias>"),
        ("/no/such/folder", "does not exist"),
    ],
)
def test_unresolvable_model_sources_are_named(tracker: Tracker, uri: str, message: str) -> None:
    with pytest.raises(TrackingError, match=message):
        tracker.resolve_bundle(uri)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("sqlite:////proc/no-such-dir/mlflow.db", "cannot create the folder"),
        ("foo://bar", "cannot open the tracking store"),
    ],
)
def test_unusable_tracking_uri_is_named(uri: str, message: str) -> None:
    with pytest.raises(TrackingError, match=message) as raised:
        Tracker(uri)
    assert uri in str(raised.value)
