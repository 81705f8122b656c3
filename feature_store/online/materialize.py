"""Load a feature snapshot into the Redis online store and switch readers to it atomically.

1. Read and check manifest.json, members.parquet, recent_purchases.parquet and items.parquet,
   and encode what audiences read of them as Parquet tables (feature_store/online/bulk.py).
2. Take a new version id (INCR), mark it as loading, and bulk-write every profile and recent
   list under that version with pipelined MSETs of a few thousand members each (no per-member
   round trip), then the audience tables in chunks (feature_store/online/audience_data.py).
   Readers keep reading the active version meanwhile.
3. Replay the events the active version received after this snapshot's as_of (its journal), so
   no purchase reported online is lost by the switch.
4. Switch: in one MULTI/EXEC guarded by WATCH (loading pointer, active pointer, journal), point
   ``active`` at the new version. Readers see the old version complete or the new one complete.
5. Delete every other version's keys (SCAN + UNLINK in batches; Redis frees memory in the
   background).

:func:`restore_empty` is the same load for a store that lost its data (a Redis restarted without
persistence), safe to call from several processes at once: only one of them loads.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import polars as pl
import redis

from feature_store.errors import DataError
from feature_store.online.audience_data import encode_columns, write_columns
from feature_store.online.bulk import (
    RECENT_COLUMNS,
    SNAPSHOT_FIELDS,
    check_members,
    check_recent,
    profile_json,
    recent_json,
)
from feature_store.online.errors import OnlineStoreError
from feature_store.online.incremental import RECENT_CAP
from feature_store.online.profile import CorruptValueError, decode_event
from feature_store.online.snapshot_manifest import (
    SnapshotManifest,
    read_manifest,
)
from feature_store.online.store import RedisOnlineStore, as_text

#: Members per MSET command; a few MB per command keeps Redis responsive between commands.
DEFAULT_CHUNK_MEMBERS: Final[int] = 5_000
#: Members encoded per polars call, in MSET chunks: blocks of this many chunks.
_ENCODE_BLOCK: Final[int] = 20
#: MSET commands sent per pipeline round trip.
_COMMANDS_PER_FLUSH: Final[int] = 4
#: The loading pointer expires unless a running load keeps refreshing it (a crashed load stops
#: blocking others after this long).
LOADING_TTL_SECONDS: Final[int] = 600
_SCAN_COUNT: Final[int] = 10_000

# One step of deleting a version: SCAN (cursor ARGV[1], MATCH ARGV[2], COUNT ARGV[3]) and UNLINK
# what it found, inside Redis, so no key names cross the network. Returns {next cursor, keys removed}.
# (Key names are computed, not declared: a single Redis, not Redis Cluster.)
_UNLINK_STEP_LUA: Final[str] = """
local found = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local keys = found[2]
local removed = 0
for i = 1, #keys, 1000 do
  removed = removed + redis.call('UNLINK', unpack(keys, i, math.min(i + 999, #keys)))
end
return {found[1], removed}
"""
_JOURNAL_BATCH: Final[int] = 1_000
#: What the loading pointer holds while a process prepares an automatic restore (until the load
#: takes its version id and replaces it).
RESTORE_TOKEN_PREFIX: Final[str] = "restore-"
# Take the loading pointer KEYS[2] (value ARGV[1], TTL ARGV[2] s) only if no version is active
# (KEYS[1]) and no load holds it, atomically. Returns 1 when taken.
_CLAIM_LUA: Final[str] = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
return 0
"""
# Delete KEYS[1] when it holds one of ARGV (compare-and-delete: never another run's pointer).
_RELEASE_LUA: Final[str] = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
for i = 1, #ARGV do
  if value == ARGV[i] then return redis.call('DEL', KEYS[1]) end
end
return 0
"""

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class MaterializeResult:
    version: str
    previous_version: str | None
    members: int
    recent_lists: int
    replayed_events: int
    removed_versions: tuple[str, ...]
    removed_keys: int
    seconds: dict[str, float] = field(default_factory=dict)
    #: bytes of the audience tables stored with the version (0: none, no items.parquet)
    audience_bytes: int = 0


def _read_parquet(path: Path, columns: list[str]) -> pl.DataFrame:
    try:
        available = pl.read_parquet_schema(path)
        return pl.read_parquet(path, columns=[c for c in columns if c in available])
    except FileNotFoundError:
        raise DataError(f"{path}: missing from the snapshot") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as Parquet: {exc}") from exc


def _member_boundaries(ids: pl.Series, target_rows: int) -> Iterator[tuple[int, int]]:
    """Row ranges of about ``target_rows`` rows that never split a member (ids sorted)."""
    n = ids.len()
    start = 0
    while start < n:
        stop = min(start + target_rows, n)
        if stop < n:
            stop = int(ids.search_sorted(ids[stop - 1], side="right"))
        yield start, stop
        start = stop


class _Writer:
    """Pipelined MSETs of (key, value) pairs; refreshes the loading pointer as it goes."""

    def __init__(self, store: RedisOnlineStore, version: str) -> None:
        self.store = store
        self.version = version
        self.pipe = store.client.pipeline(transaction=False)
        self.pending = 0

    def mset(self, keys: list[bytes], values: list[bytes]) -> None:
        if not keys:
            return
        flat: list[bytes] = [b""] * (2 * len(keys))
        flat[0::2] = keys
        flat[1::2] = values
        self.pipe.execute_command("MSET", *flat)  # type: ignore[no-untyped-call]
        self.pending += 1
        if self.pending >= _COMMANDS_PER_FLUSH:
            self.flush()

    def flush(self) -> None:
        # keep our loading pointer alive (EXPIRE never overwrites another run's pointer)
        self.pipe.expire(self.store.keys.loading, LOADING_TTL_SECONDS)
        self.pipe.execute()
        self.pending = 0


def materialize(
    snapshot: Path,
    store: RedisOnlineStore,
    *,
    chunk_members: int = DEFAULT_CHUNK_MEMBERS,
    cleanup: bool = True,
    progress: Progress | None = None,
    on_begin: Callable[[str], None] | None = None,
) -> MaterializeResult:
    """Load ``snapshot`` into ``store`` as a new version and make it the active one.

    ``on_begin`` is called with the new version id as soon as the load has taken it."""
    step = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    clock = _Clock(timings)

    step("reading the snapshot")
    manifest = read_manifest(snapshot)
    members = check_members(
        _read_parquet(manifest.members_file, [f.name for f in SNAPSHOT_FIELDS]),
        manifest.members_file,
    )
    recent = check_recent(
        _read_parquet(manifest.recent_file, list(RECENT_COLUMNS)), manifest.recent_file
    )
    clock.lap("read")
    tables = encode_columns(manifest, members, recent, step)
    clock.lap("audience")

    try:
        version, previous = _begin(store, manifest, members.height)
        if on_begin is not None:
            on_begin(version)
        step(f"writing {members.height:,} profiles (version {version})")
        _write_profiles(store, version, members, manifest.as_of, chunk_members)
        clock.lap("profiles")
        step(f"writing recent purchases ({recent.height:,} lines)")
        recent_lists = _write_recent(store, version, recent, chunk_members)
        clock.lap("recent")
        store.client.hset(store.keys.meta(version), "recent_lists", recent_lists)
        if tables is not None:
            step(f"writing the audience tables ({tables.size:,} bytes)")
            write_columns(store, version, tables, LOADING_TTL_SECONDS)
            clock.lap("audience_write")
        step("replaying events received after the snapshot, then switching")
        replayed = _replay_and_switch(store, version, previous, manifest.as_of)
        clock.lap("switch")
        removed_versions: tuple[str, ...] = ()
        removed_keys = 0
        if cleanup:
            step("removing the keys of earlier versions")
            removed_versions, removed_keys = remove_inactive_versions(store)
            clock.lap("cleanup")
    except redis.RedisError as exc:
        raise store.unavailable(exc) from exc
    return MaterializeResult(
        version=version,
        previous_version=previous,
        members=members.height,
        recent_lists=recent_lists,
        replayed_events=replayed,
        removed_versions=removed_versions,
        removed_keys=removed_keys,
        seconds=timings,
        audience_bytes=0 if tables is None else tables.size,
    )


class _Clock:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self.t
        self.t = now


def _begin(
    store: RedisOnlineStore, manifest: SnapshotManifest, n_members: int
) -> tuple[str, str | None]:
    k = store.keys
    version = str(store.client.incr(k.sequence))
    previous = store.active_version()
    pipe = store.client.pipeline(transaction=True)
    pipe.sadd(k.versions, version)
    pipe.set(k.loading, version, ex=LOADING_TTL_SECONDS)
    pipe.hset(
        k.meta(version),
        mapping={
            "state": "loading",
            "snapshot": str(manifest.folder.resolve()),
            "as_of": manifest.as_of.isoformat(),
            "created_at": manifest.created_at,
            "source_fingerprint": manifest.source_fingerprint,
            "policy_sha256": manifest.policy_sha256,
            "policy_path": manifest.policy_path,
            "rfm_score_bounds": manifest.rfm_score_bounds,
            "value_model": manifest.value_model,
            "members": n_members,
            "recent_lists": 0,
            "loaded_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        },
    )
    pipe.execute()
    return version, previous


def _write_profiles(
    store: RedisOnlineStore, version: str, members: pl.DataFrame, as_of: datetime, chunk: int
) -> None:
    writer = _Writer(store, version)
    prefix = store.keys.profile_key_prefix(version)
    for block in members.iter_slices(chunk * _ENCODE_BLOCK):  # polars works on big blocks
        encoded = pl.DataFrame(
            {"key": prefix + block["member_id"], "json": profile_json(block, as_of)}
        ).cast(pl.Binary)
        for part in encoded.iter_slices(chunk):
            writer.mset(part["key"].to_list(), part["json"].to_list())
    writer.flush()


def _write_recent(store: RedisOnlineStore, version: str, recent: pl.DataFrame, chunk: int) -> int:
    writer = _Writer(store, version)
    prefix = store.keys.recent_key_prefix(version)
    lists = 0
    # blocks of about `chunk * _ENCODE_BLOCK` members at ~10 lines each, never splitting one
    for start, stop in _member_boundaries(recent["member_id"], chunk * _ENCODE_BLOCK * 10):
        encoded = recent_json(recent.slice(start, stop - start), RECENT_CAP)
        encoded = encoded.select(
            (prefix + pl.col("member_id")).cast(pl.Binary).alias("key"),
            pl.col("json").cast(pl.Binary),
        )
        for part in encoded.iter_slices(chunk):
            writer.mset(part["key"].to_list(), part["json"].to_list())
        lists += encoded.height
    writer.flush()
    return lists


def _replay_and_switch(
    store: RedisOnlineStore, version: str, previous: str | None, as_of: datetime
) -> int:
    """Apply the previous version's journal (events at or after ``as_of``) to ``version``,
    then switch atomically."""
    k = store.keys
    replayed = 0
    position = 0
    journal = k.journal(previous) if previous is not None else None
    with store.client.pipeline() as pipe:
        while True:
            if journal is not None:
                batch = store.client.lrange(journal, position, position + _JOURNAL_BATCH - 1)
                if batch:
                    store.client.expire(k.loading, LOADING_TTL_SECONDS)
                    for index, raw in enumerate(batch, start=position):
                        try:
                            event = decode_event(raw)
                        except CorruptValueError as exc:
                            raise OnlineStoreError(
                                f"Redis at {store.url}: entry {index} of {journal} is not a "
                                f"purchase event ({exc})"
                            ) from exc
                        if event.ts >= as_of:
                            replayed += store.apply_to(event, version).status == "applied"
                    position += len(batch)
                    continue
            try:
                watched = [k.loading, k.active] + ([journal] if journal else [])
                pipe.watch(*watched)  # type: ignore[no-untyped-call]
                loading, active = pipe.mget(k.loading, k.active)
                if loading is None or as_text(loading) != version:
                    raise OnlineStoreError(
                        f"the load of version {version} into Redis at {store.url} was replaced by "
                        "another materialize run (or stalled longer than "
                        f"{LOADING_TTL_SECONDS}s); nothing was switched"
                    )
                if (as_text(active) if active is not None else None) != previous:
                    raise OnlineStoreError(
                        f"another materialize run activated version {active!r} in Redis at "
                        f"{store.url} while version {version} was loading; nothing was switched"
                    )
                if journal is not None and pipe.llen(journal) != position:
                    pipe.unwatch()
                    continue  # events arrived meanwhile: replay them first
                pipe.multi()
                pipe.set(k.active, version)
                pipe.delete(k.loading)
                pipe.hset(k.meta(version), "state", "active")
                if previous is not None:
                    pipe.hset(k.meta(previous), "state", "retired")
                pipe.execute()
                return replayed
            except redis.WatchError:
                continue


def remove_inactive_versions(store: RedisOnlineStore) -> tuple[tuple[str, ...], int]:
    """Delete the keys of every version that is neither active nor being loaded."""
    k = store.keys
    client = store.client
    step = client.register_script(_UNLINK_STEP_LUA)
    keep = {as_text(v) for v in client.mget(k.active, k.loading) if v is not None}
    removed: list[str] = []
    count = 0
    for raw in sorted(client.smembers(k.versions)):
        version = as_text(raw)
        if version in keep:
            continue
        pattern = k.version_pattern(version)
        cursor: bytes | str | int = 0
        while True:
            cursor, n = step(args=[cursor, pattern, _SCAN_COUNT])
            count += int(n)
            if int(cursor) == 0:
                break
        client.srem(k.versions, version)
        removed.append(version)
    return tuple(removed), count


def restore_empty(
    snapshot: Path, store: RedisOnlineStore, *, progress: Progress | None = None
) -> MaterializeResult | None:
    """Materialize ``snapshot`` into ``store`` if it has no active version and nobody is loading.

    For a store that lost its data. Several processes may call this at once: each first runs
    ``SET {root}:loading restore-<token> NX`` in one script with the check that no version is
    active, so exactly one goes on; the others return None, as does a call while a version is
    active or a ``recsys features materialize`` run is loading. The load then replaces the token
    by its version id and keeps refreshing it, as every load does. On failure the pointer is
    released (if it still holds this call's token or version), so that the next attempt need
    not wait for its TTL.
    """
    k = store.keys
    token = f"{RESTORE_TOKEN_PREFIX}{uuid.uuid4().hex}"
    held = [token]
    claim = store.client.register_script(_CLAIM_LUA)
    try:
        if not claim(keys=[k.active, k.loading], args=[token, LOADING_TTL_SECONDS]):
            return None  # a version is active, another process restores, or a load runs
    except redis.RedisError as exc:
        raise store.unavailable(exc) from exc
    try:
        return materialize(snapshot, store, progress=progress, on_begin=held.append)
    except BaseException:
        with contextlib.suppress(redis.RedisError):  # else the server is gone: it expires
            store.client.register_script(_RELEASE_LUA)(keys=[k.loading], args=held)
        raise


__all__ = [
    "DEFAULT_CHUNK_MEMBERS",
    "RESTORE_TOKEN_PREFIX",
    "MaterializeResult",
    "SnapshotManifest",
    "materialize",
    "read_manifest",
    "remove_inactive_versions",
    "restore_empty",
]
