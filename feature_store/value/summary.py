"""Sufficient statistics of the member-value model, from purchase lines.

The BG/NBD and Gamma-Gamma models (feature_store.value.fit) see each member only through four
numbers: how many *purchase days* they had, their first and last purchase day, and the spend of
the purchase days after the first. This module computes them from the canonical purchase lines
and derives the model inputs.

Definitions (plain words):

- A *purchase order* is an order (member, order_id) whose net quantity is > 0, as in
  :func:`feature_store.transforms.orders_from_purchases`; it is dated by its first line's ``ts``.
  Returns and cancellations (their own order ids, net quantity <= 0) are not purchases and do not
  enter the spend either: the Gamma-Gamma model describes what a member spends per purchase.
- A *purchase day* is a calendar date with at least one purchase order. Several orders on one
  day are one transaction (as in the CDNOW studies); the *day value* is the sum of the net
  amounts of that day's purchase orders.
- ``as_of`` is exclusive, like the feature snapshot: only purchase lines with ``ts`` strictly
  before ``as_of`` 00:00 are read. The *last observed day* is therefore ``as_of - 1 day``.

Model inputs, in days (the fitter and the scorer divide by the model time unit, ``unit_days``):

- ``frequency`` x: purchase days - 1 (repeat purchase days).
- ``recency_days`` t_x: days from the first to the last purchase day.
- ``age_days`` T: days from the first purchase day to the last observed day (``as_of - 1``).
  Each purchase day is placed at its date, so T >= t_x always and a member who first bought
  yesterday has T = 0. This is the convention of Fader, Hardie & Lee (2005): their CDNOW
  calibration ends on 1997-09-30 inclusive, which is ``as_of = 1997-10-01`` here. (Measuring T
  to ``as_of`` itself, one day later, moves the fitted a and b of CDNOW by 2-3%.)
- ``monetary``: mean day value over the repeat days (repeat spend / x); NaN when x = 0.
- ``spend_frequency``: x when the mean repeat-day value is > 0, else 0. Gamma-Gamma needs a
  positive mean spend; members without one count as having no usable spend observation, so
  their expected spend per purchase day is the population mean.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from feature_store.schema import Col
from feature_store.transforms import collect

FloatArray = npt.NDArray[np.float64]


class ValueCol:
    """Column names of the value statistics frame (:func:`summaries`)."""

    PURCHASE_DAYS = "value_purchase_days"
    FIRST_DAY = "value_first_day"
    LAST_DAY = "value_last_day"
    REPEAT_SPEND = "value_repeat_spend"


#: Column order of :func:`summaries`.
SUMMARY_COLUMNS: Final[tuple[str, ...]] = (
    Col.MEMBER_ID,
    ValueCol.PURCHASE_DAYS,
    ValueCol.FIRST_DAY,
    ValueCol.LAST_DAY,
    ValueCol.REPEAT_SPEND,
)

_DAY = "__day"
_ORDER = "__order"
_HASH_SEED: Final[int] = 0x5EED


def observation_end(as_of: date) -> date:
    """The last observed day for statistics as of ``as_of`` (exclusive): ``as_of - 1 day``."""
    return as_of - timedelta(days=1)


def summaries(purchases: pl.DataFrame | pl.LazyFrame, as_of: date) -> pl.DataFrame:
    """Each member's value statistics from purchase lines strictly before ``as_of`` 00:00.

    ``purchases`` has the canonical columns member_id, order_id, ts, quantity, amount. Returns
    one row per member with at least one purchase day: member_id, value_purchase_days (Int64),
    value_first_day and value_last_day (Date), value_repeat_spend (Float64: the summed day
    values of the purchase days after the first), sorted by member_id. Members without a purchase day before
    ``as_of`` are absent: join on the members table and read a missing row as 0 purchase days.

    Order ids are grouped through a 64-bit hash within each member (about twice as fast as
    grouping strings at 20M lines; a collision needs two of one member's orders to share a
    hash, probability ~n^2 / 2^64).
    """
    cut = datetime(as_of.year, as_of.month, as_of.day)
    day = pl.col(_DAY)
    amount = pl.col(Col.AMOUNT)
    query = (
        purchases.lazy()
        .filter(pl.col(Col.TS) < cut)
        .group_by(Col.MEMBER_ID, pl.col(Col.ORDER_ID).hash(_HASH_SEED).alias(_ORDER))
        .agg(
            pl.col(Col.TS).min().dt.date().alias(_DAY),
            amount.sum(),
            pl.col(Col.QUANTITY).sum(),
        )
        .filter(pl.col(Col.QUANTITY) > 0)
        .group_by(Col.MEMBER_ID, _DAY)
        .agg(amount.sum())
        .group_by(Col.MEMBER_ID)
        .agg(
            pl.len().cast(pl.Int64).alias(ValueCol.PURCHASE_DAYS),
            day.min().alias(ValueCol.FIRST_DAY),
            day.max().alias(ValueCol.LAST_DAY),
            (amount.sum() - amount.min_by(day)).cast(pl.Float64).alias(ValueCol.REPEAT_SPEND),
        )
        .select(SUMMARY_COLUMNS)
    )
    return collect(query).sort(Col.MEMBER_ID)


def purchase_day_counts(
    purchases: pl.DataFrame | pl.LazyFrame, start: date, stop: date
) -> pl.DataFrame:
    """Purchase days per member in ``[start, stop)`` (lines with ts in that range): member_id,
    value_purchase_days. Members without one are absent. Used for holdout actuals."""
    lo = datetime(start.year, start.month, start.day)
    hi = datetime(stop.year, stop.month, stop.day)
    ts = pl.col(Col.TS)
    query = (
        purchases.lazy()
        .filter((ts >= lo) & (ts < hi))
        .group_by(Col.MEMBER_ID, pl.col(Col.ORDER_ID).hash(_HASH_SEED).alias(_ORDER))
        .agg(ts.min().dt.date().alias(_DAY), pl.col(Col.QUANTITY).sum())
        .filter(pl.col(Col.QUANTITY) > 0)
        .group_by(Col.MEMBER_ID)
        .agg(pl.col(_DAY).n_unique().cast(pl.Int64).alias(ValueCol.PURCHASE_DAYS))
    )
    return collect(query)


# --------------------------------------------------------------------------------------------
# Model inputs
# --------------------------------------------------------------------------------------------


def frequency_expr() -> pl.Expr:
    """Repeat purchase days x = purchase days - 1 (null without a purchase day)."""
    days = pl.col(ValueCol.PURCHASE_DAYS)
    return pl.when(days > 0).then(days - 1).cast(pl.Float64)


def recency_days_expr() -> pl.Expr:
    """t_x in days: first to last purchase day."""
    return (pl.col(ValueCol.LAST_DAY) - pl.col(ValueCol.FIRST_DAY)).dt.total_days().cast(pl.Float64)


def age_days_expr(as_of: date) -> pl.Expr:
    """T in days: first purchase day to the last observed day (``as_of - 1``)."""
    end = pl.lit(observation_end(as_of), dtype=pl.Date)
    return (end - pl.col(ValueCol.FIRST_DAY)).dt.total_days().cast(pl.Float64)


def monetary_expr() -> pl.Expr:
    """Mean repeat-day value (repeat spend / x); null when x = 0."""
    x = pl.col(ValueCol.PURCHASE_DAYS) - 1
    return pl.when(x > 0).then(pl.col(ValueCol.REPEAT_SPEND) / x).cast(pl.Float64)


def to_model_time(days: FloatArray, unit_days: float) -> FloatArray:
    """Days expressed in the model time unit (7.0: weeks)."""
    return np.asarray(days, dtype=np.float64) / float(unit_days)


def spend_frequency(frequency: FloatArray, monetary: FloatArray) -> FloatArray:
    """Gamma-Gamma's transaction count: x where the mean repeat-day value is > 0, else 0 (also
    0 where x or the mean is NaN)."""
    usable = np.nan_to_num(monetary, nan=0.0) > 0.0
    return np.where(usable, np.nan_to_num(frequency, nan=0.0), 0.0)


@dataclass(frozen=True, slots=True)
class ModelInputs:
    """Per-member model inputs (float64 arrays aligned with ``member_id``), times in days.

    Members without a purchase day have NaN in every array.
    """

    member_id: pl.Series
    frequency: FloatArray
    recency_days: FloatArray
    age_days: FloatArray
    monetary: FloatArray

    @property
    def spend_frequency(self) -> FloatArray:
        return spend_frequency(self.frequency, self.monetary)

    def __len__(self) -> int:
        return len(self.frequency)


def model_inputs(stats: pl.DataFrame, as_of: date) -> ModelInputs:
    """Model inputs from a :func:`summaries` frame (rows with 0 or null purchase days give NaN).

    Raises ValueError when a purchase day is on or after ``as_of`` (the statistics were computed
    as of a later date).
    """
    frame = stats.select(
        pl.col(Col.MEMBER_ID),
        frequency_expr().alias("x"),
        recency_days_expr().alias("t_x"),
        age_days_expr(as_of).alias("T"),
        monetary_expr().alias("m"),
    )
    has = frame["x"].is_not_null().to_numpy()
    x = frame["x"].to_numpy().astype(np.float64)
    t_x = np.where(has, frame["t_x"].to_numpy().astype(np.float64), np.nan)
    age = np.where(has, frame["T"].to_numpy().astype(np.float64), np.nan)
    if np.any(age < 0) or np.any(t_x > age):
        raise ValueError(f"value statistics hold purchase days on or after as_of {as_of}")
    monetary = frame["m"].to_numpy().astype(np.float64)
    return ModelInputs(frame[Col.MEMBER_ID], x, t_x, age, monetary)


# --------------------------------------------------------------------------------------------
# One member, event by event
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberValueStats:
    """One member's statistics (a row of :func:`summaries`), updatable by purchase events."""

    purchase_days: int = 0
    first_day: date | None = None
    last_day: date | None = None
    repeat_spend: float = 0.0

    def add_purchase(self, day: date, amount: float) -> MemberValueStats:
        """The statistics after one more purchase order on ``day`` worth ``amount`` (net).

        A new day after the last one is a new purchase day; an order on the last day adds to
        that day's value (to the repeat spend unless it is also the first day). An order dated
        before the last purchase day cannot be placed without the member's history (was that
        day already a purchase day?): it leaves the statistics unchanged and the next snapshot
        counts it.
        """
        if self.purchase_days <= 0 or self.first_day is None or self.last_day is None:
            return MemberValueStats(1, day, day, 0.0)
        if day > self.last_day:
            return replace(
                self,
                purchase_days=self.purchase_days + 1,
                last_day=day,
                repeat_spend=self.repeat_spend + amount,
            )
        if day == self.last_day and day != self.first_day:
            return replace(self, repeat_spend=self.repeat_spend + amount)
        return self

    def inputs(self, as_of: date) -> tuple[float, float, float, float]:
        """(frequency, recency_days, age_days, monetary) as of ``as_of`` (exclusive); NaNs
        without a purchase day, monetary NaN when frequency is 0."""
        if self.purchase_days <= 0 or self.first_day is None or self.last_day is None:
            nan = float("nan")
            return nan, nan, nan, nan
        x = float(self.purchase_days - 1)
        recency = float((self.last_day - self.first_day).days)
        age = float((observation_end(as_of) - self.first_day).days)
        monetary = self.repeat_spend / x if x > 0 else float("nan")
        return x, recency, age, monetary


__all__ = [
    "SUMMARY_COLUMNS",
    "MemberValueStats",
    "ModelInputs",
    "ValueCol",
    "age_days_expr",
    "frequency_expr",
    "model_inputs",
    "monetary_expr",
    "observation_end",
    "purchase_day_counts",
    "recency_days_expr",
    "spend_frequency",
    "summaries",
    "to_model_time",
]
