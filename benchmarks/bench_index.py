"""Vector search speed and HNSW recall on ALS-like vectors (engine.index), plus id-map loading.

Full scale: 100k item vectors x 64 dims searched by member-like queries (one query per call,
as a request would), exact vs HNSW at several efSearch values, with HNSW recall@10 measured
against exact search; 1M member vectors x 64 searched exactly for an audience (top 1,000 and
10,000 members for one seed vector); loading an id map of 1M ids.

The vectors are synthetic: a low-rank mixture plus noise, with log-normal norms standing in for
popularity, like ALS factors. Recall on real factors can differ a lot (ARCHITECTURE.md §6):
set BENCH_INDEX_BUNDLE=<bundle folder> to measure on a trained bundle's item_vectors and
member_vectors instead.

In-process timings (time.perf_counter); FAISS runs one thread, as in serving.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import Result
from engine.bundle import read_bundle
from engine.ids import IdMap
from engine.index import IndexConfig, VectorIndex, build_index, set_threads

SCALES = {
    # items, members, single-query searches timed per configuration
    "full": {"items": 100_000, "members": 1_000_000, "queries": 1_000, "audience_runs": 20},
    "small": {"items": 10_000, "members": 50_000, "queries": 200, "audience_runs": 5},
}
DIM = 64
RANK = 16
K = 10
EF_SEARCH = (16, 32, 64, 128, 256)
HNSW_M = 32
EF_CONSTRUCTION = 200
#: Recall@10 the default configuration (efSearch 128) should reach on these vectors.
MIN_RECALL = 0.95


class _Factors:
    """ALS-like vectors: points on a low-rank mixture plus noise, with skewed norms."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.basis = self.rng.standard_normal((RANK, DIM)).astype(np.float32)

    def draw(self, n: int, chunk: int = 200_000) -> np.ndarray:
        out = np.empty((n, DIM), dtype=np.float32)
        for start in range(0, n, chunk):  # chunks keep float64 temporaries small
            m = min(chunk, n - start)
            mix = self.rng.dirichlet(np.full(RANK, 0.3), size=m).astype(np.float32)
            block = mix @ self.basis + 0.5 * self.rng.standard_normal((m, DIM), dtype=np.float32)
            norms = self.rng.lognormal(0.0, 0.8, size=m).astype(np.float32)
            out[start : start + m] = block * (norms / np.linalg.norm(block, axis=1))[:, None]
        return out


def _vectors(n_items: int, n_members: int) -> tuple[np.ndarray, np.ndarray, str]:
    bundle_path = os.environ.get("BENCH_INDEX_BUNDLE")
    if bundle_path:
        bundle = read_bundle(Path(bundle_path), mmap=True)
        items = np.ascontiguousarray(bundle.arrays["item_vectors"], dtype=np.float32)
        members = np.ascontiguousarray(bundle.arrays["member_vectors"], dtype=np.float32)
        return items, members, f"bundle {bundle_path}"
    factors = _Factors(seed=42)
    return factors.draw(n_items), factors.draw(n_members), "synthetic ALS-like"


def _latencies(index: VectorIndex, k: int, queries: np.ndarray) -> list[float]:
    """Seconds per single-query search (one query per call, as one request would do)."""
    for query in queries[:20]:  # warm up caches
        index.search(query, k)
    times = []
    for query in queries:
        started = time.perf_counter()
        index.search(query, k)
        times.append(time.perf_counter() - started)
    return times


def _summary(times: list[float]) -> dict[str, object]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "median_ms": round(statistics.median(ordered) * 1e3, 3),
        "p99_ms": round(p99 * 1e3, 3),
        "queries": len(ordered),
    }


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(
        len(set(a[a >= 0].tolist()) & set(t.tolist())) for a, t in zip(found, truth, strict=True)
    )
    return hits / truth.size


def _item_search(items: np.ndarray, queries: np.ndarray, source: str) -> list[Result]:
    results = []
    started = time.perf_counter()
    exact = build_index(items, IndexConfig(kind="exact"))
    build_exact = time.perf_counter() - started
    truth = exact.search(queries, K).ids
    times = _latencies(exact, K, queries)
    exact_median = statistics.median(times)
    results.append(
        Result(
            name=f"exact top-{K} over {len(items):,} items",
            seconds=sum(times),
            extra={**_summary(times), "build_s": round(build_exact, 2), "vectors": source},
        )
    )
    started = time.perf_counter()
    hnsw = build_index(
        items,
        IndexConfig(kind="hnsw", hnsw_m=HNSW_M, ef_construction=EF_CONSTRUCTION, threads=1),
    )
    build_hnsw = time.perf_counter() - started
    for ef in EF_SEARCH:
        index = VectorIndex.from_faiss(hnsw.faiss_index, ef_search=ef)
        recall = _recall(index.search(queries, K).ids, truth)
        times = _latencies(index, K, queries)
        checked = ef == IndexConfig().ef_search
        results.append(
            Result(
                name=f"hnsw M={HNSW_M} efSearch={ef} top-{K}",
                seconds=sum(times),
                target=f"recall@{K} >= {MIN_RECALL}" if checked else "",
                passed=(recall >= MIN_RECALL) if checked else None,
                extra={
                    **_summary(times),
                    f"recall@{K}": round(recall, 4),
                    "build_s": round(build_hnsw, 1),
                    "speedup_vs_exact_median": round(exact_median / statistics.median(times), 1),
                },
            )
        )
    return results


def _audience(members: np.ndarray, seeds: np.ndarray, runs: int) -> list[Result]:
    started = time.perf_counter()
    index = build_index(members, IndexConfig(kind="exact"))
    build = time.perf_counter() - started
    results = []
    for top in (1_000, 10_000):
        times = _latencies(index, top, seeds[:runs])
        results.append(
            Result(
                name=f"audience: exact top-{top:,} of {len(members):,} members",
                seconds=sum(times),
                extra={**_summary(times), "build_s": round(build, 2)},
            )
        )
    return results


def _id_map_load(n: int) -> Result:
    ids = np.char.add("M", np.arange(n).astype("U9"))
    np.random.default_rng(0).shuffle(ids)
    with tempfile.TemporaryDirectory() as folder:
        npy = IdMap(ids).save(Path(folder) / "ids.npy")
        text = Path(folder) / "ids.txt"
        text.write_text("\n".join(ids.tolist()) + "\n")
        npy_times, text_times = [], []
        for _ in range(3):
            started = time.perf_counter()
            loaded = IdMap.load(npy)
            npy_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            IdMap(text.read_text().split("\n")[:-1])
            text_times.append(time.perf_counter() - started)
        probe = ids[np.random.default_rng(1).integers(0, n, n)]
        started = time.perf_counter()
        loaded.lookup(probe)
        lookup = time.perf_counter() - started
    return Result(
        name=f"id map: load {n:,} ids (.npy)",
        seconds=statistics.median(npy_times),
        extra={
            "text_file_load_s": round(statistics.median(text_times), 3),
            "npy_speedup": round(statistics.median(text_times) / statistics.median(npy_times), 1),
            f"lookup_{n}_ids_s": round(lookup, 3),
        },
    )


def run(scale: str) -> list[Result]:
    sizes = SCALES[scale]
    set_threads(1)
    items, members, source = _vectors(sizes["items"], sizes["members"])
    queries = members[
        np.random.default_rng(7).choice(len(members), sizes["queries"], replace=False)
    ]
    results = _item_search(items, queries, source)
    seeds = items[
        np.random.default_rng(8).choice(len(items), sizes["audience_runs"], replace=False)
    ]
    results += _audience(members, seeds, sizes["audience_runs"])
    results.append(_id_map_load(sizes["members"]))
    return results
