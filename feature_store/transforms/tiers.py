"""Tier history replayed point in time from the tier policy, vectorized over members.

Rules (feature_store.policy.TierPolicy):

- Everyone starts in the lowest tier when they join.
- **Upgrade** at an order (purchase or return) when the trailing window ``(ts - W, ts]`` makes the
  member qualify for a tier above the current one; the member moves straight to that tier.
- **Downgrade** only at a period start ``P`` (monthly / quarterly / yearly), when the trailing
  window ``(P - W, P)`` qualifies for less than the current tier and at least
  ``protection_days`` have passed since the member's last upgrade; at most
  ``max_downgrade_steps`` tiers (0: to the qualifying tier).

Between two period starts a member's tier is the running maximum of their qualifying tiers
(starting from the tier at the period start), so each period is a few column operations over
all members at once; the only Python loop runs over the (few) periods.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from feature_store.policy import TierPolicy
from feature_store.schema import Col
from feature_store.transforms import Feat, collect, previous_max

_RANK = "__rank"  # tier as its position in the ladder (Int8)
_Q = "__qualifying"
_LAST_UPGRADE = "__last_upgrade"
_ORDER = "__reason_order"
_REASONS = {"joined": 0, "downgrade": 1, "upgrade": 2}  # same instant: this order


@dataclass(frozen=True, slots=True)
class TierResult:
    #: member_id, tier, valid_from, valid_to, reason (sorted by member_id, valid_from)
    history: pl.DataFrame
    #: member_id, policy_tier, tier_since, spend_window, orders_window, growth_points
    current: pl.DataFrame


def qualifying_rank(
    spend: pl.Expr, orders: pl.Expr, points: pl.Expr, policy: TierPolicy
) -> pl.Expr:
    """Position (Int8) of the highest tier whose rules these trailing figures meet."""
    rank = pl.lit(0, dtype=pl.Int8)
    for i, level in enumerate(policy.levels[1:], start=1):
        checks = [
            value >= threshold
            for value, threshold in (
                (spend, level.min_spend),
                (orders, level.min_orders),
                (points, level.min_growth_points),
            )
            if threshold is not None
        ]
        met = pl.all_horizontal(checks) if level.match == "all" else pl.any_horizontal(checks)
        rank = pl.when(met).then(pl.lit(i, dtype=pl.Int8)).otherwise(rank)
    return rank


def rank_to_name(rank: pl.Expr, policy: TierPolicy) -> pl.Expr:
    return rank.replace_strict(
        list(range(len(policy.names))), list(policy.names), return_dtype=pl.String
    )


def window_figures(
    orders: pl.DataFrame, policy: TierPolicy, start: datetime, end: datetime
) -> pl.DataFrame:
    """Per member: net spend, purchase orders and growth points of orders with start < ts < end.

    ``orders`` must be sorted by ts (the slice is found by binary search).
    """
    ts = orders.get_column(Col.TS)
    lo = int(ts.search_sorted(start, side="right"))
    hi = int(ts.search_sorted(end, side="left"))
    return collect(
        orders.slice(lo, max(hi - lo, 0))
        .lazy()
        .group_by(Col.MEMBER_ID)
        .agg(
            pl.col(Col.AMOUNT).sum().alias(Feat.SPEND_WINDOW),
            pl.col(Feat.IS_ORDER).sum().cast(pl.Int64).alias(Feat.ORDERS_WINDOW),
        )
        .with_columns(
            (
                policy.points_per_currency * pl.col(Feat.SPEND_WINDOW)
                + policy.points_per_order * pl.col(Feat.ORDERS_WINDOW)
            ).alias(Feat.GROWTH_POINTS)
        )
    )


def tier_history(
    members: pl.DataFrame, orders: pl.DataFrame, policy: TierPolicy, as_of: datetime
) -> TierResult:
    """Replay the policy for every member up to ``as_of`` (orders with ts >= as_of are ignored).

    ``members``: member_id, joined_at. ``orders``: the order frame
    (:func:`feature_store.transforms.orders_from_purchases`) of those members.
    """
    key = Col.MEMBER_ID
    window = timedelta(days=policy.window_days)
    # by time: window figures at an instant are a slice found by binary search;
    # by member then time (a stable sort of the former): per-member windows and running maxima
    orders_by_ts = (
        orders.filter(pl.col(Col.TS) < as_of)
        .select(key, Col.TS, Col.AMOUNT, Feat.IS_ORDER)
        .sort(Col.TS)
    )
    events = _events_with_qualifying_rank(
        orders_by_ts.sort(key, maintain_order=True), policy, window
    )

    first_event = events.group_by(key).agg(pl.col(Col.TS).min().alias("__first"))
    joined = (
        members.select(key, Col.JOINED_AT)
        .join(first_event, on=key, how="left")
        .select(
            key,
            pl.min_horizontal(Col.JOINED_AT, "__first").alias(Feat.VALID_FROM),
            pl.lit(0, dtype=pl.Int8).alias(_RANK),
            pl.lit("joined").alias(Feat.REASON),
        )
    )
    origin = joined.get_column(Feat.VALID_FROM).min()
    starts = policy.period_starts(origin, as_of) if isinstance(origin, datetime) else []

    state = members.select(
        key,
        pl.lit(0, dtype=pl.Int8).alias(_RANK),
        pl.lit(None, dtype=pl.Datetime("us")).alias(_LAST_UPGRADE),
    )
    changes: list[pl.DataFrame] = [joined]
    # period k holds the events in [starts[k-1], starts[k]); a downgrade at a period start
    # comes before any order at the same instant
    bounds: list[datetime | None] = [None, *starts, None]
    for k in range(len(starts) + 1):
        lo, hi = bounds[k], bounds[k + 1]
        ts = pl.col(Col.TS)
        in_period = events.filter(
            (ts >= lo if lo is not None else pl.lit(True))
            & (ts < hi if hi is not None else pl.lit(True))
        )
        if in_period.height:
            state, upgrades = _apply_upgrades(state, in_period)
            changes.append(upgrades)
        if hi is not None:
            state, downgrades = _apply_downgrades(state, orders_by_ts, policy, hi)
            changes.append(downgrades)

    history = _history(pl.concat(changes, how="vertical_relaxed"), policy)
    current = (
        members.select(key)
        .join(
            history.group_by(key).agg(
                pl.col(Col.TIER).last().alias(Feat.POLICY_TIER),
                pl.col(Feat.VALID_FROM).last().alias(Feat.TIER_SINCE),
            ),
            on=key,
            how="left",
        )
        .join(window_figures(orders_by_ts, policy, as_of - window, as_of), on=key, how="left")
        .with_columns(
            pl.col(Feat.SPEND_WINDOW, Feat.GROWTH_POINTS).fill_null(0.0),
            pl.col(Feat.ORDERS_WINDOW).fill_null(0),
        )
    )
    return TierResult(history=history, current=current)


def _events_with_qualifying_rank(
    orders: pl.DataFrame, policy: TierPolicy, window: timedelta
) -> pl.DataFrame:
    """Orders (sorted by member, then ts) with the rank they qualify for over (ts - W, ts]."""
    key = Col.MEMBER_ID
    sums = orders.rolling(
        index_column=Col.TS,
        period=f"{window // timedelta(microseconds=1)}us",
        closed="right",
        group_by=key,
    ).agg(
        pl.col(Col.AMOUNT).sum().alias(Feat.SPEND_WINDOW),
        pl.col(Feat.IS_ORDER).sum().cast(pl.Int64).alias(Feat.ORDERS_WINDOW),
    )
    # a grouped rolling aggregation returns one row per input row, in input order for input
    # sorted by group then index; the running maxima of _apply_upgrades rely on that order
    if not (
        sums.get_column(key).equals(orders.get_column(key))
        and sums.get_column(Col.TS).equals(orders.get_column(Col.TS))
    ):
        raise RuntimeError(
            "polars rolling(group_by=...) changed its row order; cannot replay tiers"
        )
    spend, count = pl.col(Feat.SPEND_WINDOW), pl.col(Feat.ORDERS_WINDOW)
    points = policy.points_per_currency * spend + policy.points_per_order * count
    return sums.select(
        pl.col(key).set_sorted(), Col.TS, qualifying_rank(spend, count, points, policy).alias(_Q)
    )


def _apply_upgrades(state: pl.DataFrame, events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Upgrades within one period: an event upgrades when it qualifies above both the tier at the
    period start and every earlier qualifying rank of the member in this period.

    ``events`` are sorted by member, then ts. Only events that raise the member's running
    maximum above the lowest tier are joined with the state (few, compared with all events).
    """
    key = Col.MEMBER_ID
    q = pl.col(_Q)
    upgrades = (
        events.filter((q > 0) & (q > previous_max(q, pl.col(key)).fill_null(-1)))
        .join(state.select(key, _RANK), on=key, how="inner", maintain_order="left")
        .filter(q > pl.col(_RANK))
        .select(
            key,
            pl.col(Col.TS).alias(Feat.VALID_FROM),
            pl.col(_Q).alias(_RANK),
            pl.lit("upgrade").alias(Feat.REASON),
        )
    )
    latest = upgrades.group_by(key).agg(
        pl.col(_RANK).max().alias("__up_rank"), pl.col(Feat.VALID_FROM).max().alias("__up_at")
    )
    state = (
        state.join(latest, on=key, how="left", maintain_order="left")
        .with_columns(
            pl.max_horizontal(_RANK, "__up_rank").alias(_RANK),
            pl.coalesce("__up_at", _LAST_UPGRADE).alias(_LAST_UPGRADE),
        )
        .drop("__up_rank", "__up_at")
    )
    return state, upgrades


def _apply_downgrades(
    state: pl.DataFrame, orders_by_ts: pl.DataFrame, policy: TierPolicy, at: datetime
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Downgrade evaluation at the period start ``at``."""
    key = Col.MEMBER_ID
    figures = window_figures(orders_by_ts, policy, at - timedelta(days=policy.window_days), at)
    protected_until = pl.col(_LAST_UPGRADE) + timedelta(days=policy.protection_days)
    target = pl.col("__q")
    if policy.max_downgrade_steps > 0:
        target = pl.max_horizontal(target, pl.col(_RANK) - policy.max_downgrade_steps)
    evaluated = (
        state.filter(pl.col(_RANK) > 0)
        .join(figures, on=key, how="left")
        .with_columns(
            qualifying_rank(
                pl.col(Feat.SPEND_WINDOW).fill_null(0.0),
                pl.col(Feat.ORDERS_WINDOW).fill_null(0),
                pl.col(Feat.GROWTH_POINTS).fill_null(0.0),
                policy,
            ).alias("__q")
        )
        .filter(
            (pl.col("__q") < pl.col(_RANK))
            & (pl.col(_LAST_UPGRADE).is_null() | (protected_until <= at))
        )
        .select(key, target.cast(pl.Int8).alias("__down"))
    )
    downgrades = evaluated.select(
        key,
        pl.lit(at, dtype=pl.Datetime("us")).alias(Feat.VALID_FROM),
        pl.col("__down").alias(_RANK),
        pl.lit("downgrade").alias(Feat.REASON),
    )
    state = (
        state.join(evaluated, on=key, how="left", maintain_order="left")
        .with_columns(pl.coalesce("__down", _RANK).alias(_RANK))
        .drop("__down")
    )
    return state, downgrades


def _history(changes: pl.DataFrame, policy: TierPolicy) -> pl.DataFrame:
    key = Col.MEMBER_ID
    ordered = changes.with_columns(
        pl.col(Feat.REASON).replace_strict(_REASONS, return_dtype=pl.Int8).alias(_ORDER)
    ).sort(key, Feat.VALID_FROM, _ORDER)
    same_member_next = pl.col(key) == pl.col(key).shift(-1)
    return ordered.select(
        key,
        rank_to_name(pl.col(_RANK), policy).alias(Col.TIER),
        pl.col(Feat.VALID_FROM).cast(pl.Datetime("us")),
        pl.when(same_member_next)
        .then(pl.col(Feat.VALID_FROM).shift(-1))
        .otherwise(None)
        .cast(pl.Datetime("us"))
        .alias(Feat.VALID_TO),
        Feat.REASON,
    )


__all__ = ["TierResult", "qualifying_rank", "rank_to_name", "tier_history", "window_figures"]
