"""GET /v1/models/current, POST /v1/models/reload: atomic switch, failed loads, other workers."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from serving.security import Role
from serving.settings import Settings
from tests.serving.conftest import MEMBERS_V2, Service, ids, running, write_test_bundle

V1_LIST = ["tea3", "tea1", "cof1", "cof2"]
V2_LIST = ["cof1", "cof2", "tea3", "tea1"]  # m_tea leans to coffee in v2; tea3 still bought


@pytest.fixture
def v2(tmp_path: Path) -> Path:
    return write_test_bundle(tmp_path / "v2", members_vectors=MEMBERS_V2, label="v2")


def test_current_model(service: Service) -> None:
    body = service.get("/v1/models/current", Role.STOREFRONT).json()
    assert body["version"] == "v1"
    assert body["kind"] == "als"
    assert (body["n_items"], body["n_members"], body["dim"]) == (12, 3, 3)
    assert body["index"] == "exact"
    assert body["catalogue"] == "bundle"
    assert body["cold_start"] == "popular_in_tier"


def test_reload_of_the_same_bundle_changes_nothing(service: Service) -> None:
    body = service.post("/v1/models/reload").json()
    assert body["changed"] is False
    assert body["current"]["bundle_id"] == body["previous"]["bundle_id"]


def test_reload_switches_to_the_new_bundle(service: Service, v2: Path) -> None:
    assert ids(service.recs("m_tea", k=4)) == V1_LIST
    response = service.post("/v1/models/reload", json={"uri": str(v2)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["changed"] is True
    assert body["propagated"] is True
    assert (body["previous"]["version"], body["current"]["version"]) == ("v1", "v2")
    after = service.recs("m_tea", k=4)
    assert ids(after) == V2_LIST
    assert after["model_version"] == "v2"
    metrics = service.client.get("/metrics").text
    assert 'recsys_model_reloads_total{result="changed"} 1.0' in metrics
    assert (
        'recsys_model_info{bundle_id="' + body["current"]["bundle_id"] + '",version="v2"} 1.0'
        in metrics
    )


def corrupt_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    vectors = target / "arrays" / "item_vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:-8])
    return target


@pytest.mark.parametrize("broken", ["missing", "corrupt", "not-a-bundle"])
def test_a_failed_reload_keeps_the_old_model(
    service: Service, tmp_path: Path, v2: Path, broken: str
) -> None:
    target = {
        "missing": tmp_path / "nowhere",
        "corrupt": corrupt_copy(v2, tmp_path / "corrupt"),
        "not-a-bundle": tmp_path,
    }[broken]
    response = service.post("/v1/models/reload", json={"uri": str(target)})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/model-load-failed"
    assert "keeps serving" in problem["detail"]
    assert "Traceback" not in response.text
    assert service.get("/v1/models/current").json()["version"] == "v1"
    assert ids(service.recs("m_tea", k=4)) == V1_LIST


def test_reload_under_concurrent_requests(service: Service, bundle_dir: Path, v2: Path) -> None:
    expected: dict[str, list[str]] = {}
    errors: list[str] = []
    seen: dict[str, int] = {}
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            response = service.get("/v1/members/m_tea/recommendations?k=4", Role.STOREFRONT)
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text}")
                continue
            body = response.json()
            seen[body["model_version"]] = seen.get(body["model_version"], 0) + 1
            if ids(body) != expected[body["model_version"]]:
                errors.append(f"{body['model_version']} answered {ids(body)}")

    expected.update({"v1": V1_LIST, "v2": V2_LIST})
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for uri in [v2, bundle_dir, v2, bundle_dir, v2]:
            response = service.post("/v1/models/reload", json={"uri": str(uri)})
            assert response.status_code == 200, response.text
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert seen.get("v1", 0) > 0
    assert seen.get("v2", 0) > 0
    assert service.get("/v1/models/current").json()["version"] == "v2"


def test_other_workers_follow_a_reload(base_settings: Settings, v2: Path) -> None:
    settings = replace(base_settings, model_poll_seconds=0.05)
    with running(settings) as worker_a, running(settings) as worker_b:
        headers = {"Authorization": "Bearer rk_test_admin_token_0123456789"}
        response = worker_a.post("/v1/models/reload", json={"uri": str(v2)}, headers=headers)
        assert response.status_code == 200
        assert response.json()["propagated"] is True
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            current = worker_b.get("/v1/models/current", headers=headers).json()
            if current["version"] == "v2":
                break
            time.sleep(0.05)
        assert current["version"] == "v2"
        assert current["bundle_id"] == response.json()["current"]["bundle_id"]
