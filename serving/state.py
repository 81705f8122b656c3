"""The served model and its atomic replacement.

:class:`ModelHolder` keeps one :class:`~serving.model.ServingModel`. A request takes the current
model once, at its start, and uses that object to the end; a reload prepares the new model
completely (bundle read, index, catalogue) and then replaces the reference in one assignment.
In-flight requests therefore finish on the old model, later ones see the new one, and none sees
a mixture. A bundle that fails to load raises :class:`~serving.errors.ModelLoadError` naming the
URI and the reason, and the old model keeps serving. Reloads are serialized by a lock.

With several worker processes, the worker that performs a reload publishes the new model in
Redis (``RedisKeys.serving_model``); every worker polls that record
(``RECSYS_MODEL_POLL_SECONDS``) and follows it (:meth:`ModelHolder.follow`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EngineError
from feature_store.errors import FeatureStoreError
from serving.errors import ModelLoadError
from serving.model import ModelInfo, ServingModel, bundle_id
from serving.model_source import ModelSourceError, ResolvedModel, find_bundle, resolve_model
from serving.settings import Settings

log = logging.getLogger("recsys.serving")

Resolver = Callable[[str], ResolvedModel]
_LOAD_ERRORS = (EngineError, FeatureStoreError, ModelSourceError, OSError, ValueError)


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    changed: bool
    previous: ModelInfo
    current: ModelInfo


class ModelHolder:
    """The current model of one role (``champion``, or the experiment's ``challenger``, with
    its own configured URI); replaced atomically by :meth:`reload` / :meth:`follow`."""

    def __init__(
        self,
        settings: Settings,
        tiers: Sequence[str],
        resolver: Resolver | None = None,
        *,
        uri: str | None = None,
        role: str = "champion",
    ) -> None:
        self.settings = settings
        self.tiers = tuple(tiers)
        #: the configured source of this role (RECSYS_MODEL_URI, RECSYS_CHALLENGER_URI)
        self.uri = uri or settings.model_uri
        self.role = role
        self._resolve = resolver or (
            lambda uri: resolve_model(uri, tracking_uri=settings.tracking_uri)
        )
        self._current: ServingModel | None = None
        self._lock = threading.Lock()
        self._failed: dict[str, str] = {}

    @property
    def current(self) -> ServingModel:
        model = self._current
        if model is None:
            raise ModelLoadError("no model is loaded yet")
        return model

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def _load(self, resolved: ResolvedModel) -> ServingModel:
        try:
            return ServingModel.load(resolved, self.settings, self.tiers)
        except _LOAD_ERRORS as exc:
            keeps = (
                f"; model {self._current.info.label} ({self._current.id}) keeps serving"
                if self._current is not None
                else ""
            )
            raise ModelLoadError(
                f"cannot load model {resolved.uri!r} from {resolved.path}: {exc}{keeps}"
            ) from exc

    def _resolved(self, uri: str) -> ResolvedModel:
        try:
            return self._resolve(uri)
        except _LOAD_ERRORS as exc:
            keeps = (
                f"; model {self._current.info.label} keeps serving"
                if self._current is not None
                else ""
            )
            raise ModelLoadError(f"{exc}{keeps}") from exc

    def load_initial(self) -> ServingModel:
        """Load the configured model (at start); ModelLoadError when it cannot be served."""
        with self._lock:
            model = self._load(self._resolved(self.uri))
            self._current = model
            return model

    def reload(self, uri: str | None = None) -> ReloadOutcome:
        """Switch to ``uri`` (default: the configured URI, resolved again: the champion now)."""
        with self._lock:
            previous = self.current
            resolved = self._resolved(uri or self.uri)
            try:
                candidate_id = bundle_id(resolved.path)
            except OSError as exc:
                raise ModelLoadError(
                    f"cannot read the manifest of {resolved.path}: {exc}; model {previous.info.label} keeps serving"
                ) from exc
            if candidate_id == previous.id:
                return ReloadOutcome(False, previous.info, previous.info)
            model = self._load(resolved)
            self._current = model  # the atomic switch
            self._failed.pop(candidate_id, None)
            log.warning(
                "model switched: %s (%s) -> %s (%s)",
                previous.info.label,
                previous.id,
                model.info.label,
                model.id,
            )
            return ReloadOutcome(True, previous.info, model.info)

    def follow(self, record: dict[str, str]) -> bool:
        """Switch to the model another worker published, when it differs; True if switched.

        Records published under another configured model URI are ignored (a restarted service
        with a new RECSYS_MODEL_URI must not be pulled back), and a bundle that failed to load
        is not retried until a new one is published.
        """
        target = record.get("bundle_id")
        if (
            record.get("configured_uri") != self.uri
            or not target
            or target in self._failed
            or (self._current is not None and self._current.id == target)
        ):
            return False
        with self._lock:
            if self._current is not None and self._current.id == target:
                return False
            try:
                path = find_bundle(Path(record["path"]), record.get("uri", record["path"]))
                resolved = ResolvedModel(
                    uri=record.get("uri", str(path)),
                    path=path,
                    label=record.get("label", path.name),
                    registry_version=record.get("registry_version") or None,
                    run_id=record.get("run_id") or None,
                )
                if bundle_id(path) != target:
                    raise ModelSourceError(f"{path} no longer holds bundle {target}")
                model = self._load(resolved)
            except (ModelLoadError, *_LOAD_ERRORS) as exc:
                self._failed[target] = str(exc)
                log.error("not following the published model %s: %s", target, exc)
                return False
            self._current = model
            log.warning(
                "model switched (published by another worker): %s (%s)", model.info.label, model.id
            )
            return True


def published_record(holder: ModelHolder, info: ModelInfo) -> dict[str, str]:
    """What a reload of ``holder``'s role publishes for the other workers."""
    return {
        "role": holder.role,
        "configured_uri": holder.uri,
        "uri": info.uri,
        "path": info.path,
        "bundle_id": info.bundle_id,
        "label": info.label,
        "registry_version": info.registry_version or "",
        "run_id": info.run_id or "",
    }


__all__ = ["ModelHolder", "ReloadOutcome", "published_record"]
