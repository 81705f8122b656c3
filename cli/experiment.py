"""`recsys experiment ...`: the champion-vs-challenger experiment the service runs
(docs/experiments.md).

- ``report``: the members exposed to each variant over the last ``--days`` days, from the
  service's exposure log (Redis: ``--redis-url``, else ``REDIS_URL``; key prefix
  ``--redis-prefix``, else ``REDIS_PREFIX``) and the purchase events of the campaign database
  (``--database-url``, else ``DATABASE_URL``, else SQLite under ``--data-dir``), through the
  service's own report path (serving.experiments.experiment_report): a table on stdout and, with
  ``--out``, Markdown / CSV / JSON / PNG files.

The experiment's settings are read as the service reads them: ``RECSYS_EXPERIMENT``,
``RECSYS_ATTRIBUTION_HOURS``, ``RECSYS_DATA_TIMEZONE``, ``RECSYS_CHALLENGER_URI`` and
``RECSYS_CHALLENGER_PERCENT`` (each also an option). ``recsys models promote
--require-online-win`` reads the report with the same options (:func:`current_report`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.campaign import DatabaseUrl, DataDir, DataTimezone, open_store, store_url
from cli.errors import fail, handles_errors

if TYPE_CHECKING:
    from engine.experiments.report import ExperimentReport

app = typer.Typer(
    help="The champion-vs-challenger experiment: its report from the exposure log.",
    no_args_is_help=True,
)

Days = Annotated[
    int,
    typer.Option(
        "--days", min=1, max=90, help="Report period: members exposed in the last N days."
    ),
]
End = Annotated[
    str | None,
    typer.Option(
        "--end",
        help="End of the period (ISO date-time; UTC unless it has an offset) [default: now].",
        show_default=False,
    ),
]
RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="REDIS_URL",
        help="The service's online store, which holds the exposure log [env REDIS_URL; default: "
        "the embedded store].",
        show_default=False,
    ),
]
RedisPrefix = Annotated[
    str,
    typer.Option("--redis-prefix", envvar="REDIS_PREFIX", help="Key prefix of the online store."),
]
AttributionHours = Annotated[
    float,
    typer.Option(
        "--attribution-hours",
        envvar="RECSYS_ATTRIBUTION_HOURS",
        help="A purchase of a shown item counts for the list within this many hours.",
    ),
]
Experiment = Annotated[
    str,
    typer.Option("--experiment", envvar="RECSYS_EXPERIMENT", help="The experiment's name."),
]
ChallengerUri = Annotated[
    str | None,
    typer.Option(
        "--challenger-uri",
        envvar="RECSYS_CHALLENGER_URI",
        help="The challenger the service runs (shown in the report).",
        show_default=False,
    ),
]
ChallengerPercent = Annotated[
    float,
    typer.Option(
        "--challenger-percent",
        envvar="RECSYS_CHALLENGER_PERCENT",
        help="Share (%) of the members served the challenger (shown in the report).",
    ),
]


def parse_end(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO date-time (2024-06-10T12:00:00+02:00)", param_hint="--end"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def current_report(
    *,
    days: int,
    end: datetime | None,
    redis_url: str | None,
    redis_prefix: str,
    database_url: str | None,
    data_dir: Path,
    data_timezone: str,
    attribution_hours: float,
    experiment: str,
    challenger_uri: str | None = None,
    challenger_percent: float | None = None,
    out: Path | None = None,
) -> ExperimentReport:
    """The experiment's report through the service's report path (module docstring)."""
    import redis

    from engine.experiments.attribution import check_zone, window_ms
    from feature_store.online.connection import close_client, open_client, redact, resolve_url
    from feature_store.redis_keys import RedisKeys
    from serving.experiments import ExperimentConfig, experiment_report, exposure_reader

    check_zone(data_timezone)  # bad options fail before anything is opened
    window_ms(attribution_hours)
    try:
        keys = RedisKeys(redis_prefix)
    except ValueError as exc:
        raise fail(f"--redis-prefix: {exc}") from None
    url = store_url(data_dir, database_url)
    store = open_store(url)
    if store is None:
        raise fail(
            f"no campaign database at {url} (--data-dir {data_dir}): the service keeps the "
            "purchase events there (POST /v1/events); give --database-url or DATABASE_URL"
        )
    config = ExperimentConfig(
        experiment=experiment,
        attribution_hours=attribution_hours,
        data_timezone=data_timezone,
        challenger_uri=challenger_uri,
        challenger_percent=challenger_percent,
    )
    redis_at = resolve_url(redis_url)
    try:
        client = open_client(redis_at)
        try:
            return experiment_report(
                exposure_reader(client, keys), store.events, config, days=days, end=end, out=out
            )
        finally:
            close_client(client)
    except redis.RedisError as exc:
        raise fail(f"the exposure log at {redact(redis_at)} cannot be read: {exc}") from None
    finally:
        store.dispose()


def print_report(report: ExperimentReport, out: Path | None = None) -> None:
    """The report as tables on stdout, with the minimum detectable effect and the notes."""
    from rich.console import Console
    from rich.table import Table

    from engine.experiments.report_files import difference_text

    def value(v: float | None, percent: bool) -> str:
        if v is None:
            return "n/a"
        return f"{v * 100:.2f}%" if percent else f"{v:,.2f}"

    console = Console(width=140, highlight=False)
    typer.echo(
        f"experiment {report.experiment}: members exposed {report.period_start:%Y-%m-%d %H:%M} "
        f"to {report.period_end:%Y-%m-%d %H:%M} UTC; attribution window "
        f"{report.attribution_hours:g} h; challenger {report.challenger_uri or 'not configured'}"
    )
    variants = Table(title="variants")
    for column in ("variant", "members", "lists", "converted", "recommended", "bundles"):
        variants.add_column(column, justify="left" if column in ("variant", "bundles") else "right")
    for v in report.variants:
        variants.add_row(
            v.variant, f"{v.members:,}", f"{v.lists_served:,}", f"{v.converted:,}",
            f"{v.converted_recommended:,}", ", ".join(v.bundle_ids) or "-",
        )  # fmt: skip
    console.print(variants)
    conf = f"{report.confidence:.0%}"
    table = Table(caption="difference = challenger - champion; * = the interval excludes 0")
    for column in ("metric", "champion", "challenger", "difference", f"{conf} interval", "p"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for m in report.metrics:
        pct = m.kind == "proportion"
        diff, ci = difference_text(m)
        p = m.difference.p_value
        table.add_row(
            m.label, value(m.champion.value, pct), value(m.challenger.value, pct), diff, ci,
            "n/a" if p is None else f"{p:.3g}",
        )  # fmt: skip
    console.print(table)
    mde = report.detectable_effect
    shown = "none (variants too small)" if mde.absolute is None else f"{mde.absolute * 100:.2f} pts"
    typer.echo(f"minimum detectable effect on {mde.metric} (power {mde.power:.0%}): {shown}")
    for note in report.notes:
        typer.echo(f"  {note}")
    if report.flags:
        typer.echo(f"flags: {', '.join(report.flags)}")
    if out is not None:
        typer.echo(f"report files (Markdown, CSV, JSON, PNG) in {out}")


@app.command("report")
@handles_errors
def report_cmd(
    days: Days = 7,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for report.md/.csv/.json and experiment.png.", show_default=False
        ),
    ] = None,
    end: End = None,
    redis_url: RedisUrl = None,
    redis_prefix: RedisPrefix = "recsys",
    data_dir: DataDir = Path("data"),
    database_url: DatabaseUrl = None,
    data_timezone: DataTimezone = "UTC",
    attribution_hours: AttributionHours = 24.0,
    experiment: Experiment = "champion-vs-challenger",
    challenger_uri: ChallengerUri = None,
    challenger_percent: ChallengerPercent = 10.0,
) -> None:
    """Champion vs challenger over the last N days, per exposed member: conversion, conversion
    to a recommended item, revenue per member and its share from recommended items, with 95%
    intervals, p-values and the minimum detectable effect."""
    report = current_report(
        days=days,
        end=parse_end(end),
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        database_url=database_url,
        data_dir=data_dir,
        data_timezone=data_timezone,
        attribution_hours=attribution_hours,
        experiment=experiment,
        challenger_uri=challenger_uri,
        challenger_percent=challenger_percent,
        out=out,
    )
    print_report(report, out)


__all__ = [
    "AttributionHours",
    "Days",
    "End",
    "Experiment",
    "RedisPrefix",
    "RedisUrl",
    "app",
    "current_report",
    "parse_end",
    "print_report",
]
