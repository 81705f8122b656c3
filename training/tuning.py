"""Hyperparameter and weight search with Optuna, every trial a nested MLflow run.

    recsys tune --data DIR --config FILE [--space SPACE.toml] --trials 20

A *search space* names config keys (dotted, as in the training TOML) and how to sample them::

    [params."model.params.factors"]
    type = "int"            # int | float | categorical
    low = 32
    high = 128
    step = 32

    [params."blend.buy_again"]
    type = "float"
    low = 0.0
    high = 2.0
    log = false             # sample on a log scale (low > 0)

    [params."weights.quantity"]
    type = "categorical"
    choices = ["none", "log1p"]

Without a space file :func:`default_space` searches the model's main hyperparameters and the
interaction and blend weights. The split, the evaluation, the features and tracking cannot be
searched: every trial is evaluated on the same split, so trials (and the result) compare.

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
"""

from __future__ import annotations

import copy
import csv
import io
import math
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import tomli_w

from training.config import ConfigError, TrainConfig, load_config, parse_config

#: Config sections a search may not touch (they define what trials are compared on).
FROZEN_SECTIONS: Final[tuple[str, ...]] = ("split", "evaluation", "features", "tracking", "name")
KINDS: Final[tuple[str, ...]] = ("int", "float", "categorical")

Scalar = int | float | str | bool


@dataclass(frozen=True, slots=True)
class SearchParam:
    """How one dotted config key is sampled."""

    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    choices: tuple[Scalar, ...] = ()

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"one of {list(self.choices)}"
        scale = ", log" if self.log else ""
        step = f", step {self.step:g}" if self.step is not None else ""
        return f"{self.kind} in [{self.low:g}, {self.high:g}]{step}{scale}"


@dataclass(frozen=True, slots=True)
class TrialResult:
    """One finished trial."""

    number: int
    values: Mapping[str, Scalar]
    metrics: Mapping[str, float]
    objective: float
    seconds: float
    run_id: str | None = None


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


@dataclass(slots=True)
class TuneResult:
    """The trials (in order), the best one and where its config and bundle are."""

    metric: str
    space: tuple[SearchParam, ...]
    trials: list[TrialResult] = field(default_factory=list)
    best_config: Path | None = None
    best_bundle: Path | None = None
    study_run_id: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    registered_version: int | None = None
    promoted: bool | None = None
    promotion_reason: str | None = None

    @property
    def best(self) -> TrialResult:
        if not self.trials:
            raise ConfigError("no trial finished; raise --trials or --timeout")
        return max(self.trials, key=lambda t: (t.objective, -t.number))


# -- search spaces ---------------------------------------------------------------------------


def _int(key: str, low: int, high: int, step: int = 1) -> SearchParam:
    return SearchParam(key, "int", low, high, step)


def _float(key: str, low: float, high: float, *, log: bool = False) -> SearchParam:
    return SearchParam(key, "float", low, high, None, log)


_COMMON: Final[tuple[SearchParam, ...]] = (
    _float("weights.half_life_days", 7.0, 365.0, log=True),
    _float("weights.tags.boost", 1.0, 3.0),
    _float("blend.buy_again", 0.0, 2.0),
    _float("blend.trending", 0.0, 1.0),
)
_MODEL_SPACES: Final[dict[str, tuple[SearchParam, ...]]] = {
    "als": (
        _int("model.params.factors", 32, 128, 32),
        _float("model.params.regularization", 1e-3, 1.0, log=True),
        _float("model.params.alpha", 0.1, 50.0, log=True),
        _int("model.params.iterations", 8, 25),
    ),
    "bpr": (
        _int("model.params.factors", 32, 128, 32),
        _float("model.params.learning_rate", 1e-3, 0.1, log=True),
        _float("model.params.regularization", 1e-4, 0.1, log=True),
        _int("model.params.iterations", 50, 300, 50),
    ),
    "lightfm": (
        _int("model.params.components", 16, 64, 16),
        _float("model.params.learning_rate", 0.01, 0.1, log=True),
        _int("model.params.epochs", 5, 30, 5),
        _float("model.params.item_alpha", 1e-8, 1e-4, log=True),
        _float("model.params.user_alpha", 1e-8, 1e-4, log=True),
    ),
}


def default_space(model_kind: str) -> tuple[SearchParam, ...]:
    """The model's main hyperparameters plus recency, tag and blend weights."""
    if model_kind not in _MODEL_SPACES:
        raise ConfigError(
            f"no default search space for model kind {model_kind!r}; give one with --space "
            f"(known: {', '.join(sorted(_MODEL_SPACES))})"
        )
    return _MODEL_SPACES[model_kind] + _COMMON


def load_space(path: Path) -> tuple[SearchParam, ...]:
    """Read a search space TOML (see the module docstring); errors name file and key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the search space: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"params"})
    if unknown:
        raise ConfigError(f'{path}: unknown key(s) {", ".join(unknown)}; expected [params."..."]')
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f'{path}: no [params."<config key>"] tables: nothing to search')
    return tuple(_search_param(path, key, spec) for key, spec in params.items())


def _search_param(path: Path, key: str, spec: object) -> SearchParam:
    where = f"{path}: params.{key!r}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a table with type = int | float | categorical")
    _check_key(key, where)
    allowed = {"type", "low", "high", "step", "log", "choices"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    kind = spec.get("type")
    if kind not in KINDS:
        raise ConfigError(f"{where}: type is {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: categorical needs a non-empty list 'choices'")
        if not all(isinstance(c, int | float | str | bool) for c in choices):
            raise ConfigError(f"{where}: choices must be numbers, strings or booleans")
        return SearchParam(key, kind, choices=tuple(choices))
    low = _number(spec, "low", where)
    high = _number(spec, "high", where)
    if low is None or high is None:
        raise ConfigError(f"{where}: {kind} needs numbers low and high")
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{where}: needs finite low <= high, got [{low}, {high}]")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, got {low}")
    step = _number(spec, "step", where)
    if kind == "int":
        if not all(isinstance(spec.get(name, 1), int) for name in ("low", "high", "step")):
            raise ConfigError(f"{where}: an int parameter needs integer low, high and step")
        if step is not None and step < 1:
            raise ConfigError(f"{where}: step must be >= 1")
    elif step is not None and step <= 0:
        raise ConfigError(f"{where}: step must be > 0")
    if log and step is not None and step != 1:
        raise ConfigError(f"{where}: a log scale cannot have a step")
    return SearchParam(key, kind, low, high, step, log)


def _number(spec: Mapping[str, object], name: str, where: str) -> float | None:
    value = spec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
    return float(value)


def _check_key(key: str, where: str) -> None:
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{where}: {key!r} is not a dotted config key like model.params.factors")
    if parts[0] in FROZEN_SECTIONS:
        raise ConfigError(
            f"{where}: {parts[0]}.* cannot be searched: every trial must be evaluated on the "
            "same split and metric"
        )


# -- applying values to a config -------------------------------------------------------------


def with_values(raw: Mapping[str, Any], values: Mapping[str, Scalar]) -> dict[str, Any]:
    """A deep copy of the parsed TOML ``raw`` with each dotted key set to its value."""
    out = copy.deepcopy(dict(raw))
    for key, value in values.items():
        *parents, leaf = key.split(".")
        table = out
        for i, part in enumerate(parents):
            child = table.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"search key {key!r}: {'.'.join(parents[: i + 1])} is a value, not a table"
                )
            table = child
        table[leaf] = value
    return out


def _read_raw(path: Path) -> dict[str, Any]:
    load_config(path)  # the starting point must be valid itself (errors name the key)
    return tomllib.loads(path.read_text(encoding="utf-8"))


def trial_config(raw: Mapping[str, Any], values: Mapping[str, Scalar], path: Path) -> TrainConfig:
    """The config of a trial: sampled values in, baselines out, no tracking or promotion."""
    trial = with_values(raw, values)
    trial.pop("baselines", None)
    trial["tracking"] = {**dict(trial.get("tracking", {})), "register": False, "promote": False}
    return parse_config(trial, path)


def best_config_text(raw: Mapping[str, Any], values: Mapping[str, Scalar], path: Path) -> str:
    """The starting config with the best values, as TOML (relative paths made absolute)."""
    best = with_values(raw, values)
    features = best.get("features")
    if isinstance(features, dict) and isinstance(features.get("policy"), str):
        policy = Path(features["policy"])
        if not policy.is_absolute():
            features["policy"] = str((path.parent / policy).resolve())
    header = (
        f"# Written by `recsys tune` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {path}.\n"
        "# Searched values: "
        + ", ".join(f"{key} = {value!r}" for key, value in values.items())
        + "\n"
    )
    return header + tomli_w.dumps(best)


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
    raw = _read_raw(options.config)
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
    fingerprint of it (data, windows and evaluated members) that all trials share."""
    import hashlib

    from feature_store.dataset import LoadOptions, load_dataset, table_path
    from feature_store.offline import source_fingerprint
    from feature_store.policy import load_policy
    from feature_store.schema import ITEMS, MEMBERS, PURCHASES
    from training.stage import SnapshotSource, build_stage
    from training.windows import resolve_windows

    policy = load_policy(base.policy)
    loaded = load_dataset(options.data, LoadOptions(tiers=policy.tiers.names))
    files = [table_path(options.data, spec) for spec in (MEMBERS, ITEMS, PURCHASES)]
    data_fingerprint = source_fingerprint(files)
    windows = resolve_windows(base.split, loaded.dataset.purchases)
    source = SnapshotSource(options.data, policy, data_fingerprint, loaded.report.rejected_count)
    stage = build_stage(
        "validation", loaded.dataset, windows.validation, source, options.out / "snapshot"
    )
    rows = stage.eval_set(stage.prepared(base), base.evaluation).rows
    digest = hashlib.sha256(data_fingerprint.encode())
    digest.update(f"|validation|{windows.validation.cutoff.isoformat()}|".encode())
    digest.update(f"{windows.validation.test_end.isoformat()}|".encode())
    digest.update(rows.tobytes())
    return stage, f"sha256:{digest.hexdigest()[:32]}"


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


# -- reports ---------------------------------------------------------------------------------


def headline_metrics(result: TuneResult) -> list[str]:
    """The objective first, then the "new" counterpart of an "all" metric (and vice versa)."""
    names = [result.metric]
    if result.metric.endswith("/all"):
        names.append(result.metric.removesuffix("/all") + "/new")
    elif result.metric.endswith("/new"):
        names.append(result.metric.removesuffix("/new") + "/all")
    return names


def trials_csv(result: TuneResult) -> str:
    keys = [param.key for param in result.space]
    metrics = headline_metrics(result)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", *keys, *metrics, "seconds", "run_id"])
    for t in result.trials:
        writer.writerow(
            [
                t.number,
                *(t.values.get(k) for k in keys),
                *(t.metrics.get(m) for m in metrics),
                round(t.seconds, 2),
                t.run_id or "",
            ]
        )
    return buffer.getvalue()


def trials_markdown(result: TuneResult) -> str:
    keys = [param.key for param in result.space]
    metrics = headline_metrics(result)
    head = ["trial", *keys, *metrics, "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in sorted(result.trials, key=lambda t: (-t.objective, t.number)):
        cells = [
            str(t.number),
            *(_cell(t.values.get(k)) for k in keys),
            *(_cell(t.metrics.get(m)) for m in metrics),
            f"{t.seconds:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def history_figure(result: TuneResult) -> Any:
    """Objective per trial and the best so far (matplotlib figure)."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    numbers = [t.number for t in result.trials]
    values = [t.objective for t in result.trials]
    best_so_far = [max(values[: i + 1]) for i in range(len(values))]
    figure = Figure(figsize=(6, 3.5))
    axes = figure.subplots()
    axes.plot(numbers, values, "o", label="trial")
    axes.step(numbers, best_so_far, where="post", label="best so far")
    axes.set_xlabel("trial")
    axes.set_ylabel(result.metric)
    axes.legend()
    figure.tight_layout()
    return figure
