"""Request and response bodies of the API (pydantic), separate from the domain objects.

Limits live here, so that they show in the OpenAPI document: ``k`` in 1..200, ids of 1..128
characters, at most 1,000 events per request.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_K = 200
DEFAULT_K = 10
MAX_ID_LENGTH = 128
MAX_EVENTS = 1_000

MemberIdPath = Annotated[
    str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="The member's id.")
]
ItemIdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="An item id.")]
KQuery = Annotated[int, Query(ge=1, le=MAX_K, description="How many items to return (1-200).")]
CategoryQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_ID_LENGTH, description="Only items of this category."),
]
TierQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        description="Show only items this tier may see (default: the lowest tier).",
    ),
]
ExcludePurchasedQuery = Annotated[
    bool | None,
    Query(
        description=(
            "true: never recommend items the member bought; false: buy-again allowed, even "
            "items just bought; absent: the service's policy (RECSYS_PURCHASED_POLICY)."
        )
    ),
]

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendedItem(_Out):
    item_id: str
    score: float = Field(
        description="Blend score (similarity for similar items, popularity for fallbacks)."
    )
    source: str = Field(
        description="model, buy_again, trending, popular, popular_in_tier, popular_in_category or similar."
    )
    category: str | None = None


class Recommendations(_Out):
    member_id: str
    model_version: str = Field(description="The served model, e.g. member-recs/3.")
    bundle_id: str
    tier: str = Field(description="The tier whose eligibility rules were applied.")
    basis: Literal["model", "fold_in", "features", "popular_in_tier", "popular"] = Field(
        description="How the member was ranked (docs/api.md)."
    )
    fallback: bool = Field(description="True when the model had nothing for this member.")
    degraded: bool = Field(
        description="True when the online store was unreachable (no profile, no recent events)."
    )
    items: list[RecommendedItem]


class SimilarItems(_Out):
    item_id: str
    model_version: str
    bundle_id: str
    tier: str
    items: list[RecommendedItem]


class RfmOut(_Out):
    recency_days: int | None
    frequency: int
    monetary: float
    r_score: int | None
    f_score: int | None
    m_score: int | None
    segment: str | None


class RecentPurchaseOut(_Out):
    order_id: str
    item_id: str
    ts: datetime
    quantity: int
    amount: float


class Profile(_Out):
    member_id: str
    tier: str
    tier_source: str
    tier_since: datetime | None
    rfm: RfmOut
    lifecycle: str
    tags: list[str]
    top_categories: list[str]
    n_orders: int
    total_spend: float
    last_purchase_at: datetime | None
    region: str | None
    points_balance: int | None
    as_of: datetime
    in_model: bool = Field(description="Whether the served model has a vector for the member.")
    recent_purchases: list[RecentPurchaseOut]


class PurchaseEventIn(BaseModel):
    """One purchase line (a return has negative quantity and amount)."""

    model_config = ConfigDict(extra="forbid")

    event_id: Id = Field(description="Unique id of this report; a repeated id is ignored.")
    member_id: Id
    order_id: Id
    item_id: Id
    ts: datetime = Field(description="Local time of the purchase, without a UTC offset.")
    quantity: int = Field(ge=-10_000, le=10_000)
    amount: float

    @field_validator("quantity")
    @classmethod
    def _nonzero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("quantity must not be 0 (a purchase is > 0, a return < 0)")
        return value

    @field_validator("amount")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("amount must be a finite number")
        return value

    @field_validator("ts")
    @classmethod
    def _naive(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            raise ValueError("ts must be local time without a UTC offset, like the purchases data")
        return value


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[PurchaseEventIn] = Field(min_length=1, max_length=MAX_EVENTS)


class EventResult(_Out):
    event_id: str
    member_id: str
    status: Literal["applied", "duplicate", "before_snapshot"]


class EventsOut(_Out):
    applied: int
    duplicates: int
    before_snapshot: int
    members_refreshed: int = Field(
        description="Members whose vector was folded in again and whose cached results were dropped."
    )
    results: list[EventResult]


class ModelOut(_Out):
    version: str = Field(description="Registry version (member-recs/3), run URI or folder name.")
    uri: str
    bundle_id: str
    path: str
    kind: str
    created_at: str
    loaded_at: str
    registry_version: str | None
    run_id: str | None
    n_members: int
    n_items: int
    dim: int
    index: str
    catalogue: str = Field(description="Where item categories, tiers and availability came from.")
    cold_start: str


class ReloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uri: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="Model to load; default: the configured RECSYS_MODEL_URI (the champion).",
    )


class ReloadOut(_Out):
    changed: bool
    previous: ModelOut
    current: ModelOut
    propagated: bool = Field(
        description="Whether the other workers were told (through Redis) to switch too."
    )


class StoreStatus(_Out):
    ok: bool
    url: str
    latency_ms: float | None
    active_version: str | None
    error: str | None


class Health(_Out):
    status: Literal["ok"]


class Readiness(_Out):
    status: Literal["ready", "degraded"]
    model: ModelOut
    store: StoreStatus
