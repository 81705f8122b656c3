"""Member-value predictions from fitted BG/NBD + Gamma-Gamma parameters (closed forms).

Inputs per member (days; the model time unit is ``params.unit_days``):

- ``frequency`` x: repeat purchase days; ``recency_days`` t_x; ``age_days`` T (see
  feature_store.value.summary for the exact definitions); ``monetary``: mean repeat-day value.

With x, t_x, T and the horizon t in model units, and BG/NBD parameters r, alpha, a, b:

- ``p_alive`` (Fader, Hardie & Lee 2008, note 021): 1 when x = 0 (in BG/NBD a member can only
  drop out right after a repeat purchase, so one-time buyers are always "alive"), else
  ``1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x))``.
- expected purchase days in the next t (FHL 2005, eq. 10):
  ``p_alive * (a + b + x - 1) / (a - 1)
  * [1 - ((alpha + T) / (alpha + T + t))^(r + x) * 2F1(r + x, b + x; a + b + x - 1; t / (alpha + T + t))]``
  (the bracket depends on x and T only, so it is computed once per distinct (x, T) pair).
- expected value of a purchase day (Gamma-Gamma, Fader & Hardie 2013, eq. 5) with k the number
  of repeat days with usable spend (x when the mean is > 0, else 0) and m their mean value:
  ``(q - 1) / (p k + q - 1) * v p / (q - 1) + p k / (p k + q - 1) * m``; the population mean
  ``v p / (q - 1)`` when k = 0.
- ``expected_spend`` in the horizon: expected purchase days x expected value of a day.
- ``clv`` over M months of ``month_days`` days (30: PyMC-Marketing's
  ``customer_lifetime_value`` convention for daily data) discounted monthly at d:
  ``sum_{k=1..M} spend_per_day * (E[X(k months)] - E[X((k - 1) months)]) / (1 + d)^k``.

Members without a purchase (NaN inputs) get NaN everywhere. PyMC-Marketing computes the same
formulas with xarray (tests/feature_store/value/test_scoring.py checks equality to 1e-6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from scipy.special import hyp2f1

if TYPE_CHECKING:
    from feature_store.value.fit import ValueParams

FloatArray = npt.NDArray[np.float64]

#: Month length of the CLV sum, in days.
MONTH_DAYS = 30.0


@dataclass(frozen=True, slots=True)
class ValueScores:
    """Per-member predictions (float64 arrays, NaN for members without a purchase)."""

    #: probability that the member has not dropped out
    p_alive: FloatArray
    #: expected purchase days in the horizon
    expected_orders: FloatArray
    #: expected spend in the horizon (expected purchase days x expected value of a day)
    expected_spend: FloatArray
    #: discounted expected spend over ``clv_months`` months
    clv: FloatArray


@dataclass(frozen=True, slots=True)
class MemberScore:
    """One member's predictions (floats, NaN without a purchase)."""

    p_alive: float
    expected_orders: float
    expected_spend: float
    clv: float


def _f64(values: npt.ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _check_horizon(horizon_days: float, clv_months: int, monthly_discount: float) -> None:
    if horizon_days < 0 or clv_months < 0 or monthly_discount <= -1:
        raise ValueError(
            "horizon_days and clv_months must be >= 0 and monthly_discount > -1, got "
            f"{horizon_days}, {clv_months}, {monthly_discount}"
        )


def p_alive(
    params: ValueParams, frequency: FloatArray, recency_days: FloatArray, age_days: FloatArray
) -> FloatArray:
    """Probability that each member is still alive (see the module docstring)."""
    x = _f64(frequency)
    u = params.unit_days
    t_x = _f64(recency_days) / u
    T = _f64(age_days) / u
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_odds = (params.r + x) * np.log((params.alpha + T) / (params.alpha + t_x)) + np.log(
            params.a / (params.b + np.maximum(x, 1.0) - 1.0)
        )
        alive = 1.0 / (1.0 + np.exp(log_odds))
    return np.where(x == 0, 1.0, alive)  # NaN x stays NaN through `alive`


def _conditional_bracket(params: ValueParams, x: FloatArray, T: FloatArray, t: float) -> FloatArray:
    """``(a + b + x - 1) / (a - 1) * [1 - (...)^(r + x) * 2F1(...)]`` for horizon t (model
    units): expected purchases in t of a member known to be alive."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + T + t)
    ratio = ((alpha + T) / (alpha + T + t)) ** (r + x)
    bracket = 1.0 - ratio * np.asarray(hyp2f1(r + x, b + x, a + b + x - 1.0, z), dtype=np.float64)
    return bracket * (a + b + x - 1.0) / (a - 1.0)


def _unique_pairs(
    x: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.intp]]:
    """The distinct (x, T) pairs and, per member, the index of its pair, for whole-day counts
    (the usual case: they pack into one int64 key, and 1M members have ~20k distinct pairs).
    Fractional values are not deduplicated (nearly all pairs would be distinct anyway, and a
    row-wise unique costs more than the hypergeometric evaluations it saves)."""
    if (
        x.size
        and np.all(x == np.floor(x))
        and np.all(np.floor(T) == T)
        and min(x.min(), T.min()) >= 0
        and max(x.max(), T.max()) < 2**31
    ):
        key = x.astype(np.int64) * np.int64(2**31) + T.astype(np.int64)
        uniq, inverse = np.unique(key, return_inverse=True)
        return (uniq // 2**31).astype(np.float64), (uniq % 2**31).astype(np.float64), inverse
    return x, T, np.arange(x.size)


def expected_spend_per_day(
    params: ValueParams, frequency: FloatArray, monetary: FloatArray
) -> FloatArray:
    """Gamma-Gamma conditional expected value of a purchase day (NaN where frequency is NaN)."""
    x = _f64(frequency)
    m = _f64(monetary)
    usable = np.nan_to_num(m, nan=0.0) > 0.0
    k = np.where(usable, x, 0.0)  # NaN x stays NaN
    m = np.where(usable, m, 0.0)
    p, q, v = params.p, params.q, params.v
    weight = p * k / (p * k + q - 1.0)
    return (1.0 - weight) * (v * p / (q - 1.0)) + weight * m


def score_members(
    params: ValueParams,
    frequency: npt.ArrayLike,
    recency_days: npt.ArrayLike,
    age_days: npt.ArrayLike,
    monetary: npt.ArrayLike,
    horizon_days: float = 90.0,
    clv_months: int = 12,
    monthly_discount: float = 0.01,
    month_days: float = MONTH_DAYS,
) -> ValueScores:
    """p_alive, expected purchase days and spend in ``horizon_days``, and CLV, per member.

    Vectorized; the hypergeometric term is evaluated once per distinct (x, T) pair and horizon
    (about 20k pairs for 1M members with integer day counts).
    """
    _check_horizon(horizon_days, clv_months, monthly_discount)
    x = _f64(frequency)
    t_x = _f64(recency_days)
    age = _f64(age_days)
    alive = p_alive(params, x, t_x, age)
    spend_day = expected_spend_per_day(params, x, _f64(monetary))
    out_orders = np.full(x.shape, np.nan)
    out_clv = np.full(x.shape, np.nan)
    has = np.isfinite(x) & np.isfinite(age) & np.isfinite(t_x)
    if has.any():
        u = params.unit_days
        ux, u_age, inverse = _unique_pairs(x[has], age[has])  # in days: usually whole
        uT = u_age / u

        def conditional(days: float) -> FloatArray:
            if days == 0:
                return np.zeros(inverse.shape)
            return _conditional_bracket(params, ux, uT, days / u)[inverse]

        alive_has = alive[has]
        out_orders[has] = alive_has * conditional(horizon_days)
        clv = np.zeros(inverse.shape)
        previous = np.zeros(inverse.shape)
        for month in range(1, clv_months + 1):
            current = conditional(month * month_days)
            clv += (current - previous) / (1.0 + monthly_discount) ** month
            previous = current
        out_clv[has] = alive_has * clv * spend_day[has]
    return ValueScores(
        p_alive=alive,
        expected_orders=out_orders,
        expected_spend=out_orders * spend_day,
        clv=out_clv,
    )


# --------------------------------------------------------------------------------------------
# One member (the API event path)
# --------------------------------------------------------------------------------------------


def score_member(
    params: ValueParams,
    frequency: float,
    recency_days: float,
    age_days: float,
    monetary: float,
    horizon_days: float = 90.0,
    clv_months: int = 12,
    monthly_discount: float = 0.01,
    month_days: float = MONTH_DAYS,
) -> MemberScore:
    """:func:`score_members` for one member: plain floats except one small-array hyp2f1 call
    for the horizon and the month boundaries (about 15-35 us per member; 13 scalar hyp2f1 calls
    take longer than one ufunc call on 13 values)."""
    _check_horizon(horizon_days, clv_months, monthly_discount)
    if not (math.isfinite(frequency) and math.isfinite(recency_days) and math.isfinite(age_days)):
        nan = float("nan")
        return MemberScore(nan, nan, nan, nan)
    u = params.unit_days
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, T = float(frequency), recency_days / u, age_days / u
    if x == 0:
        alive = 1.0
    else:
        log_odds = (r + x) * math.log((alpha + T) / (alpha + t_x)) + math.log(a / (b + x - 1.0))
        alive = 1.0 / (1.0 + math.exp(log_odds)) if log_odds < 700 else 0.0
    p, q, v = params.p, params.q, params.v
    k = x if (monetary == monetary and monetary > 0) else 0.0
    weight = p * k / (p * k + q - 1.0)
    spend_day = (1.0 - weight) * (v * p / (q - 1.0)) + weight * (monetary if k else 0.0)

    # expected purchases of an alive member by the horizon and by each month boundary
    t = np.array([horizon_days, *(m * month_days for m in range(1, clv_months + 1))]) / u
    d = alpha + T + t
    ratio = ((alpha + T) / d) ** (r + x)
    h = np.asarray(hyp2f1(r + x, b + x, a + b + x - 1.0, t / d), dtype=np.float64)
    conditional: list[float] = ((1.0 - ratio * h) * ((a + b + x - 1.0) / (a - 1.0))).tolist()

    orders = alive * conditional[0]
    clv = 0.0
    previous = 0.0
    for month in range(1, clv_months + 1):
        current = conditional[month]
        clv += (current - previous) / (1.0 + monthly_discount) ** month
        previous = current
    return MemberScore(alive, orders, orders * spend_day, alive * clv * spend_day)


def prob_no_purchase(
    params: ValueParams,
    frequency: npt.ArrayLike,
    recency_days: npt.ArrayLike,
    age_days: npt.ArrayLike,
    horizon_days: float = 90.0,
) -> FloatArray:
    """Probability of no purchase day in the next ``horizon_days``.

    A dead member never buys; an alive one has rate lambda ~ Gamma(r + x, alpha + T) given
    their history, and no purchase in t with probability ((alpha + T) / (alpha + T + t))^(r + x):
    ``1 - p_alive + p_alive * ((alpha + T) / (alpha + T + t))^(r + x)``. Unlike ``p_alive`` it is
    below 1 for one-time buyers, so it ranks them too.
    """
    x = _f64(frequency)
    u = params.unit_days
    T = _f64(age_days) / u
    alive = p_alive(params, x, _f64(recency_days), _f64(age_days))
    t = horizon_days / u
    quiet = ((params.alpha + T) / (params.alpha + T + t)) ** (params.r + x)
    return 1.0 - alive + alive * quiet


__all__ = [
    "MONTH_DAYS",
    "MemberScore",
    "ValueScores",
    "expected_spend_per_day",
    "p_alive",
    "prob_no_purchase",
    "score_member",
    "score_members",
]
