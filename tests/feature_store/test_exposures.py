"""The exposure log (feature_store/online/exposures.py) on the machine's Redis, own prefix."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from feature_store.online.exposures import Exposure, append, read, trim_all
from feature_store.redis_keys import RedisKeys


@pytest.fixture
def client() -> Iterator[tuple[redis.Redis, RedisKeys]]:
    connection = redis.Redis(host="127.0.0.1", port=6379)
    try:
        connection.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    keys = RedisKeys(prefix=f"exp-test-{uuid.uuid4().hex[:8]}")
    yield connection, keys
    trim_all(connection, keys)


def test_batches_round_trip_and_the_window_keeps_what_was_served_in_it(
    client: tuple[redis.Redis, RedisKeys],
) -> None:
    connection, keys = client
    now = int(time.time() * 1000)
    batches = [
        [
            Exposure(f"r{b}-{i}", f"m{i}", "champion", "b1", ("a", "b,c"), now - 5_000 + b)
            for i in range(3)
        ]
        for b in range(4)
    ]
    batches.append([Exposure("late", "m\\t9", "challenger", "b2", (), now - 100_000)])
    for batch in batches:
        append(connection, keys, batch, max_entries=1_000)
    assert connection.xlen(keys.exposures) == 5  # one stream entry per batch
    frame = read(connection, keys, now - 10_000, now + 1)
    assert frame.height == 12
    assert frame["items"].to_list()[0] == ["a", "b,c"]
    assert set(frame["variant"]) == {"champion"}
    older = read(connection, keys, now - 200_000, now - 50_000)
    assert older["recommendation_id"].to_list() == ["late"]
    assert older["member_id"].to_list() == ["m\\t9"]
    assert read(connection, keys, now, now).height == 0


def test_the_log_is_capped(client: tuple[redis.Redis, RedisKeys]) -> None:
    connection, keys = client
    now = int(time.time() * 1000)
    for b in range(3_000):
        append(connection, keys, [Exposure(f"r{b}", "m", "champion", "b", ("i",), now)], 1_000)
    # approximate trimming: never far above the cap
    assert 1_000 <= connection.xlen(keys.exposures) < 1_200
