"""The uplift model's member features, computed one way for fitting and for scoring.

:func:`uplift_features` turns member attributes (a feature snapshot's member columns), the
attribute rows of the members to describe and their audience scores into the named columns an
:class:`~engine.campaigns.uplift.UpliftModel` reads. ``recsys campaign uplift fit`` calls it on
the members of past campaigns (with the score each had when the campaign was sent), the service
and ``recsys audience build`` call it on the members of a new audience (``size.rank_by =
"uplift"``), so a model always sees the features it was fitted on.

Columns (one value per given row):

- categorical (:data:`CATEGORICAL`, strings, ``""`` for unknown): ``tier``, ``lifecycle`` and
  ``rfm_segment`` (``""`` = never purchased). The model one-hot encodes the levels it saw when
  fitted; an unseen level is all zeros.
- numeric (:data:`NUMERIC`, float64):

  ========================== ==========================================================
  ``log_monetary``           ``log1p(max(monetary, 0))``: net spend in the RFM window
  ``p_alive``                P(still active) of the value model
  ``log_clv``                ``log1p(max(clv, 0))``
  ``log_expected_spend``     ``log1p(max(expected spend in 90 days, 0))``
  ``log_purchase_days``      ``log1p(distinct purchase days)``
  ``days_since_purchase``    days from the last purchase to the snapshot's ``as_of``
                             (00:00); without ``as_of``, to the latest last purchase of
                             all members of ``attributes``
  ``value_missing``          1.0 when the member has no value (``p_alive`` unknown: never
                             purchased, or no value model in the snapshot), else 0.0
  ``audience_score``         the member's audience score (at send time, when fitting)
  ========================== ==========================================================

  Money and counts are log-scaled (heavy right tails; a logistic model on raw values would be
  driven by a few big spenders).

**Missing values.** A numeric value that is unknown stays NaN here (never a median of the rows
at hand: the fit and the service see different sets of members, so a batch statistic would give
the same member different features). The model's encoder replaces NaN by the mean it learned
when fitted (its z-score becomes 0, engine.campaigns.uplift) and the categorical ``""`` levels
and ``value_missing`` tell the model *that* the value was missing (members who never purchased
have ``rfm_segment == ""``; members without a value have ``value_missing == 1``).

Pure numpy: ``attributes`` is anything with the fields of :class:`UpliftAttributes`
(feature_store.member_columns.MemberColumns has them); this module never imports feature_store.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from engine.campaigns.errors import CampaignInputError

#: categorical feature columns (strings; "" = unknown)
CATEGORICAL: Final[tuple[str, ...]] = ("tier", "lifecycle", "rfm_segment")
#: numeric feature columns (float64; NaN = unknown, see the module docstring)
NUMERIC: Final[tuple[str, ...]] = (
    "log_monetary",
    "p_alive",
    "log_clv",
    "log_expected_spend",
    "log_purchase_days",
    "days_since_purchase",
    "value_missing",
    "audience_score",
)
#: version of the feature set, stored with fitted models
FEATURE_SET: Final[str] = "uplift-features/v1"
_US_PER_DAY: Final[float] = 86_400_000_000.0

FloatArray = npt.NDArray[np.float64]


class UpliftAttributes(Protocol):
    """The member attributes the features read (one entry per attribute row).

    feature_store.member_columns.MemberColumns satisfies it; an ``as_of`` (a date) is used
    when the object has one (module docstring).
    """

    @property
    def member_ids(self) -> npt.NDArray[np.str_]: ...
    @property
    def tier_codes(self) -> npt.NDArray[np.int16]: ...
    @property
    def tier_names(self) -> tuple[str, ...]: ...
    @property
    def lifecycle_codes(self) -> npt.NDArray[np.int16]: ...
    @property
    def lifecycle_names(self) -> tuple[str, ...]: ...
    @property
    def segment_codes(self) -> npt.NDArray[np.int16]: ...
    @property
    def segment_names(self) -> tuple[str, ...]: ...
    @property
    def monetary(self) -> npt.NDArray[np.float64]: ...
    @property
    def p_alive(self) -> npt.NDArray[np.float64]: ...
    @property
    def clv(self) -> npt.NDArray[np.float64]: ...
    @property
    def expected_spend(self) -> npt.NDArray[np.float64]: ...
    @property
    def purchase_days(self) -> npt.NDArray[np.int64]: ...
    @property
    def last_purchase_at(self) -> npt.NDArray[np.datetime64]: ...


def _labels(codes: npt.NDArray[Any], names: tuple[str, ...]) -> npt.NDArray[np.str_]:
    """Names of the codes; -1 (null) and any code out of range are ""."""
    table = np.asarray([*names, ""], dtype=np.str_)
    coded = np.asarray(codes, dtype=np.int64)
    return table[np.where((coded >= 0) & (coded < len(names)), coded, len(names))]


def _log_positive(values: npt.NDArray[Any]) -> FloatArray:
    x = np.asarray(values, dtype=np.float64)
    return np.where(np.isnan(x), np.nan, np.log1p(np.maximum(x, 0.0)))


def _reference(attributes: UpliftAttributes) -> np.datetime64 | None:
    """00:00 of ``attributes.as_of`` if there is one, else the latest last purchase."""
    as_of = getattr(attributes, "as_of", None)
    if isinstance(as_of, datetime):
        return np.datetime64(as_of.replace(tzinfo=None), "us")
    if isinstance(as_of, date):
        return np.datetime64(datetime.combine(as_of, datetime.min.time()), "us")
    last = np.asarray(attributes.last_purchase_at, dtype="datetime64[us]")
    known = last[~np.isnat(last)]
    return np.datetime64(known.max(), "us") if known.size else None


def uplift_features(
    attributes: UpliftAttributes, rows: npt.ArrayLike, scores: npt.ArrayLike
) -> dict[str, npt.NDArray[Any]]:
    """The feature columns (:data:`CATEGORICAL` + :data:`NUMERIC`) of the attribute ``rows``,
    with their audience ``scores`` (aligned with ``rows``; NaN = no score).

    Raises :class:`CampaignInputError` naming ``rows`` or ``scores`` when they do not fit.
    """
    n = int(np.shape(attributes.member_ids)[0])
    picked = np.asarray(rows)
    if picked.ndim != 1 or (picked.size and picked.dtype.kind not in "iu"):
        raise CampaignInputError("rows", "must be a 1-d array of attribute rows (integers)")
    picked = picked.astype(np.int64, copy=False)
    if picked.size and (picked.min() < 0 or picked.max() >= n):
        raise CampaignInputError("rows", f"attribute rows must be in 0..{n - 1}")
    score = np.asarray(scores, dtype=np.float64)
    if score.shape != picked.shape:
        raise CampaignInputError(
            "scores", f"needs one audience score per row ({picked.size}), got {score.shape}"
        )
    a = attributes
    p_alive = np.asarray(a.p_alive, dtype=np.float64)[picked]
    last = np.asarray(a.last_purchase_at, dtype="datetime64[us]")[picked]
    reference = _reference(a)
    days = np.full(picked.size, np.nan)
    if reference is not None:
        known = ~np.isnat(last)
        elapsed = (reference - last[known]).astype(np.int64) / _US_PER_DAY
        days[known] = elapsed
    return {
        "tier": _labels(np.asarray(a.tier_codes)[picked], a.tier_names),
        "lifecycle": _labels(np.asarray(a.lifecycle_codes)[picked], a.lifecycle_names),
        "rfm_segment": _labels(np.asarray(a.segment_codes)[picked], a.segment_names),
        "log_monetary": _log_positive(np.asarray(a.monetary)[picked]),
        "p_alive": p_alive,
        "log_clv": _log_positive(np.asarray(a.clv)[picked]),
        "log_expected_spend": _log_positive(np.asarray(a.expected_spend)[picked]),
        "log_purchase_days": _log_positive(np.asarray(a.purchase_days)[picked]),
        "days_since_purchase": days,
        "value_missing": np.isnan(p_alive).astype(np.float64),
        "audience_score": np.where(np.isfinite(score), score, np.nan),
    }


__all__ = ["CATEGORICAL", "FEATURE_SET", "NUMERIC", "UpliftAttributes", "uplift_features"]
