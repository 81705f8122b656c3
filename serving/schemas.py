"""Request and response bodies of the API (pydantic), separate from the domain objects.

Limits live here, so that they show in the OpenAPI document: ``k`` in 1..200, ids of 1..128
characters, at most 1,000 events per request. Numbers in bodies are JSON numbers, as the schema
says: ``"5"`` or ``true`` is not a quantity, ``5.0`` is (JSON Schema's integers are the numbers
without a fraction).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import Path, Query
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from engine.audience_document import WHOLE, Finite
from engine.ranking.query import ASCII_INT, MAX_ID_LENGTH, MAX_K

MAX_EVENTS = 1_000

MemberIdPath = Annotated[
    str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="The member's id.")
]
ItemIdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="An item id.")]


#: Put after ``Query(...)``: ``Annotated[int, Query(ge=1), QUERY_INT]`` (ASCII digits only).
QUERY_INT: Final = ASCII_INT

KQuery = Annotated[
    int, Query(ge=1, le=MAX_K, description="How many items to return (1-200)."), QUERY_INT
]
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
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


#: Years 1000-2999: far from the ends of ``datetime``'s range, which a UTC offset could cross.
TIMESTAMP_YEARS: Final = "^[12][0-9]{3}-"
_TIMESTAMP: Final = re.compile(
    r"[12][0-9]{3}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


def _timestamp(value: object) -> datetime:
    """An ISO 8601 date-time string of the years 1000-2999 (ASCII digits, seconds given), with
    or without a UTC offset."""
    if isinstance(value, str) and _TIMESTAMP.fullmatch(value):
        try:
            return datetime.fromisoformat(value.upper())
        except ValueError:
            pass
    raise PydanticCustomError(
        "date_time",
        "must be a date-time YYYY-MM-DDTHH:MM:SS[.ffffff][Z|+HH:MM] of the years 1000-2999 "
        "(RFC 3339; without an offset the time is taken in the data's time zone)",
    )


Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_YEARS}),
]


#: A time of the data (profiles, purchases): local, in RECSYS_DATA_TIMEZONE, without an offset.
LocalTime = Annotated[
    datetime,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?$",
            "description": "Local time of the data's time zone (RECSYS_DATA_TIMEZONE), "
            "without an offset.",
        }
    ),
]


Reason = Literal[
    "because_you_bought",
    "similar_members",
    "buy_again",
    "trending",
    "popular_in_your_tier",
    "promoted",
    "similar_item",
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendedItem(_Out):
    item_id: str
    score: float = Field(
        description="Blend score (similarity for similar items, popularity for fallbacks)."
    )
    source: str = Field(
        description="model, buy_again, trending, popular, popular_in_tier, popular_in_category, "
        "similar or promoted."
    )
    category: str | None = None
    reason: Reason = Field(
        description="Why the item is there (docs/api.md): because_you_bought (anchor_item_id: "
        "the member's purchase most like it), similar_members, buy_again, trending, "
        "popular_in_your_tier, promoted, similar_item."
    )
    anchor_item_id: str | None = Field(
        default=None,
        description="The member's purchase (or the seed item) the reason refers to.",
    )


class Recommendations(_Out):
    recommendation_id: str = Field(
        description="Id of this served list (the exposure log records it for attribution)."
    )
    member_id: str
    variant: Literal["champion", "challenger"] = Field(
        description="The experiment variant the member sees (always champion without one)."
    )
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
    ts: LocalTime
    quantity: int
    amount: float


class ValueOut(_Out):
    """Member value from the customer-base models (docs/features.md, "Member value"); every
    field is null for a member without purchases or when the value model is off."""

    p_alive: float | None = Field(
        description="Probability that the member is still an active customer (0-1)."
    )
    expected_orders_90d: float | None = Field(
        description="Expected purchase days in the next 90 days."
    )
    expected_spend_90d: float | None = Field(description="Expected spend in the next 90 days.")
    clv: float | None = Field(
        description="Predicted lifetime value: expected spend over the policy's horizon, "
        "discounted monthly."
    )
    purchase_days: int = Field(description="Distinct days with a purchase so far.")


class AtRiskMember(_Out):
    member_id: str
    tier: str | None
    lifecycle: str | None
    p_alive: float = Field(description="Probability that the member is still active.")
    clv: float = Field(description="Predicted lifetime value.")
    value_at_risk: float = Field(description="clv x (1 - p_alive): the value lost if they left.")
    expected_spend_90d: float | None
    purchase_days: int
    last_purchase_at: LocalTime | None


class AtRiskOut(_Out):
    snapshot_as_of: date = Field(description="Date of the snapshot the values come from.")
    as_of: date = Field(description="Date the values were computed as of.")
    below: float = Field(description="The p_alive threshold.")
    members_with_value: int = Field(description="Members with a value (at least one purchase).")
    changed_since_snapshot: int = Field(
        description="Members whose values purchase events updated since the snapshot."
    )
    size: int = Field(description="Members listed.")
    members: list[AtRiskMember] = Field(description="Highest value at risk first.")


class Profile(_Out):
    member_id: str
    tier: str
    tier_source: str
    tier_since: LocalTime | None
    rfm: RfmOut
    lifecycle: str
    tags: list[str]
    top_categories: list[str]
    n_orders: int
    total_spend: float
    last_purchase_at: LocalTime | None
    region: str | None
    points_balance: int | None
    value: ValueOut
    as_of: LocalTime
    in_model: bool = Field(description="Whether the served model has a vector for the member.")
    recent_purchases: list[RecentPurchaseOut]
    variant: Literal["champion", "challenger"] = Field(
        description="The experiment variant the member sees."
    )
    for_you: list[RecommendedItem] = Field(
        description="The member's current top 10, as the storefront gets them, each with its reason."
    )


_SAME_SIGNS: Final[dict[str, Any]] = {
    "anyOf": [
        {"properties": {"quantity": {"minimum": 1}, "amount": {"minimum": 0}}},
        {"properties": {"quantity": {"maximum": -1}, "amount": {"maximum": 0}}},
    ]
}


class PurchaseEventIn(BaseModel):
    """One purchase line (a return has negative quantity and amount)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_SAME_SIGNS)

    event_id: Id = Field(description="Unique id of this report; a repeated id is ignored.")
    member_id: Id
    order_id: Id
    item_id: Id
    ts: Timestamp = Field(
        description=(
            "Time of the purchase, RFC 3339 (`2024-06-10T12:00:00+02:00`, `...Z`), years "
            "1000-2999: converted to the data's time zone (RECSYS_DATA_TIMEZONE, default UTC). "
            "A time without an offset (`2024-06-10T12:00:00`) is also accepted and taken in "
            "that zone."
        )
    )
    quantity: Annotated[int, Field(ge=-10_000, le=10_000), WHOLE] = Field(
        description="Negative for a return; not 0.", json_schema_extra={"not": {"const": 0}}
    )
    amount: Finite = Field(description="Same sign as quantity (or 0).")

    @field_validator("quantity")
    @classmethod
    def _nonzero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("quantity must not be 0 (a purchase is > 0, a return < 0)")
        return value

    @field_validator("amount")
    @classmethod
    def _same_sign(cls, value: float, info: ValidationInfo) -> float:
        quantity = info.data.get("quantity")  # absent when it was invalid
        if quantity is not None and value * quantity < 0:
            raise ValueError("amount must have the sign of quantity (a return: both negative)")
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
        description="Model to load; default: the role's configured URI (RECSYS_MODEL_URI for "
        "the champion, RECSYS_CHALLENGER_URI for the challenger).",
    )
    role: Literal["champion", "challenger"] = Field(
        default="champion",
        description="Which model to reload: the champion, or the experiment's challenger "
        "(409 when no challenger is configured).",
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
