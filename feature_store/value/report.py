"""The member-value page of a feature snapshot: the fitted model and ``p_alive`` per tier.

:func:`write_value_report` writes ``value.md`` (the model's parameters in plain words, and per
tier how many members have a value, the quartiles of ``p_alive``, how many are below the
policy's ``at_risk_below`` and the value they put at risk) and ``p_alive_by_tier.png`` (the
distribution of ``p_alive`` per tier, lowest tier first). ``recsys features build`` writes it
into ``SNAPSHOT/report/``; the training run copies it next to its evaluation, with the holdout
calibration of feature_store.value.holdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl

from feature_store.schema import Col
from feature_store.transforms import Feat
from feature_store.value.snapshot_columns import SnapshotValue, manifest_value

REPORT_DIR: Final[str] = "report"
FILES: Final[tuple[str, str]] = ("value.md", "p_alive_by_tier.png")
#: Members per tier the plot draws its density from.
PLOT_SAMPLE: Final[int] = 20_000


def _tier_table(members: pl.DataFrame, tiers: list[str], below: float) -> pl.DataFrame:
    p_alive, clv = pl.col(Feat.P_ALIVE), pl.col(Feat.CLV)
    valued = members.filter(p_alive.is_not_null())
    table = valued.group_by(Col.TIER).agg(
        pl.len().alias("members"),
        p_alive.quantile(0.25).alias("p25"),
        p_alive.median().alias("median"),
        p_alive.quantile(0.75).alias("p75"),
        (p_alive < below).sum().alias("below"),
        (clv * (1.0 - p_alive)).filter(p_alive < below).sum().alias("value_at_risk"),
        clv.mean().alias("mean_clv"),
    )
    order = {name: i for i, name in enumerate(tiers)}
    return (
        table.with_columns(
            pl.col(Col.TIER).replace_strict(order, default=len(order)).alias("__order")
        )
        .sort("__order", Col.TIER)
        .drop("__order")
    )


def _markdown(
    as_of: object, recorded: SnapshotValue, members: pl.DataFrame, table: pl.DataFrame
) -> str:
    params, policy = recorded.params, recorded.policy
    lines = [f"# Member value, snapshot as of {as_of}", ""]
    if params is None:
        lines += [f"No value model: {recorded.note}.", ""]
        return "\n".join(lines)
    with_value = int(members.get_column(Feat.P_ALIVE).is_not_null().sum())
    lines += [
        f"BG/NBD + Gamma-Gamma fitted on {params.n_members:,} members with a purchase "
        f"({params.n_repeaters:,} with repeat purchases){_sampled(params.subsampled_from)} "
        f"in {params.fit_seconds:.1f}s; {with_value:,} of {members.height:,} members have a value.",
        "",
        "| parameter | value | in words |",
        "|---|---:|---|",
        f"| r, alpha | {params.r:.4g}, {params.alpha:.4g} | purchase rate while active: "
        f"{params.r / params.alpha * 7 / params.unit_days:.3g} purchase days a week on average |",
        f"| a, b | {params.a:.4g}, {params.b:.4g} | chance of leaving after a purchase: "
        f"{params.a / (params.a + params.b):.1%} on average |",
        f"| p, q, v | {params.p:.4g}, {params.q:.4g}, {params.v:.4g} | average value of a "
        f"purchase day: {params.mean_spend_per_day:,.2f} |",
        "",
        f"## p_alive per tier (slipping away: p_alive < {policy.at_risk_below:g})",
        "",
        "| tier | members with a value | p_alive p25 | median | p75 | slipping away | "
        "value at risk | mean clv |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.iter_rows(named=True):
        lines.append(
            f"| {row[Col.TIER] or '-'} | {row['members']:,} | {_num(row['p25'], '.3f')} | "
            f"{_num(row['median'], '.3f')} | {_num(row['p75'], '.3f')} | {row['below']:,} | "
            f"{_num(row['value_at_risk'] or 0.0, ',.2f')} | {_num(row['mean_clv'], ',.2f')} |"
        )
    lines += ["", f"![p_alive per tier]({FILES[1]})", ""]
    return "\n".join(lines)


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _sampled(subsampled_from: int | None) -> str:
    return "" if subsampled_from is None else f" (a sample of {subsampled_from:,})"


def _plot(members: pl.DataFrame, tiers: list[str], below: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    valued = members.filter(pl.col(Feat.P_ALIVE).is_not_null())
    present = [t for t in tiers if t in set(valued.get_column(Col.TIER).to_list())]
    rng = np.random.default_rng(0)
    data = []
    for tier in present:  # a density per tier; at most PLOT_SAMPLE members drawn (seeded)
        values = valued.filter(pl.col(Col.TIER) == tier).get_column(Feat.P_ALIVE).to_numpy()
        if values.size > PLOT_SAMPLE:
            values = rng.choice(values, PLOT_SAMPLE, replace=False)
        data.append(values)
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    if data:
        ax.violinplot(data, showmedians=True, showextrema=True)
        ax.set_xticks(np.arange(1, len(present) + 1), present)
    ax.axhline(below, linestyle="--", color="tab:red", linewidth=1, label="slipping away below")
    ax.legend(loc="lower left")
    ax.set_xlabel("tier")
    ax.set_ylabel("p_alive")
    ax.set_ylim(0.0, 1.02)
    ax.set_title("Probability of still being active, per tier")
    ax.grid(alpha=0.3, axis="y")
    fig.savefig(path, dpi=120)


def write_value_report(snapshot: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """Write the member-value page of ``snapshot`` into ``out_dir`` (default
    ``SNAPSHOT/report``); returns name -> path."""
    manifest = json.loads((snapshot / "manifest.json").read_text())
    tiers = [str(t) for t in manifest.get("tiers", [])]
    recorded = manifest_value(manifest, str(snapshot / "manifest.json"))
    policy = recorded.policy
    members = pl.read_parquet(
        snapshot / "members.parquet", columns=[Col.MEMBER_ID, Col.TIER, Feat.P_ALIVE, Feat.CLV]
    )
    table = _tier_table(members, tiers, policy.at_risk_below)
    folder = out_dir if out_dir is not None else snapshot / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    md, png = (folder / name for name in FILES)
    md.write_text(_markdown(manifest.get("as_of"), recorded, members, table), encoding="utf-8")
    _plot(members, tiers, policy.at_risk_below, png)
    return {"markdown": md, "png": png}


__all__ = ["FILES", "REPORT_DIR", "write_value_report"]
