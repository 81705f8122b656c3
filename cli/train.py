"""`recsys train` (a training run: evaluate, bundle, track, promote) and `recsys recommend`
(batch recommendations from a bundle or a registered model, e.g. for nightly campaigns)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.dates import parse_date
from cli.errors import fail, handles_errors

if TYPE_CHECKING:
    from engine.ranking.query import ListQuery
    from training.pipeline import TrainResult

#: members per chunk of `recsys recommend` (bounds memory: about k * 100 bytes per member)
RECOMMEND_CHUNK = 50_000


@contextmanager
def _engine_errors() -> Iterator[None]:
    """Engine and tracking errors exit 1 with their one-line message, like data errors."""
    from engine.errors import EngineError
    from training.tracking import TrackingError

    try:
        yield
    except (EngineError, TrackingError) as exc:
        raise fail(str(exc)) from None


@handles_errors
def train_cmd(
    data: Annotated[Path, typer.Option(help="Dataset folder (members, items, purchases).")],
    config: Annotated[
        Path | None,
        typer.Option(
            help="Train this fixed configuration (TOML). Without it the automatic mode chooses "
            "the model, its hyperparameters, the weights and the blend on the validation window."
        ),
    ] = None,
    auto: Annotated[
        bool,
        typer.Option(
            "--auto", help="Search even with --config (the config is the starting point)."
        ),
    ] = False,
    budget: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Automatic mode: minutes of search on the validation window "
            "(default: [search] budget_minutes, 5).",
        ),
    ] = None,
    max_trials: Annotated[
        int | None,
        typer.Option(min=1, help="Automatic mode: stop after this many trials."),
    ] = None,
    cutoff: Annotated[
        str | None,
        typer.Option(
            help="First day of the test window (YYYY-MM-DD); the validation window ends the "
            "day before. Default: the last test_days days of the data.",
        ),
    ] = None,
    test_end: Annotated[
        str | None,
        typer.Option(help="Last day (inclusive) of the test window; needs --cutoff."),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The shipped model learns from purchases before this date (default: "
            "the day after the last purchase); later purchases are ignored.",
        ),
    ] = None,
    refit: Annotated[
        bool,
        typer.Option(
            "--refit/--no-refit",
            help="Refit the chosen configuration on all data before shipping (default), or "
            "ship the model evaluated on the test window (for reproduction).",
        ),
    ] = True,
    snapshot: Annotated[
        Path | None,
        typer.Option(
            help="Feature snapshot of the shipped model (as of --as-of, or of the cutoff with "
            "--no-refit) instead of building one."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run folder for the bundle, snapshots, search and report (default: data/runs/NAME)."
        ),
    ] = None,
    ablation: Annotated[
        bool, typer.Option("--ablation", help="Refit with each interaction weight neutralised.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Promote to champion even if the gate refuses.")
    ] = False,
    track: Annotated[
        bool, typer.Option("--track/--no-track", help="Log the run to MLflow and register it.")
    ] = True,
    warm_start: Annotated[
        bool,
        typer.Option(
            "--warm-start/--no-warm-start",
            help="Automatic mode: try the champion's searched configuration first.",
        ),
    ] = True,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlflow)."),
    ] = None,
) -> None:
    """Choose (automatic mode) or take (--config) a configuration, score it once on the test
    window beside the baselines, refit it on all data, bundle, log to MLflow, promote."""
    from dataclasses import replace

    from cli.progress import steps
    from training.config import load_config
    from training.pipeline import TrainOptions, train

    cfg = load_config(config)
    automatic = config is None or auto
    cut, end = parse_date(cutoff, "--cutoff"), parse_date(test_end, "--test-end")
    until = parse_date(as_of, "--as-of")
    if end is not None and cut is None:
        raise typer.BadParameter("--test-end needs --cutoff", param_hint="--test-end")
    split = cfg.split
    if cut is not None:
        if end is not None and end < cut:
            raise typer.BadParameter(f"{end} is before the cutoff {cut}", param_hint="--test-end")
        split = replace(split, cutoff=cut, test_end=end)
    if until is not None:
        if split.cutoff is not None and until <= split.cutoff:
            raise typer.BadParameter(
                f"{until} is not after the test cutoff {split.cutoff}", param_hint="--as-of"
            )
        split = replace(split, as_of=until)
    cfg = cfg.replace(split=replace(split, refit=refit))
    if budget is not None or max_trials is not None:
        cfg = cfg.replace(
            search=replace(
                cfg.search,
                budget_minutes=cfg.search.budget_minutes if budget is None else budget,
                max_trials=cfg.search.max_trials if max_trials is None else max_trials,
            )
        )
    if not data.is_dir():
        raise fail(f"{data}: dataset folder not found")
    name = f"{cfg.name}-auto" if automatic else cfg.name
    options = TrainOptions(
        data=data,
        config=cfg,
        out=out if out is not None else Path("data") / "runs" / name,
        snapshot=snapshot,
        auto=automatic,
        ablation=ablation,
        track=track,
        tracking_uri=tracking_uri,
        force=force,
        warm_start=warm_start,
    )
    with _engine_errors(), steps(f"train {name}") as step:
        result = train(options, progress=step)
    _print_result(result)


def _print_result(result: TrainResult) -> None:
    report = result.report
    split, windows = result.split, result.windows
    if result.search is not None:
        best, baseline = result.search.best, result.search.baseline_best()
        typer.echo(
            f"\nsearch on the validation window {windows.validation.cutoff_date} .. "
            f"{windows.validation.test_last_day}: {len(result.search.trials)} trials; chosen "
            f"#{best.number} {best.name} (objective {best.objective:.4f}"
            + (f"; best baseline {baseline.name} {baseline.objective:.4f})" if baseline else ")")
        )
    typer.echo(
        f"\ntest window (scored once): trained before {split.cutoff_date}, test "
        f"{split.cutoff_date} .. {split.test_last_day}; evaluated members: all "
        f"{report.members['all']:,} (of {report.test_members:,}), new {report.members['new']:,}"
    )
    typer.echo(f"\n{report.table()}\n")
    if result.ablation:
        typer.echo(f"ablation (NDCG@{report.headline_k} of the blend, change vs the full config):")
        for row in result.ablation:
            typer.echo(
                f"  {row.description:<36} all {row.ndcg_all:.4f} ({row.delta_all:+.4f})   "
                f"new {row.ndcg_new:.4f} ({row.delta_new:+.4f})"
            )
    shipped = result.facts
    typer.echo(
        f"bundle: {result.bundle} (learned from purchases before {shipped['trained_before']}; "
        f"{shipped['shipped_members']:,} members"
        + (", refit on all data)" if shipped["refit"] else ", the evaluated model: --no-refit)")
    )
    seconds = ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in result.timings.items())
    typer.echo(f"timings: {seconds}")
    tracked = result.tracked
    if tracked is None:
        typer.echo("not tracked (--no-track or [tracking] enabled = false)")
        return
    typer.echo(f"MLflow run: {tracked.run_id}")
    if tracked.version is not None:
        typer.echo(f"registered: member-recs version {tracked.version}")
    if tracked.promoted is not None:
        verdict = "promoted to champion" if tracked.promoted else "not promoted"
        typer.echo(f"{verdict}: {tracked.promotion_reason}")


@handles_errors
def recommend_cmd(
    model: Annotated[
        str,
        typer.Option(
            help="Bundle folder, or models:/member-recs@champion, models:/member-recs/3, runs:/..."
        ),
    ],
    out: Annotated[Path, typer.Option(help="CSV to write: member_id,rank,item_id,score,source.")],
    members: Annotated[
        str,
        typer.Option(
            help="'all' (every member of the model) or a CSV file with a member_id column."
        ),
    ] = "all",
    k: Annotated[int, typer.Option(min=1, help="Recommendations per member.")] = 10,
    exclude_purchased: Annotated[
        bool,
        typer.Option("--exclude-purchased", help="Only items the member never bought (discovery)."),
    ] = False,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI for models:/ and runs:/ sources."),
    ] = None,
    category: Annotated[str | None, typer.Option(help="Only items of this category.")] = None,
    exclude: Annotated[
        str | None, typer.Option(help="Item ids never to recommend, comma-separated.")
    ] = None,
    promote: Annotated[str | None, typer.Option(help="Promoted item ids, comma-separated.")] = None,
    promote_category: Annotated[
        str | None, typer.Option(help="Promote the items of this category.")
    ] = None,
    promote_share: Annotated[
        float | None,
        typer.Option(help="Share of the k slots for promoted items (default 0.2)."),
    ] = None,
) -> None:
    """Export recommendations for many members through the serving ranking kernel: tier
    eligibility (each member's tier as of the bundle's snapshot), availability, the diversity
    cap, the exclude list, promotions and the fallback fill, as the service serves them."""
    import numpy as np
    import polars as pl

    from cli.progress import steps
    from engine.bundle_recommender import BundleRecommender
    from training.tracking import resolve_bundle

    query = _list_query(
        k=k,
        category=category,
        exclude=exclude,
        promote=promote,
        promote_category=promote_category,
        promote_share=promote_share,
    )
    with _engine_errors(), steps("recommend") as step:
        step("loading the model")
        recommender = BundleRecommender.from_path(
            resolve_bundle(model, tracking_uri=tracking_uri), mmap=True
        )
        ids = recommender.member_ids.ids if members == "all" else _member_file(Path(members))
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
        written = unknown = 0
        try:
            with partial.open("wb") as handle:
                for start in range(0, len(ids), RECOMMEND_CHUNK):
                    step(
                        f"ranking members {start + 1:,}..{min(start + RECOMMEND_CHUNK, len(ids)):,}"
                    )
                    chunk = np.asarray(ids[start : start + RECOMMEND_CHUNK])
                    result = recommender.recommend(
                        chunk, k, exclude_purchased=exclude_purchased, query=query
                    )
                    unknown += int((~result.known).sum())
                    frame = pl.DataFrame(result.long_format())
                    frame.write_csv(handle, include_header=start == 0, float_precision=6)
                    written += frame.height
                if len(ids) == 0:
                    handle.write(b"member_id,rank,item_id,score,source\n")
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
    typer.echo(f"{written:,} recommendations for {len(ids):,} members written to {out}")
    if unknown:
        typer.echo(f"  {unknown:,} member(s) unknown to the model got the popular fallback")


def _list_query(**options: object) -> ListQuery:
    """The options as the API's query (engine.ranking.query.ListQuery); a usage error naming
    the option when one is invalid."""
    from pydantic import ValidationError

    from engine.ranking.query import ListQuery

    try:
        return ListQuery.model_validate({n: v for n, v in options.items() if v is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "--" + str(error["loc"][0]).replace("_", "-") if error["loc"] else "options"
        raise typer.BadParameter(error["msg"], param_hint=name) from exc


def _member_file(path: Path) -> list[str]:
    """Member ids from a CSV with a ``member_id`` column (order kept, duplicates dropped)."""
    import polars as pl

    from feature_store.errors import DataError

    try:
        frame = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"{path}: cannot read the member file ({exc})") from exc
    if "member_id" not in frame.columns:
        raise DataError(
            f"{path}: no member_id column (found {', '.join(frame.columns) or 'none'}); "
            "give a CSV with a member_id header, or --members all"
        )
    column = frame.get_column("member_id")
    missing = column.is_null()
    if missing.any():
        line = int(missing.arg_true()[0]) + 2
        raise DataError(f"{path}: line {line}: member_id is empty")
    ids: list[str] = column.unique(maintain_order=True).to_list()
    return ids
