"""``GET /v1/members/{member_id}/recommendations``: the "for you" list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from engine.ranking.query import ListQuery
from serving.deps import AppState, authenticate
from serving.routes._problems import secured
from serving.schemas import MemberIdPath, Recommendations
from serving.security import Permission

router = APIRouter(prefix="/v1/members", tags=["recommendations"])
#: The route's template, also the metrics label of the fast path (serving/fastpath.py).
ROUTE_PATH = "/v1/members/{member_id}/recommendations"


async def answer(state: AppState, member_id: str, query: ListQuery) -> tuple[bytes, str]:
    """The response body and the cache outcome for a parsed query: shared by the route and
    the fast path (serving/fastpath.py), so both answer byte for byte the same."""
    arm, model = state.model_for(member_id)  # this request finishes on this model
    settings = state.settings
    policy = query.policy(settings.purchased_policy)
    variant = f"{query.cache_key()}|{policy.value}" if settings.cache_enabled else None
    return await state.batcher.submit(
        model, member_id, query=query, policy=policy, variant=variant, arm=arm
    )


@router.get(
    ROUTE_PATH.removeprefix("/v1/members"),
    response_model=Recommendations,
    summary="Recommendations for a member",
    **secured(422),
)
async def recommendations(
    request: Request, member_id: MemberIdPath, query: Annotated[ListQuery, Query()]
) -> Response:
    """The member's top ``k`` items: the blend of the served model (or the member's folded-in
    vector after recent purchases), then the business rules (availability, tier eligibility,
    purchased items, category, the ``exclude`` list, diversity cap, promotions), filled from
    popular items when short. Unknown members get popular items with ``fallback: true``.
    Answers from the bundle alone, with ``degraded: true``, while the online store is
    unreachable. The ``X-Cache`` header says ``hit``, ``miss`` or ``off``.

    ``promote`` (item ids) and/or ``promote_category`` give the promoted items
    ``ceil(promote_share * k)`` of the slots (fewer when fewer pass the rules), chosen by score
    among them; each keeps the place its score gives it, with source ``promoted``.

    Requests are answered in batches (serving/batcher.py); the work runs in a worker thread.
    Requires an API key with the role storefront (or admin)."""
    # Well-formed requests with a valid key are answered by serving/fastpath.py before they
    # get here, parsed by the same model and checked by the same key check; this route
    # answers the rest (and owns their error responses).
    state: AppState = request.app.state.recsys
    authenticate(request, state, Permission.RECOMMEND)
    payload, cache = await answer(state, member_id, query)
    return Response(payload, media_type="application/json", headers={"X-Cache": cache})
