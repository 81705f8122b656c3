"""Write an :class:`~engine.experiments.report.ExperimentReport` as files to open.

:func:`write_report` writes into one folder:

- ``report.md``: per-variant totals, the metric table (champion, challenger, difference,
  95% interval, p-value, method), the minimum detectable effect and the notes;
- ``report.csv``: one row per metric;
- ``report.json``: the whole report (the API's answer);
- ``experiment.png``: each rate per variant with its interval (left), the rates' differences
  with their intervals in points (middle) and revenue per exposed member per variant (right).

matplotlib is imported only here (its object API, no pyplot and no global state).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Final

from engine.experiments.report import ExperimentMetric, ExperimentReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FILES: Final[tuple[str, ...]] = ("report.md", "report.csv", "report.json", "experiment.png")
CSV_COLUMNS: Final[tuple[str, ...]] = (
    "metric", "label", "kind", "champion_n", "champion", "champion_ci_low", "champion_ci_high",
    "challenger_n", "challenger", "challenger_ci_low", "challenger_ci_high", "difference",
    "ci_low", "ci_high", "p_value", "relative_lift", "significant", "method", "flags",
)  # fmt: skip
_COLOURS: Final[dict[str, str]] = {"champion": "tab:blue", "challenger": "tab:orange"}


def _num(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    if percent:
        return f"{value * 100:.2f}%"
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:,.4g}"


def difference_text(m: ExperimentMetric) -> tuple[str, str]:
    """The difference and its interval as text (rates in points)."""
    d = m.difference
    pct = m.kind == "proportion"
    if d.estimate is None:
        diff = "n/a"
    else:
        diff = f"{d.estimate * 100:+.2f} pts" if pct else f"{d.estimate:+,.4g}"
    if d.ci_low is None or d.ci_high is None:
        ci = "n/a"
    elif pct:
        ci = f"{d.ci_low * 100:+.2f} .. {d.ci_high * 100:+.2f} pts"
    else:
        ci = f"{d.ci_low:+,.4g} .. {d.ci_high:+,.4g}"
    return diff + (" *" if d.significant else ""), ci


def _row_md(m: ExperimentMetric) -> str:
    pct = m.kind == "proportion"
    diff, ci = difference_text(m)
    p = "n/a" if m.difference.p_value is None else f"{m.difference.p_value:.3g}"
    cells = (
        m.label, _num(m.champion.value, pct), _num(m.challenger.value, pct), diff, ci, p,
        m.difference.method,
    )  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def report_markdown(report: ExperimentReport) -> str:
    """The report as a Markdown document."""
    conf = f"{report.confidence:.0%}"
    mde = report.detectable_effect
    shown = "none (variants too small)" if mde.absolute is None else f"{mde.absolute * 100:.2f} pts"
    lines = [
        f"# Experiment {report.experiment}",
        "",
        f"Members exposed from {report.period_start.isoformat()} to "
        f"{report.period_end.isoformat()}; a purchase of a shown item counts for the list within "
        f"{report.attribution_hours:g} h (purchase times in {report.data_timezone}). "
        f"Challenger: {report.challenger_uri or 'not configured'}"
        + (
            f" for {report.challenger_percent:g}% of the members"
            if report.challenger_percent is not None and report.challenger_uri
            else ""
        )
        + f"; assignment {report.assignment_scheme}.",
        "",
        "| variant | members | lists served | converted | converted (recommended) | revenue "
        "| recommended revenue | bundles |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {v.variant} | {v.members:,} | {v.lists_served:,} | {v.converted:,} | "
            f"{v.converted_recommended:,} | {_num(v.revenue)} | {_num(v.recommended_revenue)} | "
            f"{', '.join(v.bundle_ids) or '-'} |"
            for v in report.variants
        ),
        "",
        f"| metric | champion | challenger | difference | {conf} interval | p-value | method |",
        "|---|---|---|---|---|---|---|",
        *(_row_md(m) for m in report.metrics),
        "",
        "`*`: the interval excludes 0. Differences are challenger minus champion; rates in "
        f"percentage points. Primary metric: {report.primary_metric}.",
        "",
        f"- Minimum detectable effect on {mde.metric}: {shown} at power {mde.power:.0%}.",
        "",
        *(f"> {note}" for note in report.notes),
        "",
    ]
    if report.flags:
        lines += [f"Flags: {', '.join(report.flags)}", ""]
    return "\n".join(lines)


def _csv_rows(report: ExperimentReport) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for m in report.metrics:
        d = m.difference
        rows.append(
            {
                "metric": m.name, "label": m.label, "kind": m.kind,
                "champion_n": m.champion.n, "champion": m.champion.value,
                "champion_ci_low": m.champion.ci_low, "champion_ci_high": m.champion.ci_high,
                "challenger_n": m.challenger.n, "challenger": m.challenger.value,
                "challenger_ci_low": m.challenger.ci_low,
                "challenger_ci_high": m.challenger.ci_high, "difference": d.estimate,
                "ci_low": d.ci_low, "ci_high": d.ci_high, "p_value": d.p_value,
                "relative_lift": m.relative_lift, "significant": d.significant,
                "method": d.method, "flags": "|".join(d.flags),
            }
        )  # fmt: skip
    return rows


def experiment_figure(report: ExperimentReport) -> Figure:
    """Rates per variant, their differences, and revenue per exposed member (module docstring)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.0, 4.0), layout="constrained")
    rates = [m for m in report.metrics if m.kind == "proportion"]
    left = fig.add_subplot(1, 3, 1)
    for offset, variant in ((-0.18, "champion"), (0.18, "challenger")):
        for x, m in enumerate(rates):
            g = m.champion if variant == "champion" else m.challenger
            if g.value is None:
                continue
            err = None
            if g.ci_low is not None and g.ci_high is not None:
                err = [[(g.value - g.ci_low) * 100], [(g.ci_high - g.value) * 100]]
            left.bar(
                x + offset,
                g.value * 100,
                width=0.34,
                yerr=err,
                capsize=4,
                color=_COLOURS[variant],
                label=variant if x == 0 else None,
            )
    left.set_xticks(range(len(rates)), [m.name for m in rates], fontsize=8)
    left.set_ylabel("members (%)")
    left.set_title("rates per variant")
    if left.get_legend_handles_labels()[0]:  # nothing to label in an empty report
        left.legend()
    middle = fig.add_subplot(1, 3, 2)
    for y, m in enumerate(rates):
        d = m.difference
        if d.estimate is None:
            continue
        est = d.estimate * 100
        if d.ci_low is not None and d.ci_high is not None:
            middle.errorbar(
                est, y, xerr=[[est - d.ci_low * 100], [d.ci_high * 100 - est]], fmt="o", capsize=4
            )
        else:
            middle.plot(est, y, "o")
    middle.axvline(0.0, color="black", linewidth=0.8)
    middle.set_yticks(range(len(rates)), [m.name for m in rates], fontsize=8)
    middle.set_ylim(len(rates) - 0.5, -0.5)
    middle.set_xlabel("challenger - champion (points)")
    middle.set_title(f"differences with {report.confidence:.0%} intervals")
    right = fig.add_subplot(1, 3, 3)
    revenue = report.metric("revenue_per_member")
    groups = (("champion", revenue.champion), ("challenger", revenue.challenger))
    for x, (variant, g) in enumerate(groups):
        if g.value is None:
            continue
        err = None
        if g.ci_low is not None and g.ci_high is not None:
            err = [[g.value - g.ci_low], [g.ci_high - g.value]]
        right.bar(x, g.value, yerr=err, capsize=4, color=_COLOURS[variant])
    right.set_xticks([0, 1], ["champion", "challenger"])
    right.set_title("revenue per exposed member")
    return fig


def write_report(report: ExperimentReport, out_dir: Path) -> dict[str, Path]:
    """Write the files listed in the module docstring; returns them by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in FILES}
    paths["report.md"].write_text(report_markdown(report))
    with paths["report.csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(_csv_rows(report))
    paths["report.json"].write_text(report.model_dump_json(indent=1) + "\n")
    experiment_figure(report).savefig(paths["experiment.png"], dpi=100)
    return paths


__all__ = ["FILES", "difference_text", "experiment_figure", "report_markdown", "write_report"]
