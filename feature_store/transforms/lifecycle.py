"""Lifecycle stage (new, active, at_risk, churned) and the purchase-rhythm features behind it.

The stage follows :meth:`feature_store.policy.LifecyclePolicy.stage` exactly (the same rule as
column expressions); all figures use every order before ``as_of``.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from feature_store.policy import LifecyclePolicy, Threshold
from feature_store.schema import Col
from feature_store.transforms import Feat, collect, whole_days

_US_PER_DAY = 86_400_000_000


def _limit(threshold: Threshold, interval: pl.Expr) -> pl.Expr:
    return (threshold.multiplier * interval).clip(threshold.floor_days, threshold.cap_days)


def stage_expr(
    days_since_joined: pl.Expr,
    days_since_last_purchase: pl.Expr,
    avg_interpurchase_days: pl.Expr,
    n_orders: pl.Expr,
    policy: LifecyclePolicy,
    p_alive: pl.Expr | None = None,
) -> pl.Expr:
    """The lifecycle stage as an expression (same rule as ``LifecyclePolicy.stage``; ``p_alive``
    is used only by ``rule = "p_alive"``, and a null ``p_alive`` falls back to the days)."""
    interval = (
        pl.when((n_orders >= 2) & avg_interpurchase_days.is_not_null())
        .then(avg_interpurchase_days)
        .otherwise(pl.lit(policy.default_interval_days))
    )
    active = _limit(policy.active, interval)
    churn = pl.max_horizontal(_limit(policy.churn, interval), active)
    by_p_alive = (
        p_alive.is_not_null() & (days_since_last_purchase <= churn)
        if policy.rule == "p_alive" and p_alive is not None
        else pl.lit(False)
    )
    below = p_alive < policy.p_alive_below if p_alive is not None else pl.lit(False)
    return (
        pl.when(days_since_joined < policy.new_days)
        .then(pl.lit("new"))
        .when((n_orders <= 0) | days_since_last_purchase.is_null())
        .then(pl.lit("churned"))
        .when(by_p_alive)
        .then(pl.when(below).then(pl.lit("at_risk")).otherwise(pl.lit("active")))
        .when(days_since_last_purchase <= active)
        .then(pl.lit("active"))
        .when(days_since_last_purchase <= churn)
        .then(pl.lit("at_risk"))
        .otherwise(pl.lit("churned"))
    )


def restage(frame: pl.DataFrame, policy: LifecyclePolicy, p_alive: str) -> pl.DataFrame:
    """``frame`` (the columns :func:`lifecycle` returns plus ``p_alive``) with its lifecycle
    stage recomputed by ``rule = "p_alive"``; unchanged under ``rule = "days"``."""
    if policy.rule != "p_alive":
        return frame
    return frame.with_columns(
        stage_expr(
            pl.col(Feat.DAYS_SINCE_JOINED),
            pl.col(Feat.DAYS_SINCE_LAST_PURCHASE),
            pl.col(Feat.AVG_INTERPURCHASE_DAYS),
            pl.col(Feat.N_ORDERS),
            policy,
            pl.col(p_alive),
        ).alias(Feat.LIFECYCLE)
    )


def lifecycle(
    members: pl.DataFrame, orders: pl.DataFrame, policy: LifecyclePolicy, as_of: datetime
) -> pl.DataFrame:
    """Per member (member_id, joined_at): first_purchase_at, last_purchase_at, n_orders,
    total_spend, avg_interpurchase_days, days_since_last_purchase, days_since_joined, lifecycle."""
    key = Col.MEMBER_ID
    ts = pl.col(Col.TS)
    is_order = pl.col(Feat.IS_ORDER)
    per_member = collect(
        orders.lazy()
        .filter(ts < as_of)
        .group_by(key)
        .agg(
            ts.filter(is_order).min().alias(Feat.FIRST_PURCHASE_AT),
            ts.filter(is_order).max().alias(Feat.LAST_PURCHASE_AT),
            is_order.sum().cast(pl.Int64).alias(Feat.N_ORDERS),
            pl.col(Col.AMOUNT).sum().alias(Feat.TOTAL_SPEND),
        )
    )
    span_days = (
        pl.col(Feat.LAST_PURCHASE_AT) - pl.col(Feat.FIRST_PURCHASE_AT)
    ).dt.total_microseconds() / _US_PER_DAY
    return (
        members.select(key, Col.JOINED_AT)
        .join(per_member, on=key, how="left")
        .with_columns(
            pl.col(Feat.N_ORDERS).fill_null(0),
            pl.col(Feat.TOTAL_SPEND).fill_null(0.0),
            pl.when(pl.col(Feat.N_ORDERS) >= 2)
            .then(span_days / (pl.col(Feat.N_ORDERS) - 1))
            .alias(Feat.AVG_INTERPURCHASE_DAYS),
            whole_days(pl.col(Feat.LAST_PURCHASE_AT), as_of).alias(Feat.DAYS_SINCE_LAST_PURCHASE),
            whole_days(pl.col(Col.JOINED_AT), as_of).alias(Feat.DAYS_SINCE_JOINED),
        )
        .with_columns(
            stage_expr(
                pl.col(Feat.DAYS_SINCE_JOINED),
                pl.col(Feat.DAYS_SINCE_LAST_PURCHASE),
                pl.col(Feat.AVG_INTERPURCHASE_DAYS),
                pl.col(Feat.N_ORDERS),
                policy,
            ).alias(Feat.LIFECYCLE)
        )
        .drop(Col.JOINED_AT)
    )


__all__ = ["lifecycle", "restage", "stage_expr"]
