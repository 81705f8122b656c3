"""What audiences read of a snapshot, kept in the online store with each loaded version.

A load (:func:`~feature_store.online.materialize.materialize`) writes, next to the profiles of
version ``v``, the member, item and coded recent-purchase tables that audiences filter and
exclude on (:func:`~feature_store.online.bulk.audience_tables`), each as one Parquet file cut
into strings of at most :data:`CHUNK_BYTES` (``RedisKeys.audience_columns_chunk``), and then the
hash ``RedisKeys.audience_columns(v)`` that describes them. They live under the version's root,
so the version switch makes them visible with the profiles and the removal of a version deletes
them; a restore of an empty store runs the same load, so they come back with it.

Readers (:func:`load_columns`) read the active version and that hash in one script call, then
the chunks one ``GET`` each, and check every table's SHA-256: a version switched and removed
meanwhile (or a store that lost its data and was loaded again under the same version id) shows
as a missing or different chunk, and the read starts again. The hash's ``digest`` identifies the
content: a service caches what it built per digest. docs/redis_layout.md describes the keys.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final, Protocol, TypeVar

import polars as pl
import redis

from feature_store.errors import DataError
from feature_store.member_columns import (
    ITEM_TABLE_COLUMNS,
    AudienceColumns,
    RecentPurchases,
    item_columns,
    member_columns,
)
from feature_store.online.bulk import AUDIENCE_TABLES, audience_tables, parquet_bytes
from feature_store.online.errors import OnlineStoreError
from feature_store.online.snapshot_manifest import SnapshotManifest
from feature_store.online.store import RedisOnlineStore, as_text
from feature_store.redis_keys import RedisKeys

T = TypeVar("T")

#: Version of the hash's fields and the tables' columns.
COLUMNS_FORMAT: Final[int] = 1
#: Largest chunk: one GET or SET moves at most this much (Redis stays responsive between
#: commands, and a read stays within the service's socket timeout).
CHUNK_BYTES: Final[int] = 4 << 20
#: SET commands per pipeline round trip while writing.
_CHUNKS_PER_FLUSH: Final[int] = 4
#: Reads of a version's tables before giving up (each restarts after a version switch).
READ_ATTEMPTS: Final[int] = 3

# KEYS[1]: the active pointer; ARGV[1], ARGV[2]: key head and tail around the version. Returns
# false when no version is active, else {version, HGETALL of the version's columns hash}.
_HEAD_LUA: Final[str] = """
local version = redis.call('GET', KEYS[1])
if not version then return false end
return {version, redis.call('HGETALL', ARGV[1] .. version .. ARGV[2])}
"""


class Runner(Protocol):
    """Runs an action on the online store: a service's circuit breaker, or a plain call."""

    def __call__(self, action: Callable[[RedisOnlineStore], T], /) -> T: ...


class ColumnsMissingError(OnlineStoreError):
    """The active version has no audience tables (none active, an older load, or a snapshot
    without items.parquet); the message says which and what to do."""


class ColumnsChangedError(OnlineStoreError):
    """The tables changed while being read (a version switch), every attempt."""


@dataclass(frozen=True, slots=True)
class TableInfo:
    chunks: int
    size: int
    rows: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ColumnsHead:
    """The columns hash of one version: what was stored and how."""

    version: str
    as_of: date
    tiers: tuple[str, ...]
    #: the snapshot folder the version was loaded from (where it was, on the loading host)
    snapshot: str
    tables: dict[str, TableInfo]
    #: SHA-256 over the tables' hashes, format, as_of, tiers and snapshot: identifies what
    #: the columns are built from
    digest: str

    @property
    def size(self) -> int:
        return sum(t.size for t in self.tables.values())


def _digest(hashes: Mapping[str, str], fields: Mapping[str, str]) -> str:
    """SHA-256 of the tables' hashes and the hash fields the columns depend on."""
    parts = {**{name: hashes[name] for name in AUDIENCE_TABLES}, **fields}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# -- writing (materialize) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncodedColumns:
    """The audience tables of a snapshot as Parquet files, ready to store."""

    payloads: dict[str, bytes]
    rows: dict[str, int]
    as_of: date
    tiers: tuple[str, ...]
    snapshot: str

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.payloads.values())


def encode_columns(
    manifest: SnapshotManifest,
    members: pl.DataFrame,
    recent: pl.DataFrame,
    progress: Callable[[str], None],
) -> EncodedColumns | None:
    """The audience tables of the snapshot of ``manifest``, from the load's checked members
    and recent lines and its items.parquet. None without one: the version then has no audience
    tables, and audiences answer that it must be loaded again."""
    items_file = manifest.items_file
    if items_file is None:
        progress("no items.parquet: this version will have no audience tables")
        return None
    progress("encoding the audience tables")
    try:
        available = pl.read_parquet_schema(items_file)
        items = pl.read_parquet(
            items_file, columns=[c for c in ITEM_TABLE_COLUMNS if c in available]
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{items_file}: cannot be read as Parquet: {exc}") from exc
    frames = audience_tables(members, recent, items, items_file)
    return EncodedColumns(
        payloads={name: parquet_bytes(name, frame) for name, frame in frames.items()},
        rows={name: frame.height for name, frame in frames.items()},
        as_of=manifest.as_of.date(),
        tiers=manifest.tiers,
        snapshot=str(manifest.folder.resolve()),
    )


def write_columns(
    store: RedisOnlineStore,
    version: str,
    encoded: EncodedColumns,
    loading_ttl: int,
) -> None:
    """Store every table of ``encoded`` as chunks of ``version``, then the hash describing
    them; each pipeline round trip also refreshes the load's loading pointer (``EXPIRE``
    ``loading_ttl``)."""
    k = store.keys
    pipe = store.client.pipeline(transaction=False)
    pending = 0
    tables: dict[str, dict[str, object]] = {}
    hashes: dict[str, str] = {}
    for name in AUDIENCE_TABLES:
        data = memoryview(encoded.payloads[name])
        chunks = max(1, math.ceil(len(data) / CHUNK_BYTES))
        for index in range(chunks):
            piece = data[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES]
            pipe.set(k.audience_columns_chunk(version, name, index), bytes(piece))
            pending += 1
            if pending >= _CHUNKS_PER_FLUSH:
                pipe.expire(k.loading, loading_ttl)
                pipe.execute()
                pending = 0
        hashes[name] = hashlib.sha256(data).hexdigest()
        tables[name] = {
            "chunks": chunks,
            "bytes": len(data),
            "rows": encoded.rows[name],
            "sha256": hashes[name],
        }
    fields = {
        "format": str(COLUMNS_FORMAT),
        "as_of": encoded.as_of.isoformat(),
        "tiers": json.dumps(list(encoded.tiers)),
        "snapshot": encoded.snapshot,
    }
    described = json.dumps(tables, separators=(",", ":"), sort_keys=True)
    pipe.hset(
        k.audience_columns(version),
        mapping={
            "format": fields["format"],
            "as_of": fields["as_of"],
            "tiers": fields["tiers"],
            "snapshot": fields["snapshot"],
            "tables": described,
            "digest": _digest(hashes, fields),
        },
    )
    pipe.expire(k.loading, loading_ttl)
    pipe.execute()


# -- reading ------------------------------------------------------------------------------------


def _parse_head(store: RedisOnlineStore, version: str, flat: list[bytes]) -> ColumnsHead | None:
    fields = {as_text(flat[i]): as_text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
    if not fields:
        return None
    key = store.keys.audience_columns(version)
    try:
        if fields["format"] != str(COLUMNS_FORMAT):
            return None  # another format: treated as absent (materialize again)
        tables = {
            name: TableInfo(
                chunks=int(info["chunks"]),
                size=int(info["bytes"]),
                rows=int(info["rows"]),
                sha256=str(info["sha256"]),
            )
            for name, info in json.loads(fields["tables"]).items()
        }
        if set(tables) != set(AUDIENCE_TABLES):
            raise KeyError("tables")
        return ColumnsHead(
            version=version,
            as_of=date.fromisoformat(fields["as_of"]),
            tiers=tuple(str(t) for t in json.loads(fields["tiers"])),
            snapshot=fields.get("snapshot", ""),
            tables=tables,
            digest=fields["digest"],
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise OnlineStoreError(
            f"Redis at {store.url}: {key} is not an audience columns hash of format "
            f"{COLUMNS_FORMAT} ({exc!r}); materialize the snapshot again"
        ) from exc


def read_head(store: RedisOnlineStore) -> tuple[str, ColumnsHead | None] | None:
    """The active version and its columns hash (None: no version is active; ``(v, None)``:
    the version has no audience tables), read atomically."""
    k = store.keys
    script = store.client.register_script(_HEAD_LUA)
    try:
        raw = script(keys=[k.active], args=list(k.audience_columns_key_parts()))
    except redis.RedisError as exc:
        raise store.unavailable(exc) from exc
    if not raw:
        return None
    version = as_text(raw[0])
    return version, _parse_head(store, version, list(raw[1]))


def _read_chunk(key: str) -> Callable[[RedisOnlineStore], bytes | None]:
    def read(store: RedisOnlineStore) -> bytes | None:
        try:
            value = store.client.get(key)
        except redis.RedisError as exc:
            raise store.unavailable(exc) from exc
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    return read


def _read_tables(run: Runner, keys: RedisKeys, head: ColumnsHead) -> dict[str, bytes] | None:
    """Every table's bytes, checked against the head (None when a chunk is gone or differs)."""
    out: dict[str, bytes] = {}
    for name in AUDIENCE_TABLES:
        info = head.tables[name]
        parts: list[bytes] = []
        for index in range(info.chunks):
            part = run(_read_chunk(keys.audience_columns_chunk(head.version, name, index)))
            if part is None:
                return None
            parts.append(part)
        data = b"".join(parts)
        if len(data) != info.size or hashlib.sha256(data).hexdigest() != info.sha256:
            return None
        out[name] = data
    return out


def missing_message(version: str | None) -> str:
    if version is None:
        return (
            "the online store has no active snapshot version: run `recsys features materialize "
            "SNAPSHOT`"
        )
    return (
        f"the online store's active snapshot version {version} has no audience tables (it was "
        "loaded by an older recsys, or from a snapshot without items.parquet): run `recsys "
        "features materialize SNAPSHOT` with this version of recsys"
    )


def decode_columns(head: ColumnsHead, payloads: dict[str, bytes]) -> AudienceColumns:
    """The :class:`AudienceColumns` of the tables read, decoding one table at a time and
    dropping its bytes once decoded (``payloads`` is emptied); DataError naming the table when
    one does not decode or does not hold what the snapshot should."""
    where = f"version {head.version} of the online store (snapshot {head.snapshot})"

    def frame(name: str) -> pl.DataFrame:
        try:
            return pl.read_parquet(io.BytesIO(payloads.pop(name)))
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"{where}: table {name} cannot be read as Parquet: {exc}") from exc

    members = member_columns(frame("members"), head.tiers, head.as_of, f"{where}, members")
    items = item_columns(frame("items"), f"{where}, items")
    try:
        recent = RecentPurchases.from_table(frame("recent"), frame("recent_items").to_series())
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from exc
    return AudienceColumns(members=members, items=items, recent=recent)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A read of the active version's tables: its head, and the columns unless the caller
    already had this content (``known`` digest)."""

    head: ColumnsHead
    columns: AudienceColumns | None


def load_columns(run: Runner, keys: RedisKeys, *, known: str | None = None) -> Loaded:
    """The active version's audience columns; only the head when its digest is ``known``.

    Raises :class:`ColumnsMissingError` when there are none, :class:`ColumnsChangedError` when
    the version kept switching during :data:`READ_ATTEMPTS` reads, DataError when a table is
    not what it should be, and what ``run`` raises when Redis fails."""
    for _ in range(READ_ATTEMPTS):
        found = run(read_head)
        if found is None or found[1] is None:
            raise ColumnsMissingError(missing_message(found[0] if found else None))
        head = found[1]
        if head.digest == known:
            return Loaded(head, None)
        payloads = _read_tables(run, keys, head)
        if payloads is not None:
            return Loaded(head, decode_columns(head, payloads))
    raise ColumnsChangedError(
        f"the online store switched snapshot versions during {READ_ATTEMPTS} reads of the "
        "audience tables; try again"
    )


__all__ = [
    "CHUNK_BYTES",
    "COLUMNS_FORMAT",
    "ColumnsChangedError",
    "ColumnsHead",
    "ColumnsMissingError",
    "EncodedColumns",
    "Loaded",
    "Runner",
    "TableInfo",
    "decode_columns",
    "encode_columns",
    "load_columns",
    "missing_message",
    "read_head",
    "write_columns",
]
