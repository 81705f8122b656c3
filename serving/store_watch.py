"""Does the online store hold the snapshot version this service expects? If it lost its data,
restore it.

The service remembers the version it saw at start (its id, ``loaded_at`` and snapshot folder,
from the version's meta hash). A check (:func:`observe`, one pipelined round trip while nothing
changed) then classifies the store:

* the expected version, or a version loaded later (a ``recsys features materialize`` run, or a
  restore): ready; a later version becomes the expected one. Version ids are not compared: they
  start again at 1 when Redis loses its data, so ``loaded_at`` says which load is newer.
* no active version (Redis restarted without its data, or nothing was materialized): degraded;
* a version loaded earlier than the expected one (Redis came back with older data) or one
  without meta: degraded, until a newer load.

With ``RECSYS_STORE_AUTO_RESTORE`` (default on) a background thread of each worker checks every
``RECSYS_STORE_CHECK_SECONDS`` (and whenever ``/readyz`` finds the store empty) and restores an
empty store with the existing materializer (:func:`~feature_store.online.materialize.restore_empty`):
from the snapshot folder recorded when the expected version was materialized, else
``RECSYS_SNAPSHOT``. Only one process restores (``SET ... NX`` on the store's loading pointer);
a failed restore is retried after 10 s, doubling up to 5 minutes. Requests never wait for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import redis

from feature_store.errors import FeatureStoreError
from feature_store.online.materialize import RESTORE_TOKEN_PREFIX, restore_empty
from feature_store.online.store import RedisOnlineStore, as_text
from serving.settings import Settings

log = logging.getLogger("recsys.serving")

_META_FIELDS: Final[tuple[str, str]] = ("loaded_at", "snapshot")
#: First wait after a failed restore; doubles per failure up to the maximum.
RESTORE_RETRY_SECONDS: Final[float] = 10.0
RESTORE_RETRY_MAX_SECONDS: Final[float] = 300.0
_RESTORE_ERRORS: Final = (FeatureStoreError, redis.RedisError, OSError, ValueError)
_EMPTY: Final[str] = (
    "the online store has no active snapshot version (Redis lost its data, or nothing was "
    "materialized yet): profiles answer 404 and members get the lowest tier's rules"
)


@dataclass(frozen=True, slots=True)
class VersionMark:
    """One load of a snapshot: its version id, when it was loaded (UTC, from the meta hash)
    and the snapshot folder it was loaded from."""

    version: str
    loaded_at: str
    snapshot: str

    def describe(self) -> str:
        return f"version {self.version} (loaded at {self.loaded_at} from {self.snapshot})"


@dataclass(frozen=True, slots=True)
class Observation:
    """What one check read: the active and loading pointers and the active version's mark
    (None when no version is active or its meta is missing)."""

    active: str | None
    loading: str | None
    mark: VersionMark | None


@dataclass(frozen=True, slots=True)
class Verdict:
    ready: bool
    reason: str | None
    empty: bool = False


def _mark(version: str, fields: Sequence[bytes | str | None]) -> VersionMark | None:
    loaded_at, snapshot = fields
    if loaded_at is None:
        return None
    return VersionMark(version, as_text(loaded_at), as_text(snapshot or b""))


def observe(store: RedisOnlineStore, expected: VersionMark | None) -> Observation:
    """Read the pointers and the active version's mark: one round trip when the active version
    is still ``expected``, two otherwise. Raises what the Redis client raises."""
    k = store.keys
    pipe = store.client.pipeline(transaction=False)
    pipe.mget(k.active, k.loading)
    if expected is not None:
        pipe.hmget(k.meta(expected.version), list(_META_FIELDS))
    replies = pipe.execute()
    active, loading = (None if v is None else as_text(v) for v in replies[0])
    if active is None:
        return Observation(None, loading, None)
    if expected is not None and active == expected.version:
        return Observation(active, loading, _mark(active, replies[1]))
    try:
        meta = k.meta(active)
    except ValueError:  # not a version id: no meta can exist
        return Observation(active, loading, None)
    return Observation(active, loading, _mark(active, store.client.hmget(meta, list(_META_FIELDS))))


class StoreWatch:
    """The expected version, readiness verdicts and the automatic restore of one worker.

    ``probe`` runs :func:`observe` against the store (None when Redis is unreachable);
    ``restore_store`` gives a store to load with (a client with long timeouts);
    ``on_switch`` is called when the expected version changes (caches keyed by version id
    must go). Thread-safe.
    """

    def __init__(
        self,
        settings: Settings,
        url: str,
        probe: Callable[[VersionMark | None], Observation | None],
        restore_store: Callable[[], AbstractContextManager[RedisOnlineStore]],
        on_switch: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.url = url
        self._probe = probe
        self._restore_store = restore_store
        self._on_switch = on_switch
        self._lock = threading.Lock()
        self._expected: VersionMark | None = None
        self._restoring: tuple[Path, float] | None = None
        self._failure: str | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._counts = {"restored": 0, "failed": 0}
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def expected(self) -> VersionMark | None:
        return self._expected

    def restore_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    # -- verdicts ----------------------------------------------------------------------------

    def judge(self, seen: Observation) -> Verdict:
        """Ready or not, and why; adopts a version loaded after the expected one."""
        if seen.active is None:
            return Verdict(False, f"{_EMPTY}; {self._restore_note(seen.loading)}", empty=True)
        mark = seen.mark
        if mark is None:
            return Verdict(
                False,
                f"the online store's active version {seen.active} has no meta hash (not written "
                "by `recsys features materialize`): materialize the snapshot again",
            )
        with self._lock:
            previous = self._expected
            if previous is not None and (mark.version, mark.loaded_at) == (
                previous.version,
                previous.loaded_at,
            ):
                return Verdict(True, None)
            if previous is not None and mark.loaded_at < previous.loaded_at:
                return Verdict(
                    False,
                    f"the online store's active {mark.describe()} is older than the "
                    f"{previous.describe()} this service expects (Redis came back with older "
                    "data?): run `recsys features materialize SNAPSHOT` to load the current one",
                )
            self._expected = mark
            self._failure, self._failures, self._retry_at = None, 0, 0.0
        if previous is not None:
            log.warning(
                "online store %s now serves %s; it served %s",
                self.url,
                mark.describe(),
                previous.describe(),
            )
            self._on_switch()
        return Verdict(True, None)

    def restore_source(self) -> tuple[Path | None, str]:
        """The snapshot folder to restore from, or None and why there is none."""
        expected = self._expected
        recorded = Path(expected.snapshot) if expected is not None and expected.snapshot else None
        if recorded is not None and (recorded / "manifest.json").is_file():
            return recorded, ""
        configured = self.settings.snapshot
        if configured is not None and (configured / "manifest.json").is_file():
            return configured, ""
        known = (
            f"the snapshot of the last version, {recorded}, is gone"
            if recorded is not None
            else "this worker never saw a version of the store"
        )
        wanted = (
            f"RECSYS_SNAPSHOT={configured} has no manifest.json"
            if configured is not None
            else "RECSYS_SNAPSHOT is not set"
        )
        return None, f"{known} and {wanted}"

    def _restore_note(self, loading: str | None) -> str:
        if not self.settings.store_auto_restore:
            return (
                "automatic restore is off (RECSYS_STORE_AUTO_RESTORE): run "
                "`recsys features materialize SNAPSHOT`"
            )
        with self._lock:
            restoring, failure, retry_at = self._restoring, self._failure, self._retry_at
        if restoring is not None:
            folder, since = restoring
            return f"this worker is restoring it from {folder} ({time.monotonic() - since:.1f}s so far)"
        if loading is not None:
            who = "another worker" if loading.startswith(RESTORE_TOKEN_PREFIX) else "a load"
            return f"{who} is loading a snapshot into it (loading pointer {loading})"
        source, why = self.restore_source()
        if source is None:
            return f"it cannot be restored automatically: {why}; run `recsys features materialize SNAPSHOT`"
        if failure is not None:
            wait = max(0.0, retry_at - time.monotonic())
            return f"restoring it from {source} failed ({failure}); next attempt in {wait:.0f}s"
        return f"it is about to be restored from {source}"

    # -- the background check ----------------------------------------------------------------

    def start(self) -> None:
        """Start the background check (once; nothing when automatic restore is off)."""
        if not self.settings.store_auto_restore or self._thread is not None:
            return
        with self._lock:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(
                target=self._run, name="recsys-store-watch", daemon=True
            )
            self._thread.start()

    def wake(self) -> None:
        """Check now (``/readyz`` found the store empty)."""
        self._wake.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread; a restore in progress finishes by itself (daemon thread)."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        interval = self.settings.store_check_seconds
        while True:
            self._wake.wait(interval if interval > 0 else None)
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.check()
            except Exception:  # never let the thread die: the next check tries again
                log.exception("checking the online store %s failed", self.url)

    def check(self) -> None:
        """One check: adopt a newer version; restore an empty store when it is due."""
        seen = self._probe(self._expected)
        if seen is None or not self.judge(seen).empty or seen.loading is not None:
            return
        with self._lock:
            due = self._restoring is None and time.monotonic() >= self._retry_at
        if due:
            self._restore()

    def _restore(self) -> None:
        source, why = self.restore_source()
        if source is None:
            with self._lock:
                self._failures += 1
                self._retry_at = time.monotonic() + RESTORE_RETRY_MAX_SECONDS
                first = self._failures == 1
            if first:
                log.error("online store %s is empty and %s; not restoring", self.url, why)
            return
        started = time.monotonic()
        with self._lock:
            self._restoring = (source, started)
        log.warning(
            "online store %s has no active snapshot version (Redis lost its data?): restoring it "
            "from %s",
            self.url,
            source,
        )
        try:
            with self._restore_store() as store:
                result = restore_empty(source, store)
        except _RESTORE_ERRORS as exc:
            self._failed(source, exc)
            return
        finally:
            with self._lock:
                self._restoring = None
        if result is None:
            log.info("online store %s: another worker or load restores it", self.url)
            return
        with self._lock:
            self._counts["restored"] += 1
            self._failure, self._failures, self._retry_at = None, 0, 0.0
        log.warning(
            "online store %s restored from %s in %.1fs by this worker: version %s, %d profiles, "
            "%d recent-purchase lists",
            self.url,
            source,
            time.monotonic() - started,
            result.version,
            result.members,
            result.recent_lists,
        )
        seen = self._probe(self._expected)  # adopt the restored version now
        if seen is not None:
            self.judge(seen)

    def _failed(self, source: Path, exc: Exception) -> None:
        seen = self._probe(self._expected)
        if seen is not None and seen.active is not None:  # a concurrent load won the switch
            log.warning(
                "online store %s: another load activated a version first (%s)", self.url, exc
            )
            self.judge(seen)
            return
        with self._lock:
            self._failures += 1
            wait = min(RESTORE_RETRY_MAX_SECONDS, RESTORE_RETRY_SECONDS * 2 ** (self._failures - 1))
            self._retry_at = time.monotonic() + wait
            self._failure = str(exc) or type(exc).__name__
            self._counts["failed"] += 1
        log.error(
            "restoring the online store %s from %s failed: %s; next attempt in %.0fs",
            self.url,
            source,
            exc,
            wait,
        )


__all__ = ["Observation", "StoreWatch", "Verdict", "VersionMark", "observe"]
