"""Attribution: which purchase lines a served recommendation list earned. Pure polars, no I/O.

Inputs are the exposure log (feature_store/online/exposures.py: one row per served list with
``recommendation_id``, ``member_id``, ``variant``, ``bundle_id``, ``items``, ``served_ms``, epoch
milliseconds, UTC) and purchase lines (feature_store/campaigns/events.py ``EVENT_COLUMNS``:
``event_id``, ``member_id``, ``order_id``, ``item_id``, ``ts``, ``quantity``, ``amount``; ``ts`` a
naive local time of the data's time zone).

The rules (docs/experiments.md, "Attribution"):

1. **Time.** A purchase's ``ts`` is read as a time of ``data_timezone`` (an IANA name) and turned
   into epoch milliseconds, so that it compares with ``served_ms``. A time the clock shows twice
   (autumn) is the first of the two; a time it never shows (the spring gap) is read with the
   offset before the gap, as Python's ``zoneinfo`` reads it.
2. **Duplicates.** Lines are unique by ``event_id`` (the first, in ``ts`` then input order); the
   event log already stores each ``event_id`` once, this makes the function idempotent anyway.
3. **A purchase** (``quantity > 0``) of item *i* by member *m* at time *t* is attributed to a
   list served to *m* that held *i* at ``served_ms <= t < served_ms + window``. Each line is
   attributed at most once: to the **latest** such list (the one the member saw last before
   buying). Purchases of items never shown, or shown outside the window, are not attributed.
4. **A return** (``quantity < 0``) is matched to the member's latest purchase line of the same
   item at or before it. When that purchase was attributed, the return is attributed to the same
   list: its negative amount reduces the list's attributed revenue and its quantity counts
   against the attribution of that item. Per (member, list, item) the net attributed quantity and
   revenue are clipped at zero (a return cancels at most what the list earned), and an item whose
   net attributed quantity is 0 no longer makes the member a converter to a recommended item.

:func:`attribute` returns every purchase line with the list it is attributed to (or nulls);
:func:`attributed_by_member` sums it per member after rule 4's netting.
"""

from __future__ import annotations

from datetime import UTC
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from engine.experiments.errors import ExperimentInputError

#: Default attribution window (hours).
DEFAULT_WINDOW_HOURS: Final[float] = 24.0
_MS_PER_HOUR: Final[int] = 3_600_000

EXPOSURE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "recommendation_id": pl.String(),
    "member_id": pl.String(),
    "variant": pl.String(),
    "bundle_id": pl.String(),
    "items": pl.List(pl.String()),
    "served_ms": pl.Int64(),
}
PURCHASE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "event_id": pl.String(),
    "member_id": pl.String(),
    "order_id": pl.String(),
    "item_id": pl.String(),
    "ts": pl.Datetime("us"),
    "quantity": pl.Int64(),
    "amount": pl.Float64(),
}
#: Columns :func:`attribute` adds to the purchase lines.
ATTRIBUTION_COLUMNS: Final[dict[str, pl.DataType]] = {
    "ts_ms": pl.Int64(),
    "recommendation_id": pl.String(),
    "variant": pl.String(),
    "bundle_id": pl.String(),
    "served_ms": pl.Int64(),
    "attributed": pl.Boolean(),
}


def window_ms(hours: float) -> int:
    """The attribution window in whole milliseconds; :class:`ExperimentInputError` unless
    0 < hours <= 90 days."""
    if not 0.0 < hours <= 24.0 * 90:
        raise ExperimentInputError(
            "attribution_hours", f"must be more than 0 and at most 2160 (90 days), got {hours}"
        )
    return round(hours * _MS_PER_HOUR)


def check_zone(data_timezone: str) -> str:
    """``data_timezone`` if it is a known IANA time zone name."""
    if data_timezone != "UTC":
        try:
            ZoneInfo(data_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ExperimentInputError(
                "data_timezone", f"not a known time zone: {data_timezone!r} (e.g. Europe/London)"
            ) from None
    return data_timezone


def _require(frame: pl.DataFrame, schema: dict[str, pl.DataType], name: str) -> pl.DataFrame:
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise ExperimentInputError(name, f"missing column(s) {', '.join(missing)}")
    return frame.select(pl.col(c).cast(t) for c, t in schema.items())


def epoch_ms(ts: pl.Expr, data_timezone: str) -> pl.Expr:
    """Naive local times of ``data_timezone`` as epoch milliseconds (module docstring, rule 1)."""
    zone = check_zone(data_timezone)
    if zone == "UTC":
        return ts.dt.replace_time_zone(str(UTC)).dt.epoch("ms")
    direct = ts.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
    # a time in the spring gap: the same wall time one hour later is the instant zoneinfo
    # gives it (the offset before the gap)
    gap = (ts + pl.duration(hours=1)).dt.replace_time_zone(
        zone, ambiguous="earliest", non_existent="null"
    )
    return pl.coalesce(direct, gap).dt.epoch("ms")


def unique_lines(purchases: pl.DataFrame) -> pl.DataFrame:
    """The purchase lines, one per ``event_id`` (the first by ``ts``, then input order)."""
    lines = _require(purchases, PURCHASE_SCHEMA, "purchases")
    return (
        lines.with_row_index("_order")
        .sort("ts", "_order")
        .unique(subset="event_id", keep="first", maintain_order=True)
        .drop("_order")
    )


def shown_items(exposures: pl.DataFrame) -> pl.DataFrame:
    """One row per (served list, item), sorted by ``served_ms`` then ``recommendation_id``."""
    frame = _require(exposures, EXPOSURE_SCHEMA, "exposures")
    return (
        frame.explode("items")
        .rename({"items": "item_id"})
        .filter(pl.col("item_id").is_not_null() & (pl.col("item_id") != ""))
        .unique(subset=["recommendation_id", "item_id"], keep="first", maintain_order=True)
        .sort("served_ms", "recommendation_id")
    )


def attribute(
    exposures: pl.DataFrame,
    purchases: pl.DataFrame,
    *,
    data_timezone: str = "UTC",
    window_hours: float = DEFAULT_WINDOW_HOURS,
) -> pl.DataFrame:
    """Every purchase line (one per ``event_id``) with the served list it is attributed to.

    Columns: the purchase columns, ``ts_ms`` (epoch ms), and ``recommendation_id``,
    ``variant``, ``bundle_id``, ``served_ms`` of the list (null when not attributed) and
    ``attributed``. Sorted by ``ts_ms`` then ``event_id``. Rules in the module docstring."""
    window = window_ms(window_hours)
    lines = (
        unique_lines(purchases)
        .with_columns(epoch_ms(pl.col("ts"), data_timezone).alias("ts_ms"))
        .sort("ts_ms", "event_id")
    )
    shown = shown_items(exposures).select(
        "member_id", "item_id", "recommendation_id", "variant", "bundle_id", "served_ms"
    )
    bought = lines.filter(pl.col("quantity") > 0)
    # rule 3: the latest list before the purchase that held the item, if inside the window
    # (an as-of join finds the latest; the window is checked after, half-open)
    matched = bought.join_asof(
        shown,
        left_on="ts_ms",
        right_on="served_ms",
        by=["member_id", "item_id"],
        strategy="backward",
        check_sortedness=False,
    ).with_columns(
        pl.when(pl.col("ts_ms") - pl.col("served_ms") < window)
        .then(pl.col(c))
        .otherwise(None)
        .alias(c)
        for c in ("recommendation_id", "variant", "bundle_id", "served_ms")
    )
    # rule 4: a return follows the latest purchase line of the same item before it
    returned = lines.filter(pl.col("quantity") < 0)
    owners = matched.select(
        "member_id",
        "item_id",
        pl.col("ts_ms").alias("_bought_ms"),
        "recommendation_id",
        "variant",
        "bundle_id",
        "served_ms",
    )
    returns = returned.join_asof(
        owners,
        left_on="ts_ms",
        right_on="_bought_ms",
        by=["member_id", "item_id"],
        strategy="backward",
        check_sortedness=False,
    ).drop("_bought_ms")
    zero = lines.filter(pl.col("quantity") == 0).with_columns(
        pl.lit(None, dtype=t).alias(c) for c, t in ATTRIBUTION_COLUMNS.items() if c != "ts_ms"
    )
    columns = [*PURCHASE_SCHEMA, *ATTRIBUTION_COLUMNS]
    out = pl.concat(
        [
            frame.with_columns(pl.col("recommendation_id").is_not_null().alias("attributed"))
            .select(pl.col(c).cast(t) for c, t in (PURCHASE_SCHEMA | ATTRIBUTION_COLUMNS).items())
            .select(columns)
            for frame in (matched, returns, zero)
        ]
    )
    return out.with_columns(pl.col("attributed").fill_null(False)).sort("ts_ms", "event_id")


def attributed_by_member(lines: pl.DataFrame) -> pl.DataFrame:
    """Per member with an attributed line: ``attributed_revenue`` (net of returns, clipped at
    zero per list and item), ``attributed_quantity`` and ``attributed_items`` (items whose net
    attributed quantity is positive). ``lines`` is :func:`attribute`'s answer (possibly
    filtered)."""
    per_item = (
        lines.filter(pl.col("attributed"))
        .group_by("member_id", "recommendation_id", "item_id")
        .agg(pl.col("quantity").sum().alias("q"), pl.col("amount").sum().alias("r"))
        .with_columns(
            pl.when(pl.col("q") > 0).then(pl.col("q")).otherwise(0).alias("q"),
            pl.when(pl.col("q") > 0)
            .then(pl.col("r").clip(lower_bound=0.0))
            .otherwise(0.0)
            .alias("r"),
        )
    )
    return (
        per_item.group_by("member_id")
        .agg(
            pl.col("r").sum().alias("attributed_revenue"),
            pl.col("q").sum().alias("attributed_quantity"),
            pl.col("item_id").filter(pl.col("q") > 0).n_unique().alias("attributed_items"),
        )
        .with_columns(pl.col("attributed_items").cast(pl.Int64))
        .sort("member_id")
    )


__all__ = [
    "ATTRIBUTION_COLUMNS",
    "DEFAULT_WINDOW_HOURS",
    "EXPOSURE_SCHEMA",
    "PURCHASE_SCHEMA",
    "attribute",
    "attributed_by_member",
    "check_zone",
    "epoch_ms",
    "shown_items",
    "unique_lines",
    "window_ms",
]
