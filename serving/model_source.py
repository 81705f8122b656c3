"""Where the served model comes from: a registry URI, a run URI or a bundle folder.

``models:/member-recs@champion`` (the default ``RECSYS_MODEL_URI``), ``models:/member-recs/3``,
``runs:/<run>/model``, a ``file:`` URI or a local folder (a bundle, or an MLflow pyfunc model
folder holding one). Registry and run URIs are resolved against ``MLFLOW_TRACKING_URI``
(default: the embedded ``mlflow/mlflow.db`` of the repository, as training uses).

The resolver is the project's one, :mod:`engine.model_source`, which training uses too (serving
never imports training); this module is the service's entry point to it. MLflow is imported
only for registry and run URIs and for MLflow model folders: serving a bundle folder does not
load it. :class:`ModelSourceError` is the engine's; the service turns it into a
:class:`~serving.errors.ModelLoadError` (HTTP 409 on a reload), ``recsys serve`` into an exit
message.
"""

from __future__ import annotations

from engine.model_source import (
    ModelSourceError,
    ResolvedModel,
    default_tracking_uri,
    find_bundle,
    is_local,
    resolve_model,
)

__all__ = [
    "ModelSourceError",
    "ResolvedModel",
    "default_tracking_uri",
    "find_bundle",
    "is_local",
    "resolve_model",
]
