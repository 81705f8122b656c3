"""``GET /v1/members/{member_id}/recommendations``: the "for you" list."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from serving.deps import AppState, authenticate
from serving.model import PurchasedPolicy
from serving.routes._problems import secured
from serving.schemas import (
    DEFAULT_K,
    CategoryQuery,
    ExcludePurchasedQuery,
    KQuery,
    MemberIdPath,
    Recommendations,
)
from serving.security import Permission

router = APIRouter(prefix="/v1/members", tags=["recommendations"])
#: The route's template, also the metrics label of the fast path (serving/fastpath.py).
ROUTE_PATH = "/v1/members/{member_id}/recommendations"


def _policy(exclude_purchased: bool | None, default: str) -> PurchasedPolicy:
    if exclude_purchased is None:
        return PurchasedPolicy(default)
    return PurchasedPolicy.EXCLUDE if exclude_purchased else PurchasedPolicy.KEEP


async def answer(
    state: AppState,
    member_id: str,
    k: int,
    category: str | None,
    exclude_purchased: bool | None,
) -> tuple[bytes, str]:
    """The response body and the cache outcome for valid parameters: shared by the route and
    the fast path (serving/fastpath.py), so both answer byte for byte the same."""
    model = state.holder.current  # this request finishes on this model
    settings = state.settings
    policy = _policy(exclude_purchased, settings.purchased_policy)
    variant = f"{k}|{category or ''}|{policy.value}" if settings.cache_enabled else None
    return await state.batcher.submit(
        model, member_id, k=k, category=category, policy=policy, variant=variant
    )


@router.get(
    ROUTE_PATH.removeprefix("/v1/members"),
    response_model=Recommendations,
    summary="Recommendations for a member",
    **secured(422),
)
async def recommendations(
    request: Request,
    member_id: MemberIdPath,
    k: KQuery = DEFAULT_K,
    category: CategoryQuery = None,
    exclude_purchased: ExcludePurchasedQuery = None,
) -> Response:
    """The member's top ``k`` items: the blend of the served model (or the member's folded-in
    vector after recent purchases), then the business rules (availability, tier eligibility,
    purchased items, category, diversity cap), filled from popular items when short. Unknown
    members get popular items with ``fallback: true``. Answers from the bundle alone, with
    ``degraded: true``, while the online store is unreachable. The ``X-Cache`` header says
    ``hit``, ``miss`` or ``off``.

    Requests are answered in batches (serving/batcher.py); the work runs in a worker thread.
    Requires an API key with the role storefront (or admin)."""
    # Well-formed requests with a valid key are answered by serving/fastpath.py before they
    # get here; this route answers the rest (and owns their validation errors).
    state: AppState = request.app.state.recsys
    authenticate(request, state, Permission.RECOMMEND)
    payload, cache = await answer(state, member_id, k, category, exclude_purchased)
    return Response(payload, media_type="application/json", headers={"X-Cache": cache})
