"""Campaign audience scoring (engine.audience): seed -> filtered, ranked audience.

Full scale: 1,000,000 members and 100,000 items with 64-dim vectors; an audience of the top
100,000 members for an item seed with a tier filter (gold, platinum, diamond) and a lifecycle
filter (active, at_risk), built by :meth:`AudienceScorer.build` (exact scores for every member
plus the history term from a buy-again matrix of 4 items per member, as serving passes the
bundle's, filters, ordering, percentiles, breakdowns). Target: under 1 s median. Also timed: aligning the
scorer once (id lookup of every member), and a category seed with tags and a top-percent size.

Member attributes are synthetic arrays shaped like feature_store.member_columns.MemberColumns
(about 10% of members without a vector); vectors are ALS-like (benchmarks/bench_index.py).
In-process timings (time.perf_counter), BLAS single-threaded as in serving.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmarks.bench_index import _Factors
from benchmarks.harness import Result
from engine.audience import (
    AudienceDefinition,
    AudienceScorer,
    Filters,
    ItemSide,
    Seed,
    Size,
    TagFilter,
)
from engine.ids import IdMap

SCALES = {
    "full": {"members": 1_000_000, "items": 100_000, "top_n": 100_000, "runs": 7},
    "small": {"members": 50_000, "items": 10_000, "top_n": 5_000, "runs": 5},
}
TARGET_S = 1.0
#: purchase-history items per member of the synthetic buy-again matrix
HISTORY_ITEMS = 4
TIERS = ("regular", "silver", "gold", "platinum", "diamond")
STAGES = ("new", "active", "at_risk", "churned")
SEGMENTS = tuple(f"segment_{i}" for i in range(11))
REGIONS = tuple(f"region_{i}" for i in range(20))
TAGS = tuple(f"tag_{i}" for i in range(30))
CATEGORIES = tuple(f"category_{i}" for i in range(50))


@dataclass(frozen=True, slots=True)
class _Members:
    member_ids: np.ndarray
    tier_codes: np.ndarray
    tier_names: tuple[str, ...]
    lifecycle_codes: np.ndarray
    lifecycle_names: tuple[str, ...]
    segment_codes: np.ndarray
    segment_names: tuple[str, ...]
    region_codes: np.ndarray
    region_names: tuple[str, ...]
    tags: Any
    tag_names: tuple[str, ...]
    birth_month: np.ndarray
    points: np.ndarray
    joined_at: np.ndarray


def _members(n: int, rng: np.random.Generator) -> _Members:
    ids = np.char.add("M", np.char.zfill(np.arange(n).astype(str), 7))
    tags = sp.random_array(
        (n, len(TAGS)), density=0.05, format="csr", dtype=np.float64, rng=rng
    ).astype(np.bool_)
    return _Members(
        member_ids=ids,
        tier_codes=rng.choice(len(TIERS), n, p=[0.5, 0.25, 0.15, 0.07, 0.03]).astype(np.int16),
        tier_names=TIERS,
        lifecycle_codes=rng.integers(0, len(STAGES), n).astype(np.int16),
        lifecycle_names=STAGES,
        segment_codes=rng.integers(-1, len(SEGMENTS), n).astype(np.int16),
        segment_names=SEGMENTS,
        region_codes=rng.integers(-1, len(REGIONS), n).astype(np.int16),
        region_names=REGIONS,
        tags=tags,
        tag_names=TAGS,
        birth_month=rng.integers(0, 13, n).astype(np.int8),
        points=rng.integers(0, 10_000, n).astype(np.float64),
        joined_at=np.datetime64("2015-01-01", "us")
        + rng.integers(0, 3_000, n) * np.timedelta64(86_400_000_000, "us"),
    )


def _history(
    n: int, n_items: int, popularity: np.ndarray | None, rng: np.random.Generator
) -> sp.csr_array:
    """A buy-again matrix with HISTORY_ITEMS items per member, drawn by popularity, with
    recency weights in (0, 3]."""
    p = None if popularity is None else popularity / popularity.sum()
    columns = rng.choice(n_items, n * HISTORY_ITEMS, p=p)
    rows = np.repeat(np.arange(n), HISTORY_ITEMS)
    values = rng.uniform(0.05, 3.0, n * HISTORY_ITEMS)
    matrix = sp.csr_array((values, (rows, columns)), shape=(n, n_items))
    matrix.sum_duplicates()
    return matrix


def _timed(scorer: AudienceScorer, definitions: list[AudienceDefinition]) -> list[float]:
    scorer.build(definitions[0])  # warm up
    times = []
    for definition in definitions:
        started = time.perf_counter()
        scorer.build(definition)
        times.append(time.perf_counter() - started)
    return times


def run(scale: str) -> list[Result]:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    cfg = SCALES[scale]
    n, n_items, top_n, runs = cfg["members"], cfg["items"], cfg["top_n"], cfg["runs"]
    rng = np.random.default_rng(11)
    factors = _Factors(seed=42)
    members = _members(n, rng)
    has_vector = rng.random(n) < 0.9
    model_ids = members.member_ids[has_vector]
    member_vectors = factors.draw(int(model_ids.size))
    item_ids = np.char.add("I", np.char.zfill(np.arange(n_items).astype(str), 6))
    items = ItemSide(
        ids=IdMap(item_ids),
        vectors=factors.draw(n_items),
        categories=np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), n_items)],
        tags=sp.random_array(
            (n_items, len(TAGS)), density=0.05, format="csr", dtype=np.float64, rng=rng
        ).astype(np.bool_),
        tag_names=TAGS,
        popularity=rng.poisson(20, n_items).astype(np.float64),
    )
    model_map = IdMap(model_ids)
    history = _history(int(model_ids.size), n_items, items.popularity, rng)

    started = time.perf_counter()
    scorer = AudienceScorer(members, member_vectors, model_map, items, history=history)
    align_s = time.perf_counter() - started

    seeds = item_ids[rng.choice(n_items, runs * 3, replace=False)]
    filters = Filters(tiers=("gold", "platinum", "diamond"), lifecycle=("active", "at_risk"))
    main = [
        AudienceDefinition(
            seed=Seed(items=tuple(seeds[3 * r : 3 * r + 3].tolist())),
            size=Size(top_n=top_n),
            filters=filters,
        )
        for r in range(runs)
    ]
    times = _timed(scorer, main)
    audience = scorer.build(main[0])
    median = statistics.median(times)
    results = [
        Result(
            name=f"audience top {top_n:,} of {n:,} (tier+lifecycle)",
            seconds=median,
            target=f"median < {TARGET_S:g} s" if scale == "full" else "",
            passed=median < TARGET_S if scale == "full" else None,
            extra={
                "median_s": round(median, 4),
                "max_s": round(max(times), 4),
                "runs": len(times),
                "eligible": audience.counts["eligible"],
                "scored": audience.counts["scored"],
                "selected": audience.counts["selected"],
                "items": n_items,
                "dim": member_vectors.shape[1],
                "history_nnz": int(history.nnz),
                "history_weight": scorer.history_weight,
            },
        ),
        Result(
            name=f"align scorer ({n:,} members, once)",
            seconds=align_s,
            extra={"members_with_vector": int(model_ids.size)},
        ),
    ]
    themed = [
        AudienceDefinition(
            seed=Seed(categories=(CATEGORIES[r],), item_tags=(TAGS[r],)),
            size=Size(top_percent=10, min_score=0.0),
            filters=Filters(
                tags=TagFilter(any_of=TAGS[:5], none_of=(TAGS[29],)),
                points_min=100,
                regions=REGIONS[:10],
            ),
        )
        for r in range(runs)
    ]
    times = _timed(scorer, themed)
    results.append(
        Result(
            name="audience category+tag seed, tag/points/region filters",
            seconds=statistics.median(times),
            extra={"median_s": round(statistics.median(times), 4), "runs": len(times)},
        )
    )
    return results
