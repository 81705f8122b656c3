"""Where the served model comes from: a registry URI, a run URI or a bundle folder.

``models:/member-recs@champion`` (the default), ``models:/member-recs/3``, ``runs:/<run>/model``
or a local folder (a bundle, or an MLflow pyfunc model folder holding one under
``artifacts/bundle``). Registry and run URIs are resolved with MLflow's client against
``MLFLOW_TRACKING_URI`` (default: the embedded ``mlflow/mlflow.db`` of the repository, as
training uses); MLflow is imported only for those URIs. This module and ``training.tracking``
are the only ones that talk to MLflow; serving never imports training.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

_REPO: Final[Path] = Path(__file__).resolve().parents[1]
_MODELS: Final = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
MANIFEST: Final[str] = "manifest.json"


class ModelSourceError(Exception):
    """The model URI cannot be resolved to a bundle; the message names the URI and why."""


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model URI resolved to a local bundle folder.

    ``label`` names the model for humans and responses: ``member-recs/3`` for a registry
    version, ``runs:/...`` for a run, the folder name for a local bundle.
    """

    uri: str
    path: Path
    label: str
    registry_version: str | None = None
    run_id: str | None = None


def default_tracking_uri() -> str:
    configured = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if configured:
        return configured
    return f"sqlite:///{_REPO / 'mlflow' / 'mlflow.db'}"


def _absolute(uri: str) -> str:
    if not uri.startswith("sqlite:///"):
        return uri
    path, _, query = uri.removeprefix("sqlite:///").partition("?")
    if not path or Path(path).is_absolute():
        return uri
    absolute = f"sqlite:///{Path(path).resolve()}"
    return f"{absolute}?{query}" if query else absolute


def is_local(uri: str) -> bool:
    return not uri.startswith(("models:/", "runs:/")) and "://" not in uri


def resolve_model(uri: str, *, tracking_uri: str | None = None) -> ResolvedModel:
    """Resolve ``uri`` to a local bundle folder (downloading remote artifacts if needed)."""
    if is_local(uri):
        folder = Path(uri).expanduser()
        return ResolvedModel(uri=uri, path=find_bundle(folder, uri), label=folder.resolve().name)
    if not uri.startswith(("models:/", "runs:/")):
        raise ModelSourceError(
            f"model URI {uri!r}: expected models:/<name>@<alias>, models:/<name>/<version>, "
            "runs:/<run_id>/<path> or a bundle folder"
        )
    target = _absolute(tracking_uri or default_tracking_uri())
    if uri.startswith("runs:/"):
        run_id = uri.removeprefix("runs:/").split("/", 1)[0]
        local = _download(uri, target)
        return ResolvedModel(uri=uri, path=find_bundle(local, uri), label=uri, run_id=run_id)
    match = _MODELS.match(uri)
    if match is None:
        raise ModelSourceError(
            f"model URI {uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>"
        )
    name: str = match["name"]
    version = match["version"] or _alias_version(name, str(match["alias"]), target, uri)
    local = _download(f"models:/{name}/{version}", target)
    return ResolvedModel(
        uri=uri,
        path=find_bundle(local, uri),
        label=f"{name}/{version}",
        registry_version=version,
        run_id=_run_of(name, version, target),
    )


def _client(target: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=target, registry_uri=target)


def _alias_version(name: str, alias: str, target: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        found = _client(target).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise ModelSourceError(
            f"model URI {uri!r}: no version of {name!r} has the alias {alias!r} in the registry "
            f"at {target} ({exc.message}); train and promote a model (`recsys train`), or set "
            "RECSYS_MODEL_URI to a bundle folder"
        ) from exc
    return str(found.version)


def _run_of(name: str, version: str, target: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        run_id = _client(target).get_model_version(name, version).run_id
    except MlflowException:
        return None  # the version resolved and downloaded; its run id is only informative
    return str(run_id) if run_id else None


def _artifact_uri(uri: str, target: str) -> str:
    """The artifact location behind ``models:/<name>/<n>`` or ``runs:/<id>/<path>``.

    Resolved with an explicit client: MLflow's own resolution of these URIs uses the
    process-wide tracking/registry URI, not the one given.
    """
    client = _client(target)
    if uri.startswith("models:/"):
        name, _, version = uri.removeprefix("models:/").rpartition("/")
        uri = str(client.get_model_version(name, version).source)
    if uri.startswith("runs:/"):
        run_id, _, path = uri.removeprefix("runs:/").partition("/")
        root = str(client.get_run(run_id).info.artifact_uri).rstrip("/")
        uri = f"{root}/{path}" if path else root
    return uri


def _download(uri: str, target: str) -> Path:
    from mlflow.exceptions import MlflowException

    import mlflow

    try:
        location = _artifact_uri(uri, target)
        if location.startswith("file:") or "://" not in location:
            local = urlparse(location).path if location.startswith("file:") else location
            if Path(local).exists():
                return Path(local)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=location, tracking_uri=target, registry_uri=target
        )
    except MlflowException as exc:
        raise ModelSourceError(f"model URI {uri!r}: not found at {target} ({exc.message})") from exc
    except OSError as exc:
        raise ModelSourceError(f"model URI {uri!r}: cannot download its artifacts ({exc})") from exc
    return Path(local)


def find_bundle(folder: Path, uri: str) -> Path:
    """The bundle folder in ``folder``: itself, or the ``bundle`` artifact of a pyfunc model."""
    if (folder / MANIFEST).is_file():
        return folder
    for candidate in (folder / "artifacts" / "bundle", folder / "bundle"):
        if (candidate / MANIFEST).is_file():
            return candidate
    if (folder / "MLmodel").is_file():
        nested = _bundle_from_mlmodel(folder)
        if nested is not None:
            return nested
        raise ModelSourceError(f"model URI {uri!r}: the MLflow model at {folder} holds no bundle")
    if not folder.exists():
        raise ModelSourceError(f"model URI {uri!r}: {folder} does not exist")
    raise ModelSourceError(
        f"model URI {uri!r}: {folder} is neither a bundle folder ({MANIFEST}) nor an MLflow "
        "model holding one"
    )


def _bundle_from_mlmodel(folder: Path) -> Path | None:
    from mlflow.models import Model

    flavor = Model.load(str(folder)).flavors.get("python_function", {})
    artifacts = flavor.get("artifacts", {}) if isinstance(flavor, dict) else {}
    entry = artifacts.get("bundle") if isinstance(artifacts, dict) else None
    if isinstance(entry, dict) and isinstance(entry.get("path"), str):
        bundle = folder / str(entry["path"])
        if (bundle / MANIFEST).is_file():
            return bundle
    return None


__all__ = [
    "ModelSourceError",
    "ResolvedModel",
    "default_tracking_uri",
    "find_bundle",
    "is_local",
    "resolve_model",
]
