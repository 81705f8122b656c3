"""`recsys campaign uplift fit`: an uplift model from past campaigns with control groups.

For every campaign member found in the snapshot: the features of engine.campaigns.features
(the snapshot's member columns and the audience score recorded at send time), whether they were
contacted (treatment) and whether they **converted** in the attribution window (bought a seed
item when the campaign had seed items, else bought anything; cli/campaign.py reads the outcomes
from a dataset or the campaign database's purchase events).

Evaluation before the final fit: with two or more campaigns, the most recently sent quarter of
them (at least one) is held out, the models are fitted on the others and scored on it; with one
campaign, a seeded 30% of its members is held out. Three rankings of the held-out members are
compared by Qini coefficient, AUUC and uplift@10/20/30% (engine.campaigns.uplift_metrics): the
uplift model, the propensity model (P(convert | features), engine.campaigns.fit_propensity) and
the recorded audience score. The saved model is then refit on every campaign (the evaluation
describes the procedure, as a training run's test window does), with the evaluation in its
``info``. Files next to the model: ``<stem>.evaluation.md`` / ``.csv`` and ``<stem>.qini.png``.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import typer

from cli.errors import fail

if TYPE_CHECKING:
    from engine.campaigns.uplift import Method
    from engine.campaigns.uplift_metrics import UpliftEvaluation
    from feature_store.campaigns import Campaign, CampaignStore

KS: Final[tuple[float, ...]] = (0.1, 0.2, 0.3)
MEMBER_HOLDOUT: Final[float] = 0.3


def _training_rows(
    store: CampaignStore,
    campaigns: list[Campaign],
    member_index: Any,
    *,
    window_days: int,
    data: Path | None,
    data_timezone: str,
) -> tuple[dict[str, npt.NDArray[Any]], int]:
    """Per campaign member in the snapshot: attribute row, score, treated, converted, campaign
    number; and how many members the snapshot does not know."""
    import polars as pl

    from serving.campaign_report import campaign_outcomes

    parts: dict[str, list[npt.NDArray[Any]]] = {
        k: [] for k in ("rows", "scores", "treated", "converted", "campaign")
    }
    unknown = 0
    for number, campaign in enumerate(campaigns):
        outcomes, _ = campaign_outcomes(
            store, campaign, window_days, data=data, data_timezone=data_timezone
        )
        target = "bought_seed" if campaign.seed_items else "bought_any"
        frame = outcomes.frame.select("member_id", "group", target).join(
            store.groups(campaign.id).select("member_id", "score"),
            on="member_id",
            how="left",
            maintain_order="left",
        )
        rows = member_index.lookup(frame.get_column("member_id").to_numpy().astype(np.str_))
        known = rows >= 0
        unknown += int((~known).sum())
        scores = frame.get_column("score").cast(pl.Float64).fill_null(np.nan).to_numpy()
        parts["rows"].append(rows[known])
        parts["scores"].append(scores[known])
        parts["treated"].append((frame.get_column("group") == "treatment").to_numpy()[known])
        parts["converted"].append(frame.get_column(target).to_numpy().astype(np.bool_)[known])
        parts["campaign"].append(np.full(int(known.sum()), number, dtype=np.int64))
    return {k: np.concatenate(v) for k, v in parts.items()}, unknown


def _evaluate(
    y: npt.NDArray[Any], score: npt.NDArray[Any], treated: npt.NDArray[Any]
) -> UpliftEvaluation:
    """Qini, AUUC and uplift@k; uplift@k is NaN where the top k holds no control member."""
    from engine.campaigns.uplift_metrics import evaluate_uplift, uplift_at_k

    base = evaluate_uplift(y, score, treated, ks=())
    at: dict[float, float] = {}
    for k in KS:
        try:
            at[k] = uplift_at_k(y, score, treated, k)
        except ValueError:
            at[k] = float("nan")
    return replace(base, uplift_at=at)


def _finite(score: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Scores with NaN (not recorded) ranked last."""
    ok = np.isfinite(score)
    floor = float(score[ok].min()) - 1.0 if ok.any() else 0.0
    return np.where(ok, score, floor)


def _write_evaluation(
    out: Path, results: dict[str, UpliftEvaluation], heading: str
) -> dict[str, Path]:
    from engine.campaigns.report_files import qini_figure

    stem = out.with_suffix("")
    paths = {
        "markdown": stem.with_name(stem.name + ".evaluation.md"),
        "csv": stem.with_name(stem.name + ".evaluation.csv"),
        "qini": stem.with_name(stem.name + ".qini.png"),
    }
    header = ["ranking", "qini", "auuc", *(f"uplift_at_{round(k * 100)}" for k in KS)]
    table = [
        [name, f"{e.qini:.4f}", f"{e.auuc:.4f}", *(f"{e.uplift_at[k]:.4f}" for k in KS)]
        for name, e in results.items()
    ]
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(table)
    lines = [
        "# Uplift model evaluation",
        "",
        heading,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in table),
        "",
        "Qini coefficient and AUUC: 1 = perfect ranking, 0 = random. uplift@k: conversion of "
        "the treated minus the controls among the top k% by the ranking.",
        "",
    ]
    paths["markdown"].write_text("\n".join(lines))
    curves = {name: (e.qini_x, e.qini_y) for name, e in results.items()}
    qini_figure(curves, "Qini curves on held-out members").savefig(paths["qini"], dpi=100)
    return paths


def fit_from_campaigns(
    store: CampaignStore,
    *,
    snapshot: Path,
    out: Path,
    campaign_ids: list[str],
    data: Path | None,
    window_days: int,
    method: Method,
    seed: int,
    data_timezone: str,
) -> dict[str, UpliftEvaluation]:
    """Fit, evaluate and save (module docstring); returns the evaluation by ranking."""
    from engine.campaigns import fit_propensity, fit_uplift
    from engine.campaigns.features import CATEGORICAL, FEATURE_SET, NUMERIC, uplift_features
    from engine.ids import IdMap
    from feature_store.member_columns import read_member_columns

    if campaign_ids:
        campaigns = [store.get(c) for c in dict.fromkeys(campaign_ids)]
        without = [c.id for c in campaigns if c.counts["control"] == 0]
        if without:
            raise fail(f"--campaign: {', '.join(without)} has no control group; uplift needs one")
    else:
        campaigns = [c for c in store.list(limit=100_000) if c.counts["control"] > 0]
        if not campaigns:
            raise fail("no campaign with a control group is recorded: nothing to learn from")
    campaigns.sort(key=lambda c: (c.sent_at, c.id))
    columns = read_member_columns(snapshot)
    rows_of, unknown = _training_rows(
        store,
        campaigns,
        IdMap(columns.member_ids),
        window_days=window_days,
        data=data,
        data_timezone=data_timezone,
    )
    n = rows_of["rows"].size
    if n == 0:
        raise fail(f"--snapshot: none of the campaigns' members is in {snapshot}")
    features = uplift_features(columns, rows_of["rows"], rows_of["scores"])
    treated, converted = rows_of["treated"], rows_of["converted"]

    if len(campaigns) >= 2:
        held = max(1, len(campaigns) // 4)
        test = rows_of["campaign"] >= len(campaigns) - held
        names = ", ".join(c.id for c in campaigns[-held:])
        heading = f"Held out: the latest {held} campaign(s) ({names}); fitted on the others."
    else:
        test = np.random.default_rng(seed).random(n) < MEMBER_HOLDOUT
        heading = (
            f"One campaign: {MEMBER_HOLDOUT:.0%} of its members held out (seed {seed}); "
            "fitted on the rest."
        )
    heading += f" {int(test.sum()):,} held-out members, {int((~test).sum()):,} to fit on."

    def subset(mask: npt.NDArray[np.bool_]) -> dict[str, npt.NDArray[Any]]:
        return {k: v[mask] for k, v in features.items()}

    train, held_out = subset(~test), subset(test)
    how: dict[str, Any] = {"categorical": CATEGORICAL, "numeric": NUMERIC, "seed": seed}
    model = fit_uplift(train, treated[~test], converted[~test], method=method, **how)
    propensity = fit_propensity(train, converted[~test], **how)
    y, t = converted[test].astype(np.int64), treated[test].astype(np.int64)
    results = {
        "uplift model": _evaluate(y, model.predict(held_out), t),
        "propensity model": _evaluate(y, propensity.predict(held_out), t),
    }
    recorded = held_out["audience_score"]
    if np.isfinite(recorded).any():
        results["audience score"] = _evaluate(y, _finite(recorded), t)

    final = fit_uplift(features, treated, converted, method=method, **how)
    info = final.info | {
        "features": FEATURE_SET,
        "campaigns": [c.id for c in campaigns],
        "window_days": window_days,
        "snapshot_as_of": columns.as_of.isoformat(),
        "evaluation": {
            "procedure": heading,
            **{
                name: {
                    "qini": e.qini,
                    "auuc": e.auuc,
                    "uplift_at": {str(k): v for k, v in e.uplift_at.items()},
                }
                for name, e in results.items()
            },
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    replace(final, info=info).save(out)
    paths = _write_evaluation(out, results, heading)

    typer.echo(
        f"uplift model ({method}, scikit-uplift) fitted on {n:,} members of "
        f"{len(campaigns)} campaign(s) ({int(treated.sum()):,} treated, "
        f"{int(converted.sum()):,} converted) and written to {out}"
    )
    if unknown:
        typer.echo(f"  {unknown:,} campaign member(s) are not in the snapshot and were left out")
    typer.echo(f"  {heading}")
    typer.echo(
        f"  {'ranking':<18} {'qini':>8} {'auuc':>8}"
        + "".join(f" {'@' + format(k, '.0%'):>8}" for k in KS)
    )
    for name, e in results.items():
        cells = "".join(f" {e.uplift_at[k]:>8.4f}" for k in KS)
        typer.echo(f"  {name:<18} {e.qini:>8.4f} {e.auuc:>8.4f}{cells}")
    typer.echo(f"  evaluation: {paths['markdown']}, {paths['csv']}, {paths['qini']}")
    return results
