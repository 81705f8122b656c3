"""Experiment tracking, model registry and promotion: the only module that talks to MLflow.

Where runs go
    ``Tracker()`` uses ``MLFLOW_TRACKING_URI`` when it is set, otherwise the embedded default:
    a SQLite store at ``<repo>/mlflow/mlflow.db`` with artifacts under ``<repo>/mlflow/artifacts``
    (absolute paths; the folder is created). For any ``sqlite:///.../x.db`` URI the experiment's
    artifacts go to an ``artifacts`` folder beside the database; for a tracking server the server
    decides (see ``mlflow/README.md``). The registry uses the same URI as tracking.

Runs
    ``with tracker.start_run("als-64") as run:`` creates a run in the experiment (``member-recs``
    by default), tags it with the git commit, and ends it FINISHED, or FAILED / KILLED when the
    block raises. ``nested=True`` makes it a child of the innermost open run of this tracker.
    Runs are driven through an explicit :class:`mlflow.MlflowClient`, never MLflow's global
    "active run", so several trackers (and tests with their own stores) do not interfere.

Names
    Params are flattened with dots (``{"weights": {"tier": {"gold": 1.5}}}`` becomes
    ``weights.tier.gold``); values longer than MLflow's limit are cut with a marker and the full
    dictionary is always logged as the artifact ``params.json``. Metric names are mapped to
    MLflow keys by :func:`metric_key`: ``@`` becomes ``_at_``, every run of characters other than
    letters, digits, ``_``, ``-`` and ``.`` becomes one ``_``, and ``_`` at either end is dropped:
    ``ndcg@10/all`` -> ``ndcg_at_10_all``, ``recall@20/new/tier=gold`` ->
    ``recall_at_20_new_tier_gold``. The mapping is idempotent, so a key can be given in either
    form wherever a metric is named (e.g. :meth:`Tracker.promote`).

Models
    :meth:`TrackedRun.log_bundle` logs a bundle folder (``engine.bundle``) as the run's MLflow
    pyfunc model (artifact ``model``; the bundle itself under ``model/artifacts/bundle``) and
    registers it as ``member-recs``. The pyfunc is "model from code" (a three-line loader
    file, see :mod:`training.pyfunc_model`), so nothing is pickled. ``mlflow.pyfunc.load_model(
    "models:/member-recs@champion").predict(member_ids)`` returns recommendations.

Promotion gate
    :meth:`Tracker.promote` moves the alias ``champion`` to a version only when that version's
    run beats the current champion's run on a metric (default ``ndcg_at_10_all``, higher is
    better) evaluated on the same split, recognised by the tag :data:`SPLIT_FINGERPRINT_TAG`
    (set it with :meth:`TrackedRun.set_split_fingerprint`). No champion yet: promoted.
    Not better, a different or unknown split, or a missing metric: refused with the reason.
    ``force=True`` overrides the gate; the override is recorded as tags on the model version
    and on its run.

Model sources
    :func:`resolve_bundle` turns ``models:/member-recs@champion``, ``models:/member-recs/3``, a
    ``runs:/<run_id>/model`` URI or a plain bundle folder into a local bundle folder. It is
    self-contained so the serving side can reuse it as is.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

import mlflow
from mlflow import MlflowClient

with warnings.catch_warnings():
    # importing mlflow.pyfunc infers schemas of MLflow's own pydantic types and warns about them
    warnings.filterwarnings(
        "ignore", message=".*Any type hint is inferred as AnyType", category=UserWarning
    )
    import mlflow.pyfunc

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Name under which models are registered.
MODEL_NAME = "member-recs"
#: Default experiment.
EXPERIMENT = "member-recs"
#: The alias serving loads and the promotion gate moves.
CHAMPION = "champion"
#: Default metric of the promotion gate (higher is better).
DEFAULT_PROMOTION_METRIC = "ndcg_at_10_all"
#: Run tag (and param) identifying the evaluation split; promotion compares only equal values.
SPLIT_FINGERPRINT_TAG = "split_fingerprint"
#: Artifact path of the pyfunc model inside a run, and the bundle's name inside the model.
MODEL_ARTIFACT = "model"
BUNDLE_ARTIFACT = "bundle"
#: Tags written by the promotion gate on the model version (and, for overrides, on its run).
TAG_PROMOTED_AT = "promotion.promoted_at"
TAG_PROMOTED_OVER = "promotion.previous_champion"
TAG_PROMOTION_FORCED = "promotion.forced"
TAG_PROMOTION_REASON = "promotion.reason"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_PARENT_RUN = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"

_REPO = Path(__file__).resolve().parents[1]
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_TRUNCATED = "...[truncated; full value in params.json]"
_NOT_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")
_UNDERSCORES = re.compile(r"_{2,}")
_MODELS_URI = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))(?:/(?P<rest>.+))?$"
)
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:/")


class TrackingError(Exception):
    """Tracking, registry or model-source problem; the message names the run, version or URI."""


# -- names -----------------------------------------------------------------------------------


def metric_key(name: str) -> str:
    """The MLflow key of a metric name (see the module docstring for the mapping)."""
    key = _NOT_KEY_CHARS.sub("_", name.replace("@", "_at_"))
    key = _UNDERSCORES.sub("_", key).strip("_")
    if not key:
        raise TrackingError(f"metric name {name!r} has no letters or digits to make a key from")
    return key


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts flattened with dots; values as strings (lists and tuples as JSON)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(list(value), default=str)
        elif value is None or isinstance(value, bool):
            flat[name] = json.dumps(value)  # null / true / false, as in TOML and JSON
        else:
            flat[name] = str(value)
    return flat


def _fit_param(value: str) -> str:
    if len(value) <= MAX_PARAM_VAL_LENGTH:
        return value
    return value[: MAX_PARAM_VAL_LENGTH - len(_TRUNCATED)] + _TRUNCATED


# -- where runs go ---------------------------------------------------------------------------


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite store under ``<repo>/mlflow``."""
    configured = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if configured:
        return configured
    folder = _REPO / "mlflow"
    return f"sqlite:///{folder / 'mlflow.db'}"


def _sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _absolute_uri(uri: str) -> str:
    """Relative SQLite paths made absolute (they would otherwise depend on the cwd)."""
    database = _sqlite_file(uri)
    if database is None or database.is_absolute():
        return uri
    query = uri.split("?", 1)[1] if "?" in uri else ""
    absolute = f"sqlite:///{database.resolve()}"
    return f"{absolute}?{query}" if query else absolute


def _artifact_root(uri: str) -> str | None:
    """Artifact location for new experiments: ``artifacts/`` beside a SQLite database."""
    database = _sqlite_file(uri)
    if database is None:
        return None  # a tracking server (or file store) decides
    return (database.parent / "artifacts").resolve().as_uri()


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_REPO,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelVersionRef:
    """A registered model version."""

    name: str
    version: int
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """A registered version with what its run recorded."""

    name: str
    version: int
    run_id: str
    run_name: str
    created_at: datetime
    aliases: tuple[str, ...]
    metrics: Mapping[str, float]
    params: Mapping[str, str]
    split_fingerprint: str | None
    tags: Mapping[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def is_champion(self) -> bool:
        return CHAMPION in self.aliases


@dataclass(frozen=True, slots=True)
class PromotionResult:
    """What the promotion gate decided, and why."""

    version: int
    promoted: bool
    reason: str
    metric: str
    value: float | None
    previous_champion: int | None
    champion_value: float | None
    forced: bool = False


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """One metric (or param) across versions; ``best`` is the version with the highest value."""

    name: str
    kind: str  # "metric" | "param" | "split"
    values: Mapping[int, str | float | None]
    best: int | None = None


# -- runs ------------------------------------------------------------------------------------


@dataclass(slots=True)
class TrackedRun:
    """An open run. Obtain it from :meth:`Tracker.start_run`."""

    tracker: Tracker
    run_id: str
    name: str
    _params: dict[str, str] = field(default_factory=dict)

    @property
    def client(self) -> MlflowClient:
        return self.tracker.client

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) params; ``params.json`` holds every value logged so far in full."""
        flat = flatten_params(params)
        self._params.update(flat)
        items = [Param(key, _fit_param(value)) for key, value in flat.items()]
        for start in range(0, len(items), _PARAMS_PER_BATCH):
            self._call(
                "log params",
                lambda b=items[start : start + _PARAMS_PER_BATCH]: self.client.log_batch(
                    self.run_id, params=b
                ),
            )
        self.log_dict(self._params, "params.json")

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics under their :func:`metric_key`; two names with one key are an error."""
        keys: dict[str, str] = {}
        for name in metrics:
            key = metric_key(name)
            if key in keys and keys[key] != name:
                raise TrackingError(
                    f"run {self.name!r}: metrics {keys[key]!r} and {name!r} both map to the "
                    f"MLflow key {key!r}; rename one of them"
                )
            keys[key] = name
        now = _now_ms()
        batch = [Metric(key, float(metrics[name]), now, step or 0) for key, name in keys.items()]
        for start in range(0, len(batch), _METRICS_PER_BATCH):
            self._call(
                "log metrics",
                lambda b=batch[start : start + _METRICS_PER_BATCH]: self.client.log_batch(
                    self.run_id, metrics=b
                ),
            )

    def set_tags(self, tags: Mapping[str, str]) -> None:
        batch = [RunTag(key, str(value)) for key, value in tags.items()]
        for start in range(0, len(batch), _PARAMS_PER_BATCH):
            self._call(
                "set tags",
                lambda b=batch[start : start + _PARAMS_PER_BATCH]: self.client.log_batch(
                    self.run_id, tags=b
                ),
            )

    def set_split_fingerprint(self, fingerprint: str) -> None:
        """Record which evaluation split the metrics come from (the promotion gate reads it)."""
        if not fingerprint:
            raise TrackingError(f"run {self.name!r}: the split fingerprint must not be empty")
        self.set_tags({SPLIT_FINGERPRINT_TAG: fingerprint})
        self.log_params({SPLIT_FINGERPRINT_TAG: fingerprint})

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        """A JSON (``.json``) or YAML (``.yaml``/``.yml``) artifact."""
        self._call("log dict", lambda: self.client.log_dict(self.run_id, obj, artifact_file))

    def log_text(self, text: str, artifact_file: str) -> None:
        self._call("log text", lambda: self.client.log_text(self.run_id, text, artifact_file))

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        """A file, or a folder (logged with its contents)."""
        local = Path(path)
        if not local.exists():
            raise TrackingError(f"run {self.name!r}: artifact {local} does not exist")
        if local.is_dir():
            target = f"{artifact_path}/{local.name}" if artifact_path else local.name
            self._call(
                "log artifacts",
                lambda: self.client.log_artifacts(self.run_id, str(local), target),
            )
        else:
            self._call(
                "log artifact",
                lambda: self.client.log_artifact(self.run_id, str(local), artifact_path),
            )

    def log_figure(self, fig: Figure, artifact_file: str) -> None:
        """A matplotlib figure as an image artifact (``.png``, ``.svg``, ...)."""
        self._call("log figure", lambda: self.client.log_figure(self.run_id, fig, artifact_file))

    def log_bundle(self, bundle_dir: Path) -> ModelVersionRef:
        """Log ``bundle_dir`` as this run's pyfunc model and register it as ``member-recs``."""
        return self.tracker._log_bundle(self, Path(bundle_dir))

    def _call(self, what: str, action: Any) -> None:
        try:
            action()
        except MlflowException as exc:
            raise TrackingError(f"run {self.name!r} ({self.run_id}): cannot {what}: {exc}") from exc


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block (MLflow reads some per call)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


# -- the tracker -----------------------------------------------------------------------------


class Tracker:
    """Runs, registry and promotion against one tracking URI."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = EXPERIMENT) -> None:
        uri = _absolute_uri(tracking_uri or default_tracking_uri())
        database = _sqlite_file(uri)
        if database is not None:
            try:
                database.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TrackingError(
                    f"{uri}: cannot create the folder of the tracking database "
                    f"({exc.strerror or exc}); set MLFLOW_TRACKING_URI or --tracking-uri"
                ) from exc
        self.tracking_uri = uri
        self.experiment_name = experiment
        try:
            self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        except MlflowException as exc:
            raise TrackingError(f"{uri}: cannot open the tracking store: {exc}") from exc
        self._experiment_id: str | None = None
        self._open: list[TrackedRun] = []

    # experiment and runs

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self._ensure_experiment()
        return self._experiment_id

    def _ensure_experiment(self) -> str:
        try:
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is not None:
                if found.lifecycle_stage == "deleted":
                    self.client.restore_experiment(found.experiment_id)
                return str(found.experiment_id)
            return str(
                self.client.create_experiment(
                    self.experiment_name, artifact_location=_artifact_root(self.tracking_uri)
                )
            )
        except MlflowException as exc:
            raise TrackingError(
                f"{self.tracking_uri}: cannot open experiment {self.experiment_name!r}: {exc}"
            ) from exc

    @contextmanager
    def start_run(
        self, run_name: str, tags: Mapping[str, str] | None = None, nested: bool = False
    ) -> Iterator[TrackedRun]:
        """Open a run; it ends FINISHED, or FAILED (KILLED on Ctrl-C) when the block raises."""
        all_tags = {TAG_RUN_NAME: run_name, **{k: str(v) for k, v in (tags or {}).items()}}
        if nested:
            if not self._open:
                raise TrackingError(
                    f"run {run_name!r}: nested=True needs an open parent run of this tracker"
                )
            all_tags[TAG_PARENT_RUN] = self._open[-1].run_id
        commit = _git_commit()
        if commit is not None:
            all_tags.setdefault(TAG_GIT_COMMIT, commit)
        try:
            created = self.client.create_run(self.experiment_id, tags=all_tags, run_name=run_name)
        except MlflowException as exc:
            raise TrackingError(
                f"{self.tracking_uri}: cannot start run {run_name!r}: {exc}"
            ) from exc
        run = TrackedRun(self, created.info.run_id, run_name)
        self._open.append(run)
        status = "FAILED"
        try:
            yield run
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self._open.remove(run)
            self.client.set_terminated(run.run_id, status=status)

    # registry

    def _log_bundle(self, run: TrackedRun, bundle_dir: Path) -> ModelVersionRef:
        from training.pyfunc_model import LOADER_SOURCE, input_example, signature

        if not (bundle_dir / "manifest.json").is_file():
            raise TrackingError(f"{bundle_dir}: not a bundle folder (no manifest.json)")
        with tempfile.TemporaryDirectory(prefix="recsys-model-") as tmp:
            loader = Path(tmp) / "member_recs_model.py"
            loader.write_text(LOADER_SOURCE, encoding="utf-8")
            model_dir = Path(tmp) / MODEL_ARTIFACT
            try:
                with _environment(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
                    mlflow.pyfunc.save_model(
                        path=str(model_dir),
                        python_model=str(loader),
                        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
                        signature=signature(),
                        input_example=input_example(bundle_dir),
                        pip_requirements=_pip_requirements(),
                    )
            except MlflowException as exc:
                raise TrackingError(
                    f"{bundle_dir}: cannot package the bundle as a model: {exc}"
                ) from exc
            run._call(
                "log the model",
                lambda: self.client.log_artifacts(run.run_id, str(model_dir), MODEL_ARTIFACT),
            )
        return self._register(run)

    def _register(self, run: TrackedRun) -> ModelVersionRef:
        try:
            try:
                self.client.get_registered_model(MODEL_NAME)
            except MlflowException:
                self.client.create_registered_model(
                    MODEL_NAME, description="Member recommendations (bundle + pyfunc)."
                )
            tags = self.client.get_run(run.run_id).data.tags
            version_tags = {
                key: tags[key] for key in (SPLIT_FINGERPRINT_TAG, TAG_GIT_COMMIT) if key in tags
            }
            created = self.client.create_model_version(
                MODEL_NAME,
                source=f"runs:/{run.run_id}/{MODEL_ARTIFACT}",
                run_id=run.run_id,
                tags=version_tags,
            )
        except MlflowException as exc:
            raise TrackingError(f"run {run.name!r}: cannot register {MODEL_NAME!r}: {exc}") from exc
        return ModelVersionRef(MODEL_NAME, int(created.version), run.run_id)

    def list_versions(self) -> list[VersionInfo]:
        """Every registered version of ``member-recs``, newest first."""
        try:
            versions = self.client.search_model_versions(f"name = '{MODEL_NAME}'")
            aliases: dict[str, list[str]] = {}
            if versions:  # search results carry no aliases; the registered model has them
                for alias, number in self.client.get_registered_model(MODEL_NAME).aliases.items():
                    aliases.setdefault(str(number), []).append(alias)
        except MlflowException as exc:
            raise TrackingError(f"{self.tracking_uri}: cannot list versions: {exc}") from exc
        infos = [self._info(v, aliases.get(str(v.version), [])) for v in versions]
        return sorted(infos, key=lambda info: info.version, reverse=True)

    def version(self, version: int) -> VersionInfo:
        try:
            found = self.client.get_model_version(MODEL_NAME, str(version))
        except MlflowException as exc:
            raise TrackingError(
                f"{MODEL_NAME} version {version} not found in {self.tracking_uri}; "
                "`recsys models list` shows the versions"
            ) from exc
        return self._info(found)

    def champion(self) -> VersionInfo | None:
        try:
            found = self.client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
        except MlflowException:
            return None  # no registered model or no alias yet
        return self._info(found)

    def _info(self, version: Any, aliases: Sequence[str] | None = None) -> VersionInfo:
        try:
            run = self.client.get_run(version.run_id)
        except MlflowException as exc:
            raise TrackingError(
                f"{MODEL_NAME} version {version.version}: its run {version.run_id} cannot be "
                f"read from {self.tracking_uri}: {exc}"
            ) from exc
        tags = dict(run.data.tags)
        created = datetime.fromtimestamp(int(version.creation_timestamp) / 1000, tz=UTC)
        return VersionInfo(
            name=str(version.name),
            version=int(version.version),
            run_id=str(version.run_id),
            run_name=str(run.info.run_name or ""),
            created_at=created,
            aliases=tuple(sorted(aliases if aliases is not None else version.aliases or ())),
            metrics=dict(run.data.metrics),
            params=dict(run.data.params),
            split_fingerprint=tags.get(SPLIT_FINGERPRINT_TAG),
            tags={**tags, **dict(version.tags or {})},
        )

    def compare(
        self, versions: Sequence[int], metrics: Sequence[str] | None = None
    ) -> list[ComparisonRow]:
        """Rows: the split, then metrics (all of them, or the ones named), then differing params."""
        infos = [self.version(v) for v in versions]
        rows = [
            ComparisonRow(
                "split", "split", {i.version: i.split_fingerprint for i in infos}, best=None
            )
        ]
        keys = (
            [metric_key(m) for m in metrics]
            if metrics
            else sorted({key for info in infos for key in info.metrics})
        )
        for key in keys:
            values: dict[int, str | float | None] = {i.version: i.metrics.get(key) for i in infos}
            present = {v: float(x) for v, x in values.items() if isinstance(x, float)}
            best = max(present, key=lambda v: present[v]) if len(present) > 1 else None
            rows.append(ComparisonRow(key, "metric", values, best))
        for key in sorted({key for info in infos for key in info.params}):
            param_values = {i.version: i.params.get(key) for i in infos}
            if key != SPLIT_FINGERPRINT_TAG and len(set(param_values.values())) > 1:
                rows.append(ComparisonRow(key, "param", dict(param_values)))
        return rows

    # promotion

    def promote(
        self,
        version: int,
        *,
        metric: str = DEFAULT_PROMOTION_METRIC,
        force: bool = False,
        reason: str = "",
    ) -> PromotionResult:
        """Move ``champion`` to ``version`` if it beats the champion on the same split."""
        key = metric_key(metric)
        candidate = self.version(version)
        current = self.champion()
        value = candidate.metrics.get(key)
        champion_value = current.metrics.get(key) if current is not None else None
        previous = current.version if current is not None else None

        def result(promoted: bool, why: str) -> PromotionResult:
            return PromotionResult(
                version, promoted, why, key, value, previous, champion_value, forced=force
            )

        if current is not None and current.version == version:
            return result(False, f"version {version} is already the {CHAMPION}")
        refusal = _gate(candidate, current, key)
        if refusal is not None and not force:
            return result(False, refusal)
        why = (
            f"forced: {reason or 'no reason given'} (gate: {refusal})"
            if refusal is not None
            else _promotion_reason(candidate, current, key)
        )
        if force and refusal is None:
            why = f"forced: {reason or 'no reason given'} ({why})"
        self._move_champion(candidate, previous, why, forced=force)
        return result(True, why)

    def _move_champion(
        self, candidate: VersionInfo, previous: int | None, why: str, *, forced: bool
    ) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        tags = {
            TAG_PROMOTED_AT: stamp,
            TAG_PROMOTED_OVER: str(previous) if previous is not None else "none",
            TAG_PROMOTION_FORCED: "true" if forced else "false",
            TAG_PROMOTION_REASON: why,
        }
        version = str(candidate.version)
        try:
            for key, value in tags.items():
                self.client.set_model_version_tag(MODEL_NAME, version, key, value)
            if forced:
                for key, value in tags.items():
                    self.client.set_tag(candidate.run_id, key, value)
            self.client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
        except MlflowException as exc:
            raise TrackingError(
                f"cannot move alias {CHAMPION!r} to {MODEL_NAME} version {version}: {exc}"
            ) from exc

    # model sources

    def resolve_bundle(self, uri: str, dst_path: Path | None = None) -> Path:
        """A local bundle folder for ``uri`` in this tracker's store (see :func:`resolve_bundle`)."""
        return resolve_bundle(uri, tracking_uri=self.tracking_uri, dst_path=dst_path)

    def local_artifacts(self, run_id: str, dst_path: Path | None = None) -> Path:
        """The local folder of a run's artifacts (downloaded when the store is remote)."""
        return resolve_local(f"runs:/{run_id}", tracking_uri=self.tracking_uri, dst_path=dst_path)

    def load_model(self, uri: str) -> Any:
        """The pyfunc model at ``uri`` (``models:/...`` or ``runs:/...`` in this tracker's store).

        Same as ``mlflow.pyfunc.load_model`` with this tracker's URI as the process-wide one.
        """
        local = resolve_local(uri, tracking_uri=self.tracking_uri)
        try:
            return mlflow.pyfunc.load_model(str(local))
        except MlflowException as exc:
            raise TrackingError(f"model {uri!r} ({local}) cannot be loaded: {exc}") from exc


def _gate(candidate: VersionInfo, current: VersionInfo | None, key: str) -> str | None:
    """Why ``candidate`` may not replace ``current``, or None when it may."""
    value = candidate.metrics.get(key)
    if value is None:
        return f"version {candidate.version} has no metric {key!r}; evaluate it first"
    if current is None:
        return None
    if candidate.split_fingerprint is None:
        return (
            f"version {candidate.version} records no evaluation split "
            f"(tag {SPLIT_FINGERPRINT_TAG!r}); it cannot be compared with the {CHAMPION}"
        )
    if candidate.split_fingerprint != current.split_fingerprint:
        return (
            f"version {candidate.version} was evaluated on split {candidate.split_fingerprint}, "
            f"the {CHAMPION} (version {current.version}) on {current.split_fingerprint}; "
            "evaluate both on the same split"
        )
    best = current.metrics.get(key)
    if best is None:
        return f"the {CHAMPION} (version {current.version}) has no metric {key!r}"
    if value <= best:
        return (
            f"version {candidate.version} {key}={value:.4f} does not beat the {CHAMPION} "
            f"(version {current.version}) {key}={best:.4f}"
        )
    return None


def _promotion_reason(candidate: VersionInfo, current: VersionInfo | None, key: str) -> str:
    value = candidate.metrics[key]
    if current is None:
        return f"no {CHAMPION} yet; version {candidate.version} {key}={value:.4f}"
    best = current.metrics[key]
    return (
        f"version {candidate.version} {key}={value:.4f} beats version {current.version} "
        f"{key}={best:.4f} on split {candidate.split_fingerprint}"
    )


def _pip_requirements() -> list[str]:
    requirements = ["recsys-loyalty"]
    for package in ("mlflow", "numpy", "pandas", "scipy", "faiss-cpu"):
        try:
            requirements.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            requirements.append(package)
    return requirements


# -- model sources (self-contained: serving may reuse this function as is) -------------------


def resolve_bundle(
    uri: str, *, tracking_uri: str | None = None, dst_path: Path | None = None
) -> Path:
    """A local bundle folder for a model source.

    ``uri`` is ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/<run_id>/<path>``
    (a pyfunc model logged by :meth:`TrackedRun.log_bundle`, or a bundle folder artifact), a
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
    target = _absolute_uri(tracking_uri or default_tracking_uri())
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
