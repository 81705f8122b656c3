"""The automatic mode: choose the whole configuration on the validation window, within a time
budget.

    baselines as candidates  ->  Optuna TPE (seeded) over families, hyperparameters,
    interaction weights and the blend  ->  the best trial's config (best_config.toml)

Every trial is an ordinary training config (training/search_space.py), fitted on purchases
before the validation window and scored on it through the serving blend
(:func:`score_config`). Nothing here reads the test window: the caller builds the validation
stage and never hands the test stage in. The baselines ("own most frequent items, then the
best-sellers" and plain ALS) run first, so the chosen configuration is never worse on
validation than the best of them. A champion's search parameters, when given, are tried
first among the Optuna trials (warm start).
"""

from __future__ import annotations

import json
import math
import time
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from engine.errors import EngineError
from feature_store.errors import DataError
from training.config import ConfigError, SearchConfig, TrainConfig, parse_config
from training.evaluate import ModelResult, blend_ranker, evaluate_ranker
from training.fitting import build_blender, fit_config, headline_k
from training.search_space import (
    BASELINE_TRIALS,
    SpaceFacts,
    apply_values,
    sample,
    starting_points,
)
from training.stage import Stage
from training.tune_space import Scalar

#: ``(trial, its config) -> MLflow run id or None``, called after each trial
TrialLogger = Callable[["SearchTrial", TrainConfig], str | None]
#: ``(trial, best so far)``, called after each trial (progress display)
TrialCallback = Callable[["SearchTrial", "SearchTrial"], None]


@dataclass(frozen=True, slots=True)
class SearchTrial:
    """One evaluated candidate."""

    number: int
    name: str  # the family, or the baseline's name
    values: dict[str, Scalar]
    objective: float
    metrics: dict[str, float]
    seconds: float
    #: Optuna's own parameters (what a warm start enqueues); empty for baselines
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and math.isfinite(self.objective)


@dataclass
class SearchResult:
    trials: list[SearchTrial]
    objective: tuple[str, ...]
    facts: SpaceFacts
    best_raw: dict[str, Any]
    config: TrainConfig

    @property
    def best(self) -> SearchTrial:
        return best_of(self.trials)

    def baseline_best(self) -> SearchTrial | None:
        done = [t for t in self.trials if t.name in BASELINE_TRIALS and t.ok]
        return max(done, key=lambda t: t.objective) if done else None


def best_of(trials: list[SearchTrial]) -> SearchTrial:
    done = [t for t in trials if t.ok]
    if not done:
        errors = "; ".join(f"#{t.number} {t.name}: {t.error}" for t in trials[:5])
        raise DataError(f"the automatic search found no working configuration ({errors})")
    return max(done, key=lambda t: (t.objective, -t.number))


def score_config(config: TrainConfig, stage: Stage) -> ModelResult:
    """Fit ``config`` on the stage's training purchases and score its blend on the stage's
    window (every K of the config, with the per-tier and other breakdowns)."""
    data = stage.prepared(config)
    artifacts = fit_config(config, data, stage.snapshot)
    _, blender = build_blender(artifacts, data, config)
    eval_set = stage.eval_set(data, config.evaluation)
    k = headline_k(config.evaluation.metric)
    return evaluate_ranker("blend", blend_ranker(blender), eval_set, config.evaluation.ks, k)


def objective_value(result: ModelResult, objective: tuple[str, ...]) -> float:
    """The sum of the objective's metrics (each NAME@K/VARIANT)."""
    total = 0.0
    for metric in objective:
        name, _, rest = metric.partition("@")
        k, _, variant = rest.partition("/")
        if (variant, int(k)) not in result.summaries:
            continue  # no member of that variant in the window
        total += result.value(name, int(k), variant)
    return total


def space_facts(stage: Stage, config: TrainConfig, families: tuple[str, ...]) -> SpaceFacts:
    """What the validation data lets the search vary (tiers present, tags matching)."""
    data = stage.prepared(config)
    tiers_seen = {int(t) for t in data.lines.tier} if data.lines.tier is not None else set()
    return SpaceFacts(
        families=families,
        tiers=data.tiers,
        tiered=len(tiers_seen - {-1}) > 1,
        tagged=data.tag_matched_lines > 0,
    )


def search(
    stage: Stage,
    raw: Mapping[str, Any],
    source: Path,
    settings: SearchConfig,
    *,
    warm_start: Mapping[str, Any] | None = None,
    log_trial: TrialLogger | None = None,
    on_trial: TrialCallback | None = None,
) -> SearchResult:
    """Search on ``stage`` (the validation window) starting from the TOML ``raw`` read from
    ``source``; see the module docstring."""
    import optuna

    base = parse_config(dict(raw), source)
    objective = settings.objective
    facts = space_facts(stage, base, _families(settings.families, stage))
    trials: list[SearchTrial] = []
    deadline = time.perf_counter() + settings.budget_minutes * 60.0

    def run(name: str, values: dict[str, Scalar], params: dict[str, Any], neutral: bool) -> float:
        started = time.perf_counter()
        try:
            config = _trial_config(raw, values, source, neutral)
            result = score_config(config, stage)
        except (EngineError, DataError, ConfigError, MemoryError) as exc:
            failed = SearchTrial(
                len(trials),
                name,
                values,
                math.nan,
                {},
                time.perf_counter() - started,
                params,
                error=str(exc),
            )
            trials.append(failed)
            if on_trial is not None:
                on_trial(failed, best_of(trials) if any(t.ok for t in trials) else failed)
            return math.nan
        metrics = _headline_metrics(result, config)
        trial = SearchTrial(
            len(trials),
            name,
            values,
            objective_value(result, objective),
            metrics,
            time.perf_counter() - started,
            params,
        )
        if log_trial is not None:
            trial = _with_run(trial, log_trial(trial, config))
        trials.append(trial)
        if on_trial is not None:
            on_trial(trial, best_of(trials))
        return trial.objective

    for name, values in BASELINE_TRIALS.items():
        run(name, dict(values), {}, neutral=True)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # multivariate/group TPE are flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=settings.seed, n_startup_trials=8, multivariate=True, group=True
        )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    if warm_start and warm_start.get("family") in facts.families:
        study.enqueue_trial(dict(warm_start), skip_if_exists=True)
    for point in starting_points(facts):
        study.enqueue_trial(point, skip_if_exists=True)

    def optuna_objective(trial: optuna.Trial) -> float:
        values = sample(trial, facts)
        return run(str(values["model.kind"]), values, dict(trial.params), neutral=False)

    remaining = deadline - time.perf_counter()
    if remaining > 0 and (settings.max_trials == 0 or settings.max_trials > len(trials)):
        study.optimize(
            optuna_objective,
            timeout=remaining,
            n_trials=(settings.max_trials - len(trials)) if settings.max_trials else None,
            catch=(),
        )
    best = best_of(trials)
    best_raw = apply_values(raw, best.values, neutral=best.name in BASELINE_TRIALS)
    config = parse_config(best_raw, source)
    return SearchResult(trials, objective, facts, best_raw, config)


#: members above which personal-kNN's exact neighbour search (quadratic in members) is left out
#: of the search: a trial cannot be interrupted, so one would outlast any budget
PERSONAL_KNN_MAX_MEMBERS = 200_000


def _families(families: tuple[str, ...], stage: Stage) -> tuple[str, ...]:
    """The configured families, without EASE where the catalogue is beyond its exact size and
    without personal-kNN where the members are too many for its exact neighbour search."""
    from engine.models.ease import EASEParams

    n_items = int(stage.dataset.items.height)
    n_members = int(stage.snapshot.members.height)
    limit = EASEParams().max_items
    kept = tuple(
        f
        for f in families
        if (f != "ease" or n_items <= limit)
        and (f != "personal_knn" or n_members <= PERSONAL_KNN_MAX_MEMBERS)
    )
    return kept or ("als",)


def _trial_config(
    raw: Mapping[str, Any], values: Mapping[str, Scalar], source: Path, neutral: bool
) -> TrainConfig:
    trial = apply_values(raw, values, neutral=neutral)
    trial.pop("baselines", None)
    trial["tracking"] = {**dict(trial.get("tracking", {})), "register": False, "promote": False}
    return parse_config(trial, source)


def _headline_metrics(result: ModelResult, config: TrainConfig) -> dict[str, float]:
    k = headline_k(config.evaluation.metric)
    out: dict[str, float] = {}
    for variant in ("all", "new"):
        if (variant, k) not in result.summaries:
            continue
        for metric in ("ndcg", "recall", "hit_rate"):
            out[f"{metric}@{k}/{variant}"] = result.value(metric, k, variant)
        for (v, breakdown, group), summary in result.breakdowns.items():
            if v == variant and breakdown == "tier":
                out[f"ndcg@{k}/{variant}/tier={group}"] = float(summary.ndcg)
    return out


def _with_run(trial: SearchTrial, run_id: str | None) -> SearchTrial:
    return SearchTrial(
        trial.number,
        trial.name,
        trial.values,
        trial.objective,
        trial.metrics,
        trial.seconds,
        trial.params,
        trial.error,
        run_id,
    )


# -- reports ---------------------------------------------------------------------------------


def trials_table(result: SearchResult) -> list[dict[str, Any]]:
    """One row per trial: number, candidate, objective, headline metrics, seconds, error."""
    metric_names = sorted({m for t in result.trials for m in t.metrics if "/tier=" not in m})
    rows = []
    for t in result.trials:
        row: dict[str, Any] = {
            "trial": t.number,
            "candidate": t.name,
            "objective": None if not t.ok else round(t.objective, 6),
            **{m: round(t.metrics[m], 6) if m in t.metrics else None for m in metric_names},
            "seconds": round(t.seconds, 2),
            "error": t.error or "",
            "values": json.dumps(t.values, sort_keys=True),
        }
        rows.append(row)
    return rows


def trials_markdown(result: SearchResult, limit: int = 15) -> str:
    """The best ``limit`` trials and every baseline, best first, as Markdown."""
    best = result.best
    ranked = sorted((t for t in result.trials if t.ok), key=lambda t: (-t.objective, t.number))
    shown = ranked[:limit] + [t for t in ranked[limit:] if t.name in BASELINE_TRIALS]
    metrics = [m for m in ("ndcg@10/all", "ndcg@10/new", "recall@10/all", "recall@10/new")]
    head = "| trial | candidate | objective | " + " | ".join(metrics) + " | seconds |"
    lines = [head, "|---:|---|---:|" + "---:|" * len(metrics) + "---:|"]
    for t in shown:
        mark = " **(chosen)**" if t is best else ""
        cells = " | ".join(f"{t.metrics[m]:.4f}" if m in t.metrics else "" for m in metrics)
        lines.append(
            f"| {t.number} | {t.name}{mark} | {t.objective:.4f} | {cells} | {t.seconds:.1f} |"
        )
    failed = [t for t in result.trials if not t.ok]
    if failed:
        lines += ["", f"{len(failed)} trial(s) failed, e.g. #{failed[0].number}: {failed[0].error}"]
    return "\n".join(lines)


def best_config_text(result: SearchResult, source: Path) -> str:
    """The chosen configuration as TOML, reproducible with ``recsys train --config``."""
    best = result.best
    header = (
        f"# Chosen by the automatic search on the validation window: trial {best.number} "
        f"({best.name}), objective {' + '.join(result.objective)} = {best.objective:.4f}.\n"
        f"# Starting config: {source}\n"
    )
    text = tomli_w.dumps(result.best_raw)
    tomllib.loads(text)  # what we write must read back
    return header + text


def write_search_report(result: SearchResult, source: Path, folder: Path) -> dict[str, Path]:
    """trials.csv, trials.md, best_config.toml and search.png in ``folder``."""
    import polars as pl

    from training.plots import search_history

    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": folder / "trials.csv",
        "markdown": folder / "trials.md",
        "config": folder / "best_config.toml",
        "figure": folder / "search.png",
    }
    pl.DataFrame(trials_table(result), infer_schema_length=None).write_csv(paths["csv"])
    paths["markdown"].write_text(trials_markdown(result) + "\n", encoding="utf-8")
    paths["config"].write_text(best_config_text(result, source), encoding="utf-8")
    search_history(result.trials).savefig(paths["figure"], dpi=110)
    return paths


__all__ = [
    "SearchResult",
    "SearchTrial",
    "best_of",
    "objective_value",
    "score_config",
    "search",
    "trials_markdown",
    "trials_table",
    "write_search_report",
]
