"""A small experiment world for the API, CLI and promotion tests: exposures written to the
exposure log (feature_store.online.exposures.append) and purchases to the campaign database's
event log (PurchaseEventLog.record), with the answers worked out by hand.

Every member is served one list (``tea1``, ``cof1``) two days before ``now``, a minute apart.
The first ``converters`` members of a variant buy ``tea1`` (5.0) an hour after their list: a
purchase of a recommended item. Every third of the others buys ``cake1`` (2.0), never shown: a
conversion, not to a recommended item. Purchase times are naive times of ``zone``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import redis

from feature_store.campaigns import CampaignStore
from feature_store.online import exposures
from feature_store.online.exposures import Exposure
from feature_store.redis_keys import RedisKeys

TEA, CAKE = 5.0, 2.0


@dataclass(frozen=True)
class Arm:
    variant: str
    members: int
    converters: int
    bundle_id: str

    @property
    def others(self) -> int:
        """Members who bought something not shown (every third non-converter)."""
        return len(range(0, self.members - self.converters, 3))

    @property
    def revenue(self) -> float:
        return self.converters * TEA + self.others * CAKE

    def ids(self) -> list[str]:
        return [f"{self.variant}-{i:04d}" for i in range(self.members)]


def lists_and_lines(
    arms: list[Arm], now: datetime, zone: str
) -> tuple[list[Exposure], list[dict[str, Any]]]:
    served_at = now - timedelta(days=2)
    shown: list[Exposure] = []
    lines: list[dict[str, Any]] = []
    tz = ZoneInfo(zone)
    for arm in arms:
        for i, member in enumerate(arm.ids()):
            when = served_at + timedelta(minutes=i)
            shown.append(
                Exposure(
                    f"rec-{member}", member, arm.variant, arm.bundle_id, ("tea1", "cof1"),
                    int(when.timestamp() * 1000),
                )
            )  # fmt: skip
            bought = (when + timedelta(hours=1)).astimezone(tz).replace(tzinfo=None)
            if i < arm.converters:
                item, amount = "tea1", TEA
            elif (i - arm.converters) % 3 == 0:
                item, amount = "cake1", CAKE
            else:
                continue
            lines.append(
                {
                    "event_id": f"ev-{member}", "member_id": member, "order_id": f"o-{member}",
                    "item_id": item, "ts": bought, "quantity": 1, "amount": amount,
                }
            )  # fmt: skip
    return shown, lines


def write_world(
    client: redis.Redis,
    prefix: str,
    database_url: str,
    arms: list[Arm],
    *,
    zone: str = "UTC",
    now: datetime | None = None,
) -> None:
    shown, lines = lists_and_lines(arms, now or datetime.now(UTC), zone)
    with client.pipeline() as pipe:
        exposures.append(pipe, RedisKeys(prefix), shown, max_entries=100_000)
        pipe.execute()
    store = CampaignStore.from_url(database_url)
    try:
        store.migrate()
        store.events.record(lines)
    finally:
        store.dispose()
