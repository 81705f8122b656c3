"""Member value as snapshot columns: fit the customer-base models at a snapshot and score everyone.

:func:`member_value` is what the offline build (feature_store.offline) calls: the value
statistics of every member with a purchase day (:func:`~feature_store.value.summary.summaries`),
a BG/NBD + Gamma-Gamma fit on them (:func:`~feature_store.value.fit.fit_value_model`, on at most
``[value] fit_sample`` members), and per member ``p_alive``, ``expected_orders_90d``,
``expected_spend_90d`` and ``clv`` (:func:`~feature_store.value.scoring.score_members`).

Members without a purchase day get nulls (docs/features.md, "Member value"); so does everyone
when the policy turns the model off or the data cannot identify it (too few members, no repeat
purchases): the reason is kept in :attr:`MemberValue.note` and the snapshot manifest.
:func:`rescore` recomputes the values of a member table as of a later date (the early-warning
list and the online store use it): the statistics carry over, only the member's age grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final

import polars as pl
from pydantic import ValidationError as PydanticValidationError

from feature_store.errors import DataError
from feature_store.policy_value import EXPECTED_HORIZON_DAYS, ValuePolicy
from feature_store.schema import Col
from feature_store.transforms import Feat
from feature_store.value.fit import ValueModelError, ValueParams, fit_value_model
from feature_store.value.scoring import score_members
from feature_store.value.summary import ValueCol, model_inputs, summaries

#: The value columns of members.parquet, in order (docs/feature_snapshot.md).
VALUE_COLUMNS: Final[tuple[str, ...]] = (
    Feat.PURCHASE_DAYS,
    Feat.REPEAT_DAY_SPEND,
    Feat.P_ALIVE,
    Feat.EXPECTED_ORDERS_90D,
    Feat.EXPECTED_SPEND_90D,
    Feat.CLV,
)
#: The predicted columns (null without a purchase or a model).
PREDICTED: Final[tuple[str, ...]] = VALUE_COLUMNS[2:]
#: Seed of the fit's member subsample.
FIT_SEED: Final[int] = 0


@dataclass(frozen=True, slots=True)
class MemberValue:
    """Per member (``member_id`` + :data:`VALUE_COLUMNS`), and the fitted model."""

    frame: pl.DataFrame
    params: ValueParams | None
    #: why there is no model (policy off, data too thin); None when fitted
    note: str | None

    def manifest(self) -> dict[str, object]:
        """The manifest's ``value_model`` entry: the parameters, or why there are none."""
        return {
            "params": None if self.params is None else self.params.model_dump(mode="json"),
            "note": self.note,
        }


def value_params_of(entry: object) -> ValueParams | None:
    """The fitted parameters of a manifest's ``value_model`` entry (what
    :meth:`MemberValue.manifest` wrote; None without a model); ValueError when malformed."""
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise ValueError(f"value_model must be an object, got {entry!r}")
    params = entry.get("params")
    try:
        return None if params is None else ValueParams.model_validate(params)
    except PydanticValidationError as exc:
        raise ValueError(f"value_model is malformed: {exc}") from None


@dataclass(frozen=True, slots=True)
class SnapshotValue:
    """What a snapshot manifest records of its member-value model."""

    params: ValueParams | None
    policy: ValuePolicy
    #: why there is no model (None when fitted)
    note: str | None


def manifest_value(manifest: dict[str, object], where: str) -> SnapshotValue:
    """The fitted model, the value policy and the note a snapshot manifest records
    (``value_model``, ``value_policy``); DataError naming ``where`` when they are malformed."""
    entry = manifest.get("value_model")
    settings = manifest.get("value_policy")
    if not isinstance(entry, dict) or not isinstance(settings, dict):
        raise DataError(f"{where}: no value_model / value_policy; rebuild the snapshot")
    try:
        params = value_params_of(entry)
        policy = ValuePolicy(
            clv_months=int(settings["clv_months"]),
            monthly_discount=float(settings["monthly_discount"]),
            at_risk_below=float(settings["at_risk_below"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{where}: value_model or value_policy is malformed: {exc}") from None
    note = entry.get("note")
    return SnapshotValue(params, policy, None if note is None else str(note))


def _null_values(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in PREDICTED)


def _scored(
    stats: pl.DataFrame, params: ValueParams, policy: ValuePolicy, as_of: date
) -> pl.DataFrame:
    """``stats`` (a :func:`summaries` frame) with the predicted columns as of ``as_of``."""
    inputs = model_inputs(stats, as_of)
    scores = score_members(
        params,
        inputs.frequency,
        inputs.recency_days,
        inputs.age_days,
        inputs.monetary,
        horizon_days=EXPECTED_HORIZON_DAYS,
        clv_months=policy.clv_months,
        monthly_discount=policy.monthly_discount,
    )
    return stats.with_columns(
        pl.Series(Feat.P_ALIVE, scores.p_alive).fill_nan(None),
        pl.Series(Feat.EXPECTED_ORDERS_90D, scores.expected_orders).fill_nan(None),
        pl.Series(Feat.EXPECTED_SPEND_90D, scores.expected_spend).fill_nan(None),
        pl.Series(Feat.CLV, scores.clv).fill_nan(None),
    )


def member_value(
    purchases: pl.DataFrame | pl.LazyFrame, policy: ValuePolicy, as_of: date
) -> MemberValue:
    """Value statistics and predictions of every member with a purchase day before ``as_of``
    (00:00, exclusive). Members absent from the frame have no purchase day: the caller joins
    it on the member table and reads them as 0 purchase days and null predictions."""
    stats = summaries(purchases, as_of)
    params: ValueParams | None = None
    note: str | None = None
    if not policy.enabled:
        note = "the value model is off ([value] enabled = false)"
    else:
        try:
            params = fit_value_model(
                stats, as_of, max_members=policy.fit_sample or None, seed=FIT_SEED
            )
        except ValueModelError as exc:
            note = f"not fitted: {exc}"
    scored = _null_values(stats) if params is None else _scored(stats, params, policy, as_of)
    frame = scored.select(
        Col.MEMBER_ID,
        pl.col(ValueCol.PURCHASE_DAYS).alias(Feat.PURCHASE_DAYS),
        pl.col(ValueCol.REPEAT_SPEND).alias(Feat.REPEAT_DAY_SPEND),
        *PREDICTED,
    )
    return MemberValue(frame=frame, params=params, note=note)


def fill_members(members: pl.DataFrame) -> pl.DataFrame:
    """A member table joined with :attr:`MemberValue.frame`: 0 purchase days and 0 repeat
    spend where the member had none."""
    return members.with_columns(
        pl.col(Feat.PURCHASE_DAYS).fill_null(0),
        pl.col(Feat.REPEAT_DAY_SPEND).fill_null(0.0),
    )


def rescore(
    members: pl.DataFrame, params: ValueParams, policy: ValuePolicy, as_of: date
) -> pl.DataFrame:
    """``members`` (with ``member_id``, ``purchase_days``, ``repeat_day_spend``,
    ``first_purchase_at`` and ``last_purchase_at``, e.g. members.parquet or online profiles)
    with the predicted columns recomputed as of ``as_of`` (exclusive; not before the last
    purchase day). Nothing is refitted: the member's statistics are the same, only time has
    passed, so ``p_alive`` falls for members who have not come back."""
    stats = members.select(
        Col.MEMBER_ID,
        pl.col(Feat.PURCHASE_DAYS).alias(ValueCol.PURCHASE_DAYS),
        pl.col(Feat.FIRST_PURCHASE_AT).dt.date().alias(ValueCol.FIRST_DAY),
        pl.col(Feat.LAST_PURCHASE_AT).dt.date().alias(ValueCol.LAST_DAY),
        pl.col(Feat.REPEAT_DAY_SPEND).alias(ValueCol.REPEAT_SPEND),
    )
    latest = stats.get_column(ValueCol.LAST_DAY).max()
    if isinstance(latest, date) and latest >= as_of:
        raise ValueError(
            f"as_of {as_of.isoformat()} is not after the last purchase day "
            f"{latest.isoformat()}; give a later date"
        )
    scored = _scored(stats, params, policy, as_of)
    return members.drop([c for c in PREDICTED if c in members.columns]).with_columns(
        scored.get_column(c) for c in PREDICTED
    )


__all__ = [
    "FIT_SEED",
    "PREDICTED",
    "VALUE_COLUMNS",
    "MemberValue",
    "SnapshotValue",
    "fill_members",
    "manifest_value",
    "member_value",
    "rescore",
    "value_params_of",
]
