"""Precomputing every member's serving list (engine.blend_precompute.precompute), old vs new.

What `recsys train` stores for serving ([bundle] precomputed_candidates = 50,
precomputed_per_category = 10): each member's first 50 items of the blend, at most 10 of one
category, over an exact item index, on every core (2 threads here). Both routes run in the same
process on the same data, alternately, ``repeats`` times each; reported as median seconds per
1M members (target: at most 60 s):

* ``old``: the plain route precompute took before (and still takes for what the new one cannot
  decide): :meth:`Blender.rank` over each member's whole candidate set (FAISS search of the 200
  embedding candidates over every item), then the category cap.
* ``new``: the norm-ordered exact search of the 99 best embedding items, a bound on what deeper
  items could score, the plain route only for the lists the bound cannot decide.

No approximation: the new lists must equal the old ones. Reported as the share of lists with
the same items in the same order, the recall of the new lists against the old (exact) ones,
and the largest relative score difference (float rounding of the dot products; the old route
itself differs that much between batch sizes).

Data: synthetic ALS-like inputs with the 20M benchmark's shape and blend weights (buy_again 10,
trending 0.5): 100k items whose vector norms follow popularity (norm ~ buyers^0.7, as a trained
ALS bundle shows), members pointing towards what they bought, ~12 purchases each, members
without purchases at the zero vector, 19 categories. BENCH_PRECOMPUTE_BUNDLE=<bundle folder>
measures a trained bundle instead (its vectors, history, trending, categories and weights);
BENCH_PRECOMPUTE_MEMBERS caps the members (a random subset), BENCH_PRECOMPUTE_REPEATS sets
the repeats. The machine is shared: besides wall time, CPU seconds of the whole process (every
thread) per 1M members are reported, which other processes' load disturbs much less.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import copy
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from benchmarks.harness import Result
from engine.blend import Blender, BlendWeights
from engine.blend_precompute import PrecomputedCandidates, precompute
from engine.bundle import read_bundle
from engine.bundle_recommender import BundleRecommender
from engine.index import IndexConfig, build_index

SCALES = {
    "full": {"members": 200_000, "items": 100_000, "repeats": 3},
    "small": {"members": 20_000, "items": 20_000, "repeats": 3},
}
DIM = 64
WIDTH = 50
PER_CATEGORY = 10
CATEGORIES = 19
TARGET_S_PER_1M = 60.0
#: the blend weights of benchmarks/bench_train.py (candidates 200, trending candidates 100)
WEIGHTS = BlendWeights(embedding=1.0, buy_again=10.0, trending=0.5)


def _synthetic(n_members: int, n_items: int, seed: int = 5) -> tuple[Blender, np.ndarray]:
    """ALS-like blend inputs (module docstring) and a category code per item."""
    rng = np.random.default_rng(seed)
    popularity = np.arange(1, n_items + 1, dtype=np.float64) ** -0.9
    popularity = popularity[rng.permutation(n_items)]
    popularity /= popularity.sum()
    lengths = np.minimum(rng.poisson(12.0, n_members), 5 * 12)
    lengths[rng.random(n_members) < 0.11] = 0  # no purchase: the model knows nothing
    rows = np.repeat(np.arange(n_members), lengths)
    cols = rng.choice(n_items, size=rows.size, p=popularity)
    values = rng.lognormal(-0.2, 0.8, size=rows.size).astype(np.float32)
    history = sp.csr_matrix((values, (rows, cols)), shape=(n_members, n_items))
    history.sum_duplicates()
    buyers = np.bincount(history.indices, minlength=n_items).astype(np.float32)
    basis = rng.standard_normal((16, DIM)).astype(np.float32)
    mix = rng.dirichlet(np.full(16, 0.3), size=n_items).astype(np.float32)
    directions = mix @ basis + 0.7 * rng.standard_normal((n_items, DIM), dtype=np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    items = directions * (0.02 * (buyers + 0.2) ** 0.7)[:, None]
    members = np.asarray(history @ directions, dtype=np.float32)
    members += 0.3 * rng.standard_normal(members.shape, dtype=np.float32) * (lengths > 0)[:, None]
    norms = np.linalg.norm(members, axis=1, keepdims=True)
    members *= rng.normal(1.15, 0.3, (n_members, 1)).clip(0.2).astype(np.float32)
    members = np.divide(members, norms, out=np.zeros_like(members), where=norms > 0)
    trending = np.log1p(buyers)
    trending = (trending / max(float(trending.max()), 1e-9)).astype(np.float32)
    codes = rng.integers(0, CATEGORIES, size=n_items)
    codes[rng.random(n_items) < 0.02] = -1  # no category
    index = build_index(items, IndexConfig(kind="exact"))
    return Blender(members, items, history, trending, WEIGHTS, index=index), codes


def _from_bundle(path: Path, n_members: int | None) -> tuple[Blender, np.ndarray]:
    bundle = read_bundle(path)
    full = BundleRecommender.from_bundle(bundle).blender
    names, codes = np.unique(bundle.arrays["item_category"], return_inverse=True)
    codes = np.where(names[codes] == "", -1, codes)
    if n_members is None or n_members >= full.n_members:
        return full, codes
    rows = np.sort(np.random.default_rng(0).choice(full.n_members, n_members, replace=False))
    blender = Blender(
        full._members[rows],
        full._items,
        full.history[rows],
        full._trending,
        full.weights,
        index=full._index,
    )
    return blender, codes


def _one_blas_thread() -> AbstractContextManager[object]:
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:  # the train extra brings it; without it, the environment decides
        return nullcontext()
    limits: AbstractContextManager[object] = threadpool_limits(limits=1, user_api="blas")
    return limits


def _timed(
    precompute: Callable[[], PrecomputedCandidates],
) -> tuple[float, float, PrecomputedCandidates]:
    """Wall and CPU seconds (every thread of the process) of one precompute, and its lists."""
    started, cpu = time.perf_counter(), time.process_time()
    lists = precompute()
    return time.perf_counter() - started, time.process_time() - cpu, lists


def _agreement(new: PrecomputedCandidates, old: PrecomputedCandidates) -> dict[str, object]:
    same_lists = (new.items == old.items).all(axis=1)
    filled = old.items >= 0
    rows, _ = np.nonzero(filled)
    key_old = rows.astype(np.int64) * (1 << 32) + old.items[filled]
    key_new = np.nonzero(new.items >= 0)[0].astype(np.int64) * (1 << 32) + new.items[new.items >= 0]
    recall = np.isin(key_old, key_new).mean() if key_old.size else 1.0
    scale = np.maximum(np.abs(old.scores), 1e-30)
    return {
        "lists_identical_share": round(float(same_lists.mean()), 6),
        "lists_differing": int((~same_lists).sum()),
        "recall_vs_exact": round(float(recall), 6),
        "sources_identical_share": round(float((new.sources == old.sources).all(axis=1).mean()), 6),
        "max_relative_score_difference": float(np.max(np.abs(new.scores - old.scores) / scale)),
    }


def run(scale: str) -> list[Result]:
    cfg = SCALES[scale]
    bundle = os.environ.get("BENCH_PRECOMPUTE_BUNDLE")
    members = os.environ.get("BENCH_PRECOMPUTE_MEMBERS")
    started = time.perf_counter()
    if bundle:
        blender, codes = _from_bundle(Path(bundle), int(members) if members else None)
        source = f"bundle {bundle}"
    else:
        blender, codes = _synthetic(int(members or cfg["members"]), cfg["items"])
        source = "synthetic ALS-like"
    print(f"{source}: {blender.n_members:,} members x {blender.n_items:,} items "
          f"({time.perf_counter() - started:.0f} s to build)", flush=True)  # fmt: skip
    threads = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)

    def new() -> PrecomputedCandidates:
        return precompute(
            blender, WIDTH, categories=codes, per_category=PER_CATEGORY, threads=threads
        )

    plain = copy.copy(blender)  # the same inputs (shared), the plain route for every list
    setattr(plain, "_pruned_search", lambda: None)  # noqa: B010 (a method, patched on a copy)

    def old() -> PrecomputedCandidates:
        return precompute(
            plain, WIDTH, categories=codes, per_category=PER_CATEGORY, threads=threads
        )

    times: dict[str, list[float]] = {"old": [], "new": []}
    cpu: dict[str, list[float]] = {"old": [], "new": []}
    lists: dict[str, PrecomputedCandidates] = {}
    with _one_blas_thread():
        for repeat in range(int(os.environ.get("BENCH_PRECOMPUTE_REPEATS", cfg["repeats"]))):
            for name, route in (("new", new), ("old", old)):
                seconds, cpu_seconds, lists[name] = _timed(route)
                times[name].append(seconds)
                cpu[name].append(cpu_seconds)
                print(
                    f"  {name} #{repeat + 1}: {seconds:.1f} s ({cpu_seconds:.1f} s CPU)", flush=True
                )
    per_1m = {name: statistics.median(t) * 1e6 / blender.n_members for name, t in times.items()}
    cpu_1m = {name: statistics.median(t) * 1e6 / blender.n_members for name, t in cpu.items()}
    stages = dict(blender.precompute_stages)
    agreement = _agreement(lists["new"], lists["old"])
    shape = f"{blender.n_members:,} members x {blender.n_items:,} items, {threads} threads"
    return [
        Result(
            name=f"precompute old (rank + cap), {shape}",
            seconds=round(per_1m["old"], 2),
            target="s per 1M members (baseline)",
            extra={
                "runs_s": [round(t, 2) for t in times["old"]],
                "cpu_s_per_1m": round(cpu_1m["old"], 1),
                "data": source,
            },
        ),
        Result(
            name=f"precompute new (norm-ordered search + bound), {shape}",
            seconds=round(per_1m["new"], 2),
            target=f"<= {TARGET_S_PER_1M:.0f} s per 1M members",
            passed=per_1m["new"] <= TARGET_S_PER_1M and agreement["recall_vs_exact"] == 1.0,
            extra={
                "runs_s": [round(t, 2) for t in times["new"]],
                "cpu_s_per_1m": round(cpu_1m["new"], 1),
                "speedup": round(per_1m["old"] / per_1m["new"], 2),
                "speedup_cpu": round(cpu_1m["old"] / cpu_1m["new"], 2),
                "lists_decided_by_stage": stages,
                **agreement,
                "width": WIDTH,
                "per_category": PER_CATEGORY,
                "load_avg_1m": round(os.getloadavg()[0], 1),
            },
        ),
    ]
