"""The model registry of a tracking store: registered versions, comparisons, the promotion gate.

Models
    :meth:`Registry.log_bundle` logs a bundle folder (``engine.bundle``) as a run's MLflow pyfunc
    model (artifact ``model``; the bundle itself under ``model/artifacts/bundle``) and registers
    it as ``member-recs``. The pyfunc is "model from code" (a three-line loader file, see
    :mod:`training.pyfunc_model`), so nothing is pickled.

Promotion gate
    :meth:`Registry.promote` moves the alias ``champion`` to a version only when that version's
    run beats the current champion's run on a metric (default ``ndcg_at_10_all``, higher is
    better) evaluated on the same split, recognised by the tag
    :data:`~training.tracking_store.SPLIT_FINGERPRINT_TAG`. No champion yet: promoted. Not
    better, a different or unknown split, or a missing metric: refused with the reason.
    ``force=True`` overrides the gate; the override is recorded as tags on the model version and
    on its run. ``online_evidence`` (the reason of an online experiment the candidate won,
    engine.experiments.gate, checked by the caller: ``recsys models promote
    --require-online-win``) replaces the offline comparison: a challenger is usually trained on
    a newer split than the champion, and a significant win on live members is the stronger
    evidence; the reason recorded on the version says so.

:class:`training.tracking.Tracker` is a registry that also opens runs.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

import mlflow
from mlflow import MlflowClient
from training.model_sources import resolve_bundle, resolve_local
from training.tracking_store import (
    BUNDLE_ARTIFACT,
    CHAMPION,
    DEFAULT_PROMOTION_METRIC,
    MODEL_ARTIFACT,
    MODEL_NAME,
    SPLIT_FINGERPRINT_TAG,
    TAG_GIT_COMMIT,
    TAG_PROMOTED_AT,
    TAG_PROMOTED_OVER,
    TAG_PROMOTION_FORCED,
    TAG_PROMOTION_REASON,
    TrackingError,
    environment,
    metric_key,
)

with warnings.catch_warnings():
    # importing mlflow.pyfunc infers schemas of MLflow's own pydantic types and warns about them
    warnings.filterwarnings(
        "ignore", message=".*Any type hint is inferred as AnyType", category=UserWarning
    )
    import mlflow.pyfunc


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


class Registry:
    """Registered versions of ``member-recs`` in the store at ``tracking_uri``."""

    def __init__(self, client: MlflowClient, tracking_uri: str) -> None:
        self.client = client
        self.tracking_uri = tracking_uri

    def log_bundle(self, run_id: str, run_name: str, bundle_dir: Path) -> ModelVersionRef:
        """Log ``bundle_dir`` as the pyfunc model of the run ``run_id`` and register it."""
        # imported here, after mlflow.pyfunc was imported under the warnings filter above
        from training.pyfunc_model import LOADER_SOURCE, input_example, signature

        if not (bundle_dir / "manifest.json").is_file():
            raise TrackingError(f"{bundle_dir}: not a bundle folder (no manifest.json)")
        with tempfile.TemporaryDirectory(prefix="recsys-model-") as tmp:
            loader = Path(tmp) / "member_recs_model.py"
            loader.write_text(LOADER_SOURCE, encoding="utf-8")
            model_dir = Path(tmp) / MODEL_ARTIFACT
            try:
                with environment(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
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
            try:
                self.client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT)
            except MlflowException as exc:
                raise TrackingError(
                    f"run {run_name!r} ({run_id}): cannot log the model: {exc}"
                ) from exc
        return self._register(run_id, run_name)

    def _register(self, run_id: str, run_name: str) -> ModelVersionRef:
        try:
            try:
                self.client.get_registered_model(MODEL_NAME)
            except MlflowException:
                self.client.create_registered_model(
                    MODEL_NAME, description="Member recommendations (bundle + pyfunc)."
                )
            tags = self.client.get_run(run_id).data.tags
            version_tags = {
                key: tags[key] for key in (SPLIT_FINGERPRINT_TAG, TAG_GIT_COMMIT) if key in tags
            }
            created = self.client.create_model_version(
                MODEL_NAME,
                source=f"runs:/{run_id}/{MODEL_ARTIFACT}",
                run_id=run_id,
                tags=version_tags,
            )
        except MlflowException as exc:
            raise TrackingError(f"run {run_name!r}: cannot register {MODEL_NAME!r}: {exc}") from exc
        return ModelVersionRef(MODEL_NAME, int(created.version), run_id)

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

    # -- promotion

    def promote(
        self,
        version: int,
        *,
        metric: str = DEFAULT_PROMOTION_METRIC,
        force: bool = False,
        reason: str = "",
        online_evidence: str | None = None,
    ) -> PromotionResult:
        """Move ``champion`` to ``version`` if it beats the champion on the same split, or, with
        ``online_evidence``, on that evidence (module docstring)."""
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
        refusal = None if online_evidence is not None else _gate(candidate, current, key)
        if refusal is not None and not force:
            return result(False, refusal)
        if refusal is not None:
            why = f"forced: {reason or 'no reason given'} (gate: {refusal})"
        elif online_evidence is not None:
            why = online_evidence + (f"; {reason}" if reason else "")
        else:
            why = _promotion_reason(candidate, current, key)
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

    # -- model sources

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


__all__ = [
    "ComparisonRow",
    "ModelVersionRef",
    "PromotionResult",
    "Registry",
    "VersionInfo",
]
