"""Names and places of the tracking store, shared by runs, the registry and model sources.

Where runs go
    ``MLFLOW_TRACKING_URI`` when it is set, otherwise the embedded default: a SQLite store at
    ``<repo>/mlflow/mlflow.db`` with artifacts under ``<repo>/mlflow/artifacts`` (absolute
    paths). For any ``sqlite:///.../x.db`` URI the experiment's artifacts go to an ``artifacts``
    folder beside the database; for a tracking server the server decides (see
    ``mlflow/README.md``). The registry uses the same URI as tracking. The default and the
    SQLite helpers are defined once, with the model-source resolver (``engine.model_source``),
    so serving resolves models in the store training writes to.

Names
    Params are flattened with dots (``{"weights": {"tier": {"gold": 1.5}}}`` becomes
    ``weights.tier.gold``); values longer than MLflow's limit are cut with a marker (the full
    dictionary is logged as the artifact ``params.json``). Metric names are mapped to MLflow keys
    by :func:`metric_key`: ``@`` becomes ``_at_``, every run of characters other than letters,
    digits, ``_``, ``-`` and ``.`` becomes one ``_``, and ``_`` at either end is dropped:
    ``ndcg@10/all`` -> ``ndcg_at_10_all``. The mapping is idempotent.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

# the default store, SQLite paths and the bundle's artifact name are the model-source
# resolver's (engine.model_source), so that training writes where serving resolves
from engine.model_source import BUNDLE_ARTIFACT, absolute_uri, default_tracking_uri, sqlite_file

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
#: Artifact path of the pyfunc model inside a run (the bundle's name inside the model,
#: BUNDLE_ARTIFACT, is imported above).
MODEL_ARTIFACT = "model"
#: Tags written by the promotion gate on the model version (and, for overrides, on its run).
TAG_PROMOTED_AT = "promotion.promoted_at"
TAG_PROMOTED_OVER = "promotion.previous_champion"
TAG_PROMOTION_FORCED = "promotion.forced"
TAG_PROMOTION_REASON = "promotion.reason"
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_PARENT_RUN = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"

_TRUNCATED = "...[truncated; full value in params.json]"
_NOT_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")
_UNDERSCORES = re.compile(r"_{2,}")


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


def fit_param(value: str) -> str:
    """``value`` cut to MLflow's param length limit, with a marker where it was cut."""
    if len(value) <= MAX_PARAM_VAL_LENGTH:
        return value
    return value[: MAX_PARAM_VAL_LENGTH - len(_TRUNCATED)] + _TRUNCATED


# -- where runs go ---------------------------------------------------------------------------


def artifact_root(uri: str) -> str | None:
    """Artifact location for new experiments: ``artifacts/`` beside a SQLite database."""
    database = sqlite_file(uri)
    if database is None:
        return None  # a tracking server (or file store) decides
    return (database.parent / "artifacts").resolve().as_uri()


@contextmanager
def environment(**values: str) -> Iterator[None]:
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


__all__ = [
    "BUNDLE_ARTIFACT",
    "CHAMPION",
    "DEFAULT_PROMOTION_METRIC",
    "EXPERIMENT",
    "MODEL_ARTIFACT",
    "MODEL_NAME",
    "SPLIT_FINGERPRINT_TAG",
    "TAG_GIT_COMMIT",
    "TAG_PARENT_RUN",
    "TAG_PROMOTED_AT",
    "TAG_PROMOTED_OVER",
    "TAG_PROMOTION_FORCED",
    "TAG_PROMOTION_REASON",
    "TAG_RUN_NAME",
    "TrackingError",
    "absolute_uri",
    "artifact_root",
    "default_tracking_uri",
    "environment",
    "fit_param",
    "flatten_params",
    "metric_key",
    "sqlite_file",
]
