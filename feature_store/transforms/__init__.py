"""Pure feature transforms on polars frames: tiers, RFM, lifecycle, tags and item statistics.

Each transform takes typed frames and a part of the policy and returns frames; none reads or
writes files. The member key column is ``Col.MEMBER_ID`` whatever its dtype (the offline builder
passes dense integer codes for speed, tests pass strings).

Most member features start from the *order* frame (:func:`orders_from_purchases`): one row per
(member, order_id) with the order's first timestamp, net amount and net quantity. An order whose
net quantity is > 0 is a *purchase order* (``is_order``); a return or cancellation (its own
order id, negative quantity) is not, but its negative amount still reduces spend.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import polars as pl

from feature_store.schema import Col


class Feat:
    """Names of feature columns (docs/feature_snapshot.md)."""

    # members
    TIER_SOURCE = "tier_source"
    POLICY_TIER = "policy_tier"
    TIER_SINCE = "tier_since"
    SPEND_WINDOW = "spend_window"
    ORDERS_WINDOW = "orders_window"
    GROWTH_POINTS = "growth_points"
    RECENCY_DAYS = "recency_days"
    FREQUENCY = "frequency"
    MONETARY = "monetary"
    R_SCORE = "r_score"
    F_SCORE = "f_score"
    M_SCORE = "m_score"
    RFM_SEGMENT = "rfm_segment"
    LIFECYCLE = "lifecycle"
    DAYS_SINCE_LAST_PURCHASE = "days_since_last_purchase"
    AVG_INTERPURCHASE_DAYS = "avg_interpurchase_days"
    FIRST_PURCHASE_AT = "first_purchase_at"
    LAST_PURCHASE_AT = "last_purchase_at"
    N_ORDERS = "n_orders"
    TOTAL_SPEND = "total_spend"
    RETURN_RATE = "return_rate"
    DAYS_SINCE_JOINED = "days_since_joined"
    TOP_CATEGORIES = "top_categories"
    BIRTH_MONTH = "birth_month"
    BIRTHDAY_THIS_MONTH = "birthday_this_month"
    CRM_TAGS = "crm_tags"
    # member value (feature_store.value)
    PURCHASE_DAYS = "purchase_days"
    REPEAT_DAY_SPEND = "repeat_day_spend"
    P_ALIVE = "p_alive"
    EXPECTED_ORDERS_90D = "expected_orders_90d"
    EXPECTED_SPEND_90D = "expected_spend_90d"
    CLV = "clv"
    # items
    PRICE_BAND = "price_band"
    POP_7D = "pop_7d"
    POP_30D = "pop_30d"
    POP_90D = "pop_90d"
    BUYERS = "buyers"
    REPEAT_RATE = "repeat_rate"
    # tier history
    VALID_FROM = "valid_from"
    VALID_TO = "valid_to"
    REASON = "reason"
    # order frame
    IS_ORDER = "is_order"


DAY: Final[timedelta] = timedelta(days=1)
_US_PER_DAY: Final[int] = 86_400_000_000


def whole_days(since: pl.Expr, until: datetime) -> pl.Expr:
    """Whole days (floor) from ``since`` to ``until`` as Int64."""
    return (pl.lit(until, dtype=pl.Datetime("us")) - since).dt.total_microseconds() // _US_PER_DAY


def collect(query: pl.LazyFrame) -> pl.DataFrame:
    """Run a query on polars' streaming engine: its parallel group-bys take about a third of
    the CPU time and less memory than the in-memory engine at 20M rows (operations it lacks
    fall back to the in-memory engine)."""
    return query.collect(engine="streaming")


def previous_max(value: pl.Expr, key: pl.Expr, bits: int = 8) -> pl.Expr:
    """For rows sorted by ``key``: the maximum of ``value`` over the earlier rows of the same
    key (null on each key's first row). ``value`` must be an integer in ``[0, 2**bits)``.

    Same result as ``value.cum_max().shift(1).over(key)``, but one pass over sorted runs instead
    of a window over a million groups (about 25x faster at 4M rows): the run number shifted
    left by ``bits`` plus the value has a global running maximum that never crosses runs.
    """
    run = key.rle_id().cast(pl.Int64)
    running = (run * (1 << bits) + value.cast(pl.Int64)).cum_max() - run * (1 << bits)
    return pl.when(key == key.shift(1)).then(running.shift(1))


def position_in_run(key: pl.Expr) -> pl.Expr:
    """For rows sorted by ``key``: 0 for each key's first row, then 1, 2, ...

    Same as ``pl.int_range(pl.len()).over(key)`` without a window over many groups.
    """
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    first = pl.when((key != key.shift(1)).fill_null(True)).then(row)
    return row - first.forward_fill()


def orders_from_purchases(purchases: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """One row per (member, order): first ``ts``, net ``amount``, net ``quantity``, ``is_order``."""
    return (
        purchases.lazy()
        .group_by(Col.MEMBER_ID, Col.ORDER_ID)
        .agg(
            pl.col(Col.TS).min(),
            pl.col(Col.AMOUNT).sum(),
            pl.col(Col.QUANTITY).sum(),
        )
        .with_columns((pl.col(Col.QUANTITY) > 0).alias(Feat.IS_ORDER))
    )


__all__ = [
    "DAY",
    "Feat",
    "collect",
    "orders_from_purchases",
    "position_in_run",
    "previous_max",
    "whole_days",
]
