"""Model sources: a registry URI, a run URI or a folder, turned into a local bundle folder.

:func:`resolve_bundle` turns ``models:/member-recs@champion``, ``models:/member-recs/3``, a
``runs:/<run_id>/model`` URI or a plain bundle folder into a local bundle folder;
:func:`resolve_local` gives the folder behind a source without looking for a bundle in it.
Registry and run URIs are resolved with an explicit MLflow client against the given tracking
URI (MLflow's own resolution uses the process-wide one).

serving.model_source resolves the same URIs for the service with its own copy of this logic
(serving may not import training): keep the two in step until they share one resolver.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from mlflow.exceptions import MlflowException

import mlflow
from mlflow import MlflowClient
from training.tracking_store import (
    BUNDLE_ARTIFACT,
    TrackingError,
    absolute_uri,
    default_tracking_uri,
)

_MODELS_URI = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))(?:/(?P<rest>.+))?$"
)
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:/")


def resolve_bundle(
    uri: str, *, tracking_uri: str | None = None, dst_path: Path | None = None
) -> Path:
    """A local bundle folder for a model source.

    ``uri`` is ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/<run_id>/<path>``
    (a pyfunc model logged by :meth:`training.run_logging.TrackedRun.log_bundle`, or a bundle folder artifact), a
    ``file://`` URI or a local folder (a bundle, or a pyfunc model folder holding one).
    ``models:/`` and ``runs:/`` are looked up at ``tracking_uri`` (default: as
    :func:`default_tracking_uri`). With a local artifact store the returned path points into the
    store (nothing is copied); remote artifacts are downloaded into ``dst_path`` (a new temporary
    folder when not given).
    """
    return _bundle_in(resolve_local(uri, tracking_uri=tracking_uri, dst_path=dst_path), uri)


def resolve_local(
    uri: str, *, tracking_uri: str | None = None, dst_path: Path | None = None
) -> Path:
    """The local folder behind a model source (see :func:`resolve_bundle`), not checked."""
    if not _URI_SCHEME.match(uri) or uri.startswith("file:"):
        return _local_path(uri) or Path(uri)
    if not uri.startswith(("models:/", "runs:/")):
        raise TrackingError(
            f"model source {uri!r}: expected models:/<name>@<alias>, models:/<name>/<version>, "
            "runs:/<run_id>/<path> or a bundle folder"
        )
    target = absolute_uri(tracking_uri or default_tracking_uri())
    client = MlflowClient(tracking_uri=target, registry_uri=target)
    try:
        if uri.startswith("models:/"):
            artifact_uri = _registered_source(uri, client, target)
        else:
            artifact_uri = _run_source(uri, client, target)
        local = _local_path(artifact_uri)
        if local is not None:
            return local
        if dst_path is not None:
            dst_path.mkdir(parents=True, exist_ok=True)
        downloaded: str = mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_uri, dst_path=str(dst_path) if dst_path is not None else None
        )
    except MlflowException as exc:
        raise TrackingError(f"model source {uri!r} cannot be read from {target}: {exc}") from exc
    return Path(downloaded)


def _local_path(uri: str) -> Path | None:
    """The filesystem path of a ``file:`` URI or plain path; None for remote URIs."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    return Path(uri) if not _URI_SCHEME.match(uri) else None


def _registered_source(uri: str, client: MlflowClient, registry_uri: str) -> str:
    """The artifact URI behind ``models:/<name>@<alias>[/path]`` or ``models:/<name>/<n>``.

    (Resolved with an explicit client: MLflow's own resolution of ``models:/`` URIs uses the
    process-wide registry URI, not the one given.)
    """
    match = _MODELS_URI.match(uri)
    if match is None:
        raise TrackingError(
            f"model source {uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>"
        )
    name, alias, number, rest = match.group("name", "alias", "version", "rest")
    if alias is not None:
        try:
            number = str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            raise TrackingError(
                f"model source {uri!r}: no version of {name!r} has the alias {alias!r} in "
                f"{registry_uri} (promote one with `recsys models promote`)"
            ) from exc
    try:
        source = str(client.get_model_version(name, str(number)).source)
    except MlflowException as exc:
        raise TrackingError(f"model source {uri!r}: not found in {registry_uri}") from exc
    if source.startswith("runs:/"):
        source = _run_source(source, client, registry_uri)
    return f"{source.rstrip('/')}/{rest}" if rest else source


def _run_source(uri: str, client: MlflowClient, tracking_uri: str) -> str:
    """The artifact URI behind ``runs:/<run_id>/<path>``."""
    run_id, _, path = uri.removeprefix("runs:/").partition("/")
    if not run_id:
        raise TrackingError(f"model source {uri!r}: expected runs:/<run_id>/<path>")
    try:
        root = str(client.get_run(run_id).info.artifact_uri)
    except MlflowException as exc:
        raise TrackingError(f"model source {uri!r}: no run {run_id} in {tracking_uri}") from exc
    return f"{root.rstrip('/')}/{path}" if path else root


def _bundle_in(folder: Path, uri: str) -> Path:
    if (folder / "manifest.json").is_file():
        return folder
    if (folder / "MLmodel").is_file():
        from mlflow.models import Model

        flavor = Model.load(str(folder)).flavors.get("python_function", {})
        artifacts = flavor.get("artifacts", {})
        entry = artifacts.get(BUNDLE_ARTIFACT) if isinstance(artifacts, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            bundle = folder / str(entry["path"])
            if (bundle / "manifest.json").is_file():
                return bundle
        raise TrackingError(f"model source {uri!r}: the model at {folder} holds no bundle")
    if not folder.exists():
        raise TrackingError(f"model source {uri!r}: {folder} does not exist")
    raise TrackingError(
        f"model source {uri!r}: {folder} is neither a bundle (manifest.json) nor a pyfunc model "
        "(MLmodel)"
    )


__all__ = ["resolve_bundle", "resolve_local"]
