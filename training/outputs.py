"""What a training run writes: the model bundle serving loads, the evaluation report folder
and the run summary (run.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.blend import BUY_AGAIN, ITEM_INDEX, MANIFEST_KEY, TRENDING
from engine.blend_precompute import PRECOMPUTED_ARRAYS
from engine.bundle import write_bundle
from engine.bundle_recommender import MEMBER_TIER, SERVED_SHARE
from engine.index import VectorIndex
from engine.models import ModelArtifacts
from feature_store.errors import DataError
from training.config import TrainConfig
from training.data import PreparedData
from training.evaluate import EvaluationReport
from training.fitting import build_vector_index

MAIN = "blend"


@dataclass(frozen=True, slots=True)
class AblationRow:
    """The headline metrics with one interaction weight neutralised, and the change."""

    name: str
    description: str
    ndcg_all: float
    ndcg_new: float
    delta_all: float
    delta_new: float


@dataclass(frozen=True, slots=True)
class Tracked:
    """What MLflow recorded."""

    run_id: str
    version: int | None
    promoted: bool | None
    promotion_reason: str | None


@dataclass(frozen=True, slots=True)
class Shipped:
    """The model that goes into the bundle: the refit (or, with ``refit = false``, the model
    evaluated on the test window), with the arrays it was fitted on."""

    artifacts: ModelArtifacts
    data: PreparedData
    item_index: VectorIndex | None
    snapshot_fingerprint: str


def write_model_bundle(
    path: Path,
    config: TrainConfig,
    shipped: Shipped,
    catalogue: dict[str, npt.NDArray[Any]],
    report: EvaluationReport,
    facts: dict[str, Any],
) -> Path:
    """The model bundle serving loads: vectors, buy-again history, trending, FAISS indexes, the
    item attributes its business rules need (category, min_tier, active), and each member's
    precomputed blend candidates (``[bundle] precomputed_candidates``). The manifest records the
    evaluated model's windows and the refit's."""
    artifacts, data = shipped.artifacts, shipped.data
    if artifacts.member_vectors is None or artifacts.item_vectors is None:
        raise DataError(f"model {artifacts.kind!r} exported no vectors; it cannot be bundled")
    width = (
        int(catalogue[PRECOMPUTED_ARRAYS[0]].shape[1]) if PRECOMPUTED_ARRAYS[0] in catalogue else 0
    )
    per_category = config.bundle.precomputed_per_category or None
    indexes = {}
    if shipped.item_index is not None:
        indexes[ITEM_INDEX] = shipped.item_index.faiss_index
    member_index = build_vector_index(artifacts.member_vectors, config.bundle.member_index)
    if member_index is not None:
        indexes["members"] = member_index.faiss_index
    headline = report.result(MAIN)
    manifest = {
        "kind": artifacts.kind,
        "scorer": "blend",
        MANIFEST_KEY: config.blend.weights.as_dict(),
        SERVED_SHARE: config.evaluation.served_share,
        "precomputed_candidates": width,
        "precomputed_per_category": per_category if width > 0 else None,
        "model": artifacts.manifest_fields(),
        "training": {
            "config": config.name,
            "mode": facts["mode"],
            "cutoff": facts["cutoff"],
            "test_last_day": facts["test_last_day"],
            "windows": facts["windows"],
            "refit": facts["refit"],
            "trained_before": facts["trained_before"],
            "data_fingerprint": facts["data_fingerprint"],
            "feature_snapshot": shipped.snapshot_fingerprint,
            "evaluated_feature_snapshot": facts["snapshot_fingerprint"],
            "split_fingerprint": facts["split_fingerprint"],
            "tiers": list(data.tiers),
        },
        "metrics": {
            f"{metric}@{k}/{variant}": round(headline.value(metric, k, variant), 6)
            for (variant, k) in headline.summaries
            for metric in ("ndcg", "recall", "map", "hit_rate", "precision", "coverage")
        },
    }
    return write_bundle(
        path,
        manifest=manifest,
        arrays={
            "member_vectors": artifacts.member_vectors,
            "item_vectors": artifacts.item_vectors,
            TRENDING: data.trending,
            MEMBER_TIER: np.asarray(data.members.tier, dtype=np.int16),
            **catalogue,
        },
        sparse={BUY_AGAIN: data.history},
        member_ids=data.member_ids,
        item_ids=data.item_ids,
        indexes=indexes,
        overwrite=True,
    )


def write_report(
    folder: Path,
    report: EvaluationReport,
    ablation: list[AblationRow],
    inert: list[str],
) -> Path:
    """evaluation/metrics.csv (long table) and table.md (with the per-tier table, the
    ablation and the weights that cannot matter on this data) in the run folder."""
    folder.mkdir(parents=True, exist_ok=True)
    report.frame().write_csv(folder / "metrics.csv")
    k = report.headline_k
    text = [f"# Evaluation on the test window at K={k}", "", report.markdown(), ""]
    tiers = tier_table(report)
    if tiers:
        text += [f"## NDCG@{k} of the blend per tier (tier at the cutoff)", "", tiers, ""]
    if inert:
        text += ["## Inert weights", "", *(f"* {line}" for line in inert), ""]
    if ablation:
        text += [f"## Ablation (NDCG@{k} of the blend)", ""]
        text += ["| neutralised | all | Δ all | new | Δ new |", "|---|---:|---:|---:|---:|"]
        text += [
            f"| {a.description} | {a.ndcg_all:.4f} | {a.delta_all:+.4f} | {a.ndcg_new:.4f} | "
            f"{a.delta_new:+.4f} |"
            for a in ablation
        ]
    (folder / "table.md").write_text("\n".join(text) + "\n", encoding="utf-8")
    return folder


def tier_table(report: EvaluationReport) -> str:
    """NDCG at the headline K of the main ranker per tier, both variants, as Markdown."""
    result = report.result(MAIN)
    groups = sorted({g for (_, b, g) in result.breakdowns if b == "tier"})
    if not groups:
        return ""
    lines = ["| tier | members (all) | all | members (new) | new |", "|---|---:|---:|---:|---:|"]
    for group in groups:
        cells = []
        for variant in ("all", "new"):
            s = result.breakdowns.get((variant, "tier", group))
            cells += [f"{s.n_members}", f"{s.ndcg:.4f}"] if s is not None else ["0", ""]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_run_summary(
    path: Path, timings: dict[str, float], facts: dict[str, Any], tracked: Tracked | None
) -> None:
    """run.json in the run folder: step timings, data facts and what MLflow recorded."""
    summary = {
        "timings_s": {key: round(value, 3) for key, value in timings.items()},
        "facts": facts,
        "tracked": None
        if tracked is None
        else {
            "run_id": tracked.run_id,
            "version": tracked.version,
            "promoted": tracked.promoted,
            "reason": tracked.promotion_reason,
        },
    }
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")


def popularity(data: PreparedData) -> npt.NDArray[np.float64]:
    """Distinct training buyers per item (the popularity-bias figure's x axis)."""
    counts: npt.NDArray[np.float64] = np.diff(data.binary().tocsc().indptr).astype(np.float64)
    return counts


__all__ = [
    "MAIN",
    "AblationRow",
    "Shipped",
    "Tracked",
    "tier_table",
    "write_model_bundle",
    "write_report",
    "write_run_summary",
]
