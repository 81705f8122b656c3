"""Model sources for training: a registry URI, a run URI or a folder, as a local bundle folder.

:func:`resolve_bundle` turns ``models:/member-recs@champion``, ``models:/member-recs/3``, a
``runs:/<run_id>/model`` URI, a ``file:`` URI or a plain bundle folder into a local bundle
folder; :func:`resolve_local` gives the folder behind a source without looking for a bundle in
it. Both are training's entry points to the project's one resolver, :mod:`engine.model_source`
(which serving uses too, so a source means the same folder on both sides; its docstring says
what is accepted and how). Here its :class:`~engine.model_source.ModelSourceError` is raised
as :class:`ModelSourceTrackingError`, a :class:`~training.tracking_store.TrackingError` (what
training's callers catch) that is still the engine's error.
"""

from __future__ import annotations

from pathlib import Path

from engine import model_source
from engine.model_source import ModelSourceError
from training.tracking_store import TrackingError


class ModelSourceTrackingError(TrackingError, ModelSourceError):
    """A model source training cannot resolve: both a TrackingError and a ModelSourceError."""


def resolve_bundle(
    uri: str, *, tracking_uri: str | None = None, dst_path: Path | None = None
) -> Path:
    """A local bundle folder for a model source.

    ``uri`` is ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/<run_id>/<path>``
    (a pyfunc model logged by :meth:`training.run_logging.TrackedRun.log_bundle`, or a bundle
    folder artifact), a ``file://`` URI or a local folder (a bundle, or a pyfunc model folder
    holding one). ``models:/`` and ``runs:/`` are looked up at ``tracking_uri`` (default:
    :func:`~training.tracking_store.default_tracking_uri`). With a local artifact store the
    returned path points into the store (nothing is copied); remote artifacts are downloaded
    into ``dst_path`` (a new temporary folder when not given).
    """
    try:
        return model_source.resolve_bundle(uri, tracking_uri=tracking_uri, dst_path=dst_path)
    except ModelSourceError as exc:
        raise ModelSourceTrackingError(str(exc)) from exc


def resolve_local(
    uri: str, *, tracking_uri: str | None = None, dst_path: Path | None = None
) -> Path:
    """The local folder behind a model source (see :func:`resolve_bundle`), not checked."""
    try:
        return model_source.resolve_local(uri, tracking_uri=tracking_uri, dst_path=dst_path)
    except ModelSourceError as exc:
        raise ModelSourceTrackingError(str(exc)) from exc


__all__ = ["ModelSourceTrackingError", "resolve_bundle", "resolve_local"]
