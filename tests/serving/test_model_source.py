"""Serving resolves registry URIs against the store it is given, as `make demo` relies on.

MLflow's own resolution of ``models:/`` and ``runs:/`` URIs consults the process-wide default
store (``./mlflow.db`` in the working directory in MLflow 3); serving must not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.model_source import ModelSourceError, resolve_model
from tests.training.mlflow_helpers import fresh_tracker, migrated_store, write_blend_bundle
from training.tracking import Tracker


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
