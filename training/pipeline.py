"""The training run, readable top to bottom.

    load dataset -> feature snapshot as of the cutoff -> weighted interactions -> fit the model
    -> evaluate (blend through engine.blend, baselines) -> bundle (vectors, FAISS indexes,
    buy-again history, trending) -> MLflow (params, metrics, report, bundle, registry, gate)

:func:`train` does one run and returns a :class:`TrainResult`; ``recsys train`` (cli/train.py)
calls it with a progress display. ``ablation=True`` also refits the model with each interaction
weight neutralised and reports what each weight is worth. Library code: no printing, progress
goes through the ``progress`` callback.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from engine.blend import BUY_AGAIN, ITEM_INDEX, MANIFEST_KEY, PRECOMPUTED_ARRAYS, TRENDING, Blender
from engine.bundle import write_bundle
from engine.index import IndexConfig, VectorIndex, build_index
from engine.models import ModelArtifacts, TrainData, create_model
from feature_store.dataset import Dataset, LoadOptions, load_dataset, read_raw, table_path
from feature_store.errors import DataError
from feature_store.offline import FILES as SNAPSHOT_FILES
from feature_store.offline import FORMAT_VERSION as SNAPSHOT_FORMAT
from feature_store.offline import (
    FeatureTables,
    build_features,
    open_snapshot,
    source_fingerprint,
    write_snapshot,
)
from feature_store.policy import FeaturePolicy, load_policy
from feature_store.schema import ITEMS, MEMBERS, PURCHASES, Col, conform
from training.config import BaselineConfig, TagWeights, TrainConfig, WeightsConfig
from training.data import (
    PreparedData,
    SnapshotFrames,
    Split,
    hybrid_features,
    prepare,
    resolve_split,
)
from training.evaluate import (
    EvalSet,
    EvaluationReport,
    ModelResult,
    blend_ranker,
    build_eval_set,
    evaluate_ranker,
    model_ranker,
    new_report,
)

Progress = Callable[[str], None]
MAIN = "blend"
_TABLES = (MEMBERS, ITEMS, PURCHASES)


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """What ``recsys train`` was asked to do.

    Attributes:
        data: dataset folder (members, items, purchases).
        config: the training configuration.
        out: run folder: the bundle, the feature snapshot and the evaluation report go here.
        snapshot: an existing feature snapshot to use (its as-of date must be the cutoff);
            otherwise features are built as of the cutoff and written to ``out/snapshot``.
        ablation: also refit with each interaction weight neutralised.
        track: log to MLflow (also needs ``config.tracking.enabled``).
        tracking_uri: MLflow tracking URI (default: MLFLOW_TRACKING_URI or ./mlflow).
        force: promote even if the gate refuses (recorded).
    """

    data: Path
    config: TrainConfig
    out: Path
    snapshot: Path | None = None
    ablation: bool = False
    track: bool = True
    tracking_uri: str | None = None
    force: bool = False


@dataclass(frozen=True, slots=True)
class AblationRow:
    """The headline metrics with one interaction weight neutralised, and the change."""

    name: str
    description: str
    ndcg_all: float
    ndcg_new: float
    delta_all: float
    delta_new: float


@dataclass(frozen=True, slots=True)
class Tracked:
    """What MLflow recorded."""

    run_id: str
    version: int | None
    promoted: bool | None
    promotion_reason: str | None


@dataclass(frozen=True, slots=True)
class TrainResult:
    split: Split
    report: EvaluationReport
    bundle: Path
    timings: dict[str, float]
    facts: dict[str, Any]
    ablation: list[AblationRow] = field(default_factory=list)
    tracked: Tracked | None = None
    #: variant -> evaluated member ids, in the order of the report's rankings
    evaluated: dict[str, npt.NDArray[np.str_]] = field(default_factory=dict)


class _Clock:
    """Named timings of the run's steps, announced through ``progress``."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress or (lambda _: None)
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, message: str) -> Iterator[None]:
        self.progress(message)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def train(options: TrainOptions, progress: Progress | None = None) -> TrainResult:
    """One training run (see the module docstring)."""
    config = options.config
    clock = _Clock(progress)
    started = time.perf_counter()
    policy = load_policy(config.policy)
    tiers = policy.tiers.names

    with clock.step("load_s", "loading dataset"):
        dataset, rejected_rows, data_fingerprint = _load(options, tiers)
        split = resolve_split(config.split, dataset.purchases)

    with clock.step("features_s", f"feature snapshot as of {split.cutoff_date}"):
        snapshot, snapshot_dir = _snapshot(
            options, config, dataset, split, data_fingerprint, rejected_rows, tiers
        )
        snapshot_fingerprint = source_fingerprint(sorted(p for p in snapshot_dir.glob("*.parquet")))

    with clock.step("interactions_s", "weighted interactions"):
        data = prepare(dataset, snapshot, split, config.weights, config.blend)
        confidence = data.confidence(config.weights)
        catalogue = item_attributes(dataset.items)
    del dataset

    with clock.step("fit_s", f"fitting {config.model.kind}"):
        artifacts = fit_model(
            config.model.kind, dict(config.model.params), confidence, data, snapshot
        )

    with clock.step("item_index_s", "item index"):
        item_index, blender = _blender(artifacts, data, config)

    evaluation = config.evaluation
    headline_k = _headline_k(evaluation.metric)
    with clock.step("evaluate_s", "evaluating the blend"):
        eval_set = build_eval_set(data, evaluation)
        if eval_set.rows.size == 0:
            raise DataError(
                f"no member bought anything between {split.cutoff_date} and "
                f"{split.test_last_day} after buying before it: nothing to evaluate; "
                "choose another cutoff or a longer test window"
            )
        report = new_report(eval_set, evaluation.ks, headline_k)
        report.results.append(
            evaluate_ranker(MAIN, blend_ranker(blender), eval_set, evaluation.ks, headline_k)
        )
    with clock.step("baselines_s", "evaluating baselines"):
        for baseline in config.baselines:
            clock.progress(f"baseline {baseline.name}")
            report.results.append(
                _evaluate_baseline(
                    baseline, config, data, snapshot, confidence, eval_set, headline_k
                )
            )

    ablation: list[AblationRow] = []
    if options.ablation:
        with clock.step("ablation_s", "ablation"):
            ablation = _ablation(config, data, snapshot, eval_set, report.result(MAIN), clock)

    split_fingerprint = _split_fingerprint(data_fingerprint, split, eval_set, evaluation.seed)
    facts: dict[str, Any] = {
        "data_fingerprint": data_fingerprint,
        "snapshot_fingerprint": snapshot_fingerprint,
        "split_fingerprint": split_fingerprint,
        "cutoff": split.cutoff_date,
        "test_last_day": split.test_last_day,
        "members": data.n_members,
        "items": data.n_items,
        "train_lines": len(data.lines),
        "tag_matched_lines": data.tag_matched_lines,
        "confidence_nnz": int(confidence.nnz),
        "test_members": report.test_members,
        "evaluated_all": report.members["all"],
        "evaluated_new": report.members["new"],
        "rejected_rows": rejected_rows,
    }

    with clock.step("precompute_s", "precomputing each member's list for serving"):
        lists = _precompute(config, blender, catalogue, data.n_items)
    with clock.step("bundle_s", "writing the bundle"):
        bundle_dir = _write_bundle(
            options.out / "bundle",
            config,
            artifacts,
            data,
            {**catalogue, **lists},
            item_index,
            report,
            facts,
        )
    report_dir = _write_report(options.out / "evaluation", report, ablation)

    timings = dict(clock.seconds)
    timings["total_before_tracking_s"] = time.perf_counter() - started
    tracked = None
    if options.track and config.tracking.enabled:
        with clock.step("tracking_s", "logging to MLflow"):
            tracked = _track(
                options, config, data, report, ablation, facts, timings, bundle_dir, report_dir
            )
        timings["tracking_s"] = clock.seconds["tracking_s"]
    timings["total_s"] = time.perf_counter() - started
    _write_run_summary(options.out / "run.json", timings, facts, tracked)
    return TrainResult(
        split=split,
        report=report,
        bundle=bundle_dir,
        timings=timings,
        facts=facts,
        ablation=ablation,
        tracked=tracked,
        evaluated={
            variant: data.member_ids.ids_at(eval_set.variant(variant)[0])
            for variant in ("all", "new")
        },
    )


# -- steps -----------------------------------------------------------------------------------


def _load(options: TrainOptions, tiers: tuple[str, ...]) -> tuple[Dataset, int, str]:
    """The valid rows of the dataset, how many rows were rejected, and its fingerprint.

    Validation is skipped only when it already happened on these exact bytes: the given
    snapshot was built from files with the same fingerprint, rejected no row, and the tables
    are Parquet in canonical form (their typed columns are read as they are).
    """
    files = [table_path(options.data, spec) for spec in _TABLES]
    fingerprint = source_fingerprint(files)
    if options.snapshot is not None and all(f.suffix == ".parquet" for f in files):
        manifest = open_snapshot(options.snapshot).manifest
        if manifest.get("source_fingerprint") == fingerprint and manifest.get("rejected_rows") == 0:
            frames = [
                conform(read_raw(f, spec), spec) for f, spec in zip(files, _TABLES, strict=True)
            ]
            return Dataset(*frames), 0, fingerprint
    loaded = load_dataset(options.data, LoadOptions(tiers=tiers))
    return loaded.dataset, loaded.report.rejected_count, fingerprint


def _snapshot(
    options: TrainOptions,
    config: TrainConfig,
    dataset: Dataset,
    split: Split,
    data_fingerprint: str,
    rejected_rows: int,
    tiers: tuple[str, ...],
) -> tuple[SnapshotFrames, Path]:
    """Read the given snapshot (checking its date) or build one as of the cutoff and write it."""
    as_of = split.cutoff.date()
    if options.snapshot is not None:
        snapshot = open_snapshot(options.snapshot)
        if snapshot.as_of != as_of:
            raise DataError(
                f"{options.snapshot}: the snapshot is as of {snapshot.as_of}, the training cutoff "
                f"is {as_of}; build one with `recsys features build --as-of {as_of}` or pass "
                f"--cutoff {snapshot.as_of}"
            )
        if snapshot.tiers != tiers:
            raise DataError(
                f"{options.snapshot}: the snapshot's tier ladder {list(snapshot.tiers)} differs "
                f"from the training config's feature policy {list(tiers)}"
            )
        return SnapshotFrames.from_snapshot(snapshot), options.snapshot
    policy = load_policy(config.policy)
    out = options.out / "snapshot"
    tables = write_cutoff_snapshot(
        options.data, dataset, policy, as_of, out, data_fingerprint, rejected_rows
    )
    return SnapshotFrames.from_tables(tables, tiers), out


def write_cutoff_snapshot(
    data_dir: Path,
    dataset: Dataset,
    policy: FeaturePolicy,
    as_of: date,
    out: Path,
    data_fingerprint: str,
    rejected_rows: int,
) -> FeatureTables:
    """Build the member and item features as of the cutoff and write them as a snapshot folder
    (docs/feature_snapshot.md) at ``out``: what training and the offline audience evaluation
    learn from and what the bundle's serving rules point to."""
    tables: FeatureTables = build_features(dataset, policy, as_of)
    manifest: dict[str, object] = {
        "format_version": SNAPSHOT_FORMAT,
        "as_of": as_of.isoformat(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source_fingerprint": data_fingerprint,
        "source": {"data_dir": str(data_dir.resolve())},
        "policy_sha256": policy.sha256,
        "policy_path": str(policy.source.resolve()),
        "tiers": list(policy.tiers.names),
        "row_counts": {
            "members": tables.members.height,
            "items": tables.items.height,
            "tier_history": tables.tier_history.height,
            "recent_purchases": tables.recent_purchases.height,
        },
        "rejected_rows": rejected_rows,
        "purchases_used": tables.purchases_used,
        "tier_agreement": {
            "crm_members": tables.tier_agreement.crm_members,
            "agreeing": tables.tier_agreement.agreeing,
            "rate": tables.tier_agreement.rate,
        },
        "rfm_score_bounds": tables.rfm_score_bounds,
        "files": dict(SNAPSHOT_FILES),
    }
    write_snapshot(tables, manifest, out)
    return tables


def fit_model(
    kind: str,
    params: dict[str, Any],
    confidence: sp.csr_matrix,
    data: PreparedData,
    snapshot: SnapshotFrames,
) -> ModelArtifacts:
    """Fit model ``kind`` on the confidence matrix (LightFM also on the snapshot's member and
    item features) and export its vectors."""
    member_features = item_features = None
    if kind == "lightfm":
        member_features, item_features = hybrid_features(snapshot, data)
    model = create_model(kind, **params)
    model.fit(
        TrainData(
            confidence=confidence,
            member_features=member_features,
            item_features=item_features,
            member_tiers=data.members.tier,
            n_tiers=len(data.tiers),
        )
    )
    return model.export()


def _blender(
    artifacts: ModelArtifacts, data: PreparedData, config: TrainConfig
) -> tuple[VectorIndex | None, Blender]:
    """The item index (as configured) and the serving blend over the model's vectors."""
    if artifacts.member_vectors is None or artifacts.item_vectors is None:
        raise DataError(
            f"model {artifacts.kind!r} exported no member and item vectors; the blend needs them"
        )
    index = _index(artifacts.item_vectors, config.bundle.item_index)
    blender = Blender(
        artifacts.member_vectors,
        artifacts.item_vectors,
        data.history,
        data.trending,
        config.blend.weights,
        index=index,
    )
    return index, blender


def _index(vectors: Any, kind: str) -> VectorIndex | None:
    if kind == "none":
        return None
    return build_index(vectors, IndexConfig(kind=kind))  # type: ignore[arg-type]


def _headline_k(metric: str) -> int:
    return int(metric.partition("@")[2].partition("/")[0])


def _evaluate_baseline(
    baseline: BaselineConfig,
    config: TrainConfig,
    data: PreparedData,
    snapshot: SnapshotFrames,
    weighted: sp.csr_matrix,
    eval_set: EvalSet,
    headline_k: int,
) -> ModelResult:
    """Fit a baseline on its input matrix and rank the whole catalogue with its scores."""
    matrix = data.binary() if baseline.weighting == "binary" else weighted
    artifacts = fit_model(baseline.kind, dict(baseline.params), matrix, data, snapshot)
    history = data.history if baseline.kind == "buy_again" else matrix
    popularity = np.bincount(data.history.indices, minlength=data.n_items)
    ranker = model_ranker(artifacts, history, data.history, tie_break=popularity)
    return evaluate_ranker(baseline.name, ranker, eval_set, config.evaluation.ks, headline_k)


#: name -> (description, how to neutralise it, whether it is active in a config)
_ABLATIONS: dict[
    str, tuple[str, Callable[[WeightsConfig], WeightsConfig], Callable[[WeightsConfig], bool]]
] = {
    "tier": (
        "tier multipliers = 1",
        lambda w: replace(w, tier={}),
        lambda w: any(v != 1.0 for v in w.tier.values()),
    ),
    "tags": (
        "tag boosts = 1",
        lambda w: replace(w, tags=TagWeights()),
        lambda w: w.tags.active,
    ),
    "recency": (
        "no recency decay",
        lambda w: replace(w, half_life_days=0.0),
        lambda w: w.half_life_days > 0,
    ),
    "quantity": (
        "every line weighs 1 (quantity off)",
        lambda w: replace(w, quantity="none"),
        lambda w: w.quantity != "none",
    ),
    "amount": (
        "amount weight = 0",
        lambda w: replace(w, amount=0.0),
        lambda w: w.amount > 0,
    ),
    "bm25": (
        "no BM25 re-weighting",
        lambda w: replace(w, bm25=replace(w.bm25, enabled=False)),
        lambda w: w.bm25.enabled,
    ),
}


def _ablation(
    config: TrainConfig,
    data: PreparedData,
    snapshot: SnapshotFrames,
    eval_set: EvalSet,
    base: ModelResult,
    clock: _Clock,
) -> list[AblationRow]:
    """Refit and re-evaluate the blend with each active weight neutralised."""
    k = _headline_k(config.evaluation.metric)
    base_all, base_new = base.value("ndcg", k, "all"), base.value("ndcg", k, "new")
    rows: list[AblationRow] = []
    for name, (description, neutralise, active) in _ABLATIONS.items():
        if not active(config.weights):
            continue
        clock.progress(f"ablation: {description}")
        weights = neutralise(config.weights)
        confidence = data.confidence(weights)
        artifacts = fit_model(
            config.model.kind, dict(config.model.params), confidence, data, snapshot
        )
        _, blender = _blender(artifacts, data, config)
        result = evaluate_ranker(
            f"no_{name}", blend_ranker(blender), eval_set, config.evaluation.ks, k
        )
        ndcg_all, ndcg_new = result.value("ndcg", k, "all"), result.value("ndcg", k, "new")
        rows.append(
            AblationRow(
                name, description, ndcg_all, ndcg_new, ndcg_all - base_all, ndcg_new - base_new
            )
        )
    return rows


def _split_fingerprint(data_fingerprint: str, split: Split, eval_set: EvalSet, seed: int) -> str:
    """Same data, same split instants, same evaluated members: same fingerprint."""
    digest = hashlib.sha256()
    digest.update(data_fingerprint.encode())
    digest.update(f"|{split.cutoff.isoformat()}|{split.test_end.isoformat()}|{seed}|".encode())
    digest.update(np.ascontiguousarray(eval_set.rows).tobytes())
    return f"sha256:{digest.hexdigest()[:32]}"


def item_attributes(items: pl.DataFrame) -> dict[str, npt.NDArray[Any]]:
    """Category, min_tier ("" = every tier) and active per item, in the bundle's item order
    (items sorted by id, as :func:`training.data.prepare` maps them)."""
    ordered = items.sort(Col.ITEM_ID)
    return {
        "item_category": ordered.get_column(Col.CATEGORY).fill_null("").to_numpy().astype(np.str_),
        "item_min_tier": ordered.get_column(Col.MIN_TIER).fill_null("").to_numpy().astype(np.str_),
        "item_active": ordered.get_column(Col.ACTIVE).fill_null(True).to_numpy().astype(np.bool_),
    }


def _precompute(
    config: TrainConfig, blender: Blender, catalogue: dict[str, npt.NDArray[Any]], n_items: int
) -> dict[str, npt.NDArray[Any]]:
    """Each member's blend list for serving (``[bundle] precomputed_candidates``, capped per
    category by ``precomputed_per_category``), or nothing when turned off."""
    width = min(config.bundle.precomputed_candidates, n_items)
    if width <= 0:
        return {}
    names, codes = np.unique(catalogue["item_category"], return_inverse=True)
    codes = np.where(names[codes] == "", -1, codes)
    per_category = config.bundle.precomputed_per_category or None
    lists = blender.precompute(width, categories=codes, per_category=per_category, threads=_cores())
    return lists.arrays()


def _cores() -> int:
    """CPU cores this process may use (the precompute runs one thread per core)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _write_bundle(
    path: Path,
    config: TrainConfig,
    artifacts: ModelArtifacts,
    data: PreparedData,
    catalogue: dict[str, npt.NDArray[Any]],
    item_index: VectorIndex | None,
    report: EvaluationReport,
    facts: dict[str, Any],
) -> Path:
    """The model bundle serving loads: vectors, buy-again history, trending, FAISS indexes, the
    item attributes its business rules need (category, min_tier, active), and each member's
    precomputed blend candidates (``[bundle] precomputed_candidates``)."""
    if artifacts.member_vectors is None or artifacts.item_vectors is None:
        raise DataError(f"model {artifacts.kind!r} exported no vectors; it cannot be bundled")
    width = (
        int(catalogue[PRECOMPUTED_ARRAYS[0]].shape[1]) if PRECOMPUTED_ARRAYS[0] in catalogue else 0
    )
    per_category = config.bundle.precomputed_per_category or None
    indexes = {}
    if item_index is not None:
        indexes[ITEM_INDEX] = item_index.faiss_index
    member_index = _index(artifacts.member_vectors, config.bundle.member_index)
    if member_index is not None:
        indexes["members"] = member_index.faiss_index
    headline = report.result(MAIN)
    manifest = {
        "kind": artifacts.kind,
        "scorer": "blend",
        MANIFEST_KEY: config.blend.weights.as_dict(),
        "precomputed_candidates": width,
        "precomputed_per_category": per_category if width > 0 else None,
        "model": artifacts.manifest_fields(),
        "training": {
            "config": config.name,
            "cutoff": facts["cutoff"],
            "test_last_day": facts["test_last_day"],
            "data_fingerprint": facts["data_fingerprint"],
            "feature_snapshot": facts["snapshot_fingerprint"],
            "split_fingerprint": facts["split_fingerprint"],
            "tiers": list(data.tiers),
        },
        "metrics": {
            f"{metric}@{k}/{variant}": round(headline.value(metric, k, variant), 6)
            for (variant, k) in headline.summaries
            for metric in ("ndcg", "recall", "map", "hit_rate", "precision", "coverage")
        },
    }
    return write_bundle(
        path,
        manifest=manifest,
        arrays={
            "member_vectors": artifacts.member_vectors,
            "item_vectors": artifacts.item_vectors,
            TRENDING: data.trending,
            **catalogue,
        },
        sparse={BUY_AGAIN: data.history},
        member_ids=data.member_ids,
        item_ids=data.item_ids,
        indexes=indexes,
        overwrite=True,
    )


def _write_report(folder: Path, report: EvaluationReport, ablation: list[AblationRow]) -> Path:
    """evaluation/metrics.csv (long table), table.md and ablation.csv in the run folder."""
    folder.mkdir(parents=True, exist_ok=True)
    report.frame().write_csv(folder / "metrics.csv")
    text = [f"# Evaluation at K={report.headline_k}", "", report.markdown(), ""]
    if ablation:
        text += [f"## Ablation (NDCG@{report.headline_k} of the blend)", ""]
        text += ["| neutralised | all | Δ all | new | Δ new |", "|---|---:|---:|---:|---:|"]
        text += [
            f"| {a.description} | {a.ndcg_all:.4f} | {a.delta_all:+.4f} | {a.ndcg_new:.4f} | "
            f"{a.delta_new:+.4f} |"
            for a in ablation
        ]
    (folder / "table.md").write_text("\n".join(text) + "\n", encoding="utf-8")
    return folder


def _write_run_summary(
    path: Path, timings: dict[str, float], facts: dict[str, Any], tracked: Tracked | None
) -> None:
    """run.json in the run folder: step timings, data facts and what MLflow recorded."""
    summary = {
        "timings_s": {key: round(value, 3) for key, value in timings.items()},
        "facts": facts,
        "tracked": None
        if tracked is None
        else {
            "run_id": tracked.run_id,
            "version": tracked.version,
            "promoted": tracked.promoted,
            "reason": tracked.promotion_reason,
        },
    }
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _track(
    options: TrainOptions,
    config: TrainConfig,
    data: PreparedData,
    report: EvaluationReport,
    ablation: list[AblationRow],
    facts: dict[str, Any],
    timings: dict[str, float],
    bundle_dir: Path,
    report_dir: Path,
) -> Tracked:
    """Log the run to MLflow, register the bundle and apply the promotion gate."""
    from training import plots
    from training.tracking import Tracker

    tracker = Tracker(options.tracking_uri, experiment=config.tracking.experiment)
    run_name = f"{config.name}-{config.model.kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    tags = {"cutoff": facts["cutoff"], "model.kind": config.model.kind, "config": config.name}
    version = None
    with tracker.start_run(run_name, tags=tags) as run:
        run.log_params(config.params())
        run.log_params({f"data.{key}": value for key, value in facts.items()})
        run.set_split_fingerprint(facts["split_fingerprint"])
        metrics = report.metrics(MAIN)
        metrics.update({f"time/{name}": value for name, value in timings.items()})
        metrics["data/tag_matched_lines"] = float(data.tag_matched_lines)
        for a in ablation:
            metrics[f"ablation/{a.name}/ndcg@{report.headline_k}/all"] = a.ndcg_all
            metrics[f"ablation/{a.name}/ndcg@{report.headline_k}/new"] = a.ndcg_new
            metrics[f"ablation/{a.name}/delta_ndcg@{report.headline_k}/all"] = a.delta_all
            metrics[f"ablation/{a.name}/delta_ndcg@{report.headline_k}/new"] = a.delta_new
        run.log_metrics(metrics)
        if config.source is not None and config.source.is_file():
            run.log_artifact(config.source, "config")
        run.log_artifact(report_dir)
        popularity = np.diff(data.binary().tocsc().indptr).astype(np.float64)
        run.log_figure(plots.per_tier(report, MAIN, data.tiers), "evaluation/per_tier.png")
        run.log_figure(plots.metric_vs_k(report), "evaluation/metric_vs_k.png")
        run.log_figure(
            plots.popularity_bias(report, popularity, data.test_item),
            "evaluation/popularity_bias.png",
        )
        if config.tracking.register:
            version = run.log_bundle(bundle_dir).version
        run_id = run.run_id
    promoted = reason = None
    if version is not None and config.tracking.promote:
        outcome = tracker.promote(version, metric=config.evaluation.metric, force=options.force)
        promoted, reason = outcome.promoted, outcome.reason
    return Tracked(run_id=run_id, version=version, promoted=promoted, promotion_reason=reason)


__all__ = ["AblationRow", "Tracked", "TrainOptions", "TrainResult", "train"]
