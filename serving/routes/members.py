"""``GET /v1/members/{member_id}/profile``: what the online store knows about a member."""

from __future__ import annotations

from fastapi import APIRouter

from feature_store.online.profile import MemberProfile, RecentPurchase
from serving.deps import CurrentModel, Marketer, State
from serving.errors import NotFoundError, ServiceUnavailableError
from serving.online import StoreDownError
from serving.routes._problems import secured
from serving.schemas import MemberIdPath, Profile, RecentPurchaseOut, RfmOut

router = APIRouter(prefix="/v1/members", tags=["members"])
RECENT_SHOWN = 10


@router.get(
    "/{member_id}/profile",
    response_model=Profile,
    summary="A member's profile",
    **secured(404, 422, 503),
)
def profile(
    member_id: MemberIdPath, caller: Marketer, state: State, model: CurrentModel
) -> Profile:
    """Tier, RFM scores and segment, lifecycle stage, tags, top categories and the last
    purchases, as of the latest snapshot plus the purchase events reported since."""
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
        as_of=p.as_of,
        in_model=model.member_ids.get(member_id) >= 0,
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
