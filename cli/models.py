"""`recsys models ...`: list, compare and promote registered versions of ``member-recs``.

The tracking store is ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the embedded
SQLite store under ``mlflow/`` (see mlflow/README.md). Exit codes: 0 success; 1 bad input (an
unknown version, an unreachable store; one-line reason on stderr); 2 wrong usage; 3 the
promotion gate refused the version (reason on stderr, the alias did not move).

``promote --require-online-win`` decides on the champion-vs-challenger experiment the service
runs instead of the offline metric: the current experiment report (cli/experiment.py, the
service's report path) must show the challenger significantly better on conversion to a
recommended item, with at least ``--min-members`` exposed members per variant, no significant
loss of revenue per member, and the challenger's lists served by this version's bundle
(engine.experiments.gate); else exit 3. docs/experiments.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from cli.campaign import DatabaseUrl, DataDir, DataTimezone
from cli.errors import fail, handles_errors
from cli.experiment import (
    AttributionHours,
    Days,
    Experiment,
    RedisPrefix,
    RedisUrl,
    current_report,
)

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
    require_online_win: Annotated[
        bool,
        typer.Option(
            "--require-online-win",
            help="Decide on the online experiment instead of the offline metric: promote only "
            "if the challenger (this version) is significantly better on conversion to a "
            "recommended item in the current experiment report.",
        ),
    ] = False,
    min_members: Annotated[
        int,
        typer.Option(
            "--min-members", min=1, help="Exposed members each variant needs (online gate)."
        ),
    ] = 1_000,
    days: Days = 7,
    redis_url: RedisUrl = None,
    redis_prefix: RedisPrefix = "recsys",
    data_dir: DataDir = Path("data"),
    database_url: DatabaseUrl = None,
    data_timezone: DataTimezone = "UTC",
    attribution_hours: AttributionHours = 24.0,
    experiment: Experiment = "champion-vs-challenger",
) -> None:
    """Move the alias `champion` to VERSION if it beats the champion on the same split (or,
    with --require-online-win, if it won the online experiment).

    Exit code 3 when the gate refuses (the alias stays where it was).
    """
    if require_online_win and force:
        raise fail(
            "--force cannot be combined with --require-online-win: the online gate is a "
            "requirement, --force skips the gates"
        )
    with _tracker(tracking_uri) as tracker:
        evidence = None
        if require_online_win:
            from engine.experiments.gate import online_verdict
            from serving.model_types import bundle_id

            candidate = tracker.version(version)
            report = current_report(
                days=days,
                end=None,
                redis_url=redis_url,
                redis_prefix=redis_prefix,
                database_url=database_url,
                data_dir=data_dir,
                data_timezone=data_timezone,
                attribution_hours=attribution_hours,
                experiment=experiment,
            )
            bundle = bundle_id(tracker.resolve_bundle(candidate.uri))
            verdict = online_verdict(report, min_members=min_members, challenger_bundle=bundle)
            if not verdict.passed:
                raise fail(f"not promoted: {verdict.reason}", EXIT_NOT_PROMOTED)
            evidence = verdict.reason
        result = tracker.promote(
            version, metric=metric, force=force, reason=reason, online_evidence=evidence
        )
    if not result.promoted:
        raise fail(f"not promoted: {result.reason}", EXIT_NOT_PROMOTED)
    typer.echo(f"member-recs version {version} is now the champion: {result.reason}")
