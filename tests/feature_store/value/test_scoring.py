"""Closed-form member-value predictions: equal to PyMC-Marketing's, sensible, fast per member."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest

from feature_store.value import ValueParams, prob_no_purchase, score_member, score_members
from feature_store.value.fit import quiet_pymc

# the published CDNOW parameters (weeks)
PARAMS = ValueParams(
    r=0.243, alpha=4.414, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44, n_members=0, n_repeaters=0
)


def members(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random (frequency, recency_days, age_days, monetary) with integer day counts, one-time
    buyers, zero-age members and non-positive mean spends."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 25, n).astype(np.float64)
    age = rng.integers(0, 400, n).astype(np.float64)
    recency = np.where(x > 0, np.floor(rng.uniform(0, 1, n) * age), 0.0)
    x[age == 0] = 0.0
    monetary = np.where(x > 0, rng.gamma(2.0, 20.0, n), np.nan)
    monetary[:5] = np.where(x[:5] > 0, [-3.0, 0.0, -1.0, 0.0, -2.0], np.nan)
    return x, recency, age, monetary


def _posterior(values: dict[str, float]) -> Any:
    import arviz as az
    import xarray as xr

    data = {k: (("chain", "draw"), np.array([[v]])) for k, v in values.items()}
    return az.InferenceData(posterior=xr.Dataset(data))


@pytest.fixture(scope="module")
def pymc_predictions() -> dict[str, np.ndarray]:
    """PyMC-Marketing's own predictions with PARAMS, on daily data (alpha per day = alpha per
    week * 7: the BG/NBD is invariant to the time unit with alpha scaled)."""
    import pandas as pd

    with quiet_pymc():
        from pymc_marketing.clv import BetaGeoModel, GammaGammaModel
        from pymc_marketing.clv.utils import customer_lifetime_value

        x, recency, age, monetary = members()
        ids = np.arange(x.size)
        data = pd.DataFrame({"customer_id": ids, "frequency": x, "recency": recency, "T": age})
        bg = BetaGeoModel()
        bg.build_model(data)
        bg.idata = _posterior(
            {"r": PARAMS.r, "alpha": PARAMS.alpha * 7, "a": PARAMS.a, "b": PARAMS.b}
        )
        usable = np.nan_to_num(monetary) > 0
        k = np.where(usable, x, 0.0)
        spend = pd.DataFrame(
            {"customer_id": ids, "frequency": k, "monetary_value": np.where(usable, monetary, 0.0)}
        )
        gg = GammaGammaModel()
        gg.build_model(spend[usable])
        gg.idata = _posterior({"p": PARAMS.p, "q": PARAMS.q, "v": PARAMS.v})
        per_day = gg.expected_customer_spend(spend).values.ravel()
        with_spend = data.assign(future_spend=per_day)
        out = {
            "p_alive": bg.expected_probability_alive(data).values.ravel(),
            "orders_90": bg.expected_purchases(data, future_t=90).values.ravel(),
            "orders_30": bg.expected_purchases(data, future_t=30).values.ravel(),
            "spend_per_day": per_day,
            "clv": customer_lifetime_value(
                bg, with_spend, future_t=12, discount_rate=0.01, time_unit="D"
            ).values.ravel(),
            "clv_undiscounted_6": customer_lifetime_value(
                bg, with_spend, future_t=6, discount_rate=0.0, time_unit="D"
            ).values.ravel(),
        }
        # the same model on weekly data with the weekly alpha
        weekly = data.assign(recency=recency / 7, T=age / 7)
        bg_w = BetaGeoModel()
        bg_w.build_model(weekly)
        bg_w.idata = _posterior(
            {"r": PARAMS.r, "alpha": PARAMS.alpha, "a": PARAMS.a, "b": PARAMS.b}
        )
        out["orders_90_weekly"] = bg_w.expected_purchases(weekly, future_t=90 / 7).values.ravel()
        return out


def test_equals_pymc_marketing(pymc_predictions: dict[str, np.ndarray]) -> None:
    x, recency, age, monetary = members()
    scores = score_members(PARAMS, x, recency, age, monetary, 90, 12, 0.01)
    ref = pymc_predictions
    np.testing.assert_allclose(scores.p_alive, ref["p_alive"], rtol=1e-6)
    np.testing.assert_allclose(scores.expected_orders, ref["orders_90"], rtol=1e-6)
    np.testing.assert_allclose(scores.expected_orders, ref["orders_90_weekly"], rtol=1e-6)
    np.testing.assert_allclose(
        scores.expected_spend, ref["orders_90"] * ref["spend_per_day"], rtol=1e-6
    )
    np.testing.assert_allclose(scores.clv, ref["clv"], rtol=1e-6)
    short = score_members(PARAMS, x, recency, age, monetary, 30, 6, 0.0)
    np.testing.assert_allclose(short.expected_orders, ref["orders_30"], rtol=1e-6)
    np.testing.assert_allclose(short.clv, ref["clv_undiscounted_6"], rtol=1e-6)


def test_more_recent_and_more_frequent_members_are_more_alive() -> None:
    # same frequency and age, last purchase more and more recent
    recency = np.arange(0, 201, 10, dtype=np.float64)
    n = recency.size
    alive = score_members(PARAMS, np.full(n, 5.0), recency, np.full(n, 200.0), np.full(n, 20.0))
    assert np.all(np.diff(alive.p_alive) > 0)
    assert np.all(np.diff(alive.expected_orders) > 0)
    # recent buyers (last purchase a week ago): more repeat days, more alive and more orders
    x = np.arange(1, 30, dtype=np.float64)
    frequent = score_members(
        PARAMS, x, np.full(x.size, 193.0), np.full(x.size, 200.0), np.full(x.size, 20.0)
    )
    assert np.all(np.diff(frequent.p_alive) > 0)
    assert np.all(np.diff(frequent.expected_orders) > 0)
    assert np.all((frequent.p_alive > 0) & (frequent.p_alive < 1))


def test_members_without_purchase_get_nan() -> None:
    nan = np.nan
    scores = score_members(PARAMS, [nan, 2.0], [nan, 10.0], [nan, 30.0], [nan, 15.0])
    for values in (scores.p_alive, scores.expected_orders, scores.expected_spend, scores.clv):
        assert math.isnan(values[0])
        assert math.isfinite(values[1])
    one = score_member(PARAMS, nan, nan, nan, nan)
    assert all(
        math.isnan(v) for v in (one.p_alive, one.expected_orders, one.expected_spend, one.clv)
    )
    assert np.isnan(prob_no_purchase(PARAMS, [nan], [nan], [nan])).all()


def test_single_purchase_members_are_finite_without_special_case() -> None:
    # bought once, 0 to 300 days ago (T = 0 is a first purchase yesterday)
    age = np.array([0.0, 1.0, 30.0, 300.0])
    scores = score_members(PARAMS, np.zeros(4), np.zeros(4), age, np.full(4, np.nan))
    assert np.all(scores.p_alive == 1.0)  # BG/NBD: dropout only after a repeat purchase
    assert np.all(np.isfinite(scores.expected_orders) & (scores.expected_orders > 0))
    assert np.all(np.diff(scores.expected_orders) < 0)  # a long silence lowers the rate
    np.testing.assert_allclose(
        scores.expected_spend, scores.expected_orders * PARAMS.mean_spend_per_day
    )
    assert np.all(np.isfinite(scores.clv) & (scores.clv > scores.expected_spend))
    quiet = prob_no_purchase(PARAMS, np.zeros(4), np.zeros(4), age)
    assert np.all((quiet > 0) & (quiet < 1))
    assert np.all(np.diff(quiet) > 0)


def test_scalar_path_equals_vectorized_path() -> None:
    x, recency, age, monetary = members(300, seed=1)
    x[-1] = recency[-1] = age[-1] = monetary[-1] = np.nan
    for horizon, months, discount in ((90, 12, 0.01), (45, 3, 0.0), (0, 0, 0.02)):
        batch = score_members(PARAMS, x, recency, age, monetary, horizon, months, discount)
        for i in range(x.size):
            one = score_member(
                PARAMS, x[i], recency[i], age[i], monetary[i], horizon, months, discount
            )
            got = [one.p_alive, one.expected_orders, one.expected_spend, one.clv]
            want = [
                batch.p_alive[i],
                batch.expected_orders[i],
                batch.expected_spend[i],
                batch.clv[i],
            ]
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_fractional_day_counts_score_the_same_way() -> None:
    x, recency, age, monetary = members(200, seed=2)
    age = age + 0.25  # not whole days: no (x, T) deduplication
    batch = score_members(PARAMS, x, recency, age, monetary)
    for i in range(x.size):
        one = score_member(PARAMS, x[i], recency[i], age[i], monetary[i])
        np.testing.assert_allclose(
            [one.p_alive, one.expected_orders, one.clv],
            [batch.p_alive[i], batch.expected_orders[i], batch.clv[i]],
            rtol=1e-12,
        )


def test_zero_horizon_and_input_checks() -> None:
    scores = score_members(PARAMS, [3.0], [20.0], [50.0], [10.0], horizon_days=0, clv_months=0)
    assert scores.expected_orders[0] == 0.0
    assert scores.clv[0] == 0.0
    with pytest.raises(ValueError, match="horizon_days"):
        score_members(PARAMS, [3.0], [20.0], [50.0], [10.0], horizon_days=-1)


def test_scalar_update_is_fast() -> None:
    score_member(PARAMS, 4.0, 100.0, 200.0, 25.0)
    n = 2000
    started = time.perf_counter()
    for i in range(n):
        score_member(PARAMS, float(i % 20), 100.0, 200.0 + i % 7, 25.0)
    per_call = (time.perf_counter() - started) / n
    assert per_call < 5e-4, f"{per_call * 1e6:.0f} us per member"  # ~35 us here; loose for CI


@pytest.mark.slow
def test_scoring_a_million_members_takes_seconds() -> None:
    rng = np.random.default_rng(5)
    n = 1_000_000
    x = rng.negative_binomial(1, 0.2, n).astype(np.float64)
    age = rng.integers(0, 730, n).astype(np.float64)
    recency = np.where(x > 0, np.floor(rng.uniform(0, 1, n) * age), 0.0)
    monetary = np.where(x > 0, rng.gamma(2.0, 30.0, n), np.nan)
    started = time.perf_counter()
    scores = score_members(PARAMS, x, recency, age, monetary)
    seconds = time.perf_counter() - started
    assert np.isfinite(scores.clv).all()
    assert seconds < 5.0, f"{seconds:.2f}s"
