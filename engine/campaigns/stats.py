"""Treatment versus control: per-group metrics and their difference with a confidence interval.

Pure numpy/scipy. Every function takes the two groups' per-member outcomes (or counts) and
returns plain numbers: never NaN or infinity. What cannot be computed is ``None`` and the reason
is in ``flags``. "Difference" is always treatment minus control.

Methods, in plain words:

- **Proportions** (conversion, bought anything, retention, tier upgrade):
  each group's rate has a **Wilson score** interval; the difference has the **Newcombe hybrid
  score** interval (Newcombe 1998, method 10), built from the two Wilson intervals. Unlike the
  textbook Wald interval it stays inside [-1, 1] and keeps its coverage for rates near 0 or 1
  and for small groups (zero or all conversions give a sensible interval, not a zero-width one).
  The p-value is the two-sided **two-proportion z-test** with the pooled rate; when an expected
  cell count is below 5 it is **Fisher's exact test** instead (``method`` says which).
- **Means** (revenue per member, orders per member): **Welch's t** interval and test (no equal
  variance assumption; degrees of freedom by Welch-Satterthwaite).
- **Ratios of sums** (average order value = revenue / orders, summed over the group): the
  **delta method**. A group's ratio R = mean(y) / mean(x) has variance about
  (var(y) - 2 R cov(x, y) + R^2 var(x)) / (n mean(x)^2); the two groups are independent, so the
  variance of the difference is the sum. Normal interval and z-test.
- **Totals** (incremental revenue, incremental conversions): a per-member difference times the
  treatment group's size; the interval is scaled the same way (the size is fixed).
- **Minimum detectable effect**: the smallest absolute uplift in conversion the test would find
  with the given power at two-sided level alpha, given the group sizes and the control rate:
  the d that solves d = (z_{1-alpha/2} + z_{power}) * sqrt(p_c(1-p_c)/n_c + p_t(1-p_t)/n_t),
  p_t = p_c + d (unpooled variance, solved numerically).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats

FloatArray = npt.NDArray[np.float64]

#: flags (machine-readable reasons attached to a result)
EMPTY_TREATMENT: Final[str] = "empty_treatment"
EMPTY_CONTROL: Final[str] = "empty_control"
TOO_FEW_MEMBERS: Final[str] = "too_few_members"
NO_CONVERSIONS: Final[str] = "no_conversions"
ALL_CONVERTED: Final[str] = "all_converted"
NO_VARIATION: Final[str] = "no_variation"
NO_ORDERS: Final[str] = "no_orders"
SMALL_COUNTS: Final[str] = "small_counts"
UNDETECTABLE: Final[str] = "undetectable"

METHOD_PROPORTION: Final[str] = "Newcombe hybrid score interval; two-proportion z-test (pooled)"
METHOD_PROPORTION_EXACT: Final[str] = "Newcombe hybrid score interval; Fisher's exact test"
METHOD_MEAN: Final[str] = "Welch t interval and test"
METHOD_RATIO: Final[str] = "delta method (ratio of sums), normal interval and z-test"


@dataclass(frozen=True, slots=True)
class GroupStat:
    """One group's value of a metric with its interval (``None`` where undefined)."""

    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True, slots=True)
class Difference:
    """Treatment minus control with its interval and two-sided p-value."""

    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    method: str
    flags: tuple[str, ...] = ()

    def scaled(self, factor: float, method: str) -> Difference:
        """The same difference times a fixed ``factor`` (a total from a per-member value)."""

        def mul(v: float | None) -> float | None:
            return None if v is None else _clean(v * factor)

        return Difference(
            mul(self.estimate), mul(self.ci_low), mul(self.ci_high), self.p_value, method,
            self.flags,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Comparison:
    """A metric in both groups and their difference."""

    treatment: GroupStat
    control: GroupStat
    difference: Difference


def z_value(confidence: float) -> float:
    """Two-sided normal quantile: 1.959964 for 0.95."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1) (got {confidence})")
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def _clean(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# ---------------------------------------------------------------------- proportions


def wilson_interval(
    successes: npt.ArrayLike, n: npt.ArrayLike, confidence: float = 0.95
) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval of a proportion, vectorized; (0, 1) where n == 0."""
    x = np.asarray(successes, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    z = z_value(confidence)
    safe = np.where(m > 0, m, 1.0)
    p = x / safe
    denom = 1.0 + z * z / safe
    center = (p + z * z / (2.0 * safe)) / denom
    half = z * np.sqrt(p * (1.0 - p) / safe + z * z / (4.0 * safe * safe)) / denom
    low = np.where(m > 0, np.clip(center - half, 0.0, 1.0), 0.0)
    high = np.where(m > 0, np.clip(center + half, 0.0, 1.0), 1.0)
    # exact ends: a rate of 0 (or 1) has its interval start (or end) exactly there
    low = np.where((m > 0) & (x <= 0), 0.0, low)
    high = np.where((m > 0) & (x >= m), 1.0, high)
    return low, high


def newcombe_interval(
    x_t: npt.ArrayLike,
    n_t: npt.ArrayLike,
    x_c: npt.ArrayLike,
    n_c: npt.ArrayLike,
    confidence: float = 0.95,
) -> tuple[FloatArray, FloatArray]:
    """Newcombe's hybrid score interval of p_t - p_c, vectorized (both n must be > 0)."""
    xt, nt = np.asarray(x_t, dtype=np.float64), np.asarray(n_t, dtype=np.float64)
    xc, nc = np.asarray(x_c, dtype=np.float64), np.asarray(n_c, dtype=np.float64)
    pt, pc = xt / np.where(nt > 0, nt, 1.0), xc / np.where(nc > 0, nc, 1.0)
    lt, ut = wilson_interval(xt, nt, confidence)
    lc, uc = wilson_interval(xc, nc, confidence)
    d = pt - pc
    low = d - np.sqrt((pt - lt) ** 2 + (uc - pc) ** 2)
    high = d + np.sqrt((ut - pt) ** 2 + (pc - lc) ** 2)
    return np.clip(low, -1.0, 1.0), np.clip(high, -1.0, 1.0)


def proportion_stat(successes: int, n: int, confidence: float = 0.95) -> GroupStat:
    """A group's rate with its Wilson interval."""
    if n <= 0:
        return GroupStat(0, None, None, None)
    low, high = wilson_interval(successes, n, confidence)
    return GroupStat(int(n), successes / n, float(low), float(high))


def compare_proportions(
    x_t: int, n_t: int, x_c: int, n_c: int, confidence: float = 0.95
) -> Comparison:
    """Rates of both groups and their difference (see the module docstring for the methods)."""
    for name, x, n in (("treatment", x_t, n_t), ("control", x_c, n_c)):
        if n < 0 or x < 0 or x > n:
            raise ValueError(f"{name}: need 0 <= successes <= n (got {x} of {n})")
    t, c = proportion_stat(x_t, n_t, confidence), proportion_stat(x_c, n_c, confidence)
    flags = _empty_flags(n_t, n_c)
    if flags:
        return Comparison(t, c, Difference(None, None, None, None, METHOD_PROPORTION, flags))
    if x_t + x_c == 0:
        flags += (NO_CONVERSIONS,)
    elif x_t + x_c == n_t + n_c:
        flags += (ALL_CONVERTED,)
    low, high = newcombe_interval(x_t, n_t, x_c, n_c, confidence)
    p_value, method = _proportion_p_value(x_t, n_t, x_c, n_c)
    if method == METHOD_PROPORTION_EXACT:
        flags += (SMALL_COUNTS,)
    diff = Difference(x_t / n_t - x_c / n_c, float(low), float(high), p_value, method, flags)
    return Comparison(t, c, diff)


def _proportion_p_value(x_t: int, n_t: int, x_c: int, n_c: int) -> tuple[float, str]:
    pooled = (x_t + x_c) / (n_t + n_c)
    if pooled in (0.0, 1.0):  # both groups all-0 or all-1: no evidence of a difference
        return 1.0, METHOD_PROPORTION
    expected = np.array([n_t, n_c], dtype=np.float64)[:, None] * [pooled, 1.0 - pooled]
    if expected.min() < 5.0:
        table = [[x_t, n_t - x_t], [x_c, n_c - x_c]]
        return float(stats.fisher_exact(table).pvalue), METHOD_PROPORTION_EXACT
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_t + 1.0 / n_c))
    z = (x_t / n_t - x_c / n_c) / se
    return float(2.0 * stats.norm.sf(abs(z))), METHOD_PROPORTION


def _empty_flags(n_t: int, n_c: int) -> tuple[str, ...]:
    return ((EMPTY_TREATMENT,) if n_t <= 0 else ()) + ((EMPTY_CONTROL,) if n_c <= 0 else ())


# ---------------------------------------------------------------------- means


def mean_stat(values: npt.ArrayLike, confidence: float = 0.95) -> GroupStat:
    """A group's mean with its t interval (no interval below 2 members)."""
    v = np.asarray(values, dtype=np.float64)
    n = int(v.size)
    if n == 0:
        return GroupStat(0, None, None, None)
    mean = float(v.mean())
    if n < 2:
        return GroupStat(n, mean, None, None)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
    return GroupStat(n, mean, mean - half, mean + half)


def compare_means(
    treatment: npt.ArrayLike, control: npt.ArrayLike, confidence: float = 0.95
) -> Comparison:
    """Means of both groups and Welch's t interval and test of their difference."""
    yt, yc = np.asarray(treatment, dtype=np.float64), np.asarray(control, dtype=np.float64)
    if not (np.isfinite(yt).all() and np.isfinite(yc).all()):
        raise ValueError("per-member values must be finite")
    t, c = mean_stat(yt, confidence), mean_stat(yc, confidence)
    flags = _empty_flags(yt.size, yc.size)
    if flags:
        return Comparison(t, c, Difference(None, None, None, None, METHOD_MEAN, flags))
    d = float(yt.mean() - yc.mean())
    if yt.size < 2 or yc.size < 2:
        return Comparison(t, c, Difference(d, None, None, None, METHOD_MEAN, (TOO_FEW_MEMBERS,)))
    vt, vc = float(yt.var(ddof=1)) / yt.size, float(yc.var(ddof=1)) / yc.size
    se = math.sqrt(vt + vc)
    if se == 0.0:
        p = 1.0 if d == 0.0 else None
        return Comparison(t, c, Difference(d, d, d, p, METHOD_MEAN, (NO_VARIATION,)))
    df = (vt + vc) ** 2 / (vt**2 / (yt.size - 1) + vc**2 / (yc.size - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df)) * se
    p_value = float(2.0 * stats.t.sf(abs(d) / se, df))
    return Comparison(t, c, Difference(d, d - half, d + half, p_value, METHOD_MEAN))


# ---------------------------------------------------------------------- ratios of sums


def _ratio_and_variance(num: FloatArray, den: FloatArray) -> tuple[float | None, float | None]:
    if num.size == 0 or den.sum() <= 0:
        return None, None
    ratio = float(num.sum() / den.sum())
    if num.size < 2:
        return ratio, None
    mx = float(den.mean())
    cov = np.cov(num, den, ddof=1)
    var = (cov[0, 0] - 2.0 * ratio * cov[0, 1] + ratio * ratio * cov[1, 1]) / (num.size * mx * mx)
    return ratio, max(float(var), 0.0)


def compare_ratios(
    num_t: npt.ArrayLike,
    den_t: npt.ArrayLike,
    num_c: npt.ArrayLike,
    den_c: npt.ArrayLike,
    confidence: float = 0.95,
) -> Comparison:
    """sum(num)/sum(den) per group (e.g. revenue / orders = average order value) and the
    delta-method interval and z-test of the difference. Members with den = 0 still count."""
    yt, xt = np.asarray(num_t, dtype=np.float64), np.asarray(den_t, dtype=np.float64)
    yc, xc = np.asarray(num_c, dtype=np.float64), np.asarray(den_c, dtype=np.float64)
    if yt.shape != xt.shape or yc.shape != xc.shape:
        raise ValueError("numerator and denominator must have one value per member")
    z = z_value(confidence)
    rt, var_t = _ratio_and_variance(yt, xt)
    rc, var_c = _ratio_and_variance(yc, xc)

    def group(n: int, r: float | None, var: float | None) -> GroupStat:
        if r is None or var is None:
            return GroupStat(n, r, None, None)
        return GroupStat(n, r, r - z * math.sqrt(var), r + z * math.sqrt(var))

    t, c = group(int(yt.size), rt, var_t), group(int(yc.size), rc, var_c)
    flags = _empty_flags(yt.size, yc.size)
    if not flags and (rt is None or rc is None):
        flags = (NO_ORDERS,)
    if flags or rt is None or rc is None:
        return Comparison(t, c, Difference(None, None, None, None, METHOD_RATIO, flags))
    d = rt - rc
    if var_t is None or var_c is None:
        return Comparison(t, c, Difference(d, None, None, None, METHOD_RATIO, (TOO_FEW_MEMBERS,)))
    se = math.sqrt(var_t + var_c)
    if se == 0.0:
        p = 1.0 if d == 0.0 else None
        return Comparison(t, c, Difference(d, d, d, p, METHOD_RATIO, (NO_VARIATION,)))
    p_value = float(2.0 * stats.norm.sf(abs(d) / se))
    return Comparison(t, c, Difference(d, d - z * se, d + z * se, p_value, METHOD_RATIO))


# ---------------------------------------------------------------------- power


@dataclass(frozen=True, slots=True)
class DetectableEffect:
    """The smallest absolute uplift in a rate that the test would detect with ``power``."""

    #: absolute (rate points, 0.01 = one percentage point); None: no effect is detectable
    absolute: float | None
    #: absolute / control rate; None when the control rate is 0 or nothing is detectable
    relative: float | None
    control_rate: float
    n_treatment: int
    n_control: int
    alpha: float
    power: float
    flags: tuple[str, ...] = ()


def minimum_detectable_effect(
    n_t: int, n_c: int, control_rate: float, alpha: float = 0.05, power: float = 0.8
) -> DetectableEffect:
    """Minimum detectable (upward) effect on a rate, two-sided test at level ``alpha``."""
    if not 0.0 <= control_rate <= 1.0:
        raise ValueError(f"control_rate must be in [0, 1] (got {control_rate})")
    flags = _empty_flags(n_t, n_c)
    if flags:
        return DetectableEffect(None, None, control_rate, n_t, n_c, alpha, power, flags)
    k = float(stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power))
    p_c = control_rate

    def gap(d: float) -> float:
        p_t = p_c + d
        return d - k * math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)

    top = 1.0 - p_c
    if top <= 0.0 or gap(top) < 0.0:  # even "everybody converts" would not be detected
        return DetectableEffect(None, None, p_c, n_t, n_c, alpha, power, (UNDETECTABLE,))
    # gap < 0 just above 0 (also when p_c = 0, where gap(0) = 0) and gap(top) >= 0
    low = 1e-12
    d = float(optimize.brentq(gap, low, top, xtol=1e-12)) if gap(low) < 0.0 else low
    relative = d / p_c if p_c > 0 else None
    return DetectableEffect(d, relative, p_c, n_t, n_c, alpha, power)
