"""`recsys audience evaluate`: offline audience evaluation on a temporal split.

The lead wires :func:`evaluate_command` into the ``audience`` group (cli/audience.py), e.g.
``app.command("evaluate")(evaluate_command)``. docs/evaluation.md ("Audience evaluation")
describes the protocol and the measured tables.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.errors import fail, handles_errors

if TYPE_CHECKING:
    from training.audience_report import AudienceEvalReport

_out = Console()


@handles_errors
def evaluate_command(
    data: Annotated[Path, typer.Option(help="Dataset folder (members, items, purchases).")],
    out: Annotated[
        Path, typer.Option(help="Report folder: audience_eval.json, audience_eval.csv, snapshot.")
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            help="Training config TOML: split, weights and model whose vectors are scored "
            "(default: training/configs/default.toml)."
        ),
    ] = None,
    categories: Annotated[
        int, typer.Option(min=0, help="Top categories (by buyers before the cutoff) to evaluate.")
    ] = 20,
    items: Annotated[int, typer.Option(min=0, help="Items to sample and evaluate.")] = 20,
    size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Fixed audience size N (default: the seed's buyers in the test window)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Random seed of the item sample.")] = 0,
    min_item_buyers: Annotated[
        int, typer.Option(min=1, help="Sample only items with at least this many test buyers.")
    ] = 5,
    history_weight: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="The audience scorer's weight of the member's own history with the seed items "
            "(default: the engine's, as served); 0 = the pure vector score.",
        ),
    ] = None,
    track: Annotated[
        bool, typer.Option("--track/--no-track", help="Log the report to MLflow.")
    ] = False,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlflow)."),
    ] = None,
) -> None:
    """Model audiences vs random, RFM and "bought it before" on a temporal split (lift table)."""
    from cli.progress import steps
    from engine.audience import HISTORY_WEIGHT
    from training.audience_eval import AudienceEvalOptions, evaluate_audiences
    from training.audience_eval import track as track_report
    from training.config import load_config

    if not data.is_dir():
        raise fail(f"{data}: dataset folder not found")
    cfg = load_config(config)
    options = AudienceEvalOptions(
        data=data,
        config=cfg,
        out=out,
        categories=categories,
        items=items,
        size=size,
        seed=seed,
        min_item_buyers=min_item_buyers,
        history_weight=HISTORY_WEIGHT if history_weight is None else history_weight,
    )
    bar = Progress(
        TextColumn("[bold]audiences"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("audiences", total=None)

    def tick(done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total)

    with steps(f"audience evaluation {cfg.name}") as step:
        try:
            report = evaluate_audiences(options, progress=step, tick=tick)
        finally:
            bar.stop()
    print_report(report, _out)
    typer.echo(f"reports: {out / 'audience_eval.json'}, {out / 'audience_eval.csv'}")
    if track:
        from training.tracking import TrackingError

        try:
            run_id = track_report(report, out, tracking_uri)
        except TrackingError as exc:
            raise fail(str(exc)) from None
        typer.echo(f"MLflow run: {run_id}")


def _fmt(value: float, digits: int = 4) -> str:
    return "-" if not math.isfinite(value) else f"{value:.{digits}f}"


def print_report(report: AudienceEvalReport, console: Console) -> None:
    """The comparison table: mean precision@N / recall per method, lifts and wins per kind."""
    from training.audience_report import BASELINES

    console.print(
        f"split: train before {report.split.cutoff_date}, test {report.split.cutoff_date} .. "
        f"{report.split.test_last_day}; {report.eligible:,} eligible members; model "
        f"{report.model_kind} ({report.config}) + history weight "
        f"{report.facts.get('history_weight', '-')}; N = "
        f"{report.size if report.size is not None else 'buyers of the seed in the test window'}"
    )
    for kind, summary in report.summaries.items():
        table = Table(
            title=f"{kind} seeds: mean over {summary.seeds} ({kind} audiences)",
            title_justify="left",
        )
        table.add_column("method")
        table.add_column("precision@N", justify="right")
        table.add_column("recall", justify="right")
        models = list(summary.lift)
        for model in models:
            table.add_column(f"lift of {model}", justify="right")
            table.add_column("seeds won", justify="right")
        for method, precision in summary.precision.items():
            cells = [method, _fmt(precision), _fmt(summary.recall[method])]
            for model in models:
                if method in BASELINES:
                    value = summary.lift[model][method]
                    style = "green" if value > 1 else "red"
                    cells += [
                        f"[{style}]{_fmt(value, 3)}[/{style}]",
                        f"{summary.wins[model][method]}/{summary.seeds}",
                    ]
                else:
                    cells += ["", ""]
            table.add_row(*cells)
        console.print(table)
        for model in models:
            verdict = "beats" if summary.beats_all(model) else "does NOT beat"
            console.print(f"  {model} {verdict} every baseline on mean precision@N ({kind})")
    per_seed = Table(title="per seed: precision@N", title_justify="left")
    methods = report.methods
    for column in ("kind", "seed", "N", "bought before", *methods):
        per_seed.add_column(column, justify="left" if column in ("kind", "seed") else "right")
    for r in report.results:
        best = max(r.methods[m].precision for m in methods)
        per_seed.add_row(
            r.kind,
            r.seed,
            f"{r.size:,}",
            f"{r.bought_before:,}",
            *[
                f"[bold]{_fmt(r.methods[m].precision)}[/bold]"
                if r.methods[m].precision == best
                else _fmt(r.methods[m].precision)
                for m in methods
            ],
        )
    console.print(per_seed)


__all__ = ["evaluate_command", "print_report"]
