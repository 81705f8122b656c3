"""`recsys data ...`: synthesize, import and validate canonical datasets."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import EXIT_BAD_INPUT, fail, handles_errors

app = typer.Typer(help="Canonical datasets: synthesize, import, validate.", no_args_is_help=True)


@app.command("validate")
@handles_errors
def validate_cmd(
    folder: Annotated[Path, typer.Argument(help="Dataset folder (members, items, purchases).")],
    rejects: Annotated[
        Path | None,
        typer.Option(help="Where to write rejected rows with reasons [default: FOLDER/rejects]."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Also write the valid rows as a clean dataset here.")
    ] = None,
) -> None:
    """Validate a dataset; print a summary; write rejected rows with their reasons.

    Exit code 0 when every row is valid, 1 when rows were rejected or the dataset is unusable.
    """
    from feature_store.dataset import load_dataset, write_dataset

    result = load_dataset(
        folder, rejects_dir=rejects if rejects is not None else folder / "rejects"
    )
    typer.echo(result.report.summary())
    if out is not None:
        write_dataset(result.dataset, out)
        typer.echo(f"clean dataset written to {out}")
    if result.report.rejected_count:
        raise fail(
            f"{result.report.rejected_count} row(s) rejected; reasons in {result.report.rejects_dir}",
            EXIT_BAD_INPUT,
        )


import_app = typer.Typer(
    help="Import real-world sources as canonical datasets.", no_args_is_help=True
)
app.add_typer(import_app, name="import")


class TableFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


FormatOption = Annotated[
    TableFormat, typer.Option("--format", help="File format of the written tables.")
]
OutOption = Annotated[
    Path,
    typer.Option(
        "--out",
        help="Dataset folder to write (tables, rejects/import_rejects.csv, import_report.json).",
    ),
]


@import_app.command("online-retail")
@handles_errors
def import_online_retail_cmd(
    src: Annotated[Path, typer.Argument(help="UCI Online Retail file (.csv, .csv.gz, .parquet).")],
    out: OutOption,
    fmt: FormatOption = TableFormat.parquet,
) -> None:
    """Import UCI Online Retail: every line kept as a purchase or rejected with a reason."""
    from cli.progress import steps
    from feature_store.importers import import_online_retail

    with steps("importing Online Retail") as step:
        report = import_online_retail(src, out, fmt.value, progress=step)
    typer.echo(report.summary())
    typer.echo(f"dataset written to {out}")


@import_app.command("csv")
@handles_errors
def import_csv_cmd(
    file: Annotated[
        Path, typer.Argument(help="Purchase log: member_id,item_id,ts[,quantity,amount,order_id].")
    ],
    out: OutOption,
    fmt: FormatOption = TableFormat.parquet,
    ignore_extra: Annotated[
        bool, typer.Option("--ignore-extra", help="Ignore columns other than the known ones.")
    ] = False,
) -> None:
    """Import a generic purchase log: bad rows rejected with line, column and reason."""
    from cli.progress import steps
    from feature_store.importers import import_csv_log

    with steps("importing purchase log") as step:
        report = import_csv_log(file, out, fmt.value, ignore_extra=ignore_extra, progress=step)
    typer.echo(report.summary())
    typer.echo(f"dataset written to {out}")


@app.command("synth")
@handles_errors
def synth_cmd(
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write.")],
    members: Annotated[int, typer.Option(min=1, help="Number of members.")] = 10_000,
    items: Annotated[int, typer.Option(min=1, help="Number of items.")] = 2_000,
    purchases: Annotated[
        int, typer.Option(min=0, help="Purchase rows, returns included (exact).")
    ] = 200_000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed: same seed, same bytes.")] = 0,
    fmt: FormatOption = TableFormat.parquet,
    end_date: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Last day of the data [default: 2025-12-31]."),
    ] = None,
    tier_taste: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="How strongly higher tiers favour premium and exclusive items (0: not at all).",
        ),
    ] = 0.0,
) -> None:
    """Generate a synthetic dataset with planted structure, plus its ground truth.

    Writes members, items and purchases to OUT and what was planted (taste clusters, item
    vectors, popularity, staples, synth.json with every parameter) to OUT/ground_truth.
    See docs/synthetic_data.md.
    """
    from cli.progress import steps
    from feature_store.synthetic import SynthConfig, write_synthetic

    cfg = SynthConfig(
        members=members, items=items, purchases=purchases, seed=seed, tier_taste=tier_taste
    )
    if end_date is not None:
        cfg = replace(cfg, end_date=end_date.date())
    with steps("generating synthetic data") as step:
        summary = write_synthetic(cfg, out, fmt.value, progress=step)
    typer.echo("\n".join(summary.lines()))
