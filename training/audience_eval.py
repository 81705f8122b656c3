"""Offline evaluation of campaign audiences: does the model pick the members who will buy?

    load dataset -> temporal split (the training config's) -> feature snapshot as of the cutoff
    -> weighted interactions and the buy-again history -> fit the configured model (the same
    kind of vectors the served bundle has) -> for each seed (top categories by buyers before
    the cutoff, a seeded sample of items): build the model audience of size N with
    engine.audience.AudienceScorer over every eligible member, and three baseline audiences of
    the same size -> measure who bought the seed in the test window

The model audience is exactly what serving and ``recsys audience build`` serve: the scorer is
given the model's vectors and the blend's buy-again history of the training data (the matrix
a bundle stores as ``buy_again``), so its score is the engine's: member . seed plus
``history_weight`` times the member's own history with the seed items (docs/audiences.md,
"Scoring"). ``history_weight = 0`` measures the pure vector score.

Eligible members are the members known before the cutoff (the snapshot's members). For a seed
(a category, or one item) the **buyers** are the eligible members with a purchase line
(quantity > 0) of one of its items in the test window. N is the number of buyers (then
precision = recall for every method), or a fixed ``size``.

Per seed and method: ``precision@N = audience buyers / N`` (an audience shorter than N counts
the missing places as misses), ``recall = audience buyers / buyers``, and ``lift`` of the
model over each baseline = model precision / baseline precision. Baselines:

* ``random``: N random eligible members; its expected precision is the base rate
  ``buyers / eligible``, computed exactly (no sampling);
* ``rfm``: the top N eligible members by monetary (net spend in the RFM window);
* ``bought_before``: the members who bought the seed before the cutoff, ranked by their net
  spend on it, then (when fewer than N) the others by monetary.

Ties are broken by snapshot row (member id order) everywhere. Averages are taken over seeds
of one kind (categories, items) separately: the mean precision and recall of each method, the
lift of the means, and the mean of the per-seed lifts.

The metric arithmetic, the baselines' audiences and the report are in training.audience_report;
this module runs the evaluation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from engine.audience import (
    HISTORY_WEIGHT,
    AudienceDefinition,
    AudienceScorer,
    ItemSide,
    Seed,
    Size,
)
from engine.ids import IdMap
from feature_store.dataset import LoadOptions, load_dataset, table_path
from feature_store.errors import DataError
from feature_store.member_columns import read_item_columns, read_member_columns
from feature_store.offline import (
    open_snapshot,
    source_fingerprint,
)
from feature_store.policy import load_policy
from feature_store.schema import ITEMS, MEMBERS, PURCHASES
from training.audience_report import (
    KINDS,
    MODEL,
    REPORT_CSV,
    REPORT_JSON,
    AudienceEvalReport,
    BoolArray,
    FloatArray,
    IntArray,
    SeedResult,
    audience_result,
    bought_before_audience,
    random_result,
    rfm_audience,
    summarise,
)
from training.config import TrainConfig
from training.data import PreparedData, SnapshotFrames, prepare
from training.fitting import fit_model
from training.stage import write_cutoff_snapshot
from training.windows import resolve_split

Progress = Callable[[str], None]
#: called after each seed with (seeds done, seeds in all)
Tick = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class AudienceEvalOptions:
    """What ``recsys audience evaluate`` was asked to do.

    Attributes:
        data: dataset folder (members, items, purchases).
        config: the training configuration (split, weights, model) whose vectors are scored.
        out: report folder: audience_eval.json, audience_eval.csv and the snapshot.
        categories: evaluate the top this many categories by buyers before the cutoff.
        items: evaluate a seeded sample of this many items.
        size: a fixed audience size N; None: N = the seed's buyers in the test window.
        seed: random seed of the item sample.
        min_item_buyers: sample only items with at least this many buyers in the test window
            (and at least one before the cutoff).
        history_weight: the scorer's weight of the member's history with the seed items
            (engine.audience.AudienceScorer; default the engine's); 0 = pure vector score.
    """

    data: Path
    config: TrainConfig
    out: Path
    categories: int = 20
    items: int = 20
    size: int | None = None
    seed: int = 0
    min_item_buyers: int = 5
    history_weight: float = HISTORY_WEIGHT

    def __post_init__(self) -> None:
        for name in ("categories", "items", "min_item_buyers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.size is not None and self.size < 1:
            raise ValueError(f"size: must be >= 1, got {self.size}")
        if not math.isfinite(self.history_weight) or self.history_weight < 0:
            raise ValueError(
                f"history_weight: must be a finite number >= 0, got {self.history_weight}"
            )


# -- the evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Truth:
    """Members (attribute rows) x items (model item rows) facts, as CSR matrices."""

    test: sp.csr_matrix  # bool: bought in the test window
    before: sp.csr_matrix  # bool: bought (quantity > 0) before the cutoff
    spend: sp.csr_matrix  # float: net spend before the cutoff (returns subtract)


def evaluate_audiences(
    options: AudienceEvalOptions,
    progress: Progress | None = None,
    tick: Tick | None = None,
) -> AudienceEvalReport:
    """Run the evaluation (see the module docstring) and write the reports to ``options.out``."""
    step = progress or (lambda _: None)
    config = options.config
    timings: dict[str, float] = {}
    started = time.perf_counter()
    policy = load_policy(config.policy)
    tiers = policy.tiers.names

    step("loading dataset")
    loaded = load_dataset(options.data, LoadOptions(tiers=tiers))
    dataset = loaded.dataset
    split = resolve_split(config.split, dataset.purchases)
    as_of = split.cutoff.date()

    step(f"feature snapshot as of {as_of}")
    files = [table_path(options.data, spec) for spec in (MEMBERS, ITEMS, PURCHASES)]
    snapshot_dir = options.out / "snapshot"
    tables = write_cutoff_snapshot(
        options.data,
        dataset,
        policy,
        as_of,
        snapshot_dir,
        source_fingerprint(files),
        loaded.report.rejected_count,
    )
    snapshot = open_snapshot(snapshot_dir)
    attributes = read_member_columns(snapshot)
    item_columns = read_item_columns(snapshot)
    frames = SnapshotFrames.from_tables(tables, tiers)
    timings["features_s"] = time.perf_counter() - started

    step("weighted interactions")
    data = prepare(dataset, frames, split, config.weights, config.blend)
    del dataset, loaded
    confidence = data.confidence(config.weights)

    t = time.perf_counter()
    step(f"fitting {config.model.kind}")
    member_vectors, item_vectors = _fit(config, confidence, data, frames)
    timings["fit_s"] = time.perf_counter() - t

    # Attribute rows (snapshot order) <-> model rows; items in the model's (bundle) order.
    attr_of_model = IdMap(attributes.member_ids).lookup(data.member_ids.ids)
    item_order = data.item_ids.lookup(item_columns.item_ids)
    if np.any(attr_of_model < 0) or np.any(item_order < 0) or item_order.size != data.n_items:
        raise DataError(
            f"{snapshot_dir}: the snapshot's members or items differ from the training data's"
        )
    by_model = np.argsort(item_order)  # item_columns row of each model item
    items = ItemSide(
        ids=data.item_ids,
        vectors=item_vectors,
        categories=item_columns.categories[by_model],
        tags=sp.csr_array(item_columns.tags[by_model]),
        tag_names=item_columns.tag_names,
        popularity=item_columns.buyers[by_model].astype(np.float64),
    )
    # the serving scorer: model vectors + the blend's buy-again history (bundle "buy_again")
    scorer = AudienceScorer(
        attributes,
        member_vectors,
        data.member_ids,
        items,
        history=data.history,
        history_weight=options.history_weight,
    )
    truth = _truth(data, attr_of_model, len(attributes))
    monetary = np.asarray(attributes.monetary, dtype=np.float64)
    n_eligible = len(attributes)

    step("choosing seeds")
    seeds = _category_seeds(truth, items.categories, options.categories) + _item_seeds(
        truth, data.item_ids, options.items, options.min_item_buyers, options.seed
    )

    t = time.perf_counter()
    step(f"evaluating {len(seeds)} audiences")
    results: list[SeedResult] = []
    skipped: list[str] = []
    for done, (kind, name, seed) in enumerate(seeds, start=1):
        result = _evaluate_seed(kind, name, seed, scorer, truth, monetary, options)
        if result is None:
            skipped.append(f"{kind}:{name}")
        else:
            results.append(result)
        if tick is not None:
            tick(done, len(seeds))
    timings["audiences_s"] = time.perf_counter() - t
    if not results:
        raise DataError(
            f"no seed has a buyer between {split.cutoff_date} and {split.test_last_day}: "
            "nothing to evaluate; choose another cutoff or a longer test window"
        )
    summaries = {
        kind: s
        for kind in KINDS
        if (s := summarise(kind, [r for r in results if r.kind == kind])) is not None
    }
    timings["total_s"] = time.perf_counter() - started
    report = AudienceEvalReport(
        split=split,
        config=config.name,
        model_kind=config.model.kind,
        eligible=n_eligible,
        size=options.size,
        results=results,
        summaries=summaries,
        facts={
            "members": data.n_members,
            "items": data.n_items,
            "train_lines": len(data.lines),
            "test_pairs": int(data.test_member.size),
            "skipped_seeds": skipped,
            "item_sample_seed": options.seed,
            "min_item_buyers": options.min_item_buyers,
            "history_weight": options.history_weight,
            "model_params": {k: v for k, v in config.model.params.items()},
            "snapshot": str(snapshot_dir),
        },
        timings=timings,
    )
    report.write(options.out)
    return report


def _fit(
    config: TrainConfig, confidence: sp.csr_matrix, data: PreparedData, frames: SnapshotFrames
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    artifacts = fit_model(config.model.kind, dict(config.model.params), confidence, data, frames)
    if artifacts.member_vectors is None or artifacts.item_vectors is None:
        raise DataError(f"model {artifacts.kind!r} exported no member and item vectors")
    return artifacts.member_vectors, artifacts.item_vectors


def _truth(data: PreparedData, attr_of_model: IntArray, n_attr: int) -> _Truth:
    """Test purchases, past purchases and past spend per (attribute row, item)."""
    shape = (n_attr, data.n_items)
    test = sp.csr_matrix(
        (
            np.ones(data.test_member.size, dtype=np.bool_),
            (attr_of_model[data.test_member], data.test_item),
        ),
        shape=shape,
    )
    lines = data.lines
    member = attr_of_model[lines.member]
    bought = lines.quantity > 0
    before = sp.csr_matrix(
        (np.ones(int(bought.sum()), dtype=np.float64), (member[bought], lines.item[bought])),
        shape=shape,
    )
    before.sum_duplicates()
    before.data = np.ones_like(before.data)
    spend = sp.csr_matrix(
        (np.asarray(lines.amount, dtype=np.float64), (member, lines.item)), shape=shape
    )
    spend.sum_duplicates()
    return _Truth(test.astype(np.bool_), before.astype(np.bool_), spend)


def _per_category(matrix: sp.csr_matrix, codes: IntArray, n: int) -> FloatArray:
    onehot = sp.csr_matrix(
        (np.ones(codes.size), (np.arange(codes.size), codes)), shape=(codes.size, n)
    )
    return np.asarray((matrix.astype(np.float64) @ onehot).toarray())


def _category_seeds(
    truth: _Truth, categories: npt.NDArray[np.str_], top: int
) -> list[tuple[str, str, Seed]]:
    """The top categories by distinct buyers before the cutoff (ties by name)."""
    if top == 0:
        return []
    names, codes = np.unique(categories, return_inverse=True)
    buyers = (_per_category(truth.before, codes.astype(np.int64), names.size) > 0).sum(axis=0)
    order = np.lexsort((names, -buyers))
    chosen = [i for i in order if names[i] != "" and buyers[i] > 0][:top]
    return [("category", str(names[i]), Seed(categories=(str(names[i]),))) for i in chosen]


def _item_seeds(
    truth: _Truth, item_ids: IdMap, count: int, min_buyers: int, seed: int
) -> list[tuple[str, str, Seed]]:
    """A seeded uniform sample of items bought before the cutoff with at least ``min_buyers``
    buyers in the test window (sorted by id)."""
    if count == 0:
        return []
    before = np.diff(truth.before.tocsc().indptr)
    test = np.diff(truth.test.tocsc().indptr)
    pool = np.flatnonzero((before > 0) & (test >= max(min_buyers, 1)))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(pool, size=min(count, pool.size), replace=False))
    ids = item_ids.ids_at(chosen)
    return [("item", str(i), Seed(items=(str(i),))) for i in ids]


def _evaluate_seed(
    kind: str,
    name: str,
    seed: Seed,
    scorer: AudienceScorer,
    truth: _Truth,
    monetary: FloatArray,
    options: AudienceEvalOptions,
) -> SeedResult | None:
    seed_items = np.asarray(scorer.seed_items(seed), dtype=np.int64)
    bought = _any(truth.test, seed_items)
    buyers = int(bought.sum())
    size = options.size if options.size is not None else buyers
    if size == 0:
        return None
    audience = scorer.build(AudienceDefinition(seed=seed, size=Size(top_n=size), name=name))
    before = _any(truth.before, seed_items)
    spend = np.asarray(truth.spend[:, seed_items].sum(axis=1)).ravel()
    methods = {
        MODEL: audience_result(np.asarray(audience.rows, dtype=np.int64), size, bought),
        "random": random_result(size, bought),
        "rfm": audience_result(rfm_audience(monetary, size), size, bought),
        "bought_before": audience_result(
            bought_before_audience(before, spend, monetary, size), size, bought
        ),
    }
    return SeedResult(
        kind=kind,
        seed=name,
        size=size,
        buyers=buyers,
        eligible=int(bought.shape[0]),
        bought_before=int(before.sum()),
        methods=methods,
    )


def _any(matrix: sp.csr_matrix, columns: IntArray) -> BoolArray:
    return np.asarray(matrix[:, columns].sum(axis=1)).ravel() > 0


def track(report: AudienceEvalReport, out: Path, tracking_uri: str | None) -> str:
    """Log the report to MLflow (experiment ``audience-eval``); returns the run id."""
    from training.tracking import Tracker

    tracker = Tracker(tracking_uri, experiment="audience-eval")
    name = f"{report.config}-{report.model_kind}-audiences-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with tracker.start_run(name, tags={"cutoff": report.split.cutoff_date}) as run:
        run.log_params(
            {
                "config": report.config,
                "model.kind": report.model_kind,
                "size": report.size if report.size is not None else "buyers",
                "cutoff": report.split.cutoff_date,
                "test_last_day": report.split.test_last_day,
            }
        )
        run.log_metrics(report.metrics())
        run.log_artifact(out / REPORT_JSON, "audience_eval")
        run.log_artifact(out / REPORT_CSV, "audience_eval")
        return run.run_id


__all__ = [
    "AudienceEvalOptions",
    "evaluate_audiences",
    "track",
]
