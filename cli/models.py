"""`recsys models ...`: list, compare and promote registered versions of ``member-recs``.

The tracking store is ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the embedded
SQLite store under ``mlflow/`` (see mlflow/README.md). Exit codes: 0 success; 1 bad input (an
unknown version, an unreachable store; one-line reason on stderr); 2 wrong usage; 3 the
promotion gate refused the version (reason on stderr, the alias did not move).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from cli.errors import fail, handles_errors

if TYPE_CHECKING:
    from training.tracking import Tracker

#: The promotion gate refused the version; the alias did not move.
EXIT_NOT_PROMOTED = 3
#: Metrics shown by `models list` (MLflow keys, see training.tracking_store.metric_key).
LIST_METRICS = ("ndcg_at_10_all", "ndcg_at_10_new", "recall_at_10_all", "coverage_at_10_all")

app = typer.Typer(
    help="Registered models: list, compare and promote versions of member-recs.",
    no_args_is_help=True,
)
_out = Console(soft_wrap=True)

TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite under mlflow/).",
        show_default=False,
    ),
]


@contextmanager
def _tracker(uri: str | None) -> Iterator[Tracker]:
    """A tracker; tracking errors exit 1 with their message (MLflow is imported only here)."""
    from training.tracking import Tracker, TrackingError

    try:
        yield Tracker(uri)
    except TrackingError as exc:
        raise fail(str(exc)) from None


def print_table(table: Table) -> None:
    """Print a table; when stdout is not a terminal (a pipe, a file) never cut its cells."""
    if _out.is_terminal:
        _out.print(table)
    else:
        needed = Measurement.get(_out, _out.options.update_width(10_000), table).maximum
        Console(width=max(_out.width, needed)).print(table)


def _number(value: float | str | None, best: bool = False) -> str:
    if value is None:
        return "-"
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    return f"[bold green]{text}[/bold green]" if best else text


@app.command("list")
@handles_errors
def list_cmd(tracking_uri: TrackingUriOption = None) -> None:
    """Every registered version, newest first, with its aliases, run, split and key metrics."""
    with _tracker(tracking_uri) as tracker:
        versions = tracker.list_versions()
        if not versions:
            typer.echo(f"no registered versions of member-recs in {tracker.tracking_uri}")
            return
        table = Table(title=f"member-recs ({tracker.tracking_uri})")
        for column in ("version", "aliases", "run", "created (UTC)", "split", *LIST_METRICS):
            table.add_column(column, justify="right" if column in LIST_METRICS else "left")
        for info in versions:
            table.add_row(
                str(info.version),
                ", ".join(info.aliases) or "-",
                info.run_name,
                info.created_at.strftime("%Y-%m-%d %H:%M"),
                (info.split_fingerprint or "-")[:12],
                *(_number(info.metrics.get(key)) for key in LIST_METRICS),
            )
        print_table(table)


@app.command("compare")
@handles_errors
def compare_cmd(
    versions: Annotated[list[int], typer.Argument(help="Versions to compare (two or more).")],
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            help="Only these metrics (repeatable; 'ndcg@10/all' or 'ndcg_at_10_all') "
            "(default: all).",
        ),
    ] = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Versions side by side: split, metrics (best in green) and the params that differ."""
    if len(set(versions)) < 2:
        raise fail(
            "compare needs at least two different versions, e.g. `recsys models compare 3 4`"
        )
    with _tracker(tracking_uri) as tracker:
        rows = tracker.compare(versions, metrics=metric or None)
    table = Table(title="member-recs: " + " vs ".join(f"v{v}" for v in versions))
    table.add_column("")
    for version in versions:
        table.add_column(f"v{version}", justify="right")
    for row in rows:
        label = row.name if row.kind != "param" else f"[dim]param[/dim] {row.name}"
        table.add_row(label, *(_number(row.values.get(v), v == row.best) for v in versions))
    print_table(table)


@app.command("promote")
@handles_errors
def promote_cmd(
    version: Annotated[int, typer.Argument(help="Version to make the champion.")],
    metric: Annotated[
        str, typer.Option(help="Metric the gate compares (higher is better).")
    ] = "ndcg@10/all",
    force: Annotated[
        bool, typer.Option("--force", help="Move the alias even if the gate refuses (logged).")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded on the version).")] = "",
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Move the alias `champion` to VERSION if it beats the champion on the same split.

    Exit code 3 when the gate refuses (the alias stays where it was).
    """
    with _tracker(tracking_uri) as tracker:
        result = tracker.promote(version, metric=metric, force=force, reason=reason)
    if not result.promoted:
        raise fail(f"not promoted: {result.reason}", EXIT_NOT_PROMOTED)
    typer.echo(f"member-recs version {version} is now the champion: {result.reason}")
