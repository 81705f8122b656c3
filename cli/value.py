"""`recsys value ...`: the member-value model (BG/NBD + Gamma-Gamma) and its holdout check.

Wired into the main app with ``app.add_typer(value.app, name="value")`` (cli/main.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.dates import parse_date
from cli.errors import fail, handles_errors

if TYPE_CHECKING:
    from feature_store.value.holdout import HoldoutResult

app = typer.Typer(
    help="Member value: p_alive, expected purchases and spend, CLV.", no_args_is_help=True
)
_out = Console()


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def print_holdout(result: HoldoutResult, console: Console) -> None:
    """The comparison table, the calibration table and the churn check."""
    from feature_store.value.holdout import MODEL

    p = result.params
    console.print(
        f"calibration: purchases before {result.calibration_end}; holdout {result.horizon_days} "
        f"days; {result.members_scored:,} members scored, mean actual purchase days "
        f"{result.mean_actual:.3f}, {100 * result.share_no_purchase:.1f}% made none"
    )
    console.print(
        f"BG/NBD r={p.r:.4f} alpha={p.alpha:.4f} a={p.a:.4f} b={p.b:.4f} (per {p.unit_days:g} "
        f"days); Gamma-Gamma p={p.p:.4f} q={p.q:.4f} v={p.v:.4f}"
    )
    table = Table(title="purchase days in the holdout", title_justify="left")
    for column in ("method", "MAE", "Spearman", "mean predicted"):
        table.add_column(column, justify="left" if column == "method" else "right")
    model = result.method(MODEL)
    for m in result.methods:
        style = "" if m.method == MODEL else ("green" if model.mae < m.mae else "red")
        mae = f"[{style}]{_fmt(m.mae)}[/{style}]" if style else _fmt(m.mae)
        table.add_row(m.method, mae, _fmt(m.spearman), _fmt(m.mean_predicted))
    console.print(table)
    beaten = [m.method for m in result.methods if m.method != MODEL and model.mae < m.mae]
    lost = [m.method for m in result.methods if m.method != MODEL and model.mae >= m.mae]
    if beaten:
        console.print(f"  the model beats {', '.join(beaten)} on MAE")
    if lost:
        console.print(f"  the model does NOT beat {', '.join(lost)} on MAE")

    calibration = Table(title="calibration by repeat purchase days", title_justify="left")
    for column in ("repeat days", "members", "mean predicted", "mean actual"):
        calibration.add_column(column, justify="right")
    for row in result.calibration:
        calibration.add_row(
            row.frequency, f"{row.members:,}", _fmt(row.mean_predicted), _fmt(row.mean_actual)
        )
    console.print(calibration)

    churn = Table(
        title=f"churn check: no purchase in {result.horizon_days} days "
        f"(base rate {100 * result.share_no_purchase:.1f}%)",
        title_justify="left",
    )
    for column in ("rule", "flagged", "precision", "recall"):
        churn.add_column(column, justify="left" if column == "rule" else "right")
    for c in result.churn:
        churn.add_row(c.rule, f"{c.flagged:,}", _fmt(c.precision), _fmt(c.recall))
    console.print(churn)


@app.command("evaluate")
@handles_errors
def evaluate_cmd(
    data: Annotated[Path, typer.Option(help="Dataset folder (members, items, purchases).")],
    calibration_end: Annotated[
        str,
        typer.Option(
            "--calibration-end",
            help="Date (YYYY-MM-DD): fit on purchases strictly before its 00:00, predict after.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(help="Report folder: value_holdout.md, value_holdout.csv, value_holdout.png."),
    ],
    horizon_days: Annotated[
        int, typer.Option("--horizon-days", min=1, help="Holdout length in days.")
    ] = 90,
    policy: Annotated[
        Path | None,
        typer.Option(
            help="Feature policy TOML for the RFM and lifecycle baselines [default: packaged]."
        ),
    ] = None,
    max_members: Annotated[
        int | None,
        typer.Option(min=20, help="Fit on a seeded random subsample of this many members."),
    ] = None,
) -> None:
    """Fit the member-value model before a date, predict the next days, compare to baselines."""
    from cli.progress import steps
    from feature_store.dataset import load_dataset
    from feature_store.policy import load_policy
    from feature_store.value.holdout import evaluate_holdout, write_holdout_report

    end = parse_date(calibration_end, "--calibration-end")
    if not data.is_dir():
        raise fail(f"{data}: dataset folder not found")
    with steps("value evaluate") as step:
        step("loading the dataset")
        loaded = load_dataset(data)
        result = evaluate_holdout(
            loaded.dataset,
            end,
            horizon_days,
            policy=load_policy(policy),
            max_members=max_members,
            progress=step,
        )
        step("writing the report")
        paths = write_holdout_report(result, out)
    print_holdout(result, _out)
    typer.echo(f"report written to {paths['markdown'].parent}")


__all__ = ["app", "evaluate_cmd", "print_holdout"]
