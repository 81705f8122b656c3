"""Hyperparameter and weight search with Optuna, every trial a nested MLflow run.

    recsys tune --data DIR --config FILE [--space SPACE.toml] --trials 20

A *search space* (a TOML file of ``[params."<config key>"]`` tables, or
:func:`~training.tune_space.default_space`'s model hyperparameters and interaction and blend
weights) names the config keys to sample; training.tune_space describes its format. The split,
the evaluation, the features and tracking cannot be searched: every trial is evaluated on the
same split, so trials (and the result) compare.

Each trial writes the sampled values into the config TOML, checks it with the config parser
(a bad value fails naming the key), fits it on purchases before the **validation window** (the
last ``validation_days`` before the test cutoff, training/windows.py) and scores its blend on
that window (:func:`training.search.score_config`); the test window is never looked at. Each
trial is logged as a child run of the study's run. The study run gets the trial table
(``tuning/trials.csv``, ``tuning/trials.md``), the best config (``tuning/best_config.toml``,
also written to the output folder) and a plot of the objective per trial. ``register=True``
then trains the best config through the ordinary pipeline (scored once on the test window,
refit on all data), registers it and applies the promotion gate. ``recsys train`` without
``--config`` runs the broader automatic search (training/search.py).

The trial table and plot are written by training.tune_report; this module runs the study.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.config import ConfigError, TrainConfig, load_config, parse_config
from training.tune_report import (
    TrialResult,
    TuneResult,
    history_figure,
    trials_csv,
    trials_markdown,
)
from training.tune_space import (
    Scalar,
    SearchParam,
    best_config_text,
    default_space,
    load_space,
    read_raw,
    trial_config,
    with_values,
)


@dataclass(frozen=True, slots=True)
class TuneOptions:
    """What ``recsys tune`` was asked to do.

    Attributes:
        data: dataset folder.
        config: the training config TOML the trials start from.
        out: output folder (trial runs, the shared snapshot, the best bundle and config).
        space: search space TOML (None: :func:`default_space` for the config's model kind).
        trials: number of trials.
        timeout_s: stop starting new trials after this many seconds (None: no limit).
        seed: seed of the sampler.
        metric: metric to maximise (default: the config's ``evaluation.metric``).
        track: log the study and its trials to MLflow.
        tracking_uri: MLflow tracking URI (default: see training.tracking).
        register: register the best trial's bundle (and apply the promotion gate when the
            config's ``tracking.promote`` is on).
    """

    data: Path
    config: Path
    out: Path
    space: Path | None = None
    trials: int = 20
    timeout_s: float | None = None
    seed: int = 0
    metric: str | None = None
    track: bool = True
    tracking_uri: str | None = None
    register: bool = False


# -- the study -------------------------------------------------------------------------------

TrialCallback = Callable[[TrialResult, TrialResult], None]
StepCallback = Callable[[int, str], None]


def tune(
    options: TuneOptions,
    *,
    on_trial: TrialCallback | None = None,
    on_step: StepCallback | None = None,
) -> TuneResult:
    """Run the study. ``on_trial(trial, best_so_far)`` after each trial; ``on_step(number,
    message)`` as each trial's training steps start."""
    import optuna

    from training.evaluate import EvaluationReport
    from training.fitting import headline_k as scored_k_of
    from training.outputs import MAIN
    from training.search import score_config
    from training.tracking import Tracker, metric_key

    def scored_k(config: TrainConfig) -> int:
        return scored_k_of(config.evaluation.metric)

    if options.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {options.trials}")
    raw = read_raw(options.config)
    base = parse_config(raw, options.config)
    space = load_space(options.space) if options.space else default_space(base.model.kind)
    metric = options.metric or base.evaluation.metric
    result = TuneResult(metric=metric, space=space)
    options.out.mkdir(parents=True, exist_ok=True)
    tracker = (
        Tracker(options.tracking_uri, experiment=base.tracking.experiment)
        if options.track
        else None
    )

    stage, fingerprint = _validation_stage(options, base)

    def objective(trial: optuna.Trial, parent: Any) -> float:
        values = {param.key: _suggest(trial, param) for param in space}
        config = trial_config(raw, values, options.config)
        started = time.perf_counter()
        if on_step is not None:
            on_step(trial.number, f"fitting {config.model.kind} before {stage.split.cutoff_date}")
        scored = score_config(config, stage)
        k = scored_k(config)
        report = EvaluationReport(config.evaluation.ks, k, {}, 0, [scored])
        metrics = report.metrics(MAIN)
        objective_value = _metric_value(metrics, metric, metric_key)
        run_id = None
        if tracker is not None and parent is not None:
            with tracker.start_run(
                f"trial-{trial.number:03d}", tags={"tune.trial": str(trial.number)}, nested=True
            ) as run:
                run.log_params(config.params())
                run.log_params({f"tune.{key}": value for key, value in values.items()})
                run.set_split_fingerprint(fingerprint)
                run.log_metrics(metrics)
                run_id = run.run_id
        finished = TrialResult(
            number=trial.number,
            values=values,
            metrics=metrics,
            objective=objective_value,
            seconds=time.perf_counter() - started,
            run_id=run_id,
        )
        result.trials.append(finished)
        if on_trial is not None:
            on_trial(finished, result.best)
        return objective_value

    sampler = optuna.samplers.TPESampler(seed=options.seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    if tracker is None:
        study.optimize(
            lambda t: objective(t, None), n_trials=options.trials, timeout=options.timeout_s
        )
        _write_outputs(result, raw, options)
        return result

    run_name = f"tune-{base.name}-{base.model.kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with tracker.start_run(
        run_name, tags={"tune": "study", "model.kind": base.model.kind}
    ) as parent:
        parent.log_params(
            {
                "tune.trials": options.trials,
                "tune.seed": options.seed,
                "tune.metric": metric,
                "tune.sampler": "TPE",
                "tune.space": {param.key: param.describe() for param in space},
            }
        )
        study.optimize(
            lambda t: objective(t, parent), n_trials=options.trials, timeout=options.timeout_s
        )
        _write_outputs(result, raw, options)
        best = result.best
        parent.log_params({f"best.{key}": value for key, value in best.values.items()})
        parent.log_params(trial_config(raw, best.values, options.config).params())
        parent.log_metrics(best.metrics)
        parent.log_metrics(
            {"tune.best_trial": float(best.number), "tune.trials_done": float(len(result.trials))}
        )
        parent.set_split_fingerprint(fingerprint)
        parent.log_text(trials_csv(result), "tuning/trials.csv")
        parent.log_text(trials_markdown(result), "tuning/trials.md")
        if result.best_config is not None:
            parent.log_artifact(result.best_config, "tuning")
        parent.log_figure(history_figure(result), "tuning/objective.png")
        result.study_run_id = parent.run_id
    if options.register and result.best_config is not None:
        _train_best(options, result)
    return result


def _validation_stage(options: TuneOptions, base: TrainConfig) -> tuple[Any, str]:
    """The validation stage every trial is scored on (never the test window), and a
    fingerprint of it (data, window and evaluated members) that all trials share."""
    from feature_store.policy import load_policy
    from training.stage import build_stage, load_source, split_fingerprint
    from training.windows import resolve_windows

    dataset, source = load_source(options.data, load_policy(base.policy))
    validation = resolve_windows(base.split, dataset.purchases).validation
    stage = build_stage("validation", dataset, validation, source, options.out / "snapshot")
    rows = stage.eval_set(stage.prepared(base), base.evaluation).rows
    return stage, split_fingerprint(source.data_fingerprint, validation, rows, base.evaluation.seed)


def _train_best(options: TuneOptions, result: TuneResult) -> None:
    """Train the best config through the ordinary pipeline (scored once on the test window,
    refit on all data), register it and apply the promotion gate."""
    from training.pipeline import TrainOptions, train

    assert result.best_config is not None
    trained = train(
        TrainOptions(
            data=options.data,
            config=load_config(result.best_config),
            out=options.out / "best",
            track=options.track,
            tracking_uri=options.tracking_uri,
        )
    )
    if trained.tracked is not None:
        result.registered_version = trained.tracked.version
        result.promoted = trained.tracked.promoted
        result.promotion_reason = trained.tracked.promotion_reason
        result.best_bundle = trained.bundle


def _suggest(trial: Any, param: SearchParam) -> Scalar:
    if param.kind == "categorical":
        value: Scalar = trial.suggest_categorical(param.key, list(param.choices))
        return value
    if param.kind == "int":
        return int(
            trial.suggest_int(
                param.key, int(param.low), int(param.high), step=int(param.step or 1), log=param.log
            )
        )
    value = float(
        trial.suggest_float(param.key, param.low, param.high, step=param.step, log=param.log)
    )
    if param.step is not None:
        return value
    # four significant digits: readable configs and tables; well inside the search resolution
    return min(max(float(f"{value:.4g}"), param.low), param.high)


def _metric_value(metrics: Mapping[str, float], metric: str, key_of: Callable[[str], str]) -> float:
    wanted = key_of(metric)
    for name, value in metrics.items():
        if key_of(name) == wanted:
            return float(value)
    raise ConfigError(
        f"metric {metric!r} is not among the evaluation's metrics (e.g. "
        f"{', '.join(sorted(metrics)[:5])}); pick another with --metric"
    )


def _write_outputs(result: TuneResult, raw: Mapping[str, Any], options: TuneOptions) -> None:
    best = result.best
    path = options.out / "best_config.toml"
    path.write_text(best_config_text(raw, best.values, options.config), encoding="utf-8")
    result.best_config = path
    (options.out / "trials.csv").write_text(trials_csv(result), encoding="utf-8")


__all__ = [
    # used by training.search and training.search_space
    "Scalar",
    "StepCallback",
    "TrialCallback",
    "TuneOptions",
    "tune",
    "with_values",
]
