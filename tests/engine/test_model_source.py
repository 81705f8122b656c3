"""The one model-source resolver (engine.model_source) on local sources, and its light import.

Registry and run URIs, and the same answers through training and serving, are tested in
tests/serving/test_model_source.py against a real tracking store.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.model_source import (
    ModelSourceError,
    absolute_uri,
    default_tracking_uri,
    find_bundle,
    is_local,
    resolve_local,
    resolve_model,
)


def _bundle(folder: Path) -> Path:
    """A folder the resolver takes for a bundle (it only looks for the manifest)."""
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    return folder


def test_a_bundle_folder_is_itself_and_named_by_its_folder(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "als-2024")
    resolved = resolve_model(str(bundle))
    assert (resolved.path, resolved.label, resolved.uri) == (bundle, "als-2024", str(bundle))
    assert (resolved.registry_version, resolved.run_id) == (None, None)


def test_file_uris_are_decoded_and_home_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = _bundle(tmp_path / "my bundle")
    assert "%20" in bundle.as_uri()
    assert resolve_model(bundle.as_uri()).path == bundle
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_model("~/my bundle").path == bundle


def test_relative_folders_stay_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _bundle(tmp_path / "rel")
    monkeypatch.chdir(tmp_path)
    resolved = resolve_model("rel")
    assert (resolved.path, resolved.label) == (Path("rel"), "rel")


@pytest.mark.parametrize("inner", ["bundle", "artifacts/bundle"])
def test_a_folder_holding_a_bundle_gives_the_bundle(tmp_path: Path, inner: str) -> None:
    bundle = _bundle(tmp_path / "run" / inner)
    assert resolve_model(str(tmp_path / "run")).path == bundle
    assert resolve_local(str(tmp_path / "run")) == tmp_path / "run"  # not looked into


def test_an_mlflow_model_declaring_no_bundle_is_an_error(tmp_path: Path) -> None:
    model = tmp_path / "model"
    _bundle(model / "artifacts" / "bundle")  # lying there is not enough: MLmodel decides
    (model / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: x\n")
    with pytest.raises(ModelSourceError, match=r"the MLflow model at .* holds no bundle"):
        find_bundle(model, str(model))


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://bucket/model", "expected models:/<name>@<alias>, .* or a bundle folder"),
        ("models:/member-recs/latest", "expected models:/<name>@<alias> or models:/<name>/<ver"),
        ("runs:/", r"expected runs:/<run_id>/<path>"),
        ("/no/such/folder", "/no/such/folder does not exist"),
    ],
)
def test_unresolvable_sources_are_named_before_any_store_is_opened(
    uri: str, message: str, tmp_path: Path
) -> None:
    store = tmp_path / "never.db"
    with pytest.raises(ModelSourceError, match=f"^model source {uri!r}: {message}"):
        resolve_model(uri, tracking_uri=f"sqlite:///{store}")
    assert not store.exists()


def test_a_folder_that_is_no_bundle_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match=r"neither a bundle folder \(manifest\.json\)"):
        resolve_model(str(tmp_path))


def test_local_sources_and_store_uris_are_told_apart() -> None:
    assert is_local("/models/bundle")
    assert is_local("file:///models/bundle")
    assert is_local("bundles/als")
    assert not is_local("models:/member-recs@champion")
    assert not is_local("runs:/abc/model")
    assert not is_local("s3://bucket/model")


def test_tracking_uris(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri().endswith("/mlflow/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", " http://tracking:5000 ")
    assert default_tracking_uri() == "http://tracking:5000"
    monkeypatch.chdir(tmp_path)
    assert absolute_uri("sqlite:///x.db?mode=ro") == f"sqlite:///{tmp_path.resolve()}/x.db?mode=ro"
    assert absolute_uri("sqlite:///:memory:") == "sqlite:///:memory:"
    assert absolute_uri("http://tracking:5000") == "http://tracking:5000"


def test_resolving_a_bundle_folder_does_not_import_mlflow(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "bundle")
    code = (
        "import sys\n"
        "import engine\n"
        "from engine.model_source import resolve_model\n"
        f"resolve_model({str(bundle)!r})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
