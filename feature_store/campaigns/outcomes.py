"""Per-member outcomes of a campaign from purchase lines (polars), for the outcome report.

Input: purchase lines with the canonical columns (order_id, member_id, item_id, ts, quantity,
amount): a dataset's purchases (:func:`member_outcomes`) or purchase events received by
``POST /v1/events`` (:func:`outcomes_from_events`, which also drops repeated event ids), and the
campaign's members with their group.

Definitions (times are exact, not rounded to days; ``send`` is the send time in the data's time
zone, naive like the purchase timestamps):

- **window**: lines with ``send <= ts < send + window_days``; everything below uses only them.
- **order**: the lines of one (member, order_id); a *purchase order* has net quantity > 0 (a
  return is its own order with negative quantity). Its time is its first line with quantity > 0.
- ``bought_any``: at least one purchase order. ``orders``: the number of purchase orders.
- ``bought_seed``: a line with quantity > 0 of one of the seed items (only with seed items).
- ``revenue``: net amount of all lines (returns in the window subtract).
- ``retained_30`` / ``_60`` / ``_90``: a purchase order at ``[0, 30)``, ``[30, 60)`` and
  ``[60, 90)`` days after the send: "still buying" in that month. Only when the window covers
  the whole period (``window_days`` >= 30, 60, 90), else absent.
- ``conversion_day``: whole days from the send to the first conversion (seed line when the
  campaign has seed items, else first purchase order), -1 for none.
- ``tier_upgraded`` (optional): ``tier_after`` ranks above ``tier_before`` on the tier ladder;
  members missing from the given table count as not upgraded.

``observed_days``: whole days of data after the send (from the latest timestamp in the purchase
lines given, all members), capped at the window: the report says when the window is not over.
Members of the campaign without lines get zeros and False.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import polars as pl

from feature_store.campaigns.errors import InvalidCampaignInputError
from feature_store.campaigns.models import GROUPS
from feature_store.schema import Col

RETENTION_DAYS: Final[tuple[int, ...]] = (30, 60, 90)
MAX_WINDOW_DAYS: Final[int] = 3_650
GROUP: Final[str] = "group"
_US_PER_DAY: Final[int] = 86_400_000_000


@dataclass(frozen=True, slots=True)
class CampaignOutcomes:
    """One row per campaign member: ``member_id``, ``group`` and the outcome columns."""

    frame: pl.DataFrame
    sent_at: datetime
    window_days: int
    observed_days: int
    seed_items: tuple[str, ...]

    def columns(self, group: str) -> dict[str, np.ndarray[Any, Any]]:
        """One group's outcomes as numpy arrays named like engine.campaigns.GroupOutcomes
        fields (absent outcomes are left out): ``GroupOutcomes.from_columns(o.columns(g))``."""
        if group not in GROUPS:
            raise InvalidCampaignInputError("group", f"must be one of {', '.join(GROUPS)}")
        part = self.frame.filter(pl.col(GROUP) == group)
        return {
            c: part.get_column(c).to_numpy()
            for c in part.columns
            if c not in (Col.MEMBER_ID, GROUP)
        }


def validate_window(window_days: object) -> int:
    """``window_days`` as an int in 1..3650, else :class:`InvalidCampaignInputError` naming it."""
    if isinstance(window_days, bool) or not isinstance(window_days, int):
        raise InvalidCampaignInputError(
            "window_days", f"must be a whole number (got {window_days!r})"
        )
    if not 1 <= window_days <= MAX_WINDOW_DAYS:
        raise InvalidCampaignInputError(
            "window_days", f"must be 1..{MAX_WINDOW_DAYS} days after the send (got {window_days})"
        )
    return window_days


def local_send_time(sent_at: datetime, data_timezone: str = "UTC") -> datetime:
    """The send time as a naive datetime in the data's time zone (like purchase timestamps)."""
    if sent_at.tzinfo is None:
        raise InvalidCampaignInputError("sent_at", "must be timezone-aware")
    try:
        zone = ZoneInfo(data_timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidCampaignInputError(
            "data_timezone", f"unknown time zone {data_timezone!r}"
        ) from exc
    return sent_at.astimezone(zone).replace(tzinfo=None)


def group_frame(
    treatment: Sequence[str] | np.ndarray[Any, Any], control: Sequence[str] | np.ndarray[Any, Any]
) -> pl.DataFrame:
    """``member_id``, ``group`` for two id lists."""
    t, c = (
        pl.Series(Col.MEMBER_ID, treatment, pl.String),
        pl.Series(Col.MEMBER_ID, control, pl.String),
    )
    return pl.concat(
        [
            t.to_frame().with_columns(pl.lit("treatment").alias(GROUP)),
            c.to_frame().with_columns(pl.lit("control").alias(GROUP)),
        ]
    )


def _naive_ts(lines: pl.LazyFrame, data_timezone: str) -> pl.LazyFrame:
    dtype = lines.collect_schema()[Col.TS]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        ts = pl.col(Col.TS).dt.convert_time_zone(data_timezone).dt.replace_time_zone(None)
        return lines.with_columns(ts.dt.cast_time_unit("us"))
    return lines.with_columns(pl.col(Col.TS).cast(pl.Datetime("us")))


def member_outcomes(
    purchases: pl.DataFrame | pl.LazyFrame,
    members: pl.DataFrame,
    *,
    sent_at: datetime,
    window_days: int,
    seed_items: Sequence[str] = (),
    data_timezone: str = "UTC",
    tier_change: pl.DataFrame | None = None,
    tiers: Sequence[str] = (),
) -> CampaignOutcomes:
    """Outcomes of each campaign member (see the module docstring for every definition).

    ``members``: ``member_id`` and ``group`` ("treatment" / "control"). ``tier_change``:
    ``member_id``, ``tier_before``, ``tier_after``, ranked by ``tiers`` (lowest first).
    """
    window = validate_window(window_days)
    start = local_send_time(sent_at, data_timezone)
    end = start + timedelta(days=window)
    missing = {Col.MEMBER_ID, GROUP} - set(members.columns)
    if missing:
        raise InvalidCampaignInputError(
            "members", f"missing column(s) {', '.join(sorted(missing))}"
        )
    lines = _naive_ts(purchases.lazy(), data_timezone)
    seeds = pl.Series("seed", list(seed_items), dtype=pl.String)
    day = (pl.col(Col.TS) - pl.lit(start)).dt.total_microseconds() // _US_PER_DAY
    positive = pl.col(Col.QUANTITY) > 0

    in_window = lines.filter(pl.col(Col.TS) >= start, pl.col(Col.TS) < end).join(
        members.lazy().select(Col.MEMBER_ID), on=Col.MEMBER_ID, how="semi"
    )
    seed_line = (
        positive & pl.col(Col.ITEM_ID).is_in(seeds.implode()) if seeds.len() else pl.lit(False)
    )
    orders = in_window.group_by(Col.MEMBER_ID, Col.ORDER_ID).agg(
        pl.col(Col.QUANTITY).sum().alias("net_qty"),
        pl.col(Col.AMOUNT).sum().alias("amount"),
        day.filter(positive).min().alias("first_day"),
        day.filter(seed_line).min().alias("seed_day"),
    )
    is_order = pl.col("net_qty") > 0
    aggs = [
        pl.col("amount").sum().alias("revenue"),
        is_order.sum().cast(pl.Int64).alias("orders"),
        pl.col("first_day").filter(is_order).min().alias("any_day"),
        pl.col("seed_day").min().alias("seed_day"),
    ]
    for k in RETENTION_DAYS:
        if window >= k:
            hit = is_order & (pl.col("first_day") >= k - 30) & (pl.col("first_day") < k)
            aggs.append(hit.any().alias(f"retained_{k}"))
    per_member = orders.group_by(Col.MEMBER_ID).agg(aggs)
    latest = lines.select(pl.col(Col.TS).max().alias("latest"))
    result, last = pl.collect_all(
        [
            members.lazy()
            .select(Col.MEMBER_ID, GROUP)
            .join(per_member, on=Col.MEMBER_ID, how="left", maintain_order="left"),
            latest,
        ]
    )
    conversion = "seed_day" if seeds.len() else "any_day"
    out = result.with_columns(
        pl.col("any_day").is_not_null().alias("bought_any"),
        *([pl.col("seed_day").is_not_null().alias("bought_seed")] if seeds.len() else []),
        pl.col("revenue").fill_null(0.0),
        pl.col("orders").fill_null(0),
        *(pl.col(f"retained_{k}").fill_null(False) for k in RETENTION_DAYS if window >= k),
        pl.col(conversion).fill_null(-1).cast(pl.Int64).alias("conversion_day"),
    ).drop("any_day", "seed_day")
    if tier_change is not None:
        upgrades = _upgrades(tier_change, tiers)
        out = out.join(upgrades, on=Col.MEMBER_ID, how="left", maintain_order="left").with_columns(
            pl.col("tier_upgraded").fill_null(False)
        )
    order = [Col.MEMBER_ID, GROUP, *(c for c in ("bought_any", "bought_seed") if c in out.columns)]
    out = out.select(order + [c for c in out.columns if c not in order])
    return CampaignOutcomes(
        out, sent_at, window, _observed(last.item(), start, window), tuple(seed_items)
    )


def _observed(latest: datetime | None, start: datetime, window: int) -> int:
    if latest is None or latest < start:
        return 0
    return min(window, math.ceil((latest - start) / timedelta(days=1)))


def _upgrades(tier_change: pl.DataFrame, tiers: Sequence[str]) -> pl.DataFrame:
    needed = {Col.MEMBER_ID, "tier_before", "tier_after"}
    if not needed <= set(tier_change.columns):
        raise InvalidCampaignInputError("tier_change", f"needs columns {', '.join(sorted(needed))}")
    if not tiers:
        raise InvalidCampaignInputError("tiers", "the tier ladder is needed to rank tier changes")
    rank = {t: i for i, t in enumerate(tiers)}

    def ranked(name: str) -> pl.Expr:
        return pl.col(name).replace_strict(rank, default=None, return_dtype=pl.Int64)

    return tier_change.select(
        Col.MEMBER_ID,
        (ranked("tier_after") > ranked("tier_before")).fill_null(False).alias("tier_upgraded"),
    ).unique(Col.MEMBER_ID, keep="first")


def outcomes_from_events(
    events: pl.DataFrame | pl.LazyFrame,
    members: pl.DataFrame,
    *,
    sent_at: datetime,
    window_days: int,
    seed_items: Sequence[str] = (),
    data_timezone: str = "UTC",
    tier_change: pl.DataFrame | None = None,
    tiers: Sequence[str] = (),
) -> CampaignOutcomes:
    """:func:`member_outcomes` on purchase events (``POST /v1/events``): the same columns plus
    an optional ``event_id`` (a repeated id counts once); ``ts`` naive in the data's time zone
    or timezone-aware (converted)."""
    lazy = events.lazy()
    if "event_id" in lazy.collect_schema().names():
        lazy = lazy.unique("event_id", keep="first", maintain_order=True)
    return member_outcomes(
        lazy, members, sent_at=sent_at, window_days=window_days, seed_items=seed_items,
        data_timezone=data_timezone, tier_change=tier_change, tiers=tiers,
    )  # fmt: skip
