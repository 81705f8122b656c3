"""The statistics on hand-computed examples (every number is worked out in the comments), and
the edge cases: empty groups, no or all conversions, constant values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from engine.campaigns import stats

Z = 1.959963984540054  # z_{0.975}


def test_proportions_hand_example() -> None:
    # treatment 30 / 200 = 0.15, control 10 / 100 = 0.10, difference 0.05.
    # Wilson, treatment: z^2 = 3.841459; denom = 1 + z^2/200 = 1.0192073;
    #   centre = (0.15 + z^2/400) / denom = 0.1565959;
    #   half = z * sqrt(0.15*0.85/200 + z^2/(4*200^2)) / denom = 0.0494599
    #   -> (0.1071359, 0.2060558)
    # Wilson, control: denom = 1.0384146; centre = (0.10 + z^2/200) / denom = 0.1147974;
    #   half = z * sqrt(0.1*0.9/100 + z^2/40000) / denom = 0.0595683 -> (0.0552291, 0.1743657)
    # Newcombe: L = 0.05 - sqrt((0.15-0.1071359)^2 + (0.1743657-0.10)^2) = -0.0358346
    #           U = 0.05 + sqrt((0.2060558-0.15)^2 + (0.10-0.0552291)^2) = 0.1217404
    # z-test: pooled 40/300 = 0.1333333; se = sqrt(p(1-p)(1/200+1/100)) = 0.0416333;
    #   z = 0.05 / se = 1.2009612; p = 2 (1 - Phi(z)) = 0.2297663
    c = stats.compare_proportions(30, 200, 10, 100)
    assert c.treatment.value == pytest.approx(0.15)
    assert (c.treatment.ci_low, c.treatment.ci_high) == pytest.approx(
        (0.1071359, 0.2060558), abs=1e-7
    )
    assert (c.control.ci_low, c.control.ci_high) == pytest.approx((0.0552291, 0.1743657), abs=1e-7)
    d = c.difference
    assert d.estimate == pytest.approx(0.05)
    assert (d.ci_low, d.ci_high) == pytest.approx((-0.0358346, 0.1217404), abs=1e-7)
    assert d.p_value == pytest.approx(0.2297663, abs=1e-7)
    assert "Newcombe" in d.method
    assert "z-test" in d.method
    assert d.flags == ()


def test_welch_hand_example() -> None:
    # treatment 2,4,6,8: mean 5, variance 20/3; control 1,3,5,7: mean 4, variance 20/3.
    # se = sqrt(20/3/4 * 2) = sqrt(10/3) = 1.8257419; Welch df = (2a)^2 / (2 a^2 / 3) = 6
    # (a = 5/3); t_{0.975, 6} = 2.4469119 -> 1 +- 4.4674294 = (-3.4674294, 5.4674294);
    # t = 1 / 1.8257419 = 0.5477226, p from t(6) (checked against scipy's Welch test)
    c = stats.compare_means([2, 4, 6, 8], [1, 3, 5, 7])
    d = c.difference
    assert d.estimate == pytest.approx(1.0)
    assert (d.ci_low, d.ci_high) == pytest.approx((-3.4674294, 5.4674294), abs=1e-6)
    expected = sps.ttest_ind([2, 4, 6, 8], [1, 3, 5, 7], equal_var=False).pvalue
    assert d.p_value == pytest.approx(expected, rel=1e-9)
    assert d.method.startswith("Welch")


def test_delta_method_hand_example() -> None:
    # AOV, treatment: revenue 10, 30, 0; orders 1, 2, 1 -> R = 40 / 4 = 10.
    #   residuals y - R x = 0, 10, -10; variance (ddof 1) = 100;
    #   Var(R) = 100 / (n mean(x)^2) = 100 / (3 * (4/3)^2) = 18.75
    # control: revenue 4, 12; orders 1, 1 -> R = 8; residuals -4, 4; variance 32;
    #   Var(R) = 32 / (2 * 1) = 16
    # difference 2; se = sqrt(34.75) = 5.8949131; half = z se = 11.5538173
    #   -> (-9.5538173, 13.5538173); z = 2 / se = 0.3392756; p = 0.7344021
    c = stats.compare_ratios([10, 30, 0], [1, 2, 1], [4, 12], [1, 1])
    assert c.treatment.value == pytest.approx(10.0)
    assert c.control.value == pytest.approx(8.0)
    d = c.difference
    assert (d.estimate, d.ci_low, d.ci_high) == pytest.approx(
        (2.0, -9.5538173, 13.5538173), abs=1e-6
    )
    assert d.p_value == pytest.approx(0.7344021, abs=1e-7)
    assert "delta method" in d.method


def test_minimum_detectable_effect_hand_example() -> None:
    # 1000 per group, control rate 0.10, alpha 0.05, power 0.8: k = 1.959964 + 0.841621 =
    # 2.801585; d solves d = k sqrt(0.09/1000 + (0.1+d)(0.9-d)/1000) -> d = 0.0406850
    # (fixed-point iteration); relative 0.406850
    mde = stats.minimum_detectable_effect(1_000, 1_000, 0.10)
    assert mde.absolute == pytest.approx(0.0406850, abs=1e-6)
    assert mde.relative == pytest.approx(0.406850, abs=1e-5)
    # a small campaign can only detect a large effect
    assert stats.minimum_detectable_effect(90, 10, 0.10).absolute > 0.3  # type: ignore[operator]
    zero = stats.minimum_detectable_effect(500, 500, 0.0)
    assert zero.absolute is not None
    assert zero.absolute > 0
    assert zero.relative is None
    assert stats.minimum_detectable_effect(2, 2, 0.5).flags == (stats.UNDETECTABLE,)


def _finite(*values: float | None) -> bool:
    return all(v is None or math.isfinite(v) for v in values)


@pytest.mark.parametrize(
    ("x_t", "n_t", "x_c", "n_c", "flag"),
    [
        (0, 500, 0, 50, stats.NO_CONVERSIONS),
        (500, 500, 50, 50, stats.ALL_CONVERTED),
        (5, 500, 0, 0, stats.EMPTY_CONTROL),
        (0, 0, 5, 50, stats.EMPTY_TREATMENT),
        (3, 10, 1, 10, stats.SMALL_COUNTS),
    ],
)
def test_proportion_edge_cases_flag_and_never_nan(
    x_t: int, n_t: int, x_c: int, n_c: int, flag: str
) -> None:
    c = stats.compare_proportions(x_t, n_t, x_c, n_c)
    d = c.difference
    assert flag in d.flags
    assert _finite(d.estimate, d.ci_low, d.ci_high, d.p_value)
    assert _finite(c.treatment.value, c.treatment.ci_low, c.control.value, c.control.ci_high)
    if n_t and n_c:
        assert d.ci_low is not None
        assert d.ci_high is not None
        assert -1 <= d.ci_low <= d.estimate <= d.ci_high <= 1  # type: ignore[operator]
    else:
        assert d.estimate is None
        assert d.p_value is None


def test_zero_conversions_still_give_an_interval() -> None:
    d = stats.compare_proportions(0, 1_000, 0, 100).difference
    assert d.estimate == 0.0
    assert d.p_value == 1.0
    assert d.ci_low < 0 < d.ci_high  # type: ignore[operator]


def test_means_and_ratios_edge_cases() -> None:
    assert stats.compare_means([1.0, 2.0], []).difference.flags == (stats.EMPTY_CONTROL,)
    one = stats.compare_means([1.0, 2.0], [3.0]).difference
    assert one.flags == (stats.TOO_FEW_MEMBERS,)
    assert one.ci_low is None
    flat = stats.compare_means([0.0] * 5, [0.0] * 5).difference
    assert flat.flags == (stats.NO_VARIATION,)
    assert flat.p_value == 1.0
    no_orders = stats.compare_ratios([0.0, 0.0], [0, 0], [5.0], [1]).difference
    assert no_orders.flags == (stats.NO_ORDERS,)
    assert no_orders.estimate is None
    with pytest.raises(ValueError, match="finite"):
        stats.compare_means([np.nan], [1.0])


def test_scaled_difference_is_a_total() -> None:
    d = stats.compare_means([2, 4, 6, 8], [1, 3, 5, 7]).difference.scaled(100, "x")
    assert (d.estimate, d.ci_low) == pytest.approx((100.0, -346.74294), abs=1e-3)
