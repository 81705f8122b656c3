"""The early-warning list: valuable members who are slipping away, most value at risk first.

A member is on the list when their ``p_alive`` (the value model's probability that they are
still an active customer) is below the policy's ``[value] at_risk_below``. The list is sorted by
**value at risk**, ``clv x (1 - p_alive)``: the lifetime value the programme loses if the member
has in fact left, so a win-back budget goes first where it can save the most.

Both readers use :func:`at_risk_members`: ``recsys members at-risk`` on a snapshot's member
table, and ``GET /v1/members/at-risk`` on the online store's (with the members changed by
purchase events since the snapshot). Given a later ``as_of`` the values are first recomputed as
of that date (:func:`~feature_store.value.snapshot_columns.rescore`): ``p_alive`` falls for
members who have not come back since the snapshot, so they join the list without a new snapshot.
"""

from __future__ import annotations

from datetime import date
from typing import Final

import numpy as np
import polars as pl

from feature_store.errors import DataError
from feature_store.member_columns import MemberColumns
from feature_store.policy_value import ValuePolicy
from feature_store.schema import Col
from feature_store.transforms import Feat
from feature_store.value.fit import ValueParams
from feature_store.value.snapshot_columns import rescore

VALUE_AT_RISK: Final[str] = "value_at_risk"
#: Columns of the list, in order.
AT_RISK_COLUMNS: Final[tuple[str, ...]] = (
    Col.MEMBER_ID,
    Col.TIER,
    Feat.LIFECYCLE,
    Feat.P_ALIVE,
    Feat.CLV,
    VALUE_AT_RISK,
    Feat.EXPECTED_SPEND_90D,
    Feat.PURCHASE_DAYS,
    Feat.LAST_PURCHASE_AT,
)
#: Columns :func:`at_risk_members` reads (``rescore`` also needs the value statistics).
NEEDED: Final[tuple[str, ...]] = (
    Col.MEMBER_ID,
    Col.TIER,
    Feat.LIFECYCLE,
    Feat.P_ALIVE,
    Feat.CLV,
    Feat.EXPECTED_SPEND_90D,
    Feat.PURCHASE_DAYS,
    Feat.REPEAT_DAY_SPEND,
    Feat.FIRST_PURCHASE_AT,
    Feat.LAST_PURCHASE_AT,
)


def value_frame(columns: MemberColumns) -> pl.DataFrame:
    """The member value columns of ``columns`` as a frame, one row per member in snapshot
    order: member_id, tier, lifecycle, p_alive, clv, expected_spend_90d and the value
    statistics (what feature_store.value.at_risk reads; nulls where unknown)."""
    tiers = pl.Series(np.array([*columns.tier_names, ""], dtype=object)[columns.tier_codes])
    stages = pl.Series(
        np.array([*columns.lifecycle_names, ""], dtype=object)[columns.lifecycle_codes]
    )
    return pl.DataFrame(
        {
            Col.MEMBER_ID: columns.member_ids.astype(object),
            Col.TIER: tiers.replace("", None),
            Feat.LIFECYCLE: stages.replace("", None),
            Feat.P_ALIVE: pl.Series(columns.p_alive).fill_nan(None),
            Feat.CLV: pl.Series(columns.clv).fill_nan(None),
            Feat.EXPECTED_SPEND_90D: pl.Series(columns.expected_spend).fill_nan(None),
            Feat.PURCHASE_DAYS: columns.purchase_days,
            Feat.REPEAT_DAY_SPEND: columns.repeat_day_spend,
            Feat.FIRST_PURCHASE_AT: pl.Series(columns.first_purchase_at),
            Feat.LAST_PURCHASE_AT: pl.Series(columns.last_purchase_at),
        },
        schema_overrides={Col.MEMBER_ID: pl.String, Col.TIER: pl.String, Feat.LIFECYCLE: pl.String},
    )


def at_risk_members(
    members: pl.DataFrame,
    *,
    params: ValueParams | None,
    policy: ValuePolicy,
    values_as_of: date,
    as_of: date | None = None,
    top: int | None = None,
    min_clv: float | None = None,
) -> pl.DataFrame:
    """The members (a frame with :data:`NEEDED`) whose ``p_alive`` is below
    ``policy.at_risk_below``, highest value at risk first (ties by member id), at most ``top``,
    only those with ``clv >= min_clv`` when given; columns :data:`AT_RISK_COLUMNS`.

    ``values_as_of`` is the date the frame's values were computed as of; a later ``as_of``
    recomputes them as of that date first (no refit). Raises DataError when the snapshot has
    no value model, or ``as_of`` is earlier than the values.
    """
    missing = [c for c in NEEDED if c not in members.columns]
    if missing:
        raise DataError(
            f"member table: missing column(s) {', '.join(missing)}; rebuild the snapshot with "
            "`recsys features build`"
        )
    if params is None:
        raise DataError(
            "this snapshot has no member-value model (see value_model.note in its manifest): "
            "build it with [value] enabled = true and enough repeat buyers"
        )
    if as_of is not None and as_of < values_as_of:
        raise DataError(
            f"as_of {as_of.isoformat()} is before the values' date {values_as_of.isoformat()}; "
            "give a date on or after it"
        )
    frame = members.select(NEEDED)
    if as_of is not None and as_of > values_as_of:
        frame = rescore(frame, params, policy, as_of)
    p_alive, clv = pl.col(Feat.P_ALIVE), pl.col(Feat.CLV)
    keep = p_alive.is_not_null() & (p_alive < policy.at_risk_below) & clv.is_not_null()
    if min_clv is not None:
        keep &= clv >= min_clv
    listed = (
        frame.filter(keep)
        .with_columns((clv * (1.0 - p_alive)).alias(VALUE_AT_RISK))
        .sort([VALUE_AT_RISK, Col.MEMBER_ID], descending=[True, False])
        .select(AT_RISK_COLUMNS)
    )
    return listed if top is None else listed.head(top)


__all__ = [
    "AT_RISK_COLUMNS",
    "NEEDED",
    "VALUE_AT_RISK",
    "at_risk_members",
    "value_frame",
]
