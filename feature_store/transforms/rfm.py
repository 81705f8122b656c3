"""RFM: recency, frequency, monetary value over the trailing window, 1-5 scores and segments.

Window: orders with ``as_of - window_days < ts < as_of``.

- ``recency_days``: whole days from the last purchase order in the window to ``as_of``.
- ``frequency``: purchase orders in the window; ``monetary``: net amount (returns subtract).
- Scores among the members with at least one purchase order in the window ("scored"): with
  ``rank`` the 1-based rank of the value with ties sharing the lowest rank and ``n`` the number
  of scored members, ``score = 1 + floor(5 * (rank - 1) / n)``; recency is ranked from the most
  days to the fewest, so recent buyers score 5. Members who bought before but not in the window
  score 1, 1, 1; members who never bought have no scores and no segment.
- Segment: the policy's R x FM map at ``(r_score, (f_score + m_score + 1) // 2)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from feature_store.policy import SCORE_LEVELS, RfmPolicy
from feature_store.schema import Col
from feature_store.transforms import Feat, collect, whole_days

#: Metrics with score bounds in the snapshot manifest (docs/feature_snapshot.md).
BOUNDED: tuple[tuple[str, str, bool], ...] = (
    (Feat.RECENCY_DAYS, Feat.R_SCORE, True),
    (Feat.FREQUENCY, Feat.F_SCORE, False),
    (Feat.MONETARY, Feat.M_SCORE, False),
)


@dataclass(frozen=True, slots=True)
class RfmResult:
    #: member_id, recency_days, frequency, monetary, r_score, f_score, m_score, rfm_segment
    features: pl.DataFrame
    #: metric -> lower bounds of scores 2..5 (upper bounds for recency); None: score not reached
    bounds: dict[str, list[float | None]]


def quintile_score(value: pl.Expr, *, reverse: bool = False) -> pl.Expr:
    """1-5 score of ``value`` among the rows of the frame (ties share the lower score)."""
    rank = value.rank("min", descending=reverse).cast(pl.Int64)
    return (1 + (SCORE_LEVELS * (rank - 1)) // pl.len()).cast(pl.Int8)


def segment_of(r_score: pl.Expr, f_score: pl.Expr, m_score: pl.Expr, policy: RfmPolicy) -> pl.Expr:
    """The policy's segment name for these scores (null when a score is null)."""
    fm = (f_score.cast(pl.Int16) + m_score.cast(pl.Int16) + 1) // 2
    cell = (r_score.cast(pl.Int16) - 1) * SCORE_LEVELS + (fm - 1)
    grid = policy.segment_grid
    return cell.replace_strict(list(range(len(grid))), list(grid), return_dtype=pl.String)


def rfm(
    members: pl.DataFrame, orders: pl.DataFrame, policy: RfmPolicy, as_of: datetime
) -> RfmResult:
    """RFM features for every member of ``members`` (member_id) from the order frame."""
    key = Col.MEMBER_ID
    since = as_of - timedelta(days=policy.window_days)
    in_window = pl.col(Col.TS) > since
    is_order = pl.col(Feat.IS_ORDER)
    per_member = collect(
        orders.lazy()
        .filter(pl.col(Col.TS) < as_of)
        .group_by(key)
        .agg(
            is_order.filter(in_window).sum().cast(pl.Int64).alias(Feat.FREQUENCY),
            pl.col(Col.AMOUNT).filter(in_window).sum().alias(Feat.MONETARY),
            pl.col(Col.TS).filter(in_window & is_order).max().alias("__last"),
            is_order.any().alias("__ever"),
        )
        .with_columns(whole_days(pl.col("__last"), as_of).alias(Feat.RECENCY_DAYS))
    )
    scored = per_member.filter(pl.col(Feat.FREQUENCY) > 0).with_columns(
        quintile_score(pl.col(Feat.RECENCY_DAYS), reverse=True).alias(Feat.R_SCORE),
        quintile_score(pl.col(Feat.FREQUENCY)).alias(Feat.F_SCORE),
        quintile_score(pl.col(Feat.MONETARY)).alias(Feat.M_SCORE),
    )
    lowest = pl.when(pl.col("__ever")).then(pl.lit(1, dtype=pl.Int8))
    features = (
        members.select(key)
        .join(per_member, on=key, how="left")
        .join(scored.select(key, Feat.R_SCORE, Feat.F_SCORE, Feat.M_SCORE), on=key, how="left")
        .with_columns(
            pl.col(Feat.FREQUENCY).fill_null(0),
            pl.col(Feat.MONETARY).fill_null(0.0),
            *(pl.col(s).fill_null(lowest) for s in (Feat.R_SCORE, Feat.F_SCORE, Feat.M_SCORE)),
        )
        .with_columns(
            segment_of(
                pl.col(Feat.R_SCORE), pl.col(Feat.F_SCORE), pl.col(Feat.M_SCORE), policy
            ).alias(Feat.RFM_SEGMENT)
        )
        .select(
            key,
            Feat.RECENCY_DAYS,
            Feat.FREQUENCY,
            Feat.MONETARY,
            Feat.R_SCORE,
            Feat.F_SCORE,
            Feat.M_SCORE,
            Feat.RFM_SEGMENT,
        )
    )
    return RfmResult(features=features, bounds=_score_bounds(scored))


def _score_bounds(scored: pl.DataFrame) -> dict[str, list[float | None]]:
    """Per metric and score s in 2..5: the smallest value scoring >= s (largest for recency)."""
    exprs = []
    for metric, score, reverse in BOUNDED:
        for s in range(2, SCORE_LEVELS + 1):
            values = pl.col(metric).filter(pl.col(score) >= s)
            exprs.append(
                (values.max() if reverse else values.min()).cast(pl.Float64).alias(f"{metric}:{s}")
            )
    row = scored.select(exprs).row(0, named=True)
    return {
        metric: [row[f"{metric}:{s}"] for s in range(2, SCORE_LEVELS + 1)]
        for metric, _, _ in BOUNDED
    }


def return_rate(purchases: pl.DataFrame, window_days: int, as_of: datetime) -> pl.DataFrame:
    """member_id, return_rate: returned units / bought units with ``as_of - W < ts < as_of``."""
    since = as_of - timedelta(days=window_days)
    qty = pl.col(Col.QUANTITY)
    return collect(
        purchases.lazy()
        .filter((pl.col(Col.TS) > since) & (pl.col(Col.TS) < as_of))
        .group_by(Col.MEMBER_ID)
        .agg(
            (-qty).filter(qty < 0).sum().alias("__returned"),
            qty.filter(qty > 0).sum().alias("__bought"),
        )
        .select(
            Col.MEMBER_ID,
            pl.when(pl.col("__bought") > 0)
            .then(pl.col("__returned") / pl.col("__bought"))
            .otherwise(0.0)
            .alias(Feat.RETURN_RATE),
        )
    )


__all__ = ["RfmResult", "quintile_score", "return_rate", "rfm", "segment_of"]
