"""The training run, readable top to bottom.

    load dataset -> windows (validation | test | refit, training/windows.py)
    -> [automatic mode] search on the validation window (training/search.py)
    -> score the chosen configuration once on the test window, beside the baselines
    -> refit it on every purchase before the refit date, with features as of that date
    -> bundle the refit (vectors, FAISS indexes, buy-again history, trending, each member's
       precomputed list) -> MLflow (params, metrics, search trials as child runs, report,
       bundle, registry, promotion gate on the test metric)

:func:`train` does one run and returns a :class:`TrainResult`; ``recsys train`` (cli/train.py)
calls it with a progress display. ``options.auto`` searches; otherwise the given config is the
choice. ``config.split.refit = false`` (``--no-refit``) ships the model evaluated on the test
window instead of the refit. ``ablation=True`` also refits the evaluated model with each
interaction weight neutralised and reports what each weight is worth. Library code: no
printing, progress goes through the ``progress`` callback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.blend import Blender
from engine.blend_precompute import precompute
from engine.ranking.catalog import ItemCatalog, catalog_from_attributes
from feature_store.dataset import Dataset
from feature_store.policy import load_policy
from feature_store.toml_table import read_toml
from training.comparisons import ablation_rows, evaluate_baselines, inert_weights
from training.config import ConfigError, TrainConfig
from training.data import PreparedData, Split
from training.evaluate import (
    EvalSet,
    EvaluationReport,
    blend_ranker,
    evaluate_ranker,
    new_report,
    served_ranker,
)
from training.fitting import (
    build_blender,
    fit_config,
    headline_k,
    item_attributes,
    warm_refit_start,
)
from training.outputs import (
    MAIN,
    AblationRow,
    Shipped,
    Tracked,
    write_model_bundle,
    write_report,
    write_run_summary,
)
from training.search import SearchResult, search, write_search_report
from training.stage import SnapshotSource, build_stage, load_source, split_fingerprint
from training.tracking_run import RunTracking
from training.value_evaluation import write_value_evaluation
from training.windows import Windows, resolve_windows

Progress = Callable[[str], None]
#: the report row of the served lists (the blend through the business rules, engine.served)
SERVED = "served"


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """What ``recsys train`` was asked to do.

    Attributes:
        data: dataset folder (members, items, purchases).
        config: the training configuration (in automatic mode: the starting point whose
            ``[search]``, ``[evaluation]``, ``[[baselines]]``, ``[bundle]`` and ``[tracking]``
            apply and whose model, weights and blend the search replaces).
        out: run folder: the bundle, the feature snapshots, the search and the report go here.
        snapshot: an existing feature snapshot for the shipped model (as of the refit date, or
            of the test cutoff with ``refit = false``); otherwise one is built.
        auto: choose the configuration on the validation window (``training/search.py``).
        ablation: also refit with each interaction weight neutralised.
        track: log to MLflow (also needs ``config.tracking.enabled``).
        tracking_uri: MLflow tracking URI (default: MLFLOW_TRACKING_URI or ./mlflow).
        force: promote even if the gate refuses (recorded).
        warm_start: start the search from the champion's searched parameters, if any.
    """

    data: Path
    config: TrainConfig
    out: Path
    snapshot: Path | None = None
    auto: bool = False
    ablation: bool = False
    track: bool = True
    tracking_uri: str | None = None
    force: bool = False
    warm_start: bool = True


@dataclass(frozen=True, slots=True)
class TrainResult:
    split: Split
    windows: Windows
    #: the configuration evaluated and shipped (the search's choice in automatic mode)
    config: TrainConfig
    report: EvaluationReport
    bundle: Path
    timings: dict[str, float]
    facts: dict[str, Any]
    ablation: list[AblationRow] = field(default_factory=list)
    tracked: Tracked | None = None
    search: SearchResult | None = None
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
    start_config = options.config
    clock = _Clock(progress)
    started = time.perf_counter()
    policy = load_policy(start_config.policy)
    refit = start_config.split.refit

    with clock.step("load_s", "loading dataset"):
        dataset, source = load_source(options.data, policy, options.snapshot)
        windows = resolve_windows(start_config.split, dataset.purchases)
    tracking = (
        RunTracking.open(options.tracking_uri, start_config, options.out, force=options.force)
        if _tracks(options)
        else None
    )
    with ExitStack() as stack:
        if tracking is not None:
            stack.enter_context(tracking.run(mode="auto" if options.auto else "fixed"))
        config, searched = start_config, None
        if options.auto:
            with clock.step(
                "search_s", f"searching on the validation window {_span(windows.validation)}"
            ):
                searched = _search(options, windows, dataset, source, tracking, clock)
                config = _chosen(start_config, searched)

        test_source = source if refit else replace(source, existing=options.snapshot)
        test_out = options.out / ("windows/test/snapshot" if refit else "snapshot")
        with clock.step("features_s", f"feature snapshot as of {windows.test.cutoff_date}"):
            test = build_stage("test", dataset, windows.test, test_source, test_out)
        with clock.step("fit_s", f"fitting {config.model.kind} before {windows.test.cutoff_date}"):
            data = test.prepared(config)
            artifacts = fit_config(config, data, test.snapshot)
            item_index, blender = build_blender(artifacts, data, config)

        k = headline_k(config.evaluation.metric)
        catalogue = item_attributes(dataset.items)
        with clock.step("evaluate_s", f"scoring the test window {_span(windows.test)} once"):
            eval_set = test.eval_set(data, config.evaluation)
            report = new_report(eval_set, config.evaluation.ks, k)
            ks = config.evaluation.ks
            report.results.append(evaluate_ranker(MAIN, blend_ranker(blender), eval_set, ks, k))
            served = served_ranker(
                blender,
                _catalog(catalogue, data),
                data.members.tier,
                config.evaluation.served_share,
            )
            report.results.append(evaluate_ranker(SERVED, served, eval_set, ks, k))
        with clock.step("baselines_s", "evaluating baselines"):
            report.results.extend(evaluate_baselines(config, test, data, eval_set, clock.progress))
        ablation: list[AblationRow] = []
        if options.ablation:
            with clock.step("ablation_s", "ablation"):
                ablation = ablation_rows(
                    config, test, eval_set, report.result(MAIN), clock.progress
                )

        with clock.step("value_s", "member value: holdout check on the test window"):
            write_value_evaluation(
                options.out / "evaluation" / "value", test.snapshot_dir, dataset, windows.test
            )

        evaluated_snapshot = test.snapshot_fingerprint
        shipped = Shipped(artifacts, data, item_index, evaluated_snapshot)
        if refit:
            with clock.step(
                "refit_s", f"refitting on every purchase before {windows.as_of.date()}"
            ):
                shipped, blender = _refit(config, dataset, windows, source, options, shipped)
        del test

        facts = _facts(
            options,
            config,
            windows,
            data,
            eval_set,
            report,
            shipped,
            source,
            evaluated_snapshot,
            searched,
        )
        with clock.step("precompute_s", "precomputing each member's list for serving"):
            lists = _precompute(config, blender, catalogue, shipped.data.n_items)
        with clock.step("bundle_s", "writing the bundle"):
            bundle_dir = write_model_bundle(
                options.out / "bundle", config, shipped, {**catalogue, **lists}, report, facts
            )
        inert = inert_weights(config, data)
        report_dir = write_report(options.out / "evaluation", report, ablation, inert)

        timings = dict(clock.seconds)
        timings["total_before_tracking_s"] = time.perf_counter() - started
        tracked = None
        if tracking is not None:
            with clock.step("tracking_s", "logging to MLflow"):
                tracked = tracking.finish(
                    config,
                    data,
                    report,
                    ablation,
                    facts,
                    timings,
                    bundle_dir,
                    report_dir,
                    searched,
                )
            timings["tracking_s"] = clock.seconds["tracking_s"]
    timings["total_s"] = time.perf_counter() - started
    write_run_summary(options.out / "run.json", timings, facts, tracked)
    return TrainResult(
        split=windows.test,
        windows=windows,
        config=config,
        report=report,
        bundle=bundle_dir,
        timings=timings,
        facts=facts,
        ablation=ablation,
        tracked=tracked,
        search=searched,
        evaluated={
            variant: data.member_ids.ids_at(eval_set.variant(variant)[0])
            for variant in ("all", "new")
        },
    )


# -- steps -----------------------------------------------------------------------------------


def _tracks(options: TrainOptions) -> bool:
    return options.track and options.config.tracking.enabled


def _span(split: Split) -> str:
    return f"{split.cutoff_date} .. {split.test_last_day}"


def _search(
    options: TrainOptions,
    windows: Windows,
    dataset: Dataset,
    source: SnapshotSource,
    tracking: RunTracking | None,
    clock: _Clock,
) -> SearchResult:
    """The automatic search on the validation stage; the test window is not in sight."""
    config = options.config
    path = config.source
    if path is None or not path.is_file():
        raise ValueError("the automatic mode needs a starting config read from a TOML file")
    raw, _ = read_toml(path, "training config", ConfigError)
    stage = build_stage(
        "validation",
        dataset,
        windows.validation,
        source,
        options.out / "windows/validation/snapshot",
    )
    warm = tracking.warm_start() if tracking is not None and options.warm_start else None

    def announce(trial: Any, best: Any) -> None:
        what = f"{trial.objective:.4f}" if trial.ok else f"failed ({trial.error})"
        clock.progress(
            f"trial {trial.number} {trial.name}: {what}; best {best.objective:.4f} "
            f"(#{best.number} {best.name})"
        )

    result = search(
        stage,
        raw,
        path,
        config.search,
        warm_start=warm,
        log_trial=tracking.log_trial if tracking is not None else None,
        on_trial=announce,
    )
    write_search_report(result, path, options.out / "search")
    return result


def _chosen(start: TrainConfig, searched: SearchResult) -> TrainConfig:
    """The search's configuration with the starting config's split, evaluation, baselines,
    bundle and tracking (the search never changes those)."""
    return searched.config.replace(
        name=f"{start.name}-auto",
        source=None,
        split=start.split,
        evaluation=start.evaluation,
        baselines=start.baselines,
        bundle=start.bundle,
        tracking=start.tracking,
        search=start.search,
    )


def _refit(
    config: TrainConfig,
    dataset: Dataset,
    windows: Windows,
    source: SnapshotSource,
    options: TrainOptions,
    evaluated: Shipped,
) -> tuple[Shipped, Blender]:
    """The chosen configuration fitted on every purchase before the refit date; an ALS refit
    starts from the ``evaluated`` model's factors unless ``[split] warm_refit = false``."""
    stage = build_stage(
        "refit",
        dataset,
        windows.refit,
        replace(source, existing=options.snapshot),
        options.out / "snapshot",
    )
    data = stage.prepared(config)
    warm = None
    if config.split.warm_refit:
        warm = warm_refit_start(config, evaluated.artifacts, evaluated.data, data)
    artifacts = fit_config(config, data, stage.snapshot, warm)
    index, blender = build_blender(artifacts, data, config)
    return Shipped(artifacts, data, index, stage.snapshot_fingerprint), blender


def _facts(
    options: TrainOptions,
    config: TrainConfig,
    windows: Windows,
    data: PreparedData,
    eval_set: EvalSet,
    report: EvaluationReport,
    shipped: Shipped,
    source: SnapshotSource,
    evaluated_snapshot: str,
    searched: SearchResult | None,
) -> dict[str, Any]:
    split = windows.test
    refit = config.split.refit
    facts: dict[str, Any] = {
        "mode": "auto" if options.auto else "fixed",
        "data_fingerprint": source.data_fingerprint,
        "snapshot_fingerprint": evaluated_snapshot,
        "split_fingerprint": split_fingerprint(
            source.data_fingerprint, split, eval_set.rows, config.evaluation.seed
        ),
        "cutoff": split.cutoff_date,
        "test_last_day": split.test_last_day,
        "windows": windows.describe(),
        "refit": refit,
        "trained_before": (windows.as_of if refit else split.cutoff).date().isoformat(),
        "refit_start": _refit_start(refit, shipped),
        "shipped_iterations": shipped.artifacts.params.get("iterations"),
        "members": data.n_members,
        "items": data.n_items,
        "train_lines": len(data.lines),
        "shipped_members": shipped.data.n_members,
        "shipped_train_lines": len(shipped.data.lines),
        "tag_matched_lines": data.tag_matched_lines,
        "test_members": report.test_members,
        "evaluated_all": report.members["all"],
        "evaluated_new": report.members["new"],
        "rejected_rows": source.rejected_rows,
    }
    if searched is not None:
        best, baseline = searched.best, searched.baseline_best()
        facts["search"] = {
            "trials": len(searched.trials),
            "chosen_trial": best.number,
            "chosen": best.name,
            "validation_objective": round(best.objective, 6),
            "best_baseline": baseline.name if baseline else None,
            "best_baseline_objective": round(baseline.objective, 6) if baseline else None,
        }
    return facts


def _refit_start(refit: bool, shipped: Shipped) -> str | None:
    """How the shipped model's fit started: "warm" (from the evaluated model's factors),
    "cold" (from scratch), None without a refit (the evaluated model ships)."""
    if not refit:
        return None
    return "warm" if shipped.artifacts.params.get("warm_start") else "cold"


def _catalog(catalogue: dict[str, npt.NDArray[Any]], data: PreparedData) -> ItemCatalog:
    """The serving catalogue of the evaluated model: the bundle's item attributes, the
    trending prior as popularity (as the service builds it from a bundle)."""
    return catalog_from_attributes(
        data.tiers,
        category=catalogue["item_category"],
        min_tier=catalogue["item_min_tier"],
        active=catalogue["item_active"],
        popularity=data.trending,
    )


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
    lists = precompute(
        blender, width, categories=codes, per_category=per_category, threads=_cores()
    )
    return lists.arrays()


def _cores() -> int:
    """CPU cores this process may use (the precompute runs one thread per core)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


__all__ = ["AblationRow", "Tracked", "TrainOptions", "TrainResult", "train"]
