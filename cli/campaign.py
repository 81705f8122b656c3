"""`recsys campaign ...`: campaigns sent with a control group, their outcome reports and uplift
models fitted on them (docs/campaigns.md).

The campaign database is the service's (feature_store.campaigns): ``--database-url``, else
``DATABASE_URL``, else SQLite under ``--data-dir`` (``<DIR>/campaigns.db``); a command that
opens it brings its schema to the latest Alembic revision (idempotent).

- ``list`` / ``show ID``: the recorded campaigns.
- ``report ID``: each member's outcomes in the attribution window ``[send, send + window)``,
  from a dataset's purchases (``--data``) or else from the purchase events of the campaign
  database (what the service received through ``POST /v1/events``), then
  engine.campaigns.build_report: a table on stdout, Markdown / CSV / JSON / PNG files
  (engine.campaigns.report_files) and the report cached in the database.
- ``uplift fit``: an uplift model fitted on past campaigns with control groups
  (cli/campaign_uplift.py).

Times: purchase timestamps (dataset and events) are naive local times of the data's time zone
(``--data-timezone``, default ``RECSYS_DATA_TIMEZONE``, else UTC, as in the service); a
campaign's send time is stored in UTC and converted to that zone before the window is cut.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, cast

import typer

from cli.errors import fail, handles_errors

if TYPE_CHECKING:
    from engine.campaigns.report import CampaignReport
    from engine.campaigns.uplift import Method
    from feature_store.campaigns import CampaignStore

app = typer.Typer(
    help="Campaigns with control groups: list them, report their lift, fit uplift models.",
    no_args_is_help=True,
)
uplift_app = typer.Typer(
    help="Uplift models fitted on past campaigns with control groups.", no_args_is_help=True
)
app.add_typer(uplift_app, name="uplift")

MAX_WINDOW_DAYS: Final[int] = 3_650

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        help="Data folder of the embedded campaign database (<DIR>/campaigns.db); "
        "DATABASE_URL wins when set.",
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Campaign database (sqlite:///file.db, postgresql://...) [default: DATABASE_URL, "
        "else SQLite under --data-dir].",
    ),
]
DataTimezone = Annotated[
    str,
    typer.Option(
        "--data-timezone",
        envvar="RECSYS_DATA_TIMEZONE",
        help="Time zone of the purchase timestamps (IANA name) [env RECSYS_DATA_TIMEZONE].",
    ),
]
WindowDays = Annotated[
    int, typer.Option("--window-days", help="Attribution window in days after the send.")
]
DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Canonical dataset folder whose purchases give the outcomes [default: the purchase "
        "events recorded in the campaign database].",
    ),
]


# -- the store ------------------------------------------------------------------------------


def store_url(data_dir: Path, database_url: str | None) -> str:
    from feature_store.campaigns import resolve_url

    return (database_url or "").strip() or resolve_url(data_dir)


def open_store(url: str, *, create: bool = False) -> CampaignStore | None:
    """The migrated store at ``url``; None when it is a SQLite file that does not exist (and
    ``create`` is False): a read must not leave an empty database behind a typo."""
    from feature_store.campaigns import CampaignStore
    from feature_store.campaigns.db import normalise_url

    parsed = normalise_url(url)
    database = parsed.database or ""
    embedded = parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
    if embedded and not create and not Path(database).is_file():
        return None
    store = CampaignStore.from_url(url)
    store.migrate()
    return store


@contextmanager
def existing_store(data_dir: Path, database_url: str | None) -> Iterator[CampaignStore]:
    """The store of a command that needs recorded campaigns (exit 1 when there is none)."""
    url = store_url(data_dir, database_url)
    store = open_store(url)
    if store is None:
        raise fail(
            f"no campaign database at {url} (--data-dir {data_dir}): campaigns are recorded "
            "when an audience is marked sent (POST /v1/audiences/{id}/sent) or by `recsys demo`"
        )
    try:
        yield store
    finally:
        store.dispose()


def check_window(window_days: int) -> int:
    if not 1 <= window_days <= MAX_WINDOW_DAYS:
        raise fail(
            f"--window-days: must be between 1 and {MAX_WINDOW_DAYS} days after the send "
            f"(got {window_days}); the window is [send, send + N days)"
        )
    return window_days


# -- outcomes and the report ------------------------------------------------------------------


def _value(value: float | None, percent: bool) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:.2f}%" if percent else f"{value:,.2f}"


def _interval(low: float | None, high: float | None, percent: bool) -> str:
    if low is None or high is None:
        return "n/a"
    if percent:
        return f"{low * 100:+.2f} .. {high * 100:+.2f} pts"
    return f"{low:+,.2f} .. {high:+,.2f}"


def print_report(report: CampaignReport, source: str, out: Path | None = None) -> None:
    """The report as a table on stdout, with the totals, the MDE and the notes."""
    from rich.console import Console
    from rich.table import Table

    conf = f"{report.confidence:.0%}"
    table = Table(
        title=f"campaign {report.campaign_id}" + (f": {report.name}" if report.name else ""),
        caption="difference = treatment - control; * = the interval excludes 0",
    )
    for column in ("metric", "treatment", "control", "difference", f"{conf} interval", "p"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for m in report.metrics:
        pct = m.kind == "proportion"
        d = m.difference
        diff = "n/a" if d.estimate is None else _value(d.estimate, False)
        if pct and d.estimate is not None:
            diff = f"{d.estimate * 100:+.2f} pts"
        table.add_row(
            m.label,
            _value(m.treatment.value, pct),
            _value(m.control.value, pct),
            diff + (" *" if d.significant else ""),
            _interval(d.ci_low, d.ci_high, pct),
            "n/a" if d.p_value is None else f"{d.p_value:.3g}",
        )
    console = Console(width=120, highlight=False)
    typer.echo(
        f"sent {report.sent_at.isoformat()}, window {report.window_days} days "
        f"({report.observed_days} observed), treatment {report.counts['treatment']:,}, "
        f"control {report.counts['control']:,}; outcomes from {source}"
    )
    console.print(table)
    rev, conv = report.incremental_revenue, report.incremental_conversions
    typer.echo(
        f"incremental revenue: {_value(rev.estimate, False)} "
        f"({conf} interval {_interval(rev.ci_low, rev.ci_high, False)})"
    )
    typer.echo(
        f"incremental conversions: {_value(conv.estimate, False)} "
        f"({conf} interval {_interval(conv.ci_low, conv.ci_high, False)})"
    )
    mde = report.detectable_effect
    shown = "none (groups too small)" if mde.absolute is None else f"{mde.absolute * 100:.2f} pts"
    typer.echo(f"minimum detectable effect on {mde.metric} (power {mde.power:.0%}): {shown}")
    if not any(m.name == "tier_upgrade" for m in report.metrics):
        typer.echo("tier upgrades: not measured (no tier data before and after the send)")
    for note in report.notes:
        typer.echo(f"  {note}")
    if report.flags:
        typer.echo(f"flags: {', '.join(report.flags)}")
    if out is not None:
        typer.echo(f"report files (Markdown, CSV, JSON, PNG) in {out}")


# -- commands ---------------------------------------------------------------------------------


@app.command("list")
@handles_errors
def list_cmd(
    data_dir: DataDir = Path("data"),
    database_url: DatabaseUrl = None,
    limit: Annotated[int, typer.Option(min=1, help="At most N campaigns, newest first.")] = 100,
) -> None:
    """Recorded campaigns, most recently sent first."""
    from rich.console import Console
    from rich.table import Table

    url = store_url(data_dir, database_url)
    store = open_store(url)
    try:
        campaigns = [] if store is None else store.list(limit=limit)
    finally:
        if store is not None:
            store.dispose()
    if not campaigns:
        typer.echo(f"no campaigns recorded in {url}")
        return
    table = Table()
    for column in ("id", "name", "sent_at (UTC)", "treatment", "control", "holdout %", "model"):
        table.add_column(column, justify="right" if column in ("treatment", "control") else "left")
    for c in campaigns:
        table.add_row(
            c.id,
            c.name or "-",
            c.sent_at.strftime("%Y-%m-%d %H:%M"),
            f"{c.counts['treatment']:,}",
            f"{c.counts['control']:,}",
            f"{c.holdout_percent:g}",
            c.model_version or "-",
        )
    Console(width=160, highlight=False).print(table)


@app.command("show")
@handles_errors
def show_cmd(
    campaign_id: Annotated[str, typer.Argument(metavar="ID", help="Campaign id.")],
    data_dir: DataDir = Path("data"),
    database_url: DatabaseUrl = None,
) -> None:
    """One campaign: groups, holdout, seed, model and the audience definition."""
    with existing_store(data_dir, database_url) as store:
        c = store.get(campaign_id)
    seed = dict(c.seed or {})
    items = [str(i) for i in seed.pop("items", None) or ()]
    described = [json.dumps(seed)] if seed else []
    if items:
        more = ", ..." if len(items) > 5 else ""
        described.append(f"{len(items)} seed item(s): {', '.join(items[:5])}{more}")
    lines = [
        f"campaign {c.id}" + (f": {c.name}" if c.name else ""),
        f"  audience       {c.audience_id or '-'}",
        f"  sent at        {c.sent_at.isoformat()} (recorded {c.created_at.isoformat()})",
        f"  treatment      {c.counts['treatment']:,} members (contacted)",
        f"  control        {c.counts['control']:,} members (held out)",
        f"  holdout        {c.holdout_percent:g}% by {c.holdout_scheme or '-'}"
        + (f", salt {c.salt!r}" if c.salt else ""),
        f"  model          {c.model_version or '-'}",
        f"  seed           {'; '.join(described) or '-'}",
        "  definition     " + json.dumps(c.definition, sort_keys=True),
    ]
    typer.echo("\n".join(lines))


@app.command("report")
@handles_errors
def report_cmd(
    campaign_id: Annotated[str, typer.Argument(metavar="ID", help="Campaign id.")],
    out: Annotated[Path, typer.Option(help="Folder for report.md/.csv/.json and the plots.")],
    data: DataOption = None,
    window_days: WindowDays = 30,
    data_dir: DataDir = Path("data"),
    database_url: DatabaseUrl = None,
    data_timezone: DataTimezone = "UTC",
) -> None:
    """Treatment vs control in the attribution window: conversion, revenue, orders, retention,
    with 95% intervals, p-values, incremental revenue and the minimum detectable effect."""
    from serving.campaign_report import campaign_report

    check_window(window_days)
    with existing_store(data_dir, database_url) as store:
        report, source = campaign_report(
            store, campaign_id, window_days, data=data, data_timezone=data_timezone, out=out
        )
    print_report(report, source, out)


@uplift_app.command("fit")
@handles_errors
def uplift_fit_cmd(
    snapshot: Annotated[
        Path, typer.Option(help="Feature snapshot whose member columns give the features.")
    ],
    out: Annotated[Path, typer.Option(help="Model file to write (JSON).")] = Path("uplift.json"),
    campaign: Annotated[
        list[str] | None,
        typer.Option(
            "--campaign", help="Campaign to learn from (repeat) [default: all with a control]."
        ),
    ] = None,
    data: DataOption = None,
    window_days: WindowDays = 30,
    method: Annotated[
        str, typer.Option(help="two_model (default) or class_transformation.")
    ] = "two_model",
    seed: Annotated[int, typer.Option(help="Seed of the member split (one campaign).")] = 0,
    data_dir: DataDir = Path("data"),
    database_url: DatabaseUrl = None,
    data_timezone: DataTimezone = "UTC",
) -> None:
    """Fit an uplift model on past campaigns, evaluate it on held-out campaigns against the
    propensity model and the audience score (Qini, AUUC, uplift@k), save it as JSON."""
    from cli.campaign_uplift import fit_from_campaigns

    check_window(window_days)
    if method != "two_model" and method != "class_transformation":
        raise fail(f"--method: must be two_model or class_transformation (got {method!r})")
    with existing_store(data_dir, database_url) as store:
        fit_from_campaigns(
            store,
            snapshot=snapshot,
            out=out,
            campaign_ids=list(campaign or ()),
            data=data,
            window_days=window_days,
            method=cast("Method", method),
            seed=seed,
            data_timezone=data_timezone,
        )
