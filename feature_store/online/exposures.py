"""The exposure log: every recommendation list the service served, for experiment attribution.

A Redis stream (``RedisKeys.exposures``), capped at about ``max_entries`` (``XADD MAXLEN ~``):
the service appends one entry per served list in the pipeline of the batch that answered it,
so logging costs one round trip per batch, not per request, and the log can never grow past
the cap (the oldest entries go first). Why Redis and not the campaign database: the hot path
already talks to Redis, and an exposure is worth keeping only as long as attribution can use
it (days to weeks); the report reads the window it needs with ``XRANGE``.

Entry fields: ``rid`` (recommendation id), ``m`` (member id), ``v`` (variant), ``b`` (bundle
id), ``i`` (the item ids, comma-joined, in rank order), ``t`` (served at, epoch milliseconds;
also the entry id's time part).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import polars as pl

from feature_store.online.store import as_text
from feature_store.redis_keys import RedisKeys

#: default cap of the stream (entries)
DEFAULT_MAX_ENTRIES: Final = 2_000_000
_READ_CHUNK: Final = 10_000


@dataclass(frozen=True, slots=True)
class Exposure:
    """One served list."""

    recommendation_id: str
    member_id: str
    variant: str
    bundle_id: str
    items: tuple[str, ...]
    served_ms: int

    def fields(self) -> dict[str, str]:
        return {
            "rid": self.recommendation_id,
            "m": self.member_id,
            "v": self.variant,
            "b": self.bundle_id,
            "i": ",".join(self.items),
            "t": str(self.served_ms),
        }


def append(pipe: Any, keys: RedisKeys, exposures: Sequence[Exposure], max_entries: int) -> None:
    """Queue the exposures on a Redis pipeline (the caller executes it)."""
    for exposure in exposures:
        pipe.xadd(keys.exposures, exposure.fields(), maxlen=max_entries, approximate=True)


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
    low = f"{start_ms}-0"
    high = f"{max(start_ms, end_ms - 1)}-18446744073709551615"
    if end_ms <= start_ms:
        return
    while True:
        batch = client.xrange(keys.exposures, min=low, max=high, count=_READ_CHUNK)
        if not batch:
            return
        for entry_id, raw in batch:
            fields = {as_text(k): as_text(v) for k, v in raw.items()}
            items = fields.get("i", "")
            yield Exposure(
                fields.get("rid", ""),
                fields.get("m", ""),
                fields.get("v", ""),
                fields.get("b", ""),
                tuple(items.split(",")) if items else (),
                int(fields.get("t") or as_text(entry_id).partition("-")[0]),
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
