"""``GET /v1/items/{item_id}/similar``: items like a given one."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from engine.ranking.query import DEFAULT_K
from serving.deps import CurrentModel, Storefront
from serving.errors import NotFoundError
from serving.model_types import item_rows
from serving.routes._problems import secured
from serving.schemas import (
    CategoryQuery,
    ItemIdPath,
    KQuery,
    RecommendedItem,
    SimilarItems,
    TierQuery,
)

router = APIRouter(prefix="/v1/items", tags=["items"])


@router.get(
    "/{item_id}/similar",
    response_model=SimilarItems,
    summary="Items similar to an item",
    **secured(404, 422),
)
def similar(
    item_id: ItemIdPath,
    caller: Storefront,
    model: CurrentModel,
    k: KQuery = DEFAULT_K,
    tier: TierQuery = None,
    category: CategoryQuery = None,
) -> Response:
    """The ``k`` items closest to ``item_id`` (cosine of the item vectors among its nearest
    inner-product neighbours), active and visible to ``tier`` (default: the lowest tier),
    filled with popular items of the same category when short."""
    ranked = model.similar(item_id, k=k, tier=tier, category=category)
    if ranked is None:
        raise NotFoundError(f"item {item_id!r} is not in the catalogue of model {model.info.label}")
    body = SimilarItems(
        item_id=item_id,
        model_version=model.info.label,
        bundle_id=model.id,
        tier=ranked.tier,
        items=[RecommendedItem(**row) for row in item_rows(ranked)],
    )
    return Response(body.model_dump_json().encode(), media_type="application/json")
