"""The fit reproduces the published CDNOW parameters; degenerate data fail with a clear reason.

CDNOW 1/10 sample, calibration 1997-01-01 .. 1997-09-30 inclusive (as_of 1997-10-01), distinct
purchase days as transactions, weeks as the time unit. Published: BG/NBD r = 0.243,
alpha = 4.414, a = 0.793, b = 2.426, log-likelihood -9582.4 (Fader, Hardie & Lee 2005);
Gamma-Gamma p = 6.25, q = 3.74, v = 15.44 (Fader & Hardie 2013).
"""

from __future__ import annotations

import gzip
from datetime import date, datetime

import numpy as np
import polars as pl
import pytest

from feature_store.schema import PURCHASES, conform
from feature_store.value import (
    ModelInputs,
    ValueModelError,
    ValueParams,
    fit_inputs,
    fit_value_model,
    summaries,
)
from tests.paths import SHARED

CDNOW = SHARED / "datasets" / "cdnow" / "cdnow_sample.txt.gz"
AS_OF = date(1997, 10, 1)
PUBLISHED = {
    "r": 0.243,
    "alpha": 4.414,
    "a": 0.793,
    "b": 2.426,
    "p": 6.25,
    "q": 3.74,
    "v": 15.44,
}


def cdnow_purchases() -> pl.DataFrame:
    """The sample as canonical purchase lines: one order per line."""
    with gzip.open(CDNOW, "rt") as f:
        rows = [line.split() for line in f if line.strip()]
    frame = pl.DataFrame(
        {
            "order_id": [str(i) for i in range(len(rows))],
            "member_id": [r[0] for r in rows],
            "item_id": ["cd"] * len(rows),
            "ts": [datetime.strptime(r[2], "%Y%m%d") for r in rows],
            "quantity": [int(r[3]) for r in rows],
            "amount": [float(r[4]) for r in rows],
        }
    )
    return conform(frame, PURCHASES)


@pytest.fixture(scope="module")
def fitted() -> ValueParams:
    if not CDNOW.is_file():
        pytest.skip(f"{CDNOW} not present")
    stats = summaries(cdnow_purchases(), AS_OF)
    return fit_value_model(stats, AS_OF)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_parameters_within_2_percent(fitted: ValueParams, name: str) -> None:
    assert getattr(fitted, name) == pytest.approx(PUBLISHED[name], rel=0.02)


def test_fit_facts(fitted: ValueParams) -> None:
    assert fitted.n_members == 2357
    assert fitted.n_repeaters == 946  # the repeat customers of the Gamma-Gamma note
    assert fitted.subsampled_from is None
    assert fitted.fitted_at_as_of == AS_OF
    assert fitted.unit_days == 7.0
    assert fitted.bgnbd_log_likelihood == pytest.approx(-9582.4, abs=0.1)
    assert np.isfinite(fitted.gamma_gamma_log_likelihood)
    assert fitted.fit_seconds > 0
    assert ValueParams.model_validate_json(fitted.model_dump_json()) == fitted
    with pytest.raises(Exception, match="frozen"):
        fitted.r = 1.0


# --------------------------------------------------------------------------------------------
# Degenerate data
# --------------------------------------------------------------------------------------------


def inputs(x: list[float], monetary: list[float] | None = None) -> ModelInputs:
    n = len(x)
    xs = np.asarray(x, dtype=np.float64)
    m = np.asarray(monetary if monetary is not None else np.where(xs > 0, 20.0, np.nan))
    age = np.full(n, 100.0)
    return ModelInputs(
        pl.Series("member_id", [str(i) for i in range(n)]), xs, np.where(xs > 0, 50.0, 0.0), age, m
    )


def test_too_few_members() -> None:
    with pytest.raises(ValueModelError, match="only 5 member"):
        fit_inputs(inputs([1, 0, 2, 0, 1]), AS_OF)


def test_no_repeat_buyers() -> None:
    with pytest.raises(ValueModelError, match="no member bought on two different days"):
        fit_inputs(inputs([0.0] * 50), AS_OF)


def test_too_few_members_with_positive_spend() -> None:
    x = [1.0] * 30 + [0.0] * 30
    m = [0.0] * 25 + [10.0] * 5 + [float("nan")] * 30
    with pytest.raises(ValueModelError, match=r"only 5 member.*positive mean value"):
        fit_inputs(inputs(x, m), AS_OF)


def test_subsample_is_seeded_and_bounded() -> None:
    with pytest.raises(ValueError, match="max_members"):
        fit_inputs(inputs([1.0] * 60), AS_OF, max_members=5)


def test_gamma_gamma_without_finite_mean_is_refused() -> None:
    rng = np.random.default_rng(0)
    n = 400
    x = rng.integers(0, 4, n).astype(np.float64)
    age = rng.integers(30, 300, n).astype(np.float64)
    recency = np.where(x > 0, np.floor(rng.uniform(0, 1, n) * age), 0.0)
    # Lomax (Pareto II) spends with tail index 0.6: Gamma-Gamma's q estimates the tail index
    monetary = np.where(x > 0, 10.0 * rng.pareto(0.6, n) + 0.01, np.nan)
    x = np.where(x > 0, 1.0, 0.0)
    data = ModelInputs(
        pl.Series("member_id", [str(i) for i in range(n)]), x, recency, age, monetary
    )
    with pytest.raises(ValueModelError, match=r"q = .* <= 1: the mean value of a purchase day"):
        fit_inputs(data, AS_OF)
