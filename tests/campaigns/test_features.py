"""The uplift model's member features (engine.campaigns.features) on a hand-made example."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from engine.campaigns import fit_uplift, model_from_dict
from engine.campaigns.errors import CampaignInputError
from engine.campaigns.features import CATEGORICAL, NUMERIC, uplift_features


@dataclass(frozen=True)
class Attributes:
    """Four members; m4 never purchased (no segment, no value, no last purchase)."""

    member_ids: npt.NDArray[np.str_]
    tier_codes: npt.NDArray[np.int16]
    tier_names: tuple[str, ...]
    lifecycle_codes: npt.NDArray[np.int16]
    lifecycle_names: tuple[str, ...]
    segment_codes: npt.NDArray[np.int16]
    segment_names: tuple[str, ...]
    monetary: npt.NDArray[np.float64]
    p_alive: npt.NDArray[np.float64]
    clv: npt.NDArray[np.float64]
    expected_spend: npt.NDArray[np.float64]
    purchase_days: npt.NDArray[np.int64]
    last_purchase_at: npt.NDArray[np.datetime64]


@dataclass(frozen=True)
class DatedAttributes(Attributes):
    as_of: date = date(2025, 6, 1)


COLUMNS: dict[str, Any] = {
    "member_ids": np.asarray(["m1", "m2", "m3", "m4"]),
    "tier_codes": np.asarray([0, 2, 1, -1], dtype=np.int16),
    "tier_names": ("regular", "silver", "gold"),
    "lifecycle_codes": np.asarray([1, 2, 3, 0], dtype=np.int16),
    "lifecycle_names": ("new", "active", "at_risk", "churned"),
    "segment_codes": np.asarray([1, 0, 0, -1], dtype=np.int16),
    "segment_names": ("At Risk", "Champions"),
    "monetary": np.asarray([np.e - 1, 0.0, -5.0, 0.0]),
    "p_alive": np.asarray([0.9, 0.4, 0.1, np.nan]),
    "clv": np.asarray([np.e**2 - 1, 0.0, 3.0, np.nan]),
    "expected_spend": np.asarray([1.0, np.nan, 0.0, np.nan]),
    "purchase_days": np.asarray([3, 1, 1, 0], dtype=np.int64),
    "last_purchase_at": np.asarray(
        ["2025-05-31T12:00", "2025-05-01T00:00", "2024-06-01T00:00", "NaT"], dtype="datetime64[us]"
    ),
}


def test_features_of_a_hand_example() -> None:
    attributes = DatedAttributes(**COLUMNS)
    f = uplift_features(attributes, np.asarray([3, 0, 2]), np.asarray([0.5, 2.0, np.nan]))
    assert list(f) == [*CATEGORICAL, *NUMERIC]
    assert f["tier"].tolist() == ["", "regular", "silver"]
    assert f["lifecycle"].tolist() == ["new", "active", "churned"]
    assert f["rfm_segment"].tolist() == ["", "Champions", "At Risk"]
    # log1p of the positive part; NaN stays NaN (the model's encoder fills it, not us)
    assert f["log_monetary"].tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert f["log_clv"][1:].tolist() == pytest.approx([2.0, np.log(4.0)])
    assert np.isnan(f["log_clv"][0])
    assert np.isnan(f["log_expected_spend"][0])
    assert f["log_purchase_days"].tolist() == pytest.approx([0.0, np.log(4.0), np.log(2.0)])
    assert np.isnan(f["p_alive"][0])
    assert f["p_alive"][1:].tolist() == [0.9, 0.1]
    assert f["value_missing"].tolist() == [1.0, 0.0, 0.0]
    # from the last purchase to as_of 00:00, in (fractional) days; never purchased: NaN
    assert np.isnan(f["days_since_purchase"][0])
    assert f["days_since_purchase"][1:].tolist() == pytest.approx([0.5, 365.0])
    assert f["audience_score"][:2].tolist() == [0.5, 2.0]
    assert np.isnan(f["audience_score"][2])


def test_without_as_of_days_count_to_the_latest_purchase_of_all_members() -> None:
    f = uplift_features(Attributes(**COLUMNS), np.asarray([1]), np.asarray([0.0]))
    # the latest last purchase (m1, 2025-05-31 12:00) is the reference, even if m1 is not asked
    assert f["days_since_purchase"].tolist() == pytest.approx([30.5])


def test_a_member_has_the_same_features_in_any_batch() -> None:
    attributes = DatedAttributes(**COLUMNS)
    every = uplift_features(attributes, np.arange(4), np.asarray([0.1, 0.2, 0.3, 0.4]))
    for row in range(4):
        alone = uplift_features(attributes, np.asarray([row]), np.asarray([0.1 * (row + 1)]))
        for name, values in alone.items():
            assert values.tolist() == pytest.approx(
                every[name][row : row + 1].tolist(), nan_ok=True
            )


def test_a_model_fitted_on_the_features_scores_them() -> None:
    rng = np.random.default_rng(0)
    attributes = DatedAttributes(**COLUMNS)
    rows = rng.integers(0, 4, size=400)
    features = uplift_features(attributes, rows, rng.random(400))
    treated = rng.integers(0, 2, size=400)
    # planted: contacting converts m2 and m3 (rows 1, 2), never m1 or m4
    converted = ((treated == 1) & np.isin(rows, (1, 2))) | (rng.random(400) < 0.1)
    model = fit_uplift(
        features, treated, converted.astype(int), categorical=CATEGORICAL, numeric=NUMERIC
    )
    again = model_from_dict(model.to_dict())
    scored = uplift_features(attributes, np.arange(4), np.full(4, 0.5))
    uplift = again.predict(scored)
    assert uplift.shape == (4,)
    assert np.isfinite(uplift).all()
    assert min(uplift[1], uplift[2]) > max(uplift[0], uplift[3])
    # a tier the model never saw is all zeros in the one-hot, not an error
    unseen = replace(attributes, tier_names=("regular", "silver", "platinum"))
    assert np.isfinite(again.predict(uplift_features(unseen, np.arange(4), np.zeros(4)))).all()


@pytest.mark.parametrize(
    ("rows", "scores", "field"),
    [
        (np.asarray([0, 4]), np.zeros(2), "rows"),
        (np.asarray([-1]), np.zeros(1), "rows"),
        (np.asarray([0.5]), np.zeros(1), "rows"),
        (np.asarray([0, 1]), np.zeros(3), "scores"),
    ],
)
def test_bad_rows_or_scores_name_the_field(
    rows: npt.NDArray[np.generic], scores: npt.NDArray[np.float64], field: str
) -> None:
    with pytest.raises(CampaignInputError, match=f"^{field}:"):
        uplift_features(DatedAttributes(**COLUMNS), rows, scores)
