"""Model sources: a registry URI, a run URI or a folder, resolved to a local bundle folder.

The one resolver of the project: training (``training.model_sources``, behind ``Tracker``) and
serving (``serving.model_source``, behind the service and ``recsys serve``) both call it, so the
same source string gives the same folder on both sides. A source is one of

- ``models:/<name>@<alias>`` or ``models:/<name>/<version>``, optionally followed by ``/<path>``
  inside the version's artifacts;
- ``runs:/<run_id>`` or ``runs:/<run_id>/<path>`` (a run's artifacts, or a path in them);
- a ``file:`` URI or a local folder (``~`` is expanded; relative paths stay relative).

The folder found is a bundle (it holds ``manifest.json``) or holds one: an MLflow model folder
(``MLmodel``) holds the bundle its ``python_function`` flavor declares as the artifact
``bundle``; a folder that is not an MLflow model may hold it as ``bundle/`` or
``artifacts/bundle/`` (a run's artifacts with a bundle folder logged as an artifact).

``models:/`` and ``runs:/`` are resolved with an explicit MLflow client against the tracking URI
given (default :func:`default_tracking_uri`; a relative SQLite path is made absolute), never
against MLflow's process-wide one; the registry is the tracking store. An artifact in a local
store is used where it lies (nothing is copied); a remote one is downloaded into ``dst_path``
(a new temporary folder when not given). Every failure raises :class:`ModelSourceError` naming
the source and why; training raises it as a ``TrackingError`` too, serving as it is.

Where the two former copies (serving's and training's) differed, the behaviour chosen:

- ``file:`` URIs are accepted (serving refused them) and ``~`` is expanded (training did not);
  any other ``scheme:/...`` than ``models:/``, ``runs:/`` and ``file:`` is refused (serving took
  a string without ``://`` for a folder).
- ``models:/...`` may name a path inside the version (training's; serving refused it).
- A ``file:`` artifact location is percent-decoded and used even when it is gone, so the error
  says the folder does not exist (serving did not decode, then tried to download it).
- Downloads always pass the explicit tracking and registry URI (training passed none) and go to
  ``dst_path`` when given (serving had no ``dst_path``).
- MLflow errors and ``OSError`` while reading the store both become :class:`ModelSourceError`
  (training let ``OSError`` through).
- An MLflow model's declared ``bundle`` artifact is authoritative: a model declaring none is an
  error even if a ``bundle`` folder lies in it (serving looked for ``artifacts/bundle`` first);
  the conventional ``bundle/`` places are looked at only in folders that are not MLflow models
  (training never looked there).
- ``sqlite:///:memory:`` stays as it is (serving made a file path of it).
- Every resolution knows its label, registry version and run (serving's :class:`ResolvedModel`);
  the run of a registry version comes from the same lookup as its artifacts.

MLflow is imported only inside the functions that talk to a store or read an ``MLmodel`` file:
``import engine`` (and serving a bundle folder) must stay light and work without MLflow.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse
from urllib.request import url2pathname

from engine.errors import EngineError

#: The bundle's folder inside a pyfunc model (the artifact name ``log_bundle`` gives it).
BUNDLE_ARTIFACT: Final[str] = "bundle"
MANIFEST: Final[str] = "manifest.json"
_MLMODEL: Final[str] = "MLmodel"
_REPO: Final[Path] = Path(__file__).resolve().parents[1]
_MODELS_URI: Final = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))(?:/(?P<rest>.+))?$"
)
_URI_SCHEME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:/")
_EXPECTED: Final[str] = (
    "expected models:/<name>@<alias>, models:/<name>/<version>, runs:/<run_id>/<path>, "
    "a file:// URI or a bundle folder"
)


class ModelSourceError(EngineError):
    """A model source cannot be resolved to a bundle; the message names the source and why."""


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model source resolved to a local bundle folder.

    ``label`` names the model for humans and responses: ``member-recs/3`` for a registry
    version, the URI for a run, the folder name for a local folder.
    """

    uri: str
    path: Path
    label: str
    registry_version: str | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Location:
    """Where a source's artifacts are, before they are made local."""

    artifact_uri: str
    label: str
    registry_version: str | None = None
    run_id: str | None = None


# -- tracking store URIs ---------------------------------------------------------------------


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite store ``<repo>/mlflow/mlflow.db``."""
    configured = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if configured:
        return configured
    return f"sqlite:///{_REPO / 'mlflow' / 'mlflow.db'}"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for other stores and in-memory ones."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def absolute_uri(uri: str) -> str:
    """Relative SQLite paths made absolute (they would otherwise depend on the cwd)."""
    database = sqlite_file(uri)
    if database is None or database.is_absolute():
        return uri
    query = uri.split("?", 1)[1] if "?" in uri else ""
    absolute = f"sqlite:///{database.resolve()}"
    return f"{absolute}?{query}" if query else absolute


# -- resolving -------------------------------------------------------------------------------


def is_local(uri: str) -> bool:
    """Whether ``uri`` is a folder (a plain path or a ``file:`` URI), not a store URI."""
    return uri.startswith("file:") or not _URI_SCHEME.match(uri)


def resolve_model(
    uri: str, *, tracking_uri: str | None = None, dst_path: Path | None = None
) -> ResolvedModel:
    """Resolve ``uri`` to a local bundle folder (see the module docstring for the sources)."""
    local = _local_path(uri)
    if local is not None:
        return ResolvedModel(uri=uri, path=find_bundle(local, uri), label=local.resolve().name)
    location, folder = _fetch(uri, tracking_uri, dst_path)
    return ResolvedModel(
        uri=uri,
        path=find_bundle(folder, uri),
        label=location.label,
        registry_version=location.registry_version,
        run_id=location.run_id,
    )


def resolve_bundle(
    uri: str, *, tracking_uri: str | None = None, dst_path: Path | None = None
) -> Path:
    """The local bundle folder of ``uri`` (:func:`resolve_model` without the labels)."""
    return resolve_model(uri, tracking_uri=tracking_uri, dst_path=dst_path).path


def resolve_local(
    uri: str, *, tracking_uri: str | None = None, dst_path: Path | None = None
) -> Path:
    """The local folder behind ``uri``, not checked for a bundle (nor for existence)."""
    local = _local_path(uri)
    if local is not None:
        return local
    return _fetch(uri, tracking_uri, dst_path)[1]


def _local_path(uri: str) -> Path | None:
    """The filesystem path of a ``file:`` URI or a plain path; None for store URIs."""
    if uri.startswith("file:"):
        return Path(url2pathname(urlparse(uri).path))
    return None if _URI_SCHEME.match(uri) else Path(uri).expanduser()


def _fetch(uri: str, tracking_uri: str | None, dst_path: Path | None) -> tuple[_Location, Path]:
    """The location of a ``models:/`` or ``runs:/`` source and its local folder."""
    registered = _MODELS_URI.match(uri)
    if uri.startswith("models:/") and registered is None:
        raise ModelSourceError(
            f"model source {uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>"
        )
    if uri.startswith("runs:/") and not uri.removeprefix("runs:/").partition("/")[0]:
        raise ModelSourceError(f"model source {uri!r}: expected runs:/<run_id>/<path>")
    if not uri.startswith(("models:/", "runs:/")):
        raise ModelSourceError(f"model source {uri!r}: {_EXPECTED}")
    target = absolute_uri(tracking_uri or default_tracking_uri())
    # MLflow is imported here, not at the top: only store URIs need it (see the docstring)
    from mlflow.exceptions import MlflowException

    try:
        client = _client(target)
        if registered is not None:
            location = _registered(uri, registered, client, target)
        else:
            location = _run(uri, client, target, uri)
        return location, _materialize(location.artifact_uri, target, dst_path)
    except MlflowException as exc:
        raise ModelSourceError(
            f"model source {uri!r}: cannot be read from {target} ({exc.message})"
        ) from exc
    except OSError as exc:
        raise ModelSourceError(
            f"model source {uri!r}: cannot read its artifacts from {target} ({exc})"
        ) from exc


def _client(target: str) -> Any:
    from mlflow import MlflowClient  # lazy: see the module docstring

    return MlflowClient(tracking_uri=target, registry_uri=target)


def _registered(uri: str, match: re.Match[str], client: Any, target: str) -> _Location:
    """The artifacts behind ``models:/<name>@<alias>[/path]`` or ``models:/<name>/<n>[/path]``."""
    from mlflow.exceptions import MlflowException  # lazy: see the module docstring

    name, alias, version, rest = match.group("name", "alias", "version", "rest")
    if alias is not None:
        try:
            version = str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            raise ModelSourceError(
                f"model source {uri!r}: no version of {name!r} has the alias {alias!r} in the "
                f"registry at {target} ({exc.message}); train and promote a model (`recsys "
                "train`, `recsys models promote`) or give a bundle folder"
            ) from exc
    try:
        found = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise ModelSourceError(
            f"model source {uri!r}: version {version} of {name!r} is not in the registry at "
            f"{target} ({exc.message})"
        ) from exc
    source = str(found.source)
    if source.startswith("runs:/"):
        source = _run(source, client, target, uri).artifact_uri
    run_id = str(found.run_id) if found.run_id else None
    return _Location(
        artifact_uri=f"{source.rstrip('/')}/{rest}" if rest else source,
        label=f"{name}/{version}",
        registry_version=str(version),
        run_id=run_id,
    )


def _run(run_uri: str, client: Any, target: str, uri: str) -> _Location:
    """The artifacts behind ``runs:/<run_id>[/<path>]`` (``uri``, the source, names errors)."""
    from mlflow.exceptions import MlflowException  # lazy: see the module docstring

    run_id, _, path = run_uri.removeprefix("runs:/").partition("/")
    if not run_id:  # a registered version's source (a runs:/ source given is checked before)
        raise ModelSourceError(f"model source {uri!r}: {run_uri!r} names no run")
    try:
        root = str(client.get_run(run_id).info.artifact_uri).rstrip("/")
    except MlflowException as exc:
        raise ModelSourceError(f"model source {uri!r}: no run {run_id} in {target}") from exc
    artifact_uri = f"{root}/{path}" if path else root
    return _Location(artifact_uri=artifact_uri, label=run_uri, run_id=run_id)


def _materialize(artifact_uri: str, target: str, dst_path: Path | None) -> Path:
    """A local folder for ``artifact_uri``: where it lies in a local store, else downloaded."""
    local = _local_path(artifact_uri)
    if local is not None:
        return local
    import mlflow.artifacts  # lazy: see the module docstring

    if dst_path is not None:
        dst_path.mkdir(parents=True, exist_ok=True)
    downloaded: str = mlflow.artifacts.download_artifacts(
        artifact_uri=artifact_uri,
        dst_path=str(dst_path) if dst_path is not None else None,
        tracking_uri=target,
        registry_uri=target,
    )
    return Path(downloaded)


# -- the bundle in a folder ------------------------------------------------------------------


def find_bundle(folder: Path, uri: str) -> Path:
    """The bundle folder in ``folder`` (see the module docstring); ``uri`` names it in errors."""
    if (folder / MANIFEST).is_file():
        return folder
    if (folder / _MLMODEL).is_file():
        declared = _declared_bundle(folder, uri)
        if declared is None:
            raise ModelSourceError(
                f"model source {uri!r}: the MLflow model at {folder} holds no bundle (no "
                f"{BUNDLE_ARTIFACT!r} artifact with a {MANIFEST})"
            )
        return declared
    for candidate in (folder / BUNDLE_ARTIFACT, folder / "artifacts" / BUNDLE_ARTIFACT):
        if (candidate / MANIFEST).is_file():
            return candidate
    if not folder.exists():
        raise ModelSourceError(f"model source {uri!r}: {folder} does not exist")
    raise ModelSourceError(
        f"model source {uri!r}: {folder} is neither a bundle folder ({MANIFEST}) nor an MLflow "
        f"model ({_MLMODEL}) holding one"
    )


def _declared_bundle(folder: Path, uri: str) -> Path | None:
    """The bundle an MLflow model folder declares (python_function artifact ``bundle``)."""
    from mlflow.exceptions import MlflowException  # lazy: see the module docstring
    from mlflow.models import Model

    try:
        flavor = Model.load(str(folder)).flavors.get("python_function", {})
    except (MlflowException, OSError, ValueError) as exc:
        raise ModelSourceError(
            f"model source {uri!r}: cannot read {folder / _MLMODEL} ({exc})"
        ) from exc
    artifacts = flavor.get("artifacts", {}) if isinstance(flavor, dict) else {}
    entry = artifacts.get(BUNDLE_ARTIFACT) if isinstance(artifacts, dict) else None
    if isinstance(entry, dict) and isinstance(entry.get("path"), str):
        bundle = folder / str(entry["path"])
        if (bundle / MANIFEST).is_file():
            return bundle
    return None


__all__ = [
    "BUNDLE_ARTIFACT",
    "MANIFEST",
    "ModelSourceError",
    "ResolvedModel",
    "absolute_uri",
    "default_tracking_uri",
    "find_bundle",
    "is_local",
    "resolve_bundle",
    "resolve_local",
    "resolve_model",
    "sqlite_file",
]
