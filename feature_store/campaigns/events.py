"""The purchase-event log of the campaign database: what campaign reports measure outcomes on.

The service applies each purchase event to the online store (Redis) and also appends it here
(``POST /v1/events``), because the online store keeps events only until the next snapshot,
while a campaign report needs the purchases of its window, weeks after the send. Appending is
idempotent by ``event_id`` (a batch resent after a failure is stored once).
:meth:`PurchaseEventLog.purchases` reads a time range back as canonical purchase lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

import polars as pl
from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError

from feature_store.campaigns.db import is_postgresql
from feature_store.campaigns.errors import InvalidCampaignInputError, StoreUnavailableError
from feature_store.campaigns.models import PurchaseEventRow

#: Columns of :meth:`PurchaseEventLog.purchases` (the canonical purchase lines + event_id).
EVENT_COLUMNS: Final[dict[str, pl.DataType]] = {
    "event_id": pl.String(),
    "member_id": pl.String(),
    "order_id": pl.String(),
    "item_id": pl.String(),
    "ts": pl.Datetime("us"),
    "quantity": pl.Int64(),
    "amount": pl.Float64(),
}
_FIELDS: Final[tuple[str, ...]] = tuple(EVENT_COLUMNS)
_BATCH: Final[int] = 10_000


class PurchaseEventLog:
    """Purchase events in the campaign database (module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        try:
            conn = self.engine.connect()
        except OperationalError as exc:
            raise StoreUnavailableError(
                f"campaign store {self.engine.url.render_as_string(hide_password=True)}: "
                f"cannot connect ({exc})"
            ) from exc
        with conn:
            yield conn

    def record(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Append events (mappings with the :data:`EVENT_COLUMNS` keys; ``ts`` naive local
        time); an ``event_id`` stored before is skipped. Returns how many were new."""
        rows = []
        now = datetime.now(UTC)
        for i, event in enumerate(events):
            missing = [f for f in _FIELDS if f not in event]
            if missing:
                raise InvalidCampaignInputError(f"events[{i}]", f"missing {', '.join(missing)}")
            ts = event["ts"]
            if not isinstance(ts, datetime) or ts.tzinfo is not None:
                raise InvalidCampaignInputError(f"events[{i}].ts", "must be a naive datetime")
            rows.append({f: event[f] for f in _FIELDS} | {"received_at": now})
        if not rows:
            return 0
        insert = pg_insert if is_postgresql(self.engine) else sqlite_insert
        stored = 0
        try:
            with self._connect() as conn, conn.begin():
                for start in range(0, len(rows), _BATCH):
                    statement = (
                        insert(PurchaseEventRow)
                        .on_conflict_do_nothing(index_elements=["event_id"])
                        .returning(PurchaseEventRow.event_id)
                    )
                    # RETURNING lists the rows inserted (a driver's executemany rowcount
                    # is not reliable)
                    result = conn.execute(statement, rows[start : start + _BATCH])
                    stored += len(result.all())
        except OperationalError as exc:
            raise StoreUnavailableError(f"purchase events could not be stored ({exc})") from exc
        return stored

    def purchases(
        self, start: datetime, stop: datetime, member_ids: Sequence[str] | None = None
    ) -> pl.DataFrame:
        """Events with ``start <= ts < stop`` (naive local times) as a frame of
        :data:`EVENT_COLUMNS`, sorted by ts then event_id; only ``member_ids`` when given."""
        table = PurchaseEventRow.__table__
        query = (
            select(*(table.c[f] for f in _FIELDS))
            .where(table.c.ts >= start, table.c.ts < stop)
            .order_by(table.c.ts, table.c.event_id)
        )
        with self._connect() as conn:
            rows = conn.execute(query).all()
        frame = pl.DataFrame([tuple(r) for r in rows], schema=EVENT_COLUMNS, orient="row")
        if member_ids is not None:
            frame = frame.filter(pl.col("member_id").is_in(pl.Series(list(member_ids)).implode()))
        return frame

    def prune(self, before: datetime) -> int:
        """Delete events with ``ts < before``; returns how many."""
        with self._connect() as conn, conn.begin():
            result = conn.execute(delete(PurchaseEventRow).where(PurchaseEventRow.ts < before))
        return int(result.rowcount or 0)


__all__ = ["EVENT_COLUMNS", "PurchaseEventLog"]
