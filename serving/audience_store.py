"""Campaign audiences in Redis: ranked member lists, their summaries, and the contact history.

Keys (``RedisKeys``; docs/redis_layout.md):

* ``{root}:aud:{id}:rows`` (string, TTL ``RECSYS_AUDIENCE_TTL_DAYS``): the audience's members,
  best first, as fixed-width little-endian records (:func:`record_dtype`): the member id as
  UTF-8 padded with NUL bytes to the audience's id width, then ``score`` float32,
  ``percentile`` float32 and the ``tier``, ``segment`` and ``lifecycle`` codes (int16 into the
  label lists of the meta hash, ``-1`` = none). The rank is the record's position + 1. A page
  (``GET /members``) and an export chunk (``GET /export.csv``) are one ``GETRANGE`` each over
  the same bytes, so the export is exactly the concatenation of all pages.
* ``{root}:aud:{id}:control`` (string, same TTL): the control group of an audience with a
  holdout (docs/campaigns.md), records in the same format, best first; absent without one.
  ``rows`` then holds only the treatment group: pages, the CSV export and the contacts of a send
  never include control members.
* ``{root}:aud:{id}:meta`` (hash, same TTL): ``summary`` (the JSON the API returns),
  ``format`` (record format, ``1``), ``width`` (id bytes per record), ``size`` (records),
  ``control_size`` (control records) and ``labels`` (JSON: tier, segment and lifecycle names of
  the codes). Written last: an audience exists once its meta does.
* ``{root}:aud:{id}:sent`` (hash, TTL ``RECSYS_CONTACT_HISTORY_DAYS``): written once, when the
  audience is marked sent: ``ids`` (its member ids, fixed-width records of ``width`` bytes),
  ``width``, ``count``, ``sent_at`` (ISO 8601 UTC) and ``epoch``.
* ``{root}:aud:sends`` (sorted set): audience ids scored by their sent time (epoch seconds);
  entries older than the contact history are trimmed at each send.

The contact cap reads the sends of the last N days and the ids of each (one pipeline), and
marks those members in a boolean mask over the snapshot's members (vectorized lookup).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
import redis

from feature_store.redis_keys import RedisKeys

RECORD_FORMAT: Final[int] = 1
#: Fixed part of a record after the id: score, percentile (float32), tier, segment, lifecycle.
RECORD_TAIL_BYTES: Final[int] = 4 + 4 + 2 + 2 + 2
#: Bytes per APPEND when writing a member list (bounds one command's size).
WRITE_PIECE_BYTES: Final[int] = 4 << 20
#: Records per CSV export chunk (one GETRANGE each).
EXPORT_CHUNK_ROWS: Final[int] = 50_000
#: Largest value Redis stores in one string.
REDIS_MAX_STRING: Final[int] = 512 << 20
CSV_HEADER: Final[tuple[str, ...]] = (
    "member_id",
    "score",
    "rank",
    "percentile",
    "tier",
    "segment",
)

IdBytes = npt.NDArray[np.bytes_]


class AudienceNotFoundError(LookupError):
    """No audience with this id (never created, or expired)."""


class AudienceTooLargeError(ValueError):
    """The member list does not fit one Redis string."""


def record_dtype(width: int) -> np.dtype[np.void]:
    """The record of one member: id (``width`` UTF-8 bytes, NUL-padded) + the fixed tail."""
    return np.dtype(
        [
            ("id", f"S{max(1, width)}"),
            ("score", "<f4"),
            ("percentile", "<f4"),
            ("tier", "<i2"),
            ("segment", "<i2"),
            ("lifecycle", "<i2"),
        ]
    )


def encode_ids(ids: npt.NDArray[np.str_]) -> IdBytes:
    """Member ids as fixed-width UTF-8 bytes (vectorized; ASCII ids take the fast cast)."""
    if ids.size == 0:
        return np.empty(0, dtype="S1")
    try:
        return ids.astype(np.bytes_)
    except UnicodeEncodeError:
        return np.asarray(np.strings.encode(ids, "utf-8"))


def decode_ids(raw: IdBytes) -> npt.NDArray[np.str_]:
    """The inverse of :func:`encode_ids`."""
    if raw.size == 0:
        return np.empty(0, dtype="<U1")
    try:
        return raw.astype(np.str_)
    except UnicodeDecodeError:
        return np.asarray(np.strings.decode(raw, "utf-8"))


@dataclass(frozen=True, slots=True)
class Labels:
    """Names of the tier, segment and lifecycle codes of an audience's records."""

    tiers: tuple[str, ...]
    segments: tuple[str, ...]
    lifecycles: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "tier": list(self.tiers),
                "segment": list(self.segments),
                "lifecycle": list(self.lifecycles),
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Labels:
        data = json.loads(raw)
        return cls(tuple(data["tier"]), tuple(data["segment"]), tuple(data["lifecycle"]))

    @staticmethod
    def names(names: Sequence[str], codes: npt.NDArray[np.int16]) -> npt.NDArray[np.str_]:
        """Names of ``codes`` ("" for -1)."""
        table = np.asarray([*names, ""], dtype=np.str_)
        return table[np.where(codes < 0, len(names), codes)]


@dataclass(frozen=True, slots=True)
class StoredAudience:
    """How an audience's records are laid out (from its meta hash)."""

    audience_id: str
    width: int
    size: int
    labels: Labels
    summary: dict[str, Any]
    #: members of the control group (0 without a holdout)
    control_size: int = 0

    @property
    def dtype(self) -> np.dtype[np.void]:
        return record_dtype(self.width)

    @property
    def record_bytes(self) -> int:
        return self.dtype.itemsize


@dataclass(frozen=True, slots=True)
class SentRecord:
    contacts: int
    sent_at: datetime
    recorded: bool


def make_records(
    id_bytes: IdBytes,
    scores: npt.NDArray[np.floating[Any]],
    percentiles: npt.NDArray[np.floating[Any]],
    tiers: npt.NDArray[np.int16],
    segments: npt.NDArray[np.int16],
    lifecycles: npt.NDArray[np.int16],
) -> npt.NDArray[np.void]:
    """The records of an audience (all arguments aligned, best member first)."""
    width = int(id_bytes.dtype.itemsize) if id_bytes.size else 1
    records = np.empty(id_bytes.shape[0], dtype=record_dtype(width))
    records["id"] = id_bytes
    records["score"] = scores
    records["percentile"] = percentiles
    records["tier"] = tiers
    records["segment"] = segments
    records["lifecycle"] = lifecycles
    return records


def page_members(
    labels: Labels, records: npt.NDArray[np.void], first_rank: int
) -> list[dict[str, Any]]:
    """Records as JSON-ready members (``first_rank``: rank of the first record)."""
    ids = decode_ids(records["id"]).tolist()
    tiers = Labels.names(labels.tiers, records["tier"]).tolist()
    segments = Labels.names(labels.segments, records["segment"]).tolist()
    scores = np.round(records["score"].astype(np.float64), 6).tolist()
    percentiles = np.round(records["percentile"].astype(np.float64), 4).tolist()
    return [
        {
            "member_id": member,
            "score": score,
            "rank": first_rank + i,
            "percentile": percentile,
            "tier": tier or None,
            "segment": segment or None,
        }
        for i, (member, score, percentile, tier, segment) in enumerate(
            zip(ids, scores, percentiles, tiers, segments, strict=True)
        )
    ]


def csv_chunk(
    records: npt.NDArray[np.void], labels: Labels, first_rank: int, *, header: bool
) -> bytes:
    """Records as CSV rows (``CSV_HEADER`` columns; the header line when ``header``)."""
    n = records.shape[0]
    frame = pl.DataFrame(
        {
            "member_id": decode_ids(records["id"]) if n else np.empty(0, dtype="<U1"),
            "score": records["score"].astype(np.float32),
            "rank": np.arange(first_rank, first_rank + n, dtype=np.int64),
            "percentile": records["percentile"].astype(np.float32),
            "tier": Labels.names(labels.tiers, records["tier"]),
            "segment": Labels.names(labels.segments, records["segment"]),
        },
        schema={
            "member_id": pl.String,
            "score": pl.Float32,
            "rank": pl.Int64,
            "percentile": pl.Float32,
            "tier": pl.String,
            "segment": pl.String,
        },
    )
    blank_to_null = [
        pl.when(pl.col(name) == "").then(None).otherwise(pl.col(name)).alias(name)
        for name in ("tier", "segment")
    ]
    buffer = io.BytesIO()
    frame.with_columns(blank_to_null).write_csv(buffer, include_header=header)
    return buffer.getvalue()


def csv_chunks(
    records: npt.NDArray[np.void], labels: Labels, *, chunk_rows: int = EXPORT_CHUNK_ROWS
) -> Iterator[bytes]:
    """The whole CSV of in-memory records (the CLI), in the export's chunks."""
    yield csv_chunk(records[:0], labels, 1, header=True)
    for start in range(0, records.shape[0], chunk_rows):
        yield csv_chunk(records[start : start + chunk_rows], labels, start + 1, header=False)


def _bytes(raw: object) -> bytes:
    """A Redis reply as bytes (the clients here do not decode responses)."""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        return raw.encode()
    raise TypeError(f"unexpected Redis reply of type {type(raw).__name__}")


def _text(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else raw


class AudienceStore:
    """Reads and writes audiences with a redis client (module docstring for the layout).

    The methods take the client as their first argument so that the service can run them
    through its circuit breaker (``gateway.call(lambda store: ....(store.client, ...))``)."""

    def __init__(self, keys: RedisKeys, *, ttl_days: int, history_days: int) -> None:
        self.keys = keys
        self.ttl_seconds = ttl_days * 24 * 3600
        self.history_seconds = history_days * 24 * 3600

    # -- audiences ---------------------------------------------------------------------------

    def _write(self, client: redis.Redis, key: str, records: npt.NDArray[np.void]) -> None:
        """One record list as one string, written in pieces (bounded command sizes)."""
        payload = records.tobytes()
        if len(payload) > REDIS_MAX_STRING:
            raise AudienceTooLargeError(
                f"{records.shape[0]:,} members of {records.dtype.itemsize} bytes each exceed "
                "the 512 MB a Redis string holds"
            )
        view = memoryview(payload)
        client.set(key, bytes(view[:WRITE_PIECE_BYTES]), ex=self.ttl_seconds)
        pipe = client.pipeline(transaction=False)
        pending = 0
        for start in range(WRITE_PIECE_BYTES, len(payload), WRITE_PIECE_BYTES):
            pipe.append(key, bytes(view[start : start + WRITE_PIECE_BYTES]))
            pending += 1
            if pending == 4:
                pipe.execute()
                pending = 0
        if pending:
            pipe.execute()

    def save(
        self,
        client: redis.Redis,
        audience_id: str,
        records: npt.NDArray[np.void],
        labels: Labels,
        summary: dict[str, Any],
        control: npt.NDArray[np.void] | None = None,
    ) -> None:
        """Write the member list (in pieces) and the control group's (if any), then the meta
        hash that makes them visible. ``records`` and ``control`` share one record width."""
        rows_key = self.keys.audience_rows(audience_id)
        control_key = self.keys.audience_control(audience_id)
        meta_key = self.keys.audience_meta(audience_id)
        self._write(client, rows_key, records)
        if control is not None:
            if control.dtype != records.dtype:
                raise ValueError("control records must have the audience's record format")
            self._write(client, control_key, control)
        width = int(records.dtype["id"].itemsize)
        pipe = client.pipeline(transaction=True)
        pipe.hset(
            meta_key,
            mapping={
                "summary": json.dumps(summary, separators=(",", ":")),
                "format": str(RECORD_FORMAT),
                "width": str(width),
                "size": str(records.shape[0]),
                "control_size": str(0 if control is None else control.shape[0]),
                "labels": labels.to_json(),
            },
        )
        pipe.expire(meta_key, self.ttl_seconds)
        pipe.expire(rows_key, self.ttl_seconds)
        if control is not None:
            pipe.expire(control_key, self.ttl_seconds)
        pipe.execute()

    def load(self, client: redis.Redis, audience_id: str) -> StoredAudience:
        raw = client.hmget(
            self.keys.audience_meta(audience_id),
            ["summary", "format", "width", "size", "labels", "control_size"],
        )
        summary, fmt, width, size, labels, control_size = (_text(v) for v in raw)
        if summary is None or width is None or size is None or labels is None:
            raise AudienceNotFoundError(audience_id)
        if fmt != str(RECORD_FORMAT):
            raise AudienceNotFoundError(audience_id)
        return StoredAudience(
            audience_id=audience_id,
            width=int(width),
            size=int(size),
            labels=Labels.from_json(labels),
            summary=json.loads(summary),
            control_size=int(control_size or 0),
        )

    def read(
        self,
        client: redis.Redis,
        stored: StoredAudience,
        offset: int,
        limit: int,
        *,
        control: bool = False,
    ) -> npt.NDArray[np.void]:
        """Records ``offset .. offset + limit - 1`` (fewer at the end) in one GETRANGE, of the
        audience (treatment) or, with ``control``, of its control group."""
        total = stored.control_size if control else stored.size
        stop = min(total, offset + limit)
        if stop <= offset:
            return np.empty(0, dtype=stored.dtype)
        size = stored.record_bytes
        key = (
            self.keys.audience_control(stored.audience_id)
            if control
            else self.keys.audience_rows(stored.audience_id)
        )
        raw = client.getrange(key, offset * size, stop * size - 1)
        if len(raw) != (stop - offset) * size:
            raise AudienceNotFoundError(stored.audience_id)  # expired meanwhile
        return np.frombuffer(_bytes(raw), dtype=stored.dtype)

    # -- contact history ---------------------------------------------------------------------

    def sent(self, client: redis.Redis, audience_id: str) -> SentRecord | None:
        count, sent_at = client.hmget(self.keys.audience_contacts(audience_id), "count", "sent_at")
        if count is None or sent_at is None:
            return None
        return SentRecord(int(count), datetime.fromisoformat(str(_text(sent_at))), False)

    def mark_sent(self, client: redis.Redis, audience_id: str, now: datetime) -> SentRecord:
        """Record the audience's members as contacted at ``now``; once per audience (a repeat
        returns the first record with ``recorded=False``). Atomic under concurrent calls."""
        contacts_key = self.keys.audience_contacts(audience_id)
        rows_key = self.keys.audience_rows(audience_id)
        with client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(contacts_key)  # type: ignore[no-untyped-call]
                    count, sent_at = pipe.hmget(contacts_key, "count", "sent_at")
                    if count is not None and sent_at is not None:
                        pipe.unwatch()
                        return SentRecord(
                            int(count), datetime.fromisoformat(str(_text(sent_at))), False
                        )
                    stored = self.load(pipe, audience_id)
                    raw = pipe.get(rows_key)
                    if raw is None or len(raw) != stored.size * stored.record_bytes:
                        raise AudienceNotFoundError(audience_id)
                    ids = np.frombuffer(_bytes(raw), dtype=stored.dtype)["id"].tobytes()
                    epoch = now.timestamp()
                    pipe.multi()
                    pipe.hset(
                        contacts_key,
                        mapping={
                            "ids": ids,
                            "width": str(stored.width),
                            "count": str(stored.size),
                            "sent_at": now.isoformat(timespec="seconds"),
                            "epoch": repr(epoch),
                        },
                    )
                    pipe.expire(contacts_key, self.history_seconds)
                    pipe.zadd(self.keys.audience_sends, {audience_id: epoch})
                    pipe.zremrangebyscore(
                        self.keys.audience_sends, "-inf", f"({epoch - self.history_seconds}"
                    )
                    pipe.execute()
                    return SentRecord(stored.size, now, True)
                except redis.WatchError:
                    continue

    def contacted_since(self, client: redis.Redis, since: datetime) -> npt.NDArray[np.str_]:
        """Member ids of every audience sent at or after ``since`` (with repeats)."""
        sent = client.zrangebyscore(self.keys.audience_sends, since.timestamp(), "+inf")
        if not sent:
            return np.empty(0, dtype="<U1")
        pipe = client.pipeline(transaction=False)
        for audience_id in sent:
            pipe.hmget(self.keys.audience_contacts(_bytes(audience_id).decode()), "width", "ids")
        parts: list[npt.NDArray[np.str_]] = []
        for width, ids in pipe.execute():
            if width is None or ids is None:
                continue  # expired with the contact history
            parts.append(decode_ids(np.frombuffer(_bytes(ids), dtype=f"S{int(width)}")))
        return np.concatenate(parts) if parts else np.empty(0, dtype="<U1")


def utc_now() -> datetime:
    return datetime.now(UTC)


def expiry(created: datetime, ttl_seconds: int) -> datetime:
    return created + timedelta(seconds=ttl_seconds)


__all__ = [
    "CSV_HEADER",
    "EXPORT_CHUNK_ROWS",
    "AudienceNotFoundError",
    "AudienceStore",
    "AudienceTooLargeError",
    "Labels",
    "SentRecord",
    "StoredAudience",
    "csv_chunk",
    "csv_chunks",
    "decode_ids",
    "encode_ids",
    "make_records",
    "page_members",
    "record_dtype",
    "utc_now",
]
