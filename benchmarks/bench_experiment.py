"""Champion vs challenger: the two-model service under HTTP load against the single-model one,
in the same run, and the simulated storefront's detection figures.

Same data and tools as benchmarks/bench_serving.py (its helpers are imported): a bundle of
100,000 items and 1,000,000 members (``bundle``) and the same model under another bundle id
(``bundle-b``, hard-linked files), 200,000 profiles in the machine's Redis under a random prefix
(deleted afterwards), ``recsys serve --workers 2``, ``wrk`` with 64 connections and a random
member per request, the result cache off. Measured:

1. the **single-model** service (no challenger, exposure log off) and the **two-model** one
   (``RECSYS_CHALLENGER_URI`` = bundle-b, ``RECSYS_CHALLENGER_PERCENT=50``, exposure log on),
   plus, as a diagnostic, the two-model one with the exposure log off (what the log costs);
   all three running, loaded in turn twice (single, two, two without log, and again, so that
   the machine's other load falls on all alike); target: two-model throughput >= 0.85x the
   single-model's (mean of the runs), its p99 <= 25 ms, no failed request;
2. worker memory (RSS, PSS) of the single-model service (measured before the others start)
   and of the two-model one (after the others stopped);
3. a storefront pass against the two-model service (engine.experiments.storefront: members
   ask for lists and their simulated purchases are posted as events): which variants the
   responses carried, how many exposures the log holds, events applied;
4. the simulator offline (no HTTP; engine.experiments.simulator on a synthetic dataset): the
   share of seeded runs whose 95% interval covers the planted difference (target >= 93%) and the
   share where the planted better challenger is a significant win (target >= 90%).

Until the service serves experiments (serving/*), the "two-model" service loads and serves one
model: the ratio is then about 1 and step 3 reports ``variant_source: assigned`` (the driver
assigns variants itself) and no logged exposures; nothing here needs to change when it lands.

Small scale (BENCH_SCALE=small): bench_serving's small data, 5 s per load run, a smaller
synthetic dataset and fewer seeded runs.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_serving import (
    _LUA,
    ADMIN_TOKEN,
    DATA_ROOT,
    P99_TARGET_MS,
    REDIS_URL,
    SCALES,
    TOKEN,
    Load,
    Server,
    _drop_prefix,
    _materialize,
    build_bundle,
    member_id,
    member_list,
    run_wrk,
    second_bundle,
    start_server,
    worker_memory,
)
from benchmarks.harness import Result
from training.tracking_store import environment

RATIO_TARGET = 0.85
COVERAGE_TARGET = 0.93
DETECTION_TARGET = 0.90
EXPERIMENT = "bench-experiment"
PERCENT = 50
#: the simulator offline: synthetic sizes, seeded runs for coverage and for detection
OFFLINE: dict[str, dict[str, int]] = {
    "full": {"members": 50_000, "items": 5_000, "purchases": 500_000, "coverage_runs": 4_000,
             "coverage_members": 1_000, "power_runs": 500, "power_members": 6_000,
             "storefront": 2_000},
    "small": {"members": 10_000, "items": 1_000, "purchases": 100_000, "coverage_runs": 2_000,
              "coverage_members": 500, "power_runs": 100, "power_members": 6_000,
              "storefront": 200},
}  # fmt: skip


def _start(
    bundle: Path, prefix: str, workdir: Path, challenger: Path | None, exposure_log: bool
) -> Server:
    env = {"RECSYS_DATA_DIR": str(workdir), "RECSYS_EXPOSURE_LOG": str(exposure_log).lower()}
    if challenger is not None:
        env |= {
            "RECSYS_CHALLENGER_URI": str(challenger),
            "RECSYS_CHALLENGER_PERCENT": str(PERCENT),
            "RECSYS_EXPERIMENT": EXPERIMENT,
        }
    with environment(**env):
        return start_server(bundle, prefix, cache_ttl=0, workdir=workdir)


def _exposures_logged(prefix: str) -> int | None:
    import redis

    from feature_store.redis_keys import RedisKeys

    key = getattr(RedisKeys(prefix), "exposures", None)
    if key is None:
        return None
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(client.xlen(key)) if client.exists(key) else 0
    finally:
        client.close()


def _bundle_truth(bundle: Path, members: list[int], seed: int = 11) -> Any:
    """A truth for the storefront pass from the bench bundle's own vectors (its members and
    items), with seeded prices; the popularity is the bundle's trending prior."""
    from engine.experiments.simulator import Truth

    arrays = bundle / "arrays"
    member_vectors = np.load(arrays / "member_vectors.npy", mmap_mode="r")
    item_vectors = np.load(arrays / "item_vectors.npy")
    trending = np.load(arrays / "trending.npy").astype(np.float64)
    items = item_vectors.shape[0]
    price = np.round(0.29 + np.exp(np.random.default_rng(seed).normal(1.2, 0.7, items)), 2)
    return Truth(
        [member_id(i) for i in members],
        np.asarray(member_vectors[np.asarray(members)]),
        np.char.add("I", np.char.zfill(np.arange(items).astype(str), 6)),
        item_vectors,
        trending + 1e-6,
        price,
    )


def _storefront(server: Server, bundle: Path, profiles: int, n: int, prefix: str) -> Result:
    from engine.experiments.simulator import Simulator
    from engine.experiments.storefront import run_storefront

    rng = np.random.default_rng(21)
    members = sorted(rng.choice(profiles, size=min(n, profiles), replace=False).tolist())
    sim = Simulator(_bundle_truth(bundle, members))
    started = time.perf_counter()
    run = run_storefront(
        server.base, TOKEN, [member_id(i) for i in members], rng, simulator=sim,
        ingest_key=ADMIN_TOKEN, experiment=EXPERIMENT, percent=PERCENT,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    shown = run.exposures
    sources = shown.group_by("variant_source").len().sort("variant_source").rows()
    variants = shown.group_by("variant").len().sort("variant").rows()
    return Result(
        name=f"storefront pass ({shown.height:,} members, two-model service)",
        seconds=seconds,
        extra={
            "variants": dict(variants),
            "variant_source": dict(sources),
            "recommendation_ids": shown.height - shown["recommendation_id"].null_count(),
            "exposures_logged_incl_load_runs": _exposures_logged(prefix),
            "purchases": run.purchases.height,
            "events_applied": run.applied,
            "summary": {
                v: {k: round(x, 4) for k, x in numbers.items()}
                for v, numbers in run.summary().items()
            },
            "planted_lift_difference": round(run.lift_difference, 4),
        },
    )


def offline(scale: str) -> list[Result]:
    """The simulator's figures: coverage of the planted difference and detection power."""
    from engine.experiments.simulator import (
        PurchaseModel,
        Simulator,
        Truth,
        seeded_detection,
        truth_lists,
    )
    from feature_store.synthetic import SynthConfig, generate

    o = OFFLINE[scale]
    started = time.perf_counter()
    cfg = SynthConfig(members=o["members"], items=o["items"], purchases=o["purchases"], seed=3)
    truth = Truth.from_result(generate(cfg))
    everyone = np.arange(truth.member_ids.size)
    taste = truth_lists(truth, everyone, 10, taste=1.0)
    popular = truth_lists(truth, everyone, 10, taste=0.0)
    sim = Simulator(truth)
    prepared = time.perf_counter() - started
    results: list[Result] = []
    checks = [
        ("lift: interval covers the planted difference", sim, taste, "coverage"),
        ("lift: planted better challenger detected", sim, taste, "power"),
        ("lists: taste vs popularity lists, detected", None, popular, "power"),
    ]
    for name, simulator, champion, kind in checks:
        model = simulator or Simulator(truth, PurchaseModel(challenger_lift=1.0))
        t0 = time.perf_counter()
        found = seeded_detection(
            model, champion, taste, runs=o[f"{kind}_runs"], members_per_run=o[f"{kind}_members"],
            seed=0, experiment="bench",
        )  # fmt: skip
        coverage_ok = found.coverage >= COVERAGE_TARGET
        detected_ok = found.detected >= DETECTION_TARGET and found.reversed == 0.0
        results.append(
            Result(
                name=f"simulator {name}",
                seconds=time.perf_counter() - t0 + (prepared if not results else 0.0),
                target=(
                    f">={COVERAGE_TARGET:.0%} of runs covered"
                    if kind == "coverage"
                    else f">={DETECTION_TARGET:.0%} significant wins"
                ),
                passed=coverage_ok if kind == "coverage" else detected_ok,
                extra={
                    "runs": found.runs,
                    "members_per_run": found.members_per_run,
                    "planted_difference": round(found.planted, 5),
                    "mean_estimate": round(found.mean_estimate, 5),
                    "mean_half_width": round(found.mean_half_width, 5),
                    "coverage": found.coverage,
                    "detected": found.detected,
                    "reversed": found.reversed,
                },
            )
        )
    return results


def _load_result(
    name: str, runs: list[Load], target: str = "", passed: bool | None = None
) -> Result:
    rps = [load.rps for load in runs]
    return Result(
        name=name,
        seconds=sum(load.seconds for load in runs),
        target=target,
        passed=passed,
        extra={
            "req_per_s": [round(x) for x in rps],
            "mean_req_per_s": round(float(np.mean(rps))),
            "p99_ms": [load.p99_ms for load in runs],
            "p50_ms": [load.p50_ms for load in runs],
            "failed": sum(load.failed for load in runs),
        },
    )


def run(scale: str) -> list[Result]:
    from benchmarks.bench_online import build_snapshot

    cfg = SCALES[scale]
    data = DATA_ROOT / f"serving-{scale}"  # shared with bench_serving: built once
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bundle = build_bundle(data / "bundle", cfg["items"], cfg["members"], cfg["dim"])
    challenger = second_bundle(bundle, data / "bundle-b")
    snapshot = build_snapshot(data / "snapshot", cfg["profiles"], 4)
    prepared = time.perf_counter() - t0
    prefix = f"bench-experiment-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-experiment-"))
    # the services, loaded in turn while all run: single, two, two without the log, again
    setups = {
        "single": (None, False),
        "two": (challenger, True),
        "two_no_log": (challenger, False),
    }
    loads: dict[str, list[Load]] = {name: [] for name in setups}
    servers: dict[str, Server] = {}
    memory: dict[str, dict[str, float]] = {}
    storefront: Result | None = None
    try:
        _materialize(snapshot, prefix)
        seconds, connections = cfg["duration"], cfg["connections"]
        ids = member_list(workdir, cfg["profiles"], 100_000, 1)
        script = _LUA % {"ids": ids, "seed": 7, "token": TOKEN}
        for round_ in range(2):
            for name, (other, log) in setups.items():
                if name not in servers:
                    servers[name] = _start(bundle, prefix, workdir, other, log)
                    run_wrk(servers[name].base, script, 3, connections, workdir)  # warm-up
                loads[name].append(
                    run_wrk(servers[name].base, script, seconds, connections, workdir)
                )
                if round_ == 0 and name == "single":  # alone: PSS not shared with the others
                    memory["single"] = worker_memory(servers[name])
        for name in ("single", "two_no_log"):
            servers.pop(name).stop()
        memory["two"] = worker_memory(servers["two"])
        storefront = _storefront(
            servers["two"], bundle, cfg["profiles"], OFFLINE[scale]["storefront"], prefix
        )
    finally:
        for server in servers.values():
            server.stop()
        _drop_prefix(prefix)
        shutil.rmtree(workdir, ignore_errors=True)

    def mean_rps(name: str) -> float:
        return float(np.mean([x.rps for x in loads[name]]))

    ratio = mean_rps("two") / mean_rps("single")
    p99 = max(x.p99_ms for x in loads["two"])
    failed = sum(x.failed for x in loads["two"] + loads["single"])
    two = _load_result(
        f"champion + challenger {PERCENT}%, exposure log, cache off",
        loads["two"],
        target=f">={RATIO_TARGET}x single, p99<={P99_TARGET_MS:.0f}ms",
        passed=ratio >= RATIO_TARGET and p99 <= P99_TARGET_MS and failed == 0,
    )
    two.extra["throughput_vs_single"] = round(ratio, 3)
    no_log = _load_result(
        "champion + challenger, exposure log off (diagnostic)", loads["two_no_log"]
    )
    no_log.extra["throughput_vs_single"] = round(mean_rps("two_no_log") / mean_rps("single"), 3)
    results = [
        _load_result(f"single model, cache off ({connections} conns, 2 workers)", loads["single"]),
        two,
        no_log,
        Result(
            name="memory of the 2 workers: two models vs one",
            seconds=0.0,
            peak_rss_mib=memory["two"]["rss_mib"],
            extra={
                "one_model": memory["single"],
                "two_models": memory["two"],
                "pss_ratio": round(
                    memory["two"]["pss_mib"] / max(memory["single"]["pss_mib"], 1), 3
                ),
            },
        ),
        *([storefront] if storefront else []),
        Result(name="data preparation (cached after the first run)", seconds=prepared),
    ]
    return results + offline(scale)
