"""Member value: BG/NBD + Gamma-Gamma "buy till you die" model of each member's future purchases.

Per member with a purchase: ``p_alive``, expected purchase days and spend over a horizon, and a
discounted CLV. Pipeline: :func:`summaries` (purchase lines -> per-member statistics as of a
date) -> :func:`fit_value_model` (PyMC-Marketing MAP, returns :class:`ValueParams`) ->
:func:`score_members` / :func:`score_member` (closed forms, numpy/scipy only). The real-data
check is :func:`evaluate_holdout` (feature_store.value.holdout). PyMC-Marketing is imported
only while fitting; scoring needs numpy and scipy.
"""

from feature_store.value.fit import (
    MIN_MEMBERS,
    MIN_REPEATERS,
    ValueModelError,
    ValueParams,
    fit_inputs,
    fit_value_model,
)
from feature_store.value.scoring import (
    MONTH_DAYS,
    MemberScore,
    ValueScores,
    expected_spend_per_day,
    p_alive,
    prob_no_purchase,
    score_member,
    score_members,
)
from feature_store.value.summary import (
    SUMMARY_COLUMNS,
    MemberValueStats,
    ModelInputs,
    ValueCol,
    model_inputs,
    observation_end,
    purchase_day_counts,
    summaries,
)

__all__ = [
    "MIN_MEMBERS",
    "MIN_REPEATERS",
    "MONTH_DAYS",
    "SUMMARY_COLUMNS",
    "MemberScore",
    "MemberValueStats",
    "ModelInputs",
    "ValueCol",
    "ValueModelError",
    "ValueParams",
    "ValueScores",
    "expected_spend_per_day",
    "fit_inputs",
    "fit_value_model",
    "model_inputs",
    "observation_end",
    "p_alive",
    "prob_no_purchase",
    "purchase_day_counts",
    "score_member",
    "score_members",
    "summaries",
]
