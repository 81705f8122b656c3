"""`recsys members ...`: member lists a loyalty team works from (the early-warning list)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from cli.dates import parse_date
from cli.errors import handles_errors

app = typer.Typer(help="Member lists: valuable members slipping away.", no_args_is_help=True)


@app.command("at-risk")
@handles_errors
def at_risk_cmd(
    snapshot: Annotated[Path, typer.Option(help="Feature snapshot folder (`features build`).")],
    out: Annotated[Path, typer.Option(help="CSV file to write.")] = Path("at_risk.csv"),
    top: Annotated[int | None, typer.Option(min=1, help="At most N members.")] = None,
    min_clv: Annotated[
        float | None, typer.Option(help="Only members with a lifetime value of at least X.")
    ] = None,
    below: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="p_alive threshold [default: the policy's at_risk_below]."
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Recompute p_alive and CLV as of this later date (YYYY-MM-DD): members who "
            "have not come back since the snapshot slip further [default: the snapshot's date].",
        ),
    ] = None,
) -> None:
    """Members whose p_alive fell below the threshold, sorted by value at risk
    (clv x (1 - p_alive)): the win-back list."""
    import polars as pl

    from feature_store.offline import open_snapshot
    from feature_store.value.at_risk import NEEDED, at_risk_members
    from feature_store.value.snapshot_columns import manifest_value

    snap = open_snapshot(snapshot)
    recorded = manifest_value(snap.manifest, str(snap.path / "manifest.json"))
    params, policy = recorded.params, recorded.policy
    if below is not None:
        policy = replace(policy, at_risk_below=below)
    when = parse_date(as_of, "--as-of")
    members = snap.scan("members").select(NEEDED).collect()
    listed = at_risk_members(
        members,
        params=params,
        policy=policy,
        values_as_of=snap.as_of,
        as_of=when,
        top=top,
        min_clv=min_clv,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    listed.write_csv(out)
    scored = members.filter(pl.col("p_alive").is_not_null()).height
    at = (when or snap.as_of).isoformat()
    typer.echo(
        f"{listed.height:,} member(s) with p_alive < {policy.at_risk_below:g} as of {at} "
        f"(of {scored:,} with a value) written to {out}"
    )
    if listed.height:
        total = float(listed["value_at_risk"].sum())
        typer.echo(f"  value at risk: {total:,.2f} in all; the first five:")
        for row in listed.head(5).iter_rows(named=True):
            typer.echo(
                f"  {row['member_id']:<14} {row['tier'] or '-':<9} p_alive {row['p_alive']:.3f}"
                f"  clv {row['clv']:>10,.2f}  at risk {row['value_at_risk']:>10,.2f}"
            )
