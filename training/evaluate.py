"""Temporal-split evaluation of rankers: the blend (through engine.blend, as serving ranks) and
baseline models (through their exported arrays), with per-group breakdowns.

The protocol (docs/evaluation.md): test members are members with a purchase history before the
cutoff and at least one purchase in the test window; beyond ``max_members`` a seeded uniform
sample is evaluated. Relevance is the set of items a member bought in the test window.

* **all**: every test member; rankings may repeat what the member bought (repurchases count).
* **new**: members who bought at least one item in the test window they had never bought
  before; relevance is those items only, and rankings exclude everything the member bought.

Metrics (engine.metrics) at each K: precision, recall, NDCG, MAP, hit rate and catalog
coverage; breakdowns at the headline K per tier (at the cutoff), lifecycle stage and
"few purchases" (at most ``few_purchases`` orders before the cutoff) versus the rest.
Members are ranked in batches; nothing loops over members in Python.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from engine.blend import Blender
from engine.metrics import MemberMetrics, RankingSummary, catalog_coverage, member_metrics
from engine.models import ModelArtifacts
from engine.ranking import kernel
from engine.ranking.catalog import ItemCatalog
from training.config import EvaluationConfig
from training.data import PreparedData

IntArray = npt.NDArray[np.int64]
#: ranks ``rows`` (dense member rows): ``(rows, k, exclude_purchased) -> (len(rows), k)`` item
#: indexes, best first, -1 padded
Ranker = Callable[[IntArray, int, bool], IntArray]

VARIANTS: tuple[str, ...] = ("all", "new")
METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")
#: dense score cells per batch when scoring a model over the whole catalogue
_DENSE_CELLS = 8_000_000
#: members ranked per call of the served path (bounds the candidate rows it holds)
_SERVED_BATCH = 2048
#: largest tie-break added to a baseline's scores (see model_ranker)
TIE_BREAK = 1e-6


@dataclass(frozen=True, slots=True)
class EvalSet:
    """The evaluated members and what is relevant for them."""

    rows: IntArray
    relevance: sp.csr_matrix  # all variant, len(rows) x n_items
    relevance_new: sp.csr_matrix  # new variant (items never bought before)
    has_new: npt.NDArray[np.bool_]
    #: breakdown name -> group label of each evaluated member
    groups: dict[str, npt.NDArray[np.str_]]
    #: test members before sampling
    test_members: int
    n_items: int

    def variant(self, name: str) -> tuple[IntArray, sp.csr_matrix, npt.NDArray[np.bool_]]:
        """(rows, relevance, selected) of a variant; ``selected`` masks the eval members."""
        if name == "all":
            return self.rows, self.relevance, np.ones(self.rows.size, dtype=bool)
        return self.rows[self.has_new], self.relevance_new[self.has_new], self.has_new

    @property
    def split_key(self) -> str:
        """What identifies the evaluated population (with the split and the data)."""
        return f"members={self.rows.size}/{self.test_members}"


def build_eval_set(data: PreparedData, config: EvaluationConfig) -> EvalSet:
    """Test members (history before, purchases after), sampled to ``max_members``."""
    n_items = data.n_items
    has_history = np.diff(data.history.indptr) > 0
    candidates = np.unique(data.test_member)
    candidates = candidates[has_history[candidates]]
    test_members = int(candidates.size)
    if candidates.size > config.max_members:
        rng = np.random.default_rng(config.seed)
        candidates = np.sort(rng.choice(candidates, size=config.max_members, replace=False))
    rows = candidates.astype(np.int64)
    position = np.full(data.n_members, -1, dtype=np.int64)
    position[rows] = np.arange(rows.size)
    keep = position[data.test_member] >= 0
    relevance = sp.csr_matrix(
        (
            np.ones(int(keep.sum()), dtype=np.float32),
            (position[data.test_member[keep]], data.test_item[keep]),
        ),
        shape=(rows.size, n_items),
    )
    relevance.sum_duplicates()
    bought = data.history[rows]
    bought.data = np.ones_like(bought.data)
    new = relevance - relevance.multiply(bought)
    new = sp.csr_matrix(new, dtype=np.float32)
    new.eliminate_zeros()
    has_new = np.diff(new.indptr) > 0
    tier_names = np.asarray([*data.tiers, "unknown"])
    tiers = tier_names[np.where(data.members.tier[rows] >= 0, data.members.tier[rows], -1)]
    few = np.where(
        data.members.n_orders[rows] <= config.few_purchases, "few_purchases", "more_purchases"
    )
    return EvalSet(
        rows=rows,
        relevance=relevance,
        relevance_new=new,
        has_new=has_new,
        groups={
            "tier": tiers.astype(np.str_),
            "lifecycle": data.members.lifecycle[rows],
            "purchases": few.astype(np.str_),
        },
        test_members=test_members,
        n_items=n_items,
    )


# -- rankers ---------------------------------------------------------------------------------


def blend_ranker(blender: Blender) -> Ranker:
    """Rank through the serving blend (engine.blend).

    The "all" call scores each member's candidates once and keeps the "new" ranking of the
    same scores (:meth:`Blender.rank_both`); the "new" call then reads it for its members,
    which are a subset. Any other call ranks afresh.
    """
    cache: dict[str, IntArray] = {}

    def rank(rows: IntArray, k: int, exclude_purchased: bool) -> IntArray:
        if not exclude_purchased:
            everything, new = blender.rank_both(rows, k)
            order = np.argsort(rows, kind="stable")
            cache.update(rows=rows[order], new=new.items[order])
            return everything.items
        known, ranked = cache.get("rows"), cache.get("new")
        if known is not None and ranked is not None and ranked.shape[1] == k and known.size:
            position = np.minimum(np.searchsorted(known, rows), known.size - 1)
            if bool(np.all(known[position] == rows)):
                return ranked[position]
        return blender.rank(rows, k, exclude_purchased=True).items

    return rank


def served_ranker(
    blender: Blender, catalog: ItemCatalog, member_tiers: IntArray, share: float
) -> Ranker:
    """Rank what the service serves (the kernel, engine.ranking.kernel): the blend's candidates, then tier
    eligibility (the member's tier at the cutoff; unknown: the lowest, as the service treats a
    member without a profile), availability, the purchased-items policy ("new" excludes every
    bought item), the diversity cap and the fallback fill."""

    served = kernel.Ranker(blender, catalog, share=share)

    def rank(rows: IntArray, k: int, exclude_purchased: bool) -> IntArray:
        out = np.full((rows.size, k), -1, dtype=np.int64)
        policy = kernel.Purchased.EXCLUDE if exclude_purchased else kernel.Purchased.KEEP
        for start in range(0, rows.size, _SERVED_BATCH):
            part = rows[start : start + _SERVED_BATCH]
            tiers = np.maximum(member_tiers[part], 0)
            lists = served.rank_rows(part, tiers, k, purchased=policy)
            for i, ranked in enumerate(lists):
                out[start + i, : ranked.items.size] = ranked.items[:k]
        return out

    return rank


def model_ranker(
    artifacts: ModelArtifacts,
    history: sp.csr_matrix,
    purchased: sp.csr_matrix,
    tie_break: npt.ArrayLike | None = None,
) -> Ranker:
    """Rank by a model's full score rows (``artifacts.score``) over the whole catalogue.

    ``history`` is what the model scores from (its training matrix, or the buy-again history
    for the buy-again model); ``purchased`` marks what a member bought (excluded for "new").
    ``tie_break`` (one value per item, e.g. popularity) is scaled to at most
    :data:`TIE_BREAK` and added to every score, so that items a model scores equally (the
    zeros of buy-again) are ordered by it rather than by index.
    """
    n_items = int(history.shape[1])
    offset = np.zeros(n_items, dtype=np.float32)
    if tie_break is not None:
        values = np.asarray(tie_break, dtype=np.float64)
        top = float(values.max()) if values.size else 0.0
        if top > 0:
            offset = (TIE_BREAK * values / top).astype(np.float32)

    def rank(rows: IntArray, k: int, exclude_purchased: bool) -> IntArray:
        out = np.full((rows.size, k), -1, dtype=np.int64)
        batch = max(1, _DENSE_CELLS // max(n_items, 1))
        for start in range(0, rows.size, batch):
            part = rows[start : start + batch]
            scores = artifacts.score(part, history[part]) + offset
            if exclude_purchased:
                bought = purchased[part]
                scores[
                    np.repeat(np.arange(part.size), np.diff(bought.indptr)), bought.indices
                ] = -np.inf
            out[start : start + part.size] = top_k(scores, k)
        return out

    return rank


def top_k(scores: npt.NDArray[np.float32], k: int) -> IntArray:
    """Column indexes of the ``k`` best finite scores per row (ties: lower index first)."""
    n_rows, n_cols = scores.shape
    take = min(k, n_cols)
    part = np.argpartition(-scores, take - 1, axis=1)[:, :take] if n_cols > take else None
    if part is None:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    items = np.take_along_axis(part, order, axis=1).astype(np.int64)
    items[~np.isfinite(np.take_along_axis(values, order, axis=1))] = -1
    if take < k:
        items = np.hstack([items, np.full((n_rows, k - take), -1, dtype=np.int64)])
    return items


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelResult:
    """One ranker's results: summaries per (variant, k) and breakdowns at the headline K."""

    name: str
    summaries: dict[tuple[str, int], RankingSummary]
    #: (variant, breakdown, group) -> summary at the headline K
    breakdowns: dict[tuple[str, str, str], RankingSummary]
    seconds: float
    #: variant -> the ranked items (evaluated members of that variant x max K)
    rankings: dict[str, IntArray] = field(default_factory=dict)

    def value(self, metric: str, k: int, variant: str) -> float:
        """One of :data:`METRICS` at ``k`` for ``variant`` ("all" or "new")."""
        return _get(self.summaries[(variant, k)], metric)


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    """Every ranker's results on one evaluation set."""

    ks: tuple[int, ...]
    headline_k: int
    members: dict[str, int]
    test_members: int
    results: list[ModelResult] = field(default_factory=list)

    def result(self, name: str) -> ModelResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no evaluation result named {name!r}")

    def metrics(self, main: str = "blend") -> dict[str, float]:
        """Flat metric names for tracking: the main ranker as ``ndcg@10/all``, its breakdowns
        as ``ndcg@10/all/tier=gold``, other rankers as ``<name>/ndcg@10/all``."""
        out: dict[str, float] = {
            "eval/test_members": float(self.test_members),
            **{f"eval/members_{variant}": float(n) for variant, n in self.members.items()},
        }
        for r in self.results:
            prefix = "" if r.name == main else f"{r.name}/"
            for (variant, k), summary in r.summaries.items():
                for metric in METRICS:
                    out[f"{prefix}{metric}@{k}/{variant}"] = _get(summary, metric)
            if r.name != main:
                continue
            for (variant, breakdown, group), summary in r.breakdowns.items():
                for metric in ("ndcg", "recall", "hit_rate"):
                    name = f"{metric}@{self.headline_k}/{variant}/{breakdown}={group}"
                    out[name] = _get(summary, metric)
                out[f"members@{self.headline_k}/{variant}/{breakdown}={group}"] = float(
                    summary.n_members
                )
        return out

    def frame(self) -> pl.DataFrame:
        """Long table: model, variant, k, breakdown, group, members, and every metric."""
        records: list[dict[str, object]] = []
        for r in self.results:
            for (variant, k), s in r.summaries.items():
                records.append(_record(r.name, variant, k, "overall", "all", s))
            for (variant, breakdown, group), s in r.breakdowns.items():
                records.append(_record(r.name, variant, self.headline_k, breakdown, group, s))
        return pl.DataFrame(records)

    def table(self, k: int | None = None) -> str:
        """A fixed-width comparison table at ``k`` (default: the headline K), both variants."""
        k = self.headline_k if k is None else k
        header = f"{'model':<22}" + "".join(
            f"{f'{m}@{k} {v}':>17}"
            for v in VARIANTS
            for m in ("ndcg", "recall", "map", "hit_rate", "coverage")
        )
        lines = [header, "-" * len(header)]
        for r in self.results:
            cells = "".join(
                f"{r.value(m, k, v):>17.4f}"
                for v in VARIANTS
                for m in ("ndcg", "recall", "map", "hit_rate", "coverage")
            )
            lines.append(f"{r.name:<22}{cells}")
        return "\n".join(lines)

    def markdown(self, k: int | None = None) -> str:
        """The comparison table at ``k`` as Markdown (NDCG, recall, MAP, hit rate, coverage)."""
        k = self.headline_k if k is None else k
        columns = [(m, v) for v in VARIANTS for m in ("ndcg", "recall", "map", "hit_rate")]
        columns += [("coverage", v) for v in VARIANTS]
        head = "| model | " + " | ".join(f"{m}@{k} {v}" for m, v in columns) + " |"
        rule = "|---|" + "---:|" * len(columns)
        rows = [
            f"| {r.name} | " + " | ".join(f"{r.value(m, k, v):.4f}" for m, v in columns) + " |"
            for r in self.results
        ]
        return "\n".join([head, rule, *rows])


def _get(summary: RankingSummary, metric: str) -> float:
    return float(getattr(summary, metric))


def _record(
    name: str, variant: str, k: int, breakdown: str, group: str, s: RankingSummary
) -> dict[str, object]:
    return {
        "model": name,
        "variant": variant,
        "k": k,
        "breakdown": breakdown,
        "group": group,
        "members": s.n_members,
        **{metric: _get(s, metric) for metric in METRICS},
    }


# -- evaluation ------------------------------------------------------------------------------


def evaluate_ranker(
    name: str, ranker: Ranker, eval_set: EvalSet, ks: tuple[int, ...], headline_k: int
) -> ModelResult:
    """Rank every evaluated member once per variant at the largest K and score all metrics."""
    started = time.perf_counter()
    width = max(ks)
    summaries: dict[tuple[str, int], RankingSummary] = {}
    breakdowns: dict[tuple[str, str, str], RankingSummary] = {}
    rankings: dict[str, IntArray] = {}
    for variant in VARIANTS:
        rows, relevance, selected = eval_set.variant(variant)
        if rows.size == 0:
            continue
        ranked = ranker(rows, width, variant == "new")
        rankings[variant] = ranked
        for k in ks:
            per_member = member_metrics(ranked, relevance, k)
            coverage = catalog_coverage(ranked, eval_set.n_items, k)
            summaries[(variant, k)] = per_member.summary(coverage)
            if k == headline_k:
                for key, summary in _breakdowns(per_member, ranked, eval_set, selected, k):
                    breakdowns[(variant, *key)] = summary
    return ModelResult(name, summaries, breakdowns, time.perf_counter() - started, rankings)


def _breakdowns(
    per_member: MemberMetrics,
    ranked: IntArray,
    eval_set: EvalSet,
    selected: npt.NDArray[np.bool_],
    k: int,
) -> Iterator[tuple[tuple[str, str], RankingSummary]]:
    for breakdown, labels in eval_set.groups.items():
        labels = labels[selected]
        for group in np.unique(labels):
            mask = labels == group
            coverage = catalog_coverage(ranked[mask], eval_set.n_items, k)
            yield (breakdown, str(group)), per_member.subset(mask).summary(coverage)


def new_report(eval_set: EvalSet, ks: tuple[int, ...], headline_k: int) -> EvaluationReport:
    """An empty report for ``eval_set``; add results with ``report.results.append``."""
    return EvaluationReport(
        ks=ks,
        headline_k=headline_k,
        members={v: int(eval_set.variant(v)[0].size) for v in VARIANTS},
        test_members=eval_set.test_members,
    )


__all__ = [
    "METRICS",
    "VARIANTS",
    "EvalSet",
    "EvaluationReport",
    "ModelResult",
    "Ranker",
    "blend_ranker",
    "build_eval_set",
    "evaluate_ranker",
    "model_ranker",
    "new_report",
    "served_ranker",
    "top_k",
]
