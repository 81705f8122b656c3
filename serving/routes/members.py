"""``GET /v1/members/{member_id}/profile``: what the online store knows about a member;
``GET /v1/members/at-risk``: valuable members slipping away (the early-warning list)."""

from __future__ import annotations

from typing import Annotated, Final

import anyio.to_thread
from fastapi import APIRouter, Query

from engine.experiments.assignment import Variant
from feature_store.online.profile import MemberProfile, RecentPurchase
from serving.audience_schemas import IsoDate
from serving.deps import AppState, Campaigns, CurrentModel, Marketer, State
from serving.errors import NotFoundError, ServiceUnavailableError
from serving.member_value import at_risk_list
from serving.model import PurchasedPolicy
from serving.model_types import item_rows
from serving.online import StoreDownError, decode_overlay
from serving.routes._problems import secured
from serving.schemas import (
    QUERY_INT,
    AtRiskOut,
    MemberIdPath,
    Profile,
    RecentPurchaseOut,
    RecommendedItem,
    RfmOut,
    ValueOut,
)

router = APIRouter(prefix="/v1/members", tags=["members"])
#: items of the "for you" list a profile shows
FOR_YOU_SHOWN: Final = 10
RECENT_SHOWN = 10
MAX_AT_RISK: Final = 10_000


@router.get(
    "/at-risk",
    response_model=AtRiskOut,
    summary="Valuable members slipping away",
    **secured(409, 422, 503),
)
async def at_risk(
    caller: Campaigns,
    state: State,
    model: CurrentModel,
    top: Annotated[
        int, Query(ge=1, le=MAX_AT_RISK, description="At most N members (1-10,000)."), QUERY_INT
    ] = 100,
    min_clv: Annotated[
        float | None,
        Query(allow_inf_nan=False, description="Only members with a lifetime value >= this."),
    ] = None,
    below: Annotated[
        float | None,
        Query(ge=0, le=1, allow_inf_nan=False, description="p_alive threshold [policy default]."),
    ] = None,
    as_of: Annotated[
        IsoDate | None,
        Query(
            description="Recompute the values as of this later date (YYYY-MM-DD): members who "
            "have not come back since slip further [default: the snapshot's date].",
        ),
    ] = None,
) -> AtRiskOut:
    """Members whose probability of still being active (p_alive) is below the threshold,
    highest value at risk (clv x (1 - p_alive)) first: the win-back list. Values are the
    snapshot's, updated by the purchase events reported since (docs/features.md)."""
    body = await anyio.to_thread.run_sync(
        lambda: at_risk_list(
            state.audiences, model, top=top, min_clv=min_clv, below=below, as_of=as_of
        )
    )
    return AtRiskOut.model_validate(body)


@router.get(
    "/{member_id}/profile",
    response_model=Profile,
    summary="A member's profile",
    **secured(404, 422, 503),
)
def profile(
    member_id: MemberIdPath, caller: Marketer, state: State, model: CurrentModel
) -> Profile:
    """Tier, RFM scores and segment, lifecycle stage, tags, top categories, member value
    (p_alive, expected orders and spend, lifetime value) and the last purchases, as of the
    latest snapshot plus the purchase events reported since."""
    gateway = state.gateway
    recent: list[RecentPurchase] = []
    try:
        found: MemberProfile | None = gateway.call(lambda store: store.get_profile(member_id))
        if found is not None:
            recent = gateway.call(lambda store: store.recent_purchases(member_id, RECENT_SHOWN))
    except StoreDownError as exc:
        raise ServiceUnavailableError(
            f"member profiles are unavailable while the online store is down ({exc})",
            retry_after_seconds=max(1, int(state.settings.redis_retry_seconds)),
        ) from exc
    if found is None:
        raise NotFoundError(f"member {member_id!r} has no profile in the online store")
    p = found
    variant, for_you = _for_you(state, member_id, p)
    return Profile(
        member_id=p.member_id,
        tier=p.tier,
        tier_source=p.tier_source,
        tier_since=p.tier_since,
        rfm=RfmOut(
            recency_days=p.recency_days,
            frequency=p.frequency,
            monetary=p.monetary,
            r_score=p.r_score,
            f_score=p.f_score,
            m_score=p.m_score,
            segment=p.rfm_segment,
        ),
        lifecycle=p.lifecycle,
        tags=list(p.tags),
        top_categories=list(p.top_categories),
        n_orders=p.n_orders,
        total_spend=p.total_spend,
        last_purchase_at=p.last_purchase_at,
        region=p.region,
        points_balance=p.points_balance,
        value=ValueOut(
            p_alive=p.p_alive,
            expected_orders_90d=p.expected_orders_90d,
            expected_spend_90d=p.expected_spend_90d,
            clv=p.clv,
            purchase_days=p.purchase_days,
        ),
        as_of=p.as_of,
        in_model=model.member_ids.get(member_id) >= 0,
        variant=variant,
        for_you=for_you,
        recent_purchases=[
            RecentPurchaseOut(
                order_id=r.order_id,
                item_id=r.item_id,
                ts=r.ts,
                quantity=r.quantity,
                amount=r.amount,
            )
            for r in recent
        ],
    )


def _for_you(
    state: AppState, member_id: str, profile: MemberProfile
) -> tuple[Variant, list[RecommendedItem]]:
    """The member's current "for you" list with each item's reason, as the storefront gets it
    (the model of their experiment variant, purchases since the snapshot folded in)."""
    variant, served = state.model_for(member_id)
    try:
        raw = state.gateway.member_states([(served.id, member_id, None)])[0][1]
    except StoreDownError:
        raw = None
    overlay = None if raw is None else decode_overlay(raw, served.fold.dim, served.catalog.n_items)
    listed = served.recommend(
        member_id,
        profile,
        overlay,
        k=FOR_YOU_SHOWN,
        policy=PurchasedPolicy(state.settings.purchased_policy),
    )
    return variant, [RecommendedItem(**row) for row in item_rows(listed)]
