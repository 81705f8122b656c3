"""The results of a ``recsys tune`` study and their reports: the trial table (CSV and Markdown)
and the plot of the objective per trial.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.config import ConfigError
from training.tune_space import Scalar, SearchParam


@dataclass(frozen=True, slots=True)
class TrialResult:
    """One finished trial."""

    number: int
    values: Mapping[str, Scalar]
    metrics: Mapping[str, float]
    objective: float
    seconds: float
    run_id: str | None = None


@dataclass(slots=True)
class TuneResult:
    """The trials (in order), the best one and where its config and bundle are."""

    metric: str
    space: tuple[SearchParam, ...]
    trials: list[TrialResult] = field(default_factory=list)
    best_config: Path | None = None
    best_bundle: Path | None = None
    study_run_id: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    registered_version: int | None = None
    promoted: bool | None = None
    promotion_reason: str | None = None

    @property
    def best(self) -> TrialResult:
        if not self.trials:
            raise ConfigError("no trial finished; raise --trials or --timeout")
        return max(self.trials, key=lambda t: (t.objective, -t.number))


# -- reports ---------------------------------------------------------------------------------


def headline_metrics(result: TuneResult) -> list[str]:
    """The objective first, then the "new" counterpart of an "all" metric (and vice versa)."""
    names = [result.metric]
    if result.metric.endswith("/all"):
        names.append(result.metric.removesuffix("/all") + "/new")
    elif result.metric.endswith("/new"):
        names.append(result.metric.removesuffix("/new") + "/all")
    return names


def trials_csv(result: TuneResult) -> str:
    keys = [param.key for param in result.space]
    metrics = headline_metrics(result)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", *keys, *metrics, "seconds", "run_id"])
    for t in result.trials:
        writer.writerow(
            [
                t.number,
                *(t.values.get(k) for k in keys),
                *(t.metrics.get(m) for m in metrics),
                round(t.seconds, 2),
                t.run_id or "",
            ]
        )
    return buffer.getvalue()


def trials_markdown(result: TuneResult) -> str:
    keys = [param.key for param in result.space]
    metrics = headline_metrics(result)
    head = ["trial", *keys, *metrics, "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in sorted(result.trials, key=lambda t: (-t.objective, t.number)):
        cells = [
            str(t.number),
            *(_cell(t.values.get(k)) for k in keys),
            *(_cell(t.metrics.get(m)) for m in metrics),
            f"{t.seconds:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def history_figure(result: TuneResult) -> Any:
    """Objective per trial and the best so far (matplotlib figure)."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    numbers = [t.number for t in result.trials]
    values = [t.objective for t in result.trials]
    best_so_far = [max(values[: i + 1]) for i in range(len(values))]
    figure = Figure(figsize=(6, 3.5))
    axes = figure.subplots()
    axes.plot(numbers, values, "o", label="trial")
    axes.step(numbers, best_so_far, where="post", label="best so far")
    axes.set_xlabel("trial")
    axes.set_ylabel(result.metric)
    axes.legend()
    figure.tight_layout()
    return figure


__all__ = [
    "TrialResult",
    "TuneResult",
    "headline_metrics",
    "history_figure",
    "trials_csv",
    "trials_markdown",
]
