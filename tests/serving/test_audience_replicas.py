"""Serving replicas build audiences from the online store alone (issue 11).

A snapshot is materialized from a relative path and its folder deleted; then two app instances,
each started in (and answering from) its own working directory, with no RECSYS_SNAPSHOT, build
the same audiences: ids, scores, ranks, percentiles, counts and breakdowns, equal to each other
and to the hand-worked answers of tests/serving/audience_fixtures.py. An audience created by one
is read and exported by the other. With Redis down, every audience endpoint answers 503
problem+json (never 500), whether or not the scorer was already loaded.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis

from feature_store.online import connect, materialize
from serving.security import Role
from serving.settings import Settings
from tests.conftest import RedisBackend
from tests.serving.audience_fixtures import (
    COFFEE_SCORES,
    LOOKALIKE_M10_SCORES,
    TEA1_SCORES,
    write_audience_bundle,
    write_audience_snapshot,
)
from tests.serving.conftest import Service, event, keys, running

TEA = {"items": ["tea1"]}
#: Definitions exercising every table: filters on each member column, item, category, tag and
#: lookalike seeds, and "bought the seed" (the recent-purchase table plus the journal).
BODIES: list[dict[str, Any]] = [
    {"name": "tea", "seed": TEA, "size": {"top_percent": 100}},
    {"seed": {"categories": ["coffee"]}, "size": {"top_percent": 100}},
    {
        "seed": {"item_tags": ["winter"]},
        "filters": {"tags": {"any": ["vip"]}},
        "size": {"top_n": 9},
    },
    {"seed": {"members": ["m10"]}, "size": {"top_n": 3}},
    {
        "seed": TEA,
        "filters": {
            "tiers": ["gold", "diamond", "regular"],
            "lifecycle": ["active", "at_risk"],
            "segments": ["Champions", "Loyal", "At Risk"],
            "regions": ["north", "east"],
            "birth_months": [12, 5],
            "points": {"min": 100},
            "joined": {"after": "2019-01-01", "before": "2024-01-01"},
            "tags": {"none": ["opt_out"]},
        },
        "size": {"top_percent": 100},
    },
    {"seed": TEA, "exclude": {"bought_seed_within_days": 30}, "size": {"top_n": 6}},
]
#: Summary fields that differ between two builds of the same audience.
VOLATILE = ("id", "created_at", "expires_at")


@pytest.fixture(scope="module")
def audience_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audience_bundle(tmp_path_factory.mktemp("replica-bundle") / "b")


def materialize_then_delete(url: str, prefix: str, workdir: Path) -> str:
    """Materialize the audience snapshot from a relative path inside ``workdir`` (the current
    directory), then delete the folder, as a load in a temporary directory or on another host
    leaves it. Returns the folder the store recorded."""
    snapshot = write_audience_snapshot(Path("snap"))
    assert not snapshot.is_absolute()
    store = connect(url, prefix=prefix)
    try:
        materialize(snapshot, store)
    finally:
        store.close()
    recorded = str((workdir / "snap").resolve())
    shutil.rmtree(workdir / "snap")
    return recorded


def settings_for(bundle: Path, url: str, prefix: str) -> Settings:
    return Settings(
        model_uri=str(bundle),
        redis_url=url,
        redis_prefix=prefix,
        api_keys=keys(),
        keys_source="tests",
        cache_ttl_seconds=0,
        model_poll_seconds=0,
        redis_retry_seconds=0.0,
        store_auto_restore=False,
    )


def build(service: Service, body: dict[str, Any]) -> dict[str, Any]:
    """The created audience's summary (without its id and times) and all of its members."""
    response = service.post("/v1/audiences", Role.MARKETER, json=body)
    assert response.status_code == 201, response.text
    summary = response.json()
    page = service.get(
        f"/v1/audiences/{summary['id']}/members", Role.MARKETER, params={"limit": 10_000}
    )
    assert page.status_code == 200, page.text
    members = page.json()["members"]
    assert len(members) == summary["size"]
    stable = {k: v for k, v in summary.items() if k not in VOLATILE}
    return {"summary": stable, "members": members, "id": summary["id"]}


def test_two_replicas_without_the_snapshot_build_identical_audiences(
    audience_bundle: Path,
    redis_backend: RedisBackend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folders = {name: tmp_path / name for name in ("loader", "a", "b")}
    for folder in folders.values():
        folder.mkdir()
    monkeypatch.chdir(folders["loader"])
    recorded = materialize_then_delete(redis_backend.url, redis_backend.prefix, folders["loader"])
    assert not Path(recorded).exists()
    settings = settings_for(audience_bundle, redis_backend.url, redis_backend.prefix)
    assert settings.snapshot is None

    with ExitStack() as stack:
        replicas: dict[str, Service] = {}
        for name in ("a", "b"):  # each starts in its own working directory
            monkeypatch.chdir(folders[name])
            client = stack.enter_context(running(settings))
            replicas[name] = Service(client, settings, redis_backend.client)

        def on(name: str) -> Service:
            monkeypatch.chdir(folders[name])  # and answers from it
            return replicas[name]

        # a purchase reported through one replica reaches the other's "bought the seed"
        sent = on("a").post(
            "/v1/events", Role.INGEST, json={"events": [event("r1", "m01", "tea1", day=10)]}
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["applied"] == 1
        results: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        for body in BODIES:
            for name in ("b", "a"):
                results[name].append(build(on(name), body))
        for mine, theirs in zip(results["a"], results["b"], strict=True):
            assert mine["summary"] == theirs["summary"]
            assert mine["members"] == theirs["members"]

        # and they are the right audiences, not merely the same ones
        tea, coffee, _, lookalike, filtered, bought = results["a"]
        assert {m["member_id"]: m["score"] for m in tea["members"]} == pytest.approx(
            TEA1_SCORES, abs=1e-6
        )
        assert [m["member_id"] for m in tea["members"]] == list(TEA1_SCORES)
        assert tea["summary"]["counts"]["members"] == 12
        assert tea["summary"]["snapshot"] == {"path": recorded, "as_of": "2024-06-01"}
        assert [m["member_id"] for m in coffee["members"]] == list(COFFEE_SCORES)
        assert [m["member_id"] for m in lookalike["members"]] == list(LOOKALIKE_M10_SCORES)
        # every filter at once: m01, m06, m10 and m11 pass (worked out from the fixture table)
        assert [m["member_id"] for m in filtered["members"]] == ["m06", "m01", "m10", "m11"]
        # m02 (snapshot, 05-25) and m01 (the event of 06-10) bought tea1 within 30 days
        assert [m["member_id"] for m in bought["members"]] == [
            "m09",
            "m06",
            "m03",
            "m04",
            "m05",
            "m07",
        ]
        assert bought["summary"]["counts"]["excluded_bought_seed"] == 2

        # an audience built by one replica is read and exported by the other
        made_by_b = results["b"][0]["id"]
        shown = on("a").get(f"/v1/audiences/{made_by_b}", Role.MARKETER)
        assert shown.status_code == 200
        assert {k: v for k, v in shown.json().items() if k not in VOLATILE} == (
            results["b"][0]["summary"]
        )
        export = on("a").get(f"/v1/audiences/{made_by_b}/export.csv", Role.MARKETER)
        assert export.status_code == 200
        lines = export.text.splitlines()
        assert [line.split(",")[0] for line in lines[1:]] == list(TEA1_SCORES)


# ---- Redis down -------------------------------------------------------------------------------


class OwnRedis:
    """A redis-server of this test alone, on a free port, without persistence."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("no redis-server binary")
        self.binary, self.folder = binary, folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
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
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def assert_503(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "Retry-After" in response.headers


def test_redis_down_is_503_with_or_without_a_loaded_scorer(
    audience_bundle: Path, own_redis: OwnRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    materialize_then_delete(own_redis.url, "replica", tmp_path)
    settings = settings_for(audience_bundle, own_redis.url, "replica")
    with running(settings) as warm_client, running(settings) as cold_client:
        warm = Service(warm_client, settings, None)
        cold = Service(cold_client, settings, None)
        first = build(warm, BODIES[0])  # the warm replica has its scorer
        own_redis.stop()
        for service in (warm, cold):
            base = f"/v1/audiences/{first['id']}"
            for response in (
                service.post("/v1/audiences", Role.MARKETER, json=BODIES[0]),
                service.get(base, Role.MARKETER),
                service.get(f"{base}/members", Role.MARKETER),
                service.get(f"{base}/export.csv", Role.MARKETER),
                service.post(f"{base}/sent", Role.MARKETER),
            ):
                assert_503(response)
        # Redis back without its data: nothing to build from, still a 503 saying so
        own_redis.start()
        response = cold.post("/v1/audiences", Role.MARKETER, json=BODIES[0])
        assert_503(response)
        assert "no active snapshot version" in response.json()["detail"]
        # loaded again (from another copy of the snapshot): both build the same audience again
        materialize_then_delete(own_redis.url, "replica", tmp_path)
        again = [build(service, BODIES[0]) for service in (warm, cold)]
        assert again[0]["members"] == again[1]["members"] == first["members"]
        assert again[0]["summary"] == again[1]["summary"] == first["summary"]
