"""The API service under HTTP load: latency and throughput of /recommendations against the same
server's trivial endpoint, with the result cache off and on, and a model reload under load.

Full scale (issue 5): a bundle of 100,000 items and 1,000,000 members with 64-dim vectors, built
here directly with numpy (clustered vectors, a buy-again history of about 4 items per member,
200 categories, 7% tier-restricted and 2% inactive items, an HNSW item index, each member's
precomputed list of 50 items with at most 10 per category), profiles of
200,000 of those members materialized in the machine's Redis under a random prefix (deleted
afterwards). ``recsys serve --workers 2`` runs the service in a child process; the load
generator is ``wrk`` (apt-get install wrk) with 64 connections, each request for a random member
(a Lua script), 2 load threads. Measured in one run:

1. ``/healthz`` (the trivial JSON endpoint) and ``/recommendations`` with the cache off:
   target p99 < 25 ms and throughput >= 50% of the trivial endpoint's;
2. the same with the cache on (members drawn from 5,000, so that most requests hit);
3. ``/recommendations`` under load while ``POST /v1/models/reload`` switches to a second bundle
   and back: target zero failed requests (non-2xx or socket errors);
4. memory of the worker processes (RSS and PSS) against the raw size of the bundle's vectors
   and indexes.

Small scale (BENCH_SCALE=small) runs the same steps on 5,000 items and 20,000 members.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmarks.harness import Result

SCALES: dict[str, dict[str, int]] = {
    "full": {
        "items": 100_000,
        "members": 1_000_000,
        "dim": 64,
        "profiles": 200_000,
        "duration": 20,
        "connections": 64,
    },
    "small": {
        "items": 5_000,
        "members": 20_000,
        "dim": 32,
        "profiles": 5_000,
        "duration": 5,
        "connections": 16,
    },
}
P99_TARGET_MS = 25.0
THROUGHPUT_RATIO_TARGET = 0.5
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
DATA_ROOT = Path(os.environ.get("BENCH_DATA", "bench_results/data"))
TOKEN = "rk_bench_storefront_0123456789abcdef"
ADMIN_TOKEN = "rk_bench_admin_0123456789abcdef"
CATEGORIES = 200
PRECOMPUTED = 50
PER_CATEGORY = 10
TIERS = ("regular", "silver", "gold", "platinum", "diamond")


def member_id(i: int) -> str:
    return f"M{i:08d}"


def build_bundle(folder: Path, items: int, members: int, dim: int, seed: int = 5) -> Path:
    """A blend bundle with the item attributes serving needs (vectorized numpy, no training)."""
    from engine.blend import Blender, BlendWeights
    from engine.blend_precompute import precompute
    from engine.bundle import write_bundle
    from engine.index import IndexConfig, build_index

    manifest_file = folder / "manifest.json"
    if manifest_file.is_file() and "precomputed_per_category" in json.loads(
        manifest_file.read_text()
    ):
        return folder
    shutil.rmtree(folder, ignore_errors=True)  # a bundle of an older benchmark version
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(CATEGORIES, dim)).astype(np.float32)
    item_category = rng.integers(0, CATEGORIES, items)
    item_vectors = (centers[item_category] + 0.8 * rng.normal(size=(items, dim))).astype(np.float32)
    item_vectors *= 0.1
    taste = rng.integers(0, CATEGORIES, members)
    member_vectors = np.empty((members, dim), dtype=np.float32)
    for start in range(0, members, 200_000):  # chunks bound the float64 temporaries
        stop = min(start + 200_000, members)
        noise = rng.normal(size=(stop - start, dim))
        member_vectors[start:stop] = (centers[taste[start:stop]] + noise).astype(np.float32) * 0.1
    per_member = rng.poisson(4, members)
    rows = np.repeat(np.arange(members), per_member)
    cols = rng.integers(0, items, rows.size)
    history = sp.csr_matrix(
        (rng.gamma(1.5, 1.0, rows.size).astype(np.float32), (rows, cols)), shape=(members, items)
    )
    history.sum_duplicates()
    popularity = rng.pareto(1.5, items)
    trending = (np.log1p(popularity) / np.log1p(popularity).max()).astype(np.float32)
    min_tier = np.asarray(TIERS)[
        np.where(rng.random(items) < 0.93, 0, rng.integers(1, len(TIERS), items))
    ]
    active = rng.random(items) >= 0.02
    config = IndexConfig(kind="hnsw" if items > 20_000 else "exact", ef_construction=100)
    index = build_index(item_vectors, config)
    blend: dict[str, Any] = {
        "embedding": 1.0,
        "buy_again": 0.75,
        "trending": 0.4,
        "candidates": 200,
        "trending_candidates": 100,
    }
    # what `recsys train` stores ([bundle] precomputed_candidates): each member's top 50
    started = time.perf_counter()
    precomputed = precompute(
        Blender(
            member_vectors, item_vectors, history, trending, BlendWeights(**blend), index=index
        ),
        PRECOMPUTED,
        categories=item_category,
        per_category=PER_CATEGORY,
    )
    print(f"precomputed candidates of {members:,} members in {time.perf_counter() - started:.0f} s")
    write_bundle(
        folder,
        manifest={
            "kind": "als",
            "blend": blend,
            "precomputed_candidates": PRECOMPUTED,
            "precomputed_per_category": PER_CATEGORY,
            "params": {"regularization": 0.01, "alpha": 1.0},
        },
        arrays={
            **precomputed.arrays(),
            "member_vectors": member_vectors,
            "item_vectors": item_vectors,
            "trending": trending,
            "item_category": np.char.add("c", item_category.astype(str)),
            "item_min_tier": min_tier,
            "item_active": active,
        },
        member_ids=np.char.add("M", np.char.zfill(np.arange(members).astype(str), 8)),
        item_ids=np.char.add("I", np.char.zfill(np.arange(items).astype(str), 6)),
        sparse={"buy_again": history},
        indexes={"items": index.faiss_index},
    )
    return folder


def second_bundle(first: Path, target: Path) -> Path:
    """The same model under another bundle id: files hard-linked, one manifest field added."""
    if (target / "manifest.json").is_file():
        return target
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(first, staging, copy_function=os.link)
    manifest = json.loads((first / "manifest.json").read_text())
    manifest["label"] = "second"
    (staging / "manifest.json").unlink()
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    staging.rename(target)
    return target


def raw_size_mib(bundle: Path) -> float:
    """Vectors and indexes of the bundle (what serving must hold), in MiB."""
    wanted = ["arrays/member_vectors.npy", "arrays/item_vectors.npy"]
    files = [bundle / w for w in wanted] + list((bundle / "indexes").glob("*.faiss"))
    return sum(f.stat().st_size for f in files) / 2**20


def lists_size_mib(bundle: Path) -> float:
    """The precomputed candidate lists of the bundle, in MiB."""
    from engine.blend_precompute import PRECOMPUTED_ARRAYS

    return sum((bundle / "arrays" / f"{n}.npy").stat().st_size for n in PRECOMPUTED_ARRAYS) / 2**20


# -- the server ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _hash(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


def start_server(
    bundle: Path, prefix: str, cache_ttl: int, workdir: Path, workers: int = 2
) -> Server:
    port = _free_port()
    log = workdir / f"server-{port}.log"
    env = {
        **os.environ,
        "RECSYS_MODEL_URI": str(bundle),
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": prefix,
        "RECSYS_CACHE_TTL_SECONDS": str(cache_ttl),
        "RECSYS_API_KEYS": f"storefront:{_hash(TOKEN)},admin:{_hash(ADMIN_TOKEN)}",
        "RECSYS_MODEL_POLL_SECONDS": "0.5",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    args = [
        sys.executable,
        "-m",
        "cli.main",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen(args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Server(process, port, log)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}); see {log}")
        try:
            status = json.loads(urllib.request.urlopen(server.base + "/readyz", timeout=5).read())
            if status["status"] == "ready" and _all_workers_up(server, workers):
                return server
        except OSError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"the server did not become ready; see {log}")


def _all_workers_up(server: Server, workers: int) -> bool:
    import psutil  # type: ignore[import-untyped]

    children = psutil.Process(server.process.pid).children(recursive=True)
    pythons = [c for c in children if "python" in c.name().lower()]
    return len(pythons) >= workers


def worker_memory(server: Server) -> dict[str, float]:
    import psutil

    rss = pss = 0.0
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            info = child.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if child.name().lower().startswith("python"):
            rss += info.rss
            pss += info.pss
    return {"rss_mib": round(rss / 2**20, 1), "pss_mib": round(pss / 2**20, 1)}


# -- the load generator -------------------------------------------------------------------------

_LUA = """
local ids = {}
for line in io.lines("%(ids)s") do ids[#ids + 1] = line end
math.randomseed(%(seed)d)
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/v1/members/" .. id .. "/recommendations?k=10", {["Authorization"] = "Bearer %(token)s"})
end
"""
_TRIVIAL = 'request = function() return wrk.format("GET", "/healthz") end\n'


@dataclass
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failed: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def extra(self) -> dict[str, object]:
        return {
            "req_per_s": round(self.rps),
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "requests": self.requests,
            "failed": self.failed,
        }


def _ms(text: str) -> float:
    value = float(re.sub(r"[a-z]+$", "", text))
    unit = re.sub(r"^[0-9.]+", "", text)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(url: str, script: str, seconds: int, connections: int, workdir: Path) -> Load:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: `apt-get install -y wrk` (see docs/api.md)")
    path = workdir / f"load-{uuid.uuid4().hex[:6]}.lua"
    path.write_text(script)
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(path), url],
        capture_output=True,
        text=True,
        check=True,
    )
    out = done.stdout
    requests = int(re.search(r"(\d+) requests in ([0-9.]+)(\w+)", out).group(1))  # type: ignore[union-attr]
    span = re.search(r"requests in ([0-9.]+\w+)", out).group(1)  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([0-9.]+\w+)", out).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([0-9.]+\w+)", out).group(1)  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    failed = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        failed += sum(int(x) for x in socket_errors.groups())
    return Load(requests, _ms(span) / 1000, round(_ms(p50), 2), round(_ms(p99), 2), failed)


def member_list(workdir: Path, n_profiles: int, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path = workdir / f"members-{n}-{seed}.txt"
    path.write_text("\n".join(member_id(int(i)) for i in rng.integers(0, n_profiles, n)) + "\n")
    return path


def _reload(server: Server, uri: str) -> dict[str, Any]:
    request = urllib.request.Request(
        server.base + "/v1/models/reload",
        data=json.dumps({"uri": uri}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    body: dict[str, Any] = json.loads(urllib.request.urlopen(request, timeout=600).read())
    return body


# -- the run ------------------------------------------------------------------------------------


def _materialize(snapshot: Path, prefix: str) -> None:
    from feature_store.online import connect, materialize

    store = connect(REDIS_URL, prefix=prefix)
    try:
        materialize(snapshot, store)
    finally:
        store.close()


def _drop_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=10_000):
        batch.append(key)
        if len(batch) >= 5_000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)
    client.close()


def run(scale: str) -> list[Result]:
    from benchmarks.bench_online import build_snapshot

    cfg = SCALES[scale]
    data = DATA_ROOT / f"serving-{scale}"
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bundle = build_bundle(data / "bundle", cfg["items"], cfg["members"], cfg["dim"])
    other = second_bundle(bundle, data / "bundle-b")
    snapshot = build_snapshot(data / "snapshot", cfg["profiles"], 4)
    prepared = time.perf_counter() - t0
    prefix = f"bench-serving-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    results: list[Result] = []
    try:
        _materialize(snapshot, prefix)
        seconds, connections = cfg["duration"], cfg["connections"]
        many = member_list(workdir, cfg["profiles"], 100_000, 1)
        few = member_list(workdir, cfg["profiles"], 5_000, 2)
        rec_script = _LUA % {"ids": many, "seed": 7, "token": TOKEN}

        server = start_server(bundle, prefix, cache_ttl=0, workdir=workdir)
        try:
            run_wrk(server.base, rec_script, 3, connections, workdir)  # warm-up
            run_wrk(server.base, _TRIVIAL, 3, connections, workdir)
            trivial = run_wrk(server.base, _TRIVIAL, seconds, connections, workdir)
            recs = run_wrk(server.base, rec_script, seconds, connections, workdir)
            memory = worker_memory(server)
            # reload under load: switch to the second bundle and back while wrk runs
            switches: list[dict[str, Any]] = []

            def switch() -> None:
                time.sleep(seconds / 4)
                switches.append(_reload(server, str(other)))
                time.sleep(seconds / 4)
                switches.append(_reload(server, str(bundle)))

            thread = threading.Thread(target=switch)
            thread.start()
            under_reload = run_wrk(server.base, rec_script, seconds, connections, workdir)
            thread.join()
        finally:
            server.stop()
        ratio = recs.rps / trivial.rps
        results.append(
            Result(
                name=f"trivial /healthz ({connections} conns, 2 workers)",
                seconds=trivial.seconds,
                extra=trivial.extra(),
            )
        )
        results.append(
            Result(
                name="/recommendations, cache off",
                seconds=recs.seconds,
                target=f"p99<{P99_TARGET_MS:.0f}ms, >={THROUGHPUT_RATIO_TARGET:.0%} of trivial",
                passed=recs.p99_ms < P99_TARGET_MS
                and ratio >= THROUGHPUT_RATIO_TARGET
                and recs.failed == 0,
                extra={**recs.extra(), "throughput_vs_trivial": round(ratio, 3)},
            )
        )
        changed = [s.get("changed") for s in switches]
        results.append(
            Result(
                name="/recommendations during 2 model reloads",
                seconds=under_reload.seconds,
                target="0 failed requests",
                passed=under_reload.failed == 0 and changed == [True, True],
                extra={**under_reload.extra(), "reloads_changed": changed},
            )
        )
        raw = raw_size_mib(bundle)
        results.append(
            Result(
                name="memory of the 2 workers",
                seconds=0.0,
                peak_rss_mib=memory["rss_mib"],
                extra={
                    **memory,
                    "raw_vectors_and_indexes_mib": round(raw, 1),
                    "precomputed_lists_mib": round(lists_size_mib(bundle), 1),
                },
            )
        )

        server = start_server(bundle, prefix, cache_ttl=300, workdir=workdir)
        try:
            cached_script = _LUA % {"ids": few, "seed": 9, "token": TOKEN}
            run_wrk(server.base, cached_script, 5, connections, workdir)  # fills the cache
            cached = run_wrk(server.base, cached_script, seconds, connections, workdir)
            metrics = urllib.request.urlopen(server.base + "/metrics", timeout=10).read().decode()
        finally:
            server.stop()
        hits = sum(
            float(v)
            for v in re.findall(r'recsys_cache_requests_total\{result="hit"\} ([0-9.e+]+)', metrics)
        )
        misses = sum(
            float(v)
            for v in re.findall(
                r'recsys_cache_requests_total\{result="miss"\} ([0-9.e+]+)', metrics
            )
        )
        results.append(
            Result(
                name="/recommendations, cache on (5,000 members)",
                seconds=cached.seconds,
                extra={
                    **cached.extra(),
                    "hit_ratio": round(hits / max(1.0, hits + misses), 3),
                    "throughput_vs_trivial": round(cached.rps / trivial.rps, 3),
                },
            )
        )
        results.append(
            Result(name="data preparation (cached after the first run)", seconds=prepared)
        )
    finally:
        _drop_prefix(prefix)
        shutil.rmtree(workdir, ignore_errors=True)
    return results
