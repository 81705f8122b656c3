"""Figures of an evaluation report (matplotlib, Agg backend): metrics per tier, metric vs K,
popularity bias, and the automatic search's history. The pipeline logs them to MLflow; nothing here computes metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from training.evaluate import VARIANTS, EvaluationReport
from training.search_space import BASELINE_TRIALS

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class SearchTrialLike(Protocol):
    """What :func:`search_history` reads of a trial (training.search.SearchTrial)."""

    @property
    def number(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def objective(self) -> float: ...
    @property
    def ok(self) -> bool: ...


#: popularity buckets of the popularity-bias figure (items ranked by training buyers)
BUCKETS = 10


def _figure(width: float = 9.0, height: float = 4.0) -> Figure:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def per_tier(report: EvaluationReport, main: str, tiers: tuple[str, ...]) -> Figure:
    """NDCG at the headline K of the main ranker per tier (at the cutoff), both variants."""
    fig = _figure()
    result = report.result(main)
    k = report.headline_k
    for position, variant in enumerate(VARIANTS):
        ax = fig.add_subplot(1, len(VARIANTS), position + 1)
        groups = [t for t in (*tiers, "unknown") if (variant, "tier", t) in result.breakdowns]
        values = [result.breakdowns[(variant, "tier", t)].ndcg for t in groups]
        counts = [result.breakdowns[(variant, "tier", t)].n_members for t in groups]
        bars = ax.bar(groups, values, color="#4C72B0")
        for bar, n in zip(bars, counts, strict=True):
            ax.annotate(
                f"n={n}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_title(f"{main}: NDCG@{k} per tier ({variant})")
        ax.set_ylabel(f"NDCG@{k}")
        ax.tick_params(axis="x", labelrotation=30)
    return fig


def metric_vs_k(report: EvaluationReport, metric: str = "ndcg") -> Figure:
    """``metric`` at every K for every ranker, both variants."""
    fig = _figure()
    for position, variant in enumerate(VARIANTS):
        ax = fig.add_subplot(1, len(VARIANTS), position + 1)
        for result in report.results:
            ks = [k for k in report.ks if (variant, k) in result.summaries]
            ax.plot(
                ks, [result.value(metric, k, variant) for k in ks], marker="o", label=result.name
            )
        ax.set_title(f"{metric} vs K ({variant})")
        ax.set_xlabel("K")
        ax.set_xticks(list(report.ks))
        ax.set_ylabel(metric)
    fig.axes[-1].legend(fontsize=7, loc="best")
    return fig


def popularity_bias(
    report: EvaluationReport,
    popularity: npt.NDArray[np.floating],
    relevant_items: npt.NDArray[np.int64],
) -> Figure:
    """Share of recommended slots (headline K, "all") per item-popularity decile, per ranker,
    beside the share of test purchases: bars far left of the purchases mean popularity bias."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    bucket = popularity_buckets(popularity)
    labels = [f"{10 * b}-{10 * (b + 1)}%" for b in range(BUCKETS)]
    series = {"test purchases": _shares(bucket[relevant_items])}
    for result in report.results:
        ranked = result.rankings.get("all")
        if ranked is not None:
            top = ranked[:, : report.headline_k]
            series[result.name] = _shares(bucket[top[top >= 0]])
    width = 0.8 / len(series)
    x = np.arange(BUCKETS)
    for position, (name, shares) in enumerate(series.items()):
        ax.bar(x + position * width, shares, width=width, label=name)
    ax.set_xticks(x + 0.4 - width / 2, labels, rotation=30)
    ax.set_xlabel("item popularity percentile (0-10% = most bought before the cutoff)")
    ax.set_ylabel("share")
    ax.set_title(f"popularity bias: recommended slots at K={report.headline_k} (all)")
    ax.legend(fontsize=7)
    return fig


def popularity_buckets(popularity: npt.NDArray[np.floating]) -> npt.NDArray[np.int64]:
    """Decile of each item by popularity rank (0 = the most popular tenth of the catalogue)."""
    order = np.argsort(-np.asarray(popularity), kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    buckets: npt.NDArray[np.int64] = np.minimum(rank * BUCKETS // max(order.size, 1), BUCKETS - 1)
    return buckets


def _shares(buckets: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    counts = np.bincount(buckets, minlength=BUCKETS).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


__all__ = ["metric_vs_k", "per_tier", "popularity_bias", "popularity_buckets"]


def search_history(trials: Sequence[SearchTrialLike]) -> Figure:
    """The automatic search: each trial's objective on the validation window (by candidate),
    the best so far, and the baselines as horizontal lines."""
    fig = _figure(9.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    done = [t for t in trials if t.ok]
    names = sorted({t.name for t in done})
    for name in names:
        points = [t for t in done if t.name == name]
        if name in BASELINE_TRIALS:
            ax.axhline(points[0].objective, linestyle="--", linewidth=1, label=f"baseline {name}")
            continue
        ax.scatter([t.number for t in points], [t.objective for t in points], s=14, label=name)
    if done:
        best = np.maximum.accumulate([t.objective for t in done])
        ax.step([t.number for t in done], best, where="post", color="black", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (validation)")
    ax.set_title("Automatic search on the validation window")
    ax.legend(fontsize=7, loc="lower right")
    return fig
