"""The exposure log: every recommendation list the service served, for experiment attribution.

A Redis stream (``RedisKeys.exposures``), capped at about ``max_entries`` stream entries
(``XADD MAXLEN ~``): the service appends **one entry per answered batch** holding every list
of the batch (up to 64), so logging costs one command per batch, not per request, and the log
can never grow past the cap (the oldest entries go first; at ``max_entries`` entries it holds
that many batches, between 1 and 64 lists each). Why Redis and not the campaign database: the hot path
already talks to Redis, and an exposure is worth keeping only as long as attribution can use
it (days to weeks); the report reads the window it needs with ``XRANGE``.

Entry field ``d``: a JSON array with one ``[recommendation id, member id, variant, bundle id,
[item ids in rank order], served at (epoch milliseconds)]`` per served list; the entry id's
time part is when the batch was written.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import polars as pl
from pydantic_core import from_json, to_json

from feature_store.online.store import as_text
from feature_store.redis_keys import RedisKeys

#: default cap of the stream (entries)
DEFAULT_MAX_ENTRIES: Final = 2_000_000
_READ_CHUNK: Final = 2_000
#: how much later than its lists' serving time an entry may be written (ms)
_SLACK_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class Exposure:
    """One served list."""

    recommendation_id: str
    member_id: str
    variant: str
    bundle_id: str
    items: tuple[str, ...]
    served_ms: int

    def record(self) -> list[Any]:
        return [
            self.recommendation_id,
            self.member_id,
            self.variant,
            self.bundle_id,
            list(self.items),
            self.served_ms,
        ]


def append(pipe: Any, keys: RedisKeys, exposures: Sequence[Exposure], max_entries: int) -> None:
    """Queue one stream entry holding ``exposures`` on a Redis pipeline or client."""
    if exposures:
        payload = to_json([e.record() for e in exposures])
        pipe.xadd(keys.exposures, {"d": payload}, maxlen=max_entries, approximate=True)


def read(client: Any, keys: RedisKeys, start_ms: int, end_ms: int) -> pl.DataFrame:
    """The exposures served in ``[start_ms, end_ms)`` as a frame: recommendation_id, member_id,
    variant, bundle_id, items (list of str), served_ms."""
    rows = list(_entries(client, keys, start_ms, end_ms))
    return pl.DataFrame(
        {
            "recommendation_id": [r.recommendation_id for r in rows],
            "member_id": [r.member_id for r in rows],
            "variant": [r.variant for r in rows],
            "bundle_id": [r.bundle_id for r in rows],
            "items": [list(r.items) for r in rows],
            "served_ms": [r.served_ms for r in rows],
        },
        schema={
            "recommendation_id": pl.Utf8,
            "member_id": pl.Utf8,
            "variant": pl.Utf8,
            "bundle_id": pl.Utf8,
            "items": pl.List(pl.Utf8),
            "served_ms": pl.Int64,
        },
    )


def _entries(client: Any, keys: RedisKeys, start_ms: int, end_ms: int) -> Iterator[Exposure]:
    if end_ms <= start_ms:
        return
    # an entry is written when its batch was answered, after its lists were served: read from
    # a little before the window to the end of the stream (a list served in the window may
    # have been written late, or replayed), and keep the lists served in the window
    low = f"{max(0, start_ms - _SLACK_MS)}-0"
    high = "+"
    while True:
        batch = client.xrange(keys.exposures, min=low, max=high, count=_READ_CHUNK)
        if not batch:
            return
        for _, raw in batch:
            fields = {as_text(k): v for k, v in raw.items()}
            for rid, member, variant, bundle, items, served in from_json(fields.get("d", b"[]")):
                if start_ms <= served < end_ms:
                    yield Exposure(
                        str(rid), str(member), str(variant), str(bundle), tuple(items), int(served)
                    )
        last = as_text(batch[-1][0])
        ms, _, seq = last.partition("-")
        low = f"{ms}-{int(seq) + 1}"
        if len(batch) < _READ_CHUNK:
            return


def trim_all(client: Any, keys: RedisKeys) -> int:
    """Delete the whole log (tests and a reset experiment); the number of keys deleted."""
    return int(client.delete(keys.exposures))


__all__ = ["DEFAULT_MAX_ENTRIES", "Exposure", "append", "read", "trim_all"]
