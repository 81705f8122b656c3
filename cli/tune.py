"""`recsys tune`: Optuna search over hyperparameters and weights (training/tuning.py).

Each trial is a nested MLflow run under the study's run; a progress bar shows the trials and
the best value so far; a table compares the trials at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from cli.errors import fail, handles_errors
from cli.models import print_table

if TYPE_CHECKING:
    from training.tune_report import TrialResult, TuneResult

_out = Console(soft_wrap=True)
_err = Console(stderr=True)
#: Trials shown in the final table (best first).
SHOWN = 15


@contextmanager
def _known_errors() -> Iterator[None]:
    from engine.errors import EngineError
    from training.tracking import TrackingError

    try:
        yield
    except (EngineError, TrackingError) as exc:
        raise fail(str(exc)) from None


@handles_errors
def tune_cmd(
    data: Annotated[Path, typer.Option(help="Dataset folder (members, items, purchases).")],
    config: Annotated[
        Path | None,
        typer.Option(help="Training config the trials start from (default: the packaged one)."),
    ] = None,
    space: Annotated[
        Path | None,
        typer.Option(
            help="Search space TOML: one table per config key with type, low, high, step, log "
            "or choices; see training/tune_space.py (default: the model's main hyperparameters "
            "and the weights)."
        ),
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="Number of trials.")] = 20,
    timeout: Annotated[
        float | None, typer.Option(help="Start no new trial after this many seconds.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the TPE sampler.")] = 0,
    metric: Annotated[
        str | None,
        typer.Option(help="Metric to maximise (default: the config's evaluation.metric)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder for the best config and bundle (default: data/tune/NAME)."
        ),
    ] = None,
    register: Annotated[
        bool,
        typer.Option(
            "--register", help="Register the best trial's bundle (the promotion gate applies)."
        ),
    ] = False,
    track: Annotated[
        bool, typer.Option("--track/--no-track", help="Log the study and trials to MLflow.")
    ] = True,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else mlflow/)."),
    ] = None,
) -> None:
    """Search hyperparameters and weights; each trial a child run; print the comparison."""
    import optuna

    from training.config import DEFAULT_CONFIG, load_config
    from training.tuning import TuneOptions, tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar reports trials
    if not data.is_dir():
        raise fail(f"{data}: dataset folder not found")
    if register and not track:
        raise typer.BadParameter("--register needs tracking (drop --no-track)")
    config_path = config if config is not None else DEFAULT_CONFIG
    name = load_config(config_path).name
    options = TuneOptions(
        data=data,
        config=config_path,
        out=out if out is not None else Path("data") / "tune" / name,
        space=space,
        trials=trials,
        timeout_s=timeout,
        seed=seed,
        metric=metric,
        track=track,
        tracking_uri=tracking_uri,
        register=register,
    )
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[best]}"),
        TextColumn("[dim]{task.fields[step]}"),
        console=_err,
    )
    with _known_errors(), progress:
        task = progress.add_task(f"tune {name}", total=trials, best="", step="")

        def on_trial(trial: TrialResult, best: TrialResult) -> None:
            progress.update(
                task,
                advance=1,
                best=f"best {best.objective:.4f} (trial {best.number})",
                step="",
            )

        def on_step(number: int, message: str) -> None:
            progress.update(task, step=f"trial {number}: {message}")

        result = tune(options, on_trial=on_trial, on_step=on_step)
    _print_result(result)


def _print_result(result: TuneResult) -> None:
    from training.tune_report import headline_metrics

    keys = [param.key for param in result.space]
    metrics = headline_metrics(result)
    best = result.best
    ranked = sorted(result.trials, key=lambda t: (-t.objective, t.number))
    table = Table(title=f"{len(result.trials)} trial(s), best first (objective {result.metric})")
    table.add_column("trial", justify="right")
    for key in keys:
        table.add_column(key.removeprefix("model.params."), justify="right")
    for name in metrics:
        table.add_column(name, justify="right")
    table.add_column("s", justify="right")
    for trial in ranked[:SHOWN]:
        style = "bold green" if trial is best else None
        table.add_row(
            str(trial.number),
            *(_cell(trial.values.get(key)) for key in keys),
            *(_cell(trial.metrics.get(name)) for name in metrics),
            f"{trial.seconds:.1f}",
            style=style,
        )
    print_table(table)
    if len(ranked) > SHOWN:
        _out.print(
            f"({len(ranked) - SHOWN} more in {result.best_config and result.best_config.parent}/trials.csv)"
        )
    _out.print(f"best trial {best.number}: {result.metric} = {best.objective:.4f}")
    if result.best_config is not None:
        _out.print(
            f"best config: {result.best_config}  (train it: recsys train --config {result.best_config})"
        )
    if result.study_run_id is not None:
        _out.print(f"MLflow study run: {result.study_run_id}")
    if result.registered_version is not None:
        status = (
            "promoted to champion"
            if result.promoted
            else f"not promoted: {result.promotion_reason}"
        )
        _out.print(f"registered member-recs version {result.registered_version}: {status}")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
