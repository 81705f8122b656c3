"""The service against the machine's Redis server (own key prefix, deleted afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from feature_store.online import connect, materialize
from serving.security import Role
from serving.settings import Settings
from tests.conftest import REDIS_TEST_URL
from tests.serving.conftest import auth, event, ids, running

pytestmark = pytest.mark.redis_server


@pytest.fixture
def machine_prefix(redis_server_client: redis.Redis, snapshot_dir: Path) -> Iterator[str]:
    prefix = f"recsys-serving-test-{uuid.uuid4().hex[:10]}"
    store = connect(REDIS_TEST_URL, prefix=prefix)
    materialize(snapshot_dir, store)
    store.close()
    yield prefix
    keys = list(redis_server_client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        redis_server_client.unlink(*keys)


def test_serving_on_the_machine_redis(base_settings: Settings, machine_prefix: str) -> None:
    settings = replace(
        base_settings, redis_url=REDIS_TEST_URL, redis_prefix=machine_prefix, cache_ttl_seconds=60
    )
    with running(settings) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        first = client.get("/v1/members/m_gold/recommendations?k=4", headers=auth(Role.STOREFRONT))
        assert ids(first.json()) == ["tea_gold", "tea1", "cof1", "cof2"]
        assert (
            client.get(
                "/v1/members/m_gold/recommendations?k=4", headers=auth(Role.STOREFRONT)
            ).headers["x-cache"]
            == "hit"
        )
        posted = client.post(
            "/v1/events",
            headers=auth(Role.INGEST),
            json={"events": [event("mr1", "m_gold", "cof1")]},
        )
        assert posted.json()["applied"] == 1
        after = client.get("/v1/members/m_gold/recommendations?k=4", headers=auth(Role.STOREFRONT))
        assert after.headers["x-cache"] == "miss"
        assert "cof1" not in ids(after.json())
        profile = client.get("/v1/members/m_gold/profile", headers=auth(Role.MARKETER)).json()
        assert profile["recent_purchases"][0]["item_id"] == "cof1"
