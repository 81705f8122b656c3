"""Write a :class:`~engine.campaigns.report.CampaignReport` as files a marketer can open.

:func:`write_report` writes into one folder:

- ``report.md``: the table (per group, difference, 95% interval, p-value, method) and the notes;
- ``report.csv``: one row per metric plus the incremental revenue and conversions;
- ``report.json``: the whole report (the API's answer);
- ``conversion_by_day.png``: cumulative conversion by day, treatment and control;
- ``uplift.png``: the uplift in conversion by day with its interval (left) and every
  proportion metric's difference with its interval, in points (right).

:func:`qini_figure` draws the Qini curves of several rankings (uplift model vs propensity).

matplotlib is imported only here (its object API, no pyplot and no global state).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from engine.campaigns.report import CampaignReport, MetricReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FILES: Final[tuple[str, ...]] = (
    "report.md", "report.csv", "report.json", "conversion_by_day.png", "uplift.png",
)  # fmt: skip
CSV_COLUMNS: Final[tuple[str, ...]] = (
    "metric", "label", "kind", "treatment_n", "treatment", "control_n", "control", "difference",
    "ci_low", "ci_high", "p_value", "relative_lift", "significant", "method", "flags",
)  # fmt: skip


def _num(value: float | None, percent: bool = False, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if percent:
        return f"{value * 100:.2f}%"
    return f"{value:,.0f}" if abs(value) >= 10**digits else f"{value:,.{digits}g}"


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.2f} pts"


def _row_md(m: MetricReport) -> str:
    pct = m.kind == "proportion"
    d = m.difference
    diff = _points(d.estimate) if pct else _num(d.estimate)
    if d.ci_low is None or d.ci_high is None:
        ci = "n/a"
    elif pct:
        ci = f"{d.ci_low * 100:+.2f} .. {d.ci_high * 100:+.2f}"
    else:
        ci = f"{d.ci_low:,.4g} .. {d.ci_high:,.4g}"
    p = "n/a" if d.p_value is None else f"{d.p_value:.3g}"
    mark = " *" if d.significant else ""
    cells = (
        m.label, _num(m.treatment.value, pct), _num(m.control.value, pct), diff + mark, ci, p,
        d.method,
    )  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def report_markdown(report: CampaignReport) -> str:
    """The report as a Markdown document."""
    conf = f"{report.confidence:.0%}"
    lines = [
        f"# Campaign {report.campaign_id}" + (f": {report.name}" if report.name else ""),
        "",
        f"Sent {report.sent_at.isoformat()}; attribution window {report.window_days} days "
        f"(to {report.window_end.isoformat()}), {report.observed_days} observed. "
        f"Treatment {report.counts['treatment']:,} members, "
        f"control {report.counts['control']:,}.",
        "",
        f"| metric | treatment | control | difference | {conf} interval | p-value | method |",
        "|---|---|---|---|---|---|---|",
        *(_row_md(m) for m in report.metrics),
        "",
        "`*`: the interval excludes 0. Differences are treatment minus control; rates in "
        "percentage points.",
        "",
        f"- Incremental revenue: {_num(report.incremental_revenue.estimate)} "
        f"({conf} interval {_num(report.incremental_revenue.ci_low)} .. "
        f"{_num(report.incremental_revenue.ci_high)}); {report.incremental_revenue.method}.",
        f"- Incremental conversions: {_num(report.incremental_conversions.estimate)} "
        f"({conf} interval {_num(report.incremental_conversions.ci_low)} .. "
        f"{_num(report.incremental_conversions.ci_high)}).",
        f"- Minimum detectable effect on {report.detectable_effect.metric}: "
        f"{_points(report.detectable_effect.absolute)} at power "
        f"{report.detectable_effect.power:.0%}.",
        "",
        *(f"> {note}" for note in report.notes),
        "",
    ]
    if report.flags:
        lines += [f"Flags: {', '.join(report.flags)}", ""]
    return "\n".join(lines)


def _csv_rows(report: CampaignReport) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for m in report.metrics:
        d = m.difference
        rows.append(
            {
                "metric": m.name, "label": m.label, "kind": m.kind,
                "treatment_n": m.treatment.n, "treatment": m.treatment.value,
                "control_n": m.control.n, "control": m.control.value, "difference": d.estimate,
                "ci_low": d.ci_low, "ci_high": d.ci_high, "p_value": d.p_value,
                "relative_lift": m.relative_lift, "significant": d.significant,
                "method": d.method, "flags": "|".join(d.flags),
            }
        )  # fmt: skip
    for name, total in (
        ("incremental_revenue", report.incremental_revenue),
        ("incremental_conversions", report.incremental_conversions),
    ):
        rows.append(
            {
                "metric": name, "label": name.replace("_", " ").capitalize(), "kind": "total",
                "difference": total.estimate, "ci_low": total.ci_low, "ci_high": total.ci_high,
                "method": total.method,
            }
        )  # fmt: skip
    return rows


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def conversion_figure(report: CampaignReport) -> Figure:
    """Cumulative conversion by day, treatment and control."""
    fig = _figure(7.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    days = [p.day + 1 for p in report.daily]
    ax.plot(days, [p.treatment_rate * 100 for p in report.daily], label="treatment")
    ax.plot(days, [p.control_rate * 100 for p in report.daily], label="control")
    ax.set_xlabel("days after the send")
    ax.set_ylabel("cumulative conversion (%)")
    ax.set_title(f"{report.campaign_id}: {report.metric(report.primary_metric).label.lower()}")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def uplift_figure(report: CampaignReport) -> Figure:
    """Uplift by day with its band, and each proportion's difference with its interval."""
    fig = _figure(11.0, 4.0)
    ax = fig.add_subplot(1, 2, 1)
    days = [p.day + 1 for p in report.daily]
    ax.fill_between(
        days, [p.ci_low * 100 for p in report.daily], [p.ci_high * 100 for p in report.daily],
        alpha=0.25, label=f"{report.confidence:.0%} interval",
    )  # fmt: skip
    ax.plot(days, [p.uplift * 100 for p in report.daily], label="uplift")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("days after the send")
    ax.set_ylabel("treatment - control (points)")
    ax.set_title("cumulative uplift in conversion")
    ax.legend()
    right = fig.add_subplot(1, 2, 2)
    shown = [
        m for m in report.metrics if m.kind == "proportion" and m.difference.estimate is not None
    ]
    for y, m in enumerate(shown):
        d = m.difference
        est = (d.estimate or 0.0) * 100
        if d.ci_low is not None and d.ci_high is not None:
            right.errorbar(
                est, y, xerr=[[est - d.ci_low * 100], [d.ci_high * 100 - est]], fmt="o", capsize=4
            )
        else:
            right.plot(est, y, "o")
    right.axvline(0.0, color="black", linewidth=0.8)
    right.invert_yaxis()
    right.set_yticks(range(len(shown)), [m.label for m in shown], fontsize=8)
    right.set_xlabel("difference (points)")
    right.set_title(f"differences with {report.confidence:.0%} intervals")
    return fig


def qini_figure(
    curves: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]], title: str = ""
) -> Figure:
    """Qini curves of several rankings on one sample (e.g. uplift model vs propensity), with
    the random line of the first; ``curves`` maps a label to (members targeted, Qini)."""
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    for label, (x, q) in curves.items():
        ax.plot(np.asarray(x), np.asarray(q), label=label)
    if curves:
        x, q = (np.asarray(v) for v in next(iter(curves.values())))
        ax.plot([0, x[-1]], [0, q[-1]], linestyle="--", color="grey", label="random")
    ax.set_xlabel("members targeted (best first)")
    ax.set_ylabel("incremental responders (Qini)")
    ax.set_title(title or "Qini curves")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def write_report(report: CampaignReport, out_dir: Path) -> dict[str, Path]:
    """Write the files listed in the module docstring; returns them by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in FILES}
    paths["report.md"].write_text(report_markdown(report))
    with paths["report.csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(_csv_rows(report))
    paths["report.json"].write_text(report.model_dump_json(indent=1) + "\n")
    conversion_figure(report).savefig(paths["conversion_by_day.png"], dpi=100)
    uplift_figure(report).savefig(paths["uplift.png"], dpi=100)
    return paths
