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
    ``runs:/<run_id>/model`` URI or a plain bundle folder into a local bundle folder.

Modules
    This module holds :class:`Tracker` (experiments and runs) and re-exports the names of the
    others: training.tracking_store (names, URIs, :class:`TrackingError`),
    training.run_logging (:class:`TrackedRun`), training.registry (versions, comparisons, the
    promotion gate; :class:`Tracker` is a :class:`~training.registry.Registry`) and
    training.model_sources (:func:`resolve_bundle`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from mlflow.exceptions import MlflowException

from mlflow import MlflowClient
from training.model_sources import resolve_bundle
from training.registry import Registry
from training.run_logging import TrackedRun
from training.tracking_store import (
    EXPERIMENT,
    TAG_GIT_COMMIT,
    TAG_PARENT_RUN,
    TAG_RUN_NAME,
    TrackingError,
    absolute_uri,
    artifact_root,
    default_tracking_uri,
    metric_key,
    sqlite_file,
)

_REPO = Path(__file__).resolve().parents[1]


class Tracker(Registry):
    """Runs, registry and promotion against one tracking URI."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = EXPERIMENT) -> None:
        uri = absolute_uri(tracking_uri or default_tracking_uri())
        database = sqlite_file(uri)
        if database is not None:
            try:
                database.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TrackingError(
                    f"{uri}: cannot create the folder of the tracking database "
                    f"({exc.strerror or exc}); set MLFLOW_TRACKING_URI or --tracking-uri"
                ) from exc
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        except MlflowException as exc:
            raise TrackingError(f"{uri}: cannot open the tracking store: {exc}") from exc
        super().__init__(client, uri)
        self.experiment_name = experiment
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
                    self.experiment_name, artifact_location=artifact_root(self.tracking_uri)
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


__all__ = [
    "Tracker",
    # defined in training.tracking_store and training.model_sources; used through this module by
    # most callers (the CLI commands, the notebook)
    "TrackingError",
    "metric_key",
    "resolve_bundle",
]
