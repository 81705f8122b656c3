"""The MLflow side of one training run: a parent run opened before the search (each trial is
a child run), then params, metrics, the report, the search's comparison table and plot, the
bundle, the registry and the promotion gate when the run is done."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.config import TrainConfig
from training.data import PreparedData
from training.evaluate import EvaluationReport
from training.outputs import MAIN, AblationRow, Tracked, popularity

if TYPE_CHECKING:
    from training.run_logging import TrackedRun
    from training.search import SearchResult, SearchTrial
    from training.tracking import Tracker

#: param holding a search's Optuna parameters (what a later search warm-starts from)
SEARCH_PARAMS = "search.optuna_params"


@dataclass
class RunTracking:
    tracker: Tracker
    start: TrainConfig
    #: the run folder (its search/ folder is logged)
    out: Path
    #: promote even if the gate refuses (recorded)
    force: bool = False
    parent: TrackedRun | None = None

    @classmethod
    def open(
        cls, tracking_uri: str | None, start: TrainConfig, out: Path, *, force: bool
    ) -> RunTracking:
        from training.tracking import Tracker

        tracker = Tracker(tracking_uri, experiment=start.tracking.experiment)
        return cls(tracker, start, out, force)

    @contextmanager
    def run(self, mode: str) -> Iterator[TrackedRun]:
        name = f"{self.start.name}-{mode}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        with self.tracker.start_run(name, tags={"config": self.start.name, "mode": mode}) as run:
            self.parent = run
            try:
                yield run
            finally:
                self.parent = None

    def warm_start(self) -> dict[str, Any] | None:
        """The champion's searched Optuna parameters, when it was chosen by a search."""
        champion = self.tracker.champion()
        if champion is None or SEARCH_PARAMS not in champion.params:
            return None
        try:
            params = json.loads(champion.params[SEARCH_PARAMS])
        except ValueError:
            return None
        return params if isinstance(params, dict) and params else None

    def log_trial(self, trial: SearchTrial, config: TrainConfig) -> str | None:
        """One search trial as a child run of the training run."""
        if self.parent is None:
            return None
        tags = {"search.trial": str(trial.number), "search.candidate": trial.name}
        with self.tracker.start_run(
            f"trial-{trial.number:03d}-{trial.name}", tags=tags, nested=True
        ) as run:
            run.log_params(config.params())
            run.log_params({f"search.{key}": value for key, value in trial.values.items()})
            run.log_metrics({**trial.metrics, "search/objective": trial.objective})
            return run.run_id

    def finish(
        self,
        config: TrainConfig,
        data: PreparedData,
        report: EvaluationReport,
        ablation: list[AblationRow],
        facts: dict[str, Any],
        timings: dict[str, float],
        bundle_dir: Path,
        report_dir: Path,
        searched: SearchResult | None,
    ) -> Tracked:
        """Log the run, register the bundle and apply the promotion gate."""
        from training import plots

        run = self.parent
        if run is None:
            raise RuntimeError("RunTracking.finish outside RunTracking.run")
        run.set_tags({"cutoff": facts["cutoff"], "model.kind": config.model.kind})
        run.log_params(config.params())
        flat = {k: v for k, v in facts.items() if not isinstance(v, dict)}
        run.log_params({f"data.{key}": value for key, value in flat.items()})
        run.log_params({f"windows.{key}": value for key, value in facts["windows"].items()})
        run.set_split_fingerprint(facts["split_fingerprint"])
        metrics = report.metrics(MAIN)
        metrics.update({f"time/{name}": value for name, value in timings.items()})
        metrics["data/tag_matched_lines"] = float(data.tag_matched_lines)
        for a in ablation:
            k = report.headline_k
            metrics[f"ablation/{a.name}/ndcg@{k}/all"] = a.ndcg_all
            metrics[f"ablation/{a.name}/ndcg@{k}/new"] = a.ndcg_new
            metrics[f"ablation/{a.name}/delta_ndcg@{k}/all"] = a.delta_all
            metrics[f"ablation/{a.name}/delta_ndcg@{k}/new"] = a.delta_new
        if searched is not None:
            best = searched.best
            metrics["search/trials"] = float(len(searched.trials))
            metrics["search/validation_objective"] = best.objective
            metrics.update({f"validation/{key}": value for key, value in best.metrics.items()})
            baseline = searched.baseline_best()
            if baseline is not None:
                metrics["search/best_baseline_objective"] = baseline.objective
            run.log_params({"search.chosen": best.name, "search.chosen_trial": best.number})
            if best.params:
                run.log_params({SEARCH_PARAMS: json.dumps(best.params, sort_keys=True)})
            run.log_artifact(self.out / "search")
        run.log_metrics(metrics)
        if self.start.source is not None and self.start.source.is_file():
            run.log_artifact(self.start.source, "config")
        run.log_artifact(report_dir)
        run.log_figure(plots.per_tier(report, MAIN, data.tiers), "evaluation/per_tier.png")
        run.log_figure(plots.metric_vs_k(report), "evaluation/metric_vs_k.png")
        run.log_figure(
            plots.popularity_bias(report, popularity(data), data.test_item),
            "evaluation/popularity_bias.png",
        )
        version = None
        if config.tracking.register:
            version = run.log_bundle(bundle_dir).version
        promoted = reason = None
        run_id = run.run_id
        if version is not None and config.tracking.promote:
            outcome = self.tracker.promote(
                version, metric=config.evaluation.metric, force=self.force
            )
            promoted, reason = outcome.promoted, outcome.reason
        return Tracked(run_id=run_id, version=version, promoted=promoted, promotion_reason=reason)


__all__ = ["SEARCH_PARAMS", "RunTracking"]
