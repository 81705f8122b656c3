"""`recsys data ...`: synthesize, import and validate canonical datasets."""

from __future__ import annotations

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

    result = load_dataset(folder, rejects_dir=rejects if rejects is not None else folder / "rejects")
    typer.echo(result.report.summary())
    if out is not None:
        write_dataset(result.dataset, out)
        typer.echo(f"clean dataset written to {out}")
    if result.report.rejected_count:
        raise fail(
            f"{result.report.rejected_count} row(s) rejected; reasons in {result.report.rejects_dir}",
            EXIT_BAD_INPUT,
        )
