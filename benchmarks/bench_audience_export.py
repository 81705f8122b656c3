"""CSV export of a campaign audience through the real HTTP endpoint: speed and flat memory.

``GET /v1/audiences/{id}/export.csv`` streams an audience kept in Redis (serving/audience_store.py)
in chunks of 50,000 records, one ``GETRANGE`` each, formatted by polars. Here an audience of
1,000,000 members and one of 100,000 are written straight into the machine's Redis
(BENCH_REDIS_URL, default redis://127.0.0.1:6379/0) under a random key prefix (deleted
afterwards) with :class:`~serving.audience_store.AudienceStore`, as ``POST /v1/audiences``
stores them. Each is then downloaded by a streaming HTTP client from a fresh single-process
uvicorn server (``serving.app:create_app``, a tiny bundle: the export does not touch the model),
and the server's peak RSS (``VmHWM``) is read after the download.

Targets: 1M rows in < 10 s; memory flat: the server's peak RSS for 1M rows within 25% of (or
50 MiB more than) its peak for 100k rows, i.e. not growing with the audience.
``BENCH_SCALE=small``: 100k vs 10k rows.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from benchmarks.harness import Result

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SCALES = {"full": (1_000_000, 100_000), "small": (100_000, 10_000)}
TARGET_S = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tiny_bundle(folder: Path) -> Path:
    from tests.serving.conftest import write_test_bundle

    return write_test_bundle(folder / "bundle")


def _store_audience(prefix: str, audience_id: str, n: int, seed: int) -> None:
    """An audience of ``n`` members (ids M0000001...), scores descending, random codes."""
    import redis

    from feature_store.redis_keys import RedisKeys
    from serving.audience_store import AudienceStore, Labels, encode_ids, make_records

    rng = np.random.default_rng(seed)
    ids = np.char.add("M", np.char.zfill(np.arange(1, n + 1).astype(np.str_), 7))
    scores = np.sort(rng.random(n, dtype=np.float32))[::-1]
    percentiles = np.linspace(100, 100 / n, n, dtype=np.float32)
    tiers = rng.integers(0, 5, n).astype(np.int16)
    segments = rng.integers(-1, 7, n).astype(np.int16)
    lifecycles = rng.integers(0, 4, n).astype(np.int16)
    records = make_records(encode_ids(ids), scores, percentiles, tiers, segments, lifecycles)
    labels = Labels(
        ("regular", "silver", "gold", "platinum", "diamond"),
        ("Champions", "Loyal", "Potential Loyalist", "New", "At Risk", "Hibernating", "Lost"),
        ("new", "active", "at_risk", "churned"),
    )
    client = redis.Redis.from_url(REDIS_URL)
    store = AudienceStore(RedisKeys(prefix), ttl_days=1, history_days=1)
    store.save(client, audience_id, records, labels, {"id": audience_id, "size": n})
    client.close()


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _export_once(bundle: Path, prefix: str, audience_id: str, workdir: Path) -> dict[str, float]:
    """Start a server, download the audience's CSV streaming, return time, rows, bytes, RSS."""
    import httpx

    port = _free_port()
    env = {
        **os.environ,
        "RECSYS_MODEL_URI": str(bundle),
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": prefix,
        "RECSYS_MODEL_POLL_SECONDS": "0",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.pop("RECSYS_API_KEYS", None)
    env.pop("RECSYS_API_KEYS_FILE", None)
    log = workdir / f"server-{port}.log"
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "serving.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited; see {log}")
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start; see {log}")
            time.sleep(0.2)
        idle = _peak_rss_mib(process.pid)
        rows = size = 0
        started = time.perf_counter()
        with httpx.stream(
            "GET", f"{base}/v1/audiences/{audience_id}/export.csv", timeout=120
        ) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                rows += chunk.count(b"\n")
                size += len(chunk)
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "rows": rows - 1,
            "mib": size / 2**20,
            "idle_peak_rss_mib": idle,
            "peak_rss_mib": _peak_rss_mib(process.pid),
        }
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cleanup(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
    if keys:
        client.unlink(*keys)
    client.close()


def run(scale: str) -> list[Result]:
    large, small = SCALES[scale]
    prefix = f"bench-audience-{uuid.uuid4().hex[:8]}"
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-audience-") as tmp:
        workdir = Path(tmp)
        bundle = _tiny_bundle(workdir)
        try:
            measured = {}
            for n, seed in ((small, 1), (large, 2)):
                audience_id = f"aud_{n:016x}"
                _store_audience(prefix, audience_id, n, seed)
                measured[n] = _export_once(bundle, prefix, audience_id, workdir)
        finally:
            _cleanup(prefix)
    big, little = measured[large], measured[small]
    growth = big["peak_rss_mib"] - little["peak_rss_mib"]
    flat = growth <= max(50.0, 0.25 * little["peak_rss_mib"])
    for n, m in ((small, little), (large, big)):
        results.append(
            Result(
                name=f"export.csv {n:,} rows (HTTP, streamed)",
                seconds=m["seconds"],
                peak_rss_mib=m["peak_rss_mib"],
                target=f"< {TARGET_S:.0f} s" if n == large else "",
                passed=(m["seconds"] < TARGET_S and m["rows"] == n) if n == large else None,
                extra={
                    "rows": int(m["rows"]),
                    "csv_mib": round(m["mib"], 1),
                    "rows_per_s": round(m["rows"] / m["seconds"]),
                    "server_peak_rss_before_mib": round(m["idle_peak_rss_mib"], 1),
                },
            )
        )
    results.append(
        Result(
            name=f"server peak RSS {large:,} vs {small:,} rows",
            seconds=0.0,
            peak_rss_mib=big["peak_rss_mib"],
            target="flat (< +max(50 MiB, 25%))",
            passed=flat,
            extra={
                "peak_small_mib": round(little["peak_rss_mib"], 1),
                "peak_large_mib": round(big["peak_rss_mib"], 1),
                "growth_mib": round(growth, 1),
            },
        )
    )
    return results


if __name__ == "__main__":
    from benchmarks.harness import print_table

    print_table(run(os.environ.get("BENCH_SCALE", "full")))
