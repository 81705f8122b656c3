"""An open MLflow run: params, metrics, tags and artifacts, each call naming the run on error.

Runs are driven through an explicit :class:`mlflow.MlflowClient`, never MLflow's global "active
run", so several trackers (and tests with their own stores) do not interfere. Params are logged
flattened with dots and ``params.json`` always holds every value in full; metrics are logged
under their :func:`~training.tracking_store.metric_key`. Open runs with
:meth:`training.tracking.Tracker.start_run`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from mlflow import MlflowClient
from training.registry import ModelVersionRef, Registry
from training.tracking_store import (
    SPLIT_FINGERPRINT_TAG,
    TrackingError,
    fit_param,
    flatten_params,
    metric_key,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000


@dataclass(slots=True)
class TrackedRun:
    """An open run. Obtain it from :meth:`Tracker.start_run`."""

    registry: Registry
    run_id: str
    name: str
    _params: dict[str, str] = field(default_factory=dict)

    @property
    def client(self) -> MlflowClient:
        return self.registry.client

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) params; ``params.json`` holds every value logged so far in full."""
        flat = flatten_params(params)
        self._params.update(flat)
        items = [Param(key, fit_param(value)) for key, value in flat.items()]
        self._log_batches("log params", "params", items, _PARAMS_PER_BATCH)
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
        self._log_batches("log metrics", "metrics", batch, _METRICS_PER_BATCH)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        batch = [RunTag(key, str(value)) for key, value in tags.items()]
        self._log_batches("set tags", "tags", batch, _PARAMS_PER_BATCH)

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
        return self.registry.log_bundle(self.run_id, self.name, Path(bundle_dir))

    def _log_batches(self, what: str, kind: str, entries: Sequence[Any], size: int) -> None:
        """``entries`` (``kind``: params, metrics or tags) sent ``size`` at a time."""
        for start in range(0, len(entries), size):
            chunk = list(entries[start : start + size])
            self._call(
                what, lambda chunk=chunk: self.client.log_batch(self.run_id, **{kind: chunk})
            )

    def _call(self, what: str, action: Any) -> None:
        try:
            action()
        except MlflowException as exc:
            raise TrackingError(f"run {self.name!r} ({self.run_id}): cannot {what}: {exc}") from exc


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


__all__ = ["TrackedRun"]
