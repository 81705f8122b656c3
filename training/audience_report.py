"""Scoring campaign audiences against who bought, and the report of an audience evaluation.

Per seed and method: ``precision@N = audience buyers / N`` (an audience shorter than N counts
the missing places as misses), ``recall = audience buyers / buyers``, and ``lift`` of the model
over each baseline = model precision / baseline precision. The baselines' audiences
(:func:`rfm_audience`, :func:`bought_before_audience`; ``random`` by its expectation,
:func:`random_result`) are built here; ties are broken by snapshot row everywhere. Averages are
taken over seeds of one kind (categories, items) separately (:func:`summarise`).
training.audience_eval runs the evaluation and fills :class:`AudienceEvalReport`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl

from training.data import Split

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

MODEL: Final[str] = "model"
BASELINES: Final[tuple[str, ...]] = ("random", "rfm", "bought_before")
KINDS: Final[tuple[str, ...]] = ("category", "item")
REPORT_JSON: Final[str] = "audience_eval.json"
REPORT_CSV: Final[str] = "audience_eval.csv"


# -- metric arithmetic ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MethodResult:
    """One method's audience for one seed. ``hits`` is fractional for ``random`` (expected)."""

    hits: float
    precision: float
    recall: float


def audience_result(rows: IntArray, size: int, bought: BoolArray) -> MethodResult:
    """Precision@N and recall of an audience (member rows) against who bought in the test."""
    if size < 1:
        raise ValueError(f"size: must be >= 1, got {size}")
    buyers = int(np.count_nonzero(bought))
    hits = int(np.count_nonzero(bought[rows[:size]]))
    return MethodResult(float(hits), hits / size, hits / buyers if buyers else math.nan)


def random_result(size: int, bought: BoolArray) -> MethodResult:
    """The expected result of N members drawn uniformly without replacement from all of
    ``bought`` (the eligible members): precision = base rate, recall = N / eligible."""
    eligible = int(bought.shape[0])
    if eligible == 0:
        raise ValueError("no eligible member")
    buyers = int(np.count_nonzero(bought))
    n = min(size, eligible)
    rate = buyers / eligible
    hits = n * rate
    return MethodResult(hits, hits / size, hits / buyers if buyers else math.nan)


def lift(model: float, baseline: float) -> float:
    """model / baseline precision (nan when the baseline is 0)."""
    return model / baseline if baseline > 0 else math.nan


def top_rows(keys: list[FloatArray], n: int) -> IntArray:
    """The first n rows ordered by each key descending in turn (the first key is primary),
    then by row ascending."""
    rows = np.arange(keys[0].shape[0])
    order = np.lexsort((rows, *[-k for k in reversed(keys)]))
    return order[:n].astype(np.int64)


def rfm_audience(monetary: FloatArray, n: int) -> IntArray:
    """The top n members by monetary."""
    return top_rows([monetary], n)


def bought_before_audience(
    bought_before: BoolArray, spend: FloatArray, monetary: FloatArray, n: int
) -> IntArray:
    """Members who bought the seed before, by their spend on it; then the rest by monetary."""
    before = bought_before.astype(np.float64)
    secondary = np.where(bought_before, spend, monetary)
    return top_rows([before, secondary], n)


# -- report -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeedResult:
    kind: str
    seed: str
    size: int
    buyers: int
    eligible: int
    bought_before: int
    methods: dict[str, MethodResult]

    def lifts(self) -> dict[str, float]:
        p = self.methods[MODEL].precision
        return {b: lift(p, self.methods[b].precision) for b in BASELINES}

    def row(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "seed": self.seed,
            "size": self.size,
            "buyers": self.buyers,
            "eligible": self.eligible,
            "bought_before": self.bought_before,
        }
        for name, m in self.methods.items():
            out[f"hits_{name}"] = m.hits
            out[f"precision_{name}"] = m.precision
            out[f"recall_{name}"] = m.recall
        for baseline, value in self.lifts().items():
            out[f"lift_{MODEL}_vs_{baseline}"] = value
        return out


@dataclass(frozen=True, slots=True)
class Summary:
    """Averages over the seeds of one kind."""

    kind: str
    seeds: int
    precision: dict[str, float]
    recall: dict[str, float]
    #: model -> baseline -> mean model precision / mean baseline precision
    lift: dict[str, dict[str, float]]
    #: model -> baseline -> mean of the per-seed lifts (seeds with a defined lift)
    mean_lift: dict[str, dict[str, float]]
    #: model -> baseline -> seeds where the model's precision is strictly higher
    wins: dict[str, dict[str, int]]

    def beats_all(self, model: str = MODEL) -> bool:
        return all(self.lift[model][b] > 1.0 for b in BASELINES)


def summarise(kind: str, results: list[SeedResult]) -> Summary | None:
    if not results:
        return None
    methods = list(results[0].methods)
    precision = {m: float(np.mean([r.methods[m].precision for r in results])) for m in methods}
    recall = {m: float(np.nanmean([r.methods[m].recall for r in results])) for m in methods}
    lifts = {MODEL: {b: lift(precision[MODEL], precision[b]) for b in BASELINES}}
    per_seed = [r.lifts() for r in results]
    mean_lift = {MODEL: {b: _nanmean([s[b] for s in per_seed]) for b in BASELINES}}
    wins = {
        MODEL: {
            b: sum(r.methods[MODEL].precision > r.methods[b].precision for r in results)
            for b in BASELINES
        }
    }
    return Summary(kind, len(results), precision, recall, lifts, mean_lift, wins)


@dataclass(frozen=True, slots=True)
class AudienceEvalReport:
    split: Split
    config: str
    model_kind: str
    eligible: int
    size: int | None
    results: list[SeedResult]
    summaries: dict[str, Summary]
    facts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.results[0].methods) if self.results else [MODEL, *BASELINES]

    def frame(self) -> pl.DataFrame:
        """One row per seed, then one ``mean`` row per kind (precision/recall means, lift of
        the means)."""
        rows = [r.row() for r in self.results]
        for kind, s in self.summaries.items():
            mean: dict[str, Any] = {"kind": kind, "seed": "__mean__", "size": None}
            for m in s.precision:
                mean[f"precision_{m}"] = s.precision[m]
                mean[f"recall_{m}"] = s.recall[m]
            for model, by_baseline in s.lift.items():
                for b, value in by_baseline.items():
                    mean[f"lift_{model}_vs_{b}"] = value
            rows.append(mean)
        return pl.DataFrame(rows, infer_schema_length=None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _json_safe(
            {
                "config": self.config,
                "model_kind": self.model_kind,
                "cutoff": self.split.cutoff_date,
                "test_last_day": self.split.test_last_day,
                "eligible_members": self.eligible,
                "size": self.size if self.size is not None else "buyers",
                "methods": self.methods,
                "baselines": list(BASELINES),
                "summaries": {
                    kind: {
                        "seeds": s.seeds,
                        "precision": s.precision,
                        "recall": s.recall,
                        "lift": s.lift,
                        "mean_lift": s.mean_lift,
                        "wins": s.wins,
                    }
                    for kind, s in self.summaries.items()
                },
                "seeds": [r.row() for r in self.results],
                "facts": self.facts,
                "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            }
        )
        return out

    def write(self, out: Path) -> tuple[Path, Path]:
        out.mkdir(parents=True, exist_ok=True)
        json_path, csv_path = out / REPORT_JSON, out / REPORT_CSV
        json_path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        self.frame().write_csv(csv_path, float_precision=6)
        return json_path, csv_path

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow: ``audience/<kind>/precision/<method>``, ``.../lift/...``."""
        flat: dict[str, float] = {}
        for kind, s in self.summaries.items():
            for m, value in s.precision.items():
                flat[f"audience/{kind}/precision/{m}"] = value
            for model, by_baseline in s.lift.items():
                for b, value in by_baseline.items():
                    if math.isfinite(value):
                        flat[f"audience/{kind}/lift/{model}_vs_{b}"] = value
        return flat


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


__all__ = [
    "BASELINES",
    "KINDS",
    "MODEL",
    "REPORT_CSV",
    "REPORT_JSON",
    "AudienceEvalReport",
    "MethodResult",
    "SeedResult",
    "Summary",
    "audience_result",
    "bought_before_audience",
    "lift",
    "random_result",
    "rfm_audience",
    "summarise",
    "top_rows",
]
