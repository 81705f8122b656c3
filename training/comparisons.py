"""What the chosen configuration is compared with on the test window: the configured
baselines, the ablation (each interaction weight neutralised), the tier-blind blend of a model
with a tier segment (training/tier_segment.py) and the list of weights that cannot matter on
this data (so the report never claims an effect it cannot have)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from engine.blend import Blender
from engine.models import ModelArtifacts
from training.config import BaselineConfig, TagWeights, TrainConfig, WeightsConfig
from training.data import PreparedData
from training.evaluate import (
    EvalSet,
    EvaluationReport,
    ModelResult,
    blend_ranker,
    evaluate_ranker,
    model_ranker,
)
from training.fitting import build_blender, fit_config, fit_model, headline_k
from training.outputs import AblationRow
from training.stage import Stage
from training.tier_segment import TierSegment, inert_reason, segment_dims, tier_blind_members

#: the report row of the blend without its tier segment (the same fit, tier-blind)
TIER_BLIND = "blend_tier_blind"

Progress = Callable[[str], None]


def evaluate_baselines(
    config: TrainConfig,
    stage: Stage,
    data: PreparedData,
    eval_set: EvalSet,
    progress: Progress,
) -> list[ModelResult]:
    """Every configured ``[[baselines]]`` fitted on the stage and ranked over the catalogue."""
    weighted = data.confidence(config.weights)
    return [
        _baseline(baseline, config, stage, data, weighted, eval_set, progress)
        for baseline in config.baselines
    ]


def _baseline(
    baseline: BaselineConfig,
    config: TrainConfig,
    stage: Stage,
    data: PreparedData,
    weighted: object,
    eval_set: EvalSet,
    progress: Progress,
) -> ModelResult:
    """Fit a baseline on its input matrix and rank the whole catalogue with its scores."""
    progress(f"baseline {baseline.name}")
    matrix = data.binary() if baseline.weighting == "binary" else weighted
    artifacts = fit_model(baseline.kind, dict(baseline.params), matrix, data, stage.snapshot)
    history = data.history if baseline.kind == "buy_again" else matrix
    popularity = np.bincount(data.history.indices, minlength=data.n_items)
    ranker = model_ranker(artifacts, history, data.history, tie_break=popularity)
    k = headline_k(config.evaluation.metric)
    return evaluate_ranker(baseline.name, ranker, eval_set, config.evaluation.ks, k)


#: name -> (description, how to neutralise it, whether it is active in a config)
_ABLATIONS: dict[
    str, tuple[str, Callable[[WeightsConfig], WeightsConfig], Callable[[WeightsConfig], bool]]
] = {
    "tier": (
        "tier multipliers = 1",
        lambda w: replace(w, tier={}),
        lambda w: any(v != 1.0 for v in w.tier.values()),
    ),
    "tags": (
        "tag boosts = 1",
        lambda w: replace(w, tags=TagWeights()),
        lambda w: w.tags.active,
    ),
    "recency": (
        "no recency decay",
        lambda w: replace(w, half_life_days=0.0),
        lambda w: w.half_life_days > 0,
    ),
    "quantity": (
        "every line weighs 1 (quantity off)",
        lambda w: replace(w, quantity="none"),
        lambda w: w.quantity != "none",
    ),
    "amount": (
        "amount weight = 0",
        lambda w: replace(w, amount=0.0),
        lambda w: w.amount > 0,
    ),
    "bm25": (
        "no BM25 re-weighting",
        lambda w: replace(w, bm25=replace(w.bm25, enabled=False)),
        lambda w: w.bm25.enabled,
    ),
}


def ablation_rows(
    config: TrainConfig,
    stage: Stage,
    eval_set: EvalSet,
    base: ModelResult,
    progress: Progress,
) -> list[AblationRow]:
    """Refit and re-evaluate the blend with each active weight neutralised."""
    k = headline_k(config.evaluation.metric)
    base_all, base_new = base.value("ndcg", k, "all"), base.value("ndcg", k, "new")
    rows: list[AblationRow] = []
    for name, (description, neutralise, active) in _ABLATIONS.items():
        if not active(config.weights):
            continue
        progress(f"ablation: {description}")
        variant = config.replace(weights=neutralise(config.weights))
        data = stage.prepared(variant)
        artifacts = fit_config(variant, data, stage.snapshot)  # as the evaluated model was
        _, blender = build_blender(artifacts, data, variant)
        result = evaluate_ranker(
            f"no_{name}", blend_ranker(blender), eval_set, config.evaluation.ks, k
        )
        ndcg_all, ndcg_new = result.value("ndcg", k, "all"), result.value("ndcg", k, "new")
        rows.append(
            AblationRow(
                name, description, ndcg_all, ndcg_new, ndcg_all - base_all, ndcg_new - base_new
            )
        )
    return rows


def tier_blind_result(
    config: TrainConfig,
    artifacts: ModelArtifacts,
    blender: Blender,
    data: PreparedData,
    eval_set: EvalSet,
) -> ModelResult | None:
    """The blend of ``artifacts`` without their tier segment, on the same members: the main
    model alone (the segment's member columns zeroed, same items, index, history, trending and
    weights), named :data:`TIER_BLIND`; None when the artifacts carry no segment."""
    if segment_dims(artifacts) == 0:
        return None
    members = tier_blind_members(artifacts)
    assert members is not None  # a segment is only ever added to vectors
    blind = blender.for_members(members, data.history)
    k = headline_k(config.evaluation.metric)
    return evaluate_ranker(TIER_BLIND, blend_ranker(blind), eval_set, config.evaluation.ks, k)


def tier_comparison_table(
    report: EvaluationReport, aware: str = "blend", blind: str = TIER_BLIND
) -> str:
    """NDCG at the headline K per tier of the blend with its tier segment and without it, both
    variants, as Markdown ("" when the report has no tier-blind row)."""
    names = {r.name for r in report.results}
    if aware not in names or blind not in names:
        return ""
    with_segment, without = report.result(aware), report.result(blind)
    groups = sorted({g for (_, b, g) in with_segment.breakdowns if b == "tier"})
    lines = [
        "| tier | members (all) | all: blind | all: tier-aware | Δ all | members (new) | "
        "new: blind | new: tier-aware | Δ new |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for group in [*groups, "overall"]:
        cells: list[str] = []
        for variant in ("all", "new"):
            if group == "overall":
                k = report.headline_k
                if (variant, k) not in with_segment.summaries:
                    cells += ["0", "", "", ""]
                    continue
                a, b = with_segment.summaries[(variant, k)], without.summaries[(variant, k)]
            else:
                key = (variant, "tier", group)
                if key not in with_segment.breakdowns:
                    cells += ["0", "", "", ""]
                    continue
                a, b = with_segment.breakdowns[key], without.breakdowns[key]
            cells += [f"{a.n_members}", f"{b.ndcg:.4f}", f"{a.ndcg:.4f}", f"{a.ndcg - b.ndcg:+.4f}"]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def inert_weights(
    config: TrainConfig, data: PreparedData, segment: TierSegment | None = None
) -> list[str]:
    """Configured weights that cannot change anything on this data, each with the reason
    (``segment``: the tier segment's settings, when the configuration has them)."""
    notes: list[str] = []
    weights = config.weights
    if any(v != 1.0 for v in weights.tier.values()):
        seen = set() if data.lines.tier is None else {int(t) for t in np.unique(data.lines.tier)}
        distinct = {weights.tier.get(data.tiers[t], 1.0) for t in seen if 0 <= t < len(data.tiers)}
        if len(distinct) <= 1:
            notes.append(
                "tier multipliers: every training line's member is in tiers with the same "
                "multiplier, so they only rescale the matrix"
            )
    if weights.tags.active and data.tag_matched_lines == 0:
        notes.append("tag boosts: no member tag matches an item tag or category in this data")
    if segment is not None and segment.enabled:
        reason = inert_reason(segment, data.tiers, data.members.tier, data.history)
        if reason is not None:
            notes.append(f"{reason}; the model is the tier-blind one")
    return notes


__all__ = [
    "TIER_BLIND",
    "ablation_rows",
    "evaluate_baselines",
    "inert_weights",
    "tier_blind_result",
    "tier_comparison_table",
]
