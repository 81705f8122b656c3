"""Serving resolves registry URIs against the store it is given, as `make demo` relies on.

MLflow's own resolution of ``models:/`` and ``runs:/`` URIs consults the process-wide default
store (``./mlflow.db`` in the working directory in MLflow 3); serving must not.

Training and serving share one resolver (engine.model_source): the same source string gives
the same folder, or the same error, through either side's entry point.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.model_source import ModelSourceError, resolve_model
from tests.training.mlflow_helpers import fresh_tracker, migrated_store, write_blend_bundle
from training.model_sources import resolve_bundle, resolve_local
from training.tracking import Tracker, TrackingError


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    folder = tmp_path_factory.mktemp("model-source")
    tracker = fresh_tracker(migrated_store(), folder / "store")
    with tracker.start_run("champion-candidate") as run:
        run.log_metrics({"ndcg@10/all": 0.5})
        run.set_split_fingerprint("split-A")
        version = run.log_bundle(write_blend_bundle(folder / "bundle")).version
    assert tracker.promote(version).promoted
    return tracker


@pytest.mark.parametrize("uri", ["models:/member-recs@champion", "models:/member-recs/1"])
def test_registry_uri_resolves_in_the_given_store_from_any_working_directory(
    registered: Tracker, uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    resolved = resolve_model(uri, tracking_uri=registered.tracking_uri)
    assert (resolved.path / "manifest.json").is_file()
    assert resolved.registry_version == "1"
    assert not (tmp_path / "mlflow.db").exists()


def test_unknown_alias_is_a_clear_error(registered: Tracker) -> None:
    with pytest.raises(ModelSourceError, match="no version of 'member-recs' has the alias"):
        resolve_model("models:/member-recs@gold", tracking_uri=registered.tracking_uri)


# -- one resolver for training and serving ---------------------------------------------------


def _source(template: str, tracker: Tracker) -> str:
    """``template`` with ``{run}`` (the champion's run), ``{pyfunc}`` (its model folder in the
    store) and ``{bundle}`` (the bundle inside that folder) filled in."""
    run_id = tracker.version(1).run_id
    pyfunc = resolve_local(f"runs:/{run_id}/model", tracking_uri=tracker.tracking_uri)
    bundle = pyfunc / "artifacts" / "bundle"
    return template.format(
        run=run_id,
        pyfunc=pyfunc,
        pyfunc_uri=pyfunc.as_uri(),
        bundle=bundle,
        bundle_uri=bundle.as_uri(),
    )


@pytest.mark.parametrize(
    "template",
    [
        "models:/member-recs@champion",
        "models:/member-recs/1",
        "models:/member-recs/1/artifacts/bundle",
        "runs:/{run}/model",
        "runs:/{run}/model/artifacts/bundle",
        "{pyfunc}",
        "{pyfunc_uri}",
        "{bundle}",
        "{bundle_uri}",
    ],
)
def test_a_source_resolves_to_the_same_folder_for_training_and_serving(
    registered: Tracker, template: str
) -> None:
    uri = _source(template, registered)
    served = resolve_model(uri, tracking_uri=registered.tracking_uri)
    trained = resolve_bundle(uri, tracking_uri=registered.tracking_uri)
    assert served.path == trained == registered.resolve_bundle(uri)
    assert served.path == Path(_source("{bundle}", registered))  # in the store, not copied
    assert (served.path / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("models:/member-recs@gold", "no version of 'member-recs' has the alias 'gold'"),
        ("models:/member-recs/7", "version 7 of 'member-recs' is not in the registry"),
        ("runs:/0123456789abcdef/model", "no run 0123456789abcdef"),
        ("runs:/{run}", "neither a bundle folder"),
        ("s3://bucket/model", "expected models:/<name>@<alias>"),
        ("/no/such/folder", "/no/such/folder does not exist"),
        ("file:///no/such/folder", "/no/such/folder does not exist"),
    ],
)
def test_a_bad_source_is_the_same_error_for_training_and_serving(
    registered: Tracker, template: str, message: str
) -> None:
    uri = _source(template, registered)
    with pytest.raises(ModelSourceError, match=message) as served:
        resolve_model(uri, tracking_uri=registered.tracking_uri)
    with pytest.raises(TrackingError, match=message) as trained:
        resolve_bundle(uri, tracking_uri=registered.tracking_uri)
    assert isinstance(trained.value, ModelSourceError)  # training's error is the engine's too
    assert str(trained.value) == str(served.value)
    assert str(served.value).startswith(f"model source {uri!r}: ")


def test_a_resolution_names_its_version_and_run(registered: Tracker) -> None:
    run_id = registered.version(1).run_id
    by_alias = resolve_model("models:/member-recs@champion", tracking_uri=registered.tracking_uri)
    assert (by_alias.label, by_alias.registry_version, by_alias.run_id) == (
        "member-recs/1",
        "1",
        run_id,
    )
    by_run = resolve_model(f"runs:/{run_id}/model", tracking_uri=registered.tracking_uri)
    assert (by_run.label, by_run.registry_version, by_run.run_id) == (
        f"runs:/{run_id}/model",
        None,
        run_id,
    )
    assert by_run.path == by_alias.path
