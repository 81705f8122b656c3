"""Request and response bodies of the campaign audience API (``/v1/audiences``).

The request body of ``POST /v1/audiences`` is the audience definition document
(docs/audiences.md), validated by :func:`engine.audience.parse_definition` so that the API and
``recsys audience build`` accept exactly the same documents; an error names the field
(``filters.tiers[0]``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

MAX_PAGE = 10_000
DEFAULT_PAGE = 1_000

DEFINITION_EXAMPLE: dict[str, Any] = {
    "name": "winter range for gold+",
    "seed": {"categories": ["tea"], "item_tags": ["winter"]},
    "filters": {
        "tiers": ["gold", "diamond"],
        "lifecycle": ["active", "at_risk"],
        "tags": {"none": ["opt_out"]},
    },
    "exclude": {"bought_seed_within_days": 30, "contacted_within_days": 7},
    "size": {"top_n": 100000},
}

DefinitionBody = Annotated[
    dict[str, Any],
    Body(
        description=(
            "The audience definition: seed (items, categories, item_tags, or members for a "
            "lookalike), filters, exclude and size (docs/audiences.md). Unknown keys are errors."
        ),
        openapi_examples={"winter range": {"value": DEFINITION_EXAMPLE}},
    ),
]
AudienceIdPath = Annotated[
    str, Path(min_length=1, max_length=64, description="The audience id (aud_...).")
]
OffsetQuery = Annotated[int, Query(ge=0, description="Rank - 1 of the first member returned.")]
LimitQuery = Annotated[
    int, Query(ge=1, le=MAX_PAGE, description=f"Members per page (1-{MAX_PAGE:,}).")
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AudienceMember(_Out):
    member_id: str
    score: float = Field(description="Member vector . seed vector.")
    rank: int = Field(description="1 = best.")
    percentile: float = Field(
        description="Share (%) of the scored eligible members scoring at most this one."
    )
    tier: str | None
    segment: str | None = Field(description="RFM segment (null: never purchased).")


class SnapshotRef(_Out):
    path: str
    as_of: date


class Sent(_Out):
    sent_at: datetime
    contacts: int


class AudienceOut(_Out):
    id: str
    name: str
    size: int = Field(description="Members in the audience.")
    counts: dict[str, int] = Field(
        description="members, eligible (pass the filters), unscored (no vector), "
        "excluded_<reason>, excluded, scored, selected."
    )
    breakdown: dict[str, dict[str, int]] = Field(
        description="tier / segment / lifecycle -> name -> members of the audience."
    )
    seed: dict[str, int] = Field(description="What the seed resolved to in the model.")
    preview: list[AudienceMember] = Field(description="The best 20 members.")
    model_version: str
    bundle_id: str
    snapshot: SnapshotRef
    definition: dict[str, Any] = Field(description="The definition, normalized.")
    created_at: datetime
    expires_at: datetime
    warnings: list[str]
    sent: Sent | None = Field(description="When the audience was marked sent, if it was.")


class AudiencePage(_Out):
    audience_id: str
    size: int
    offset: int
    limit: int
    next_offset: int | None = Field(description="Offset of the next page; null after the last.")
    members: list[AudienceMember]


class SentOut(_Out):
    audience_id: str
    contacts: int = Field(description="Members recorded as contacted.")
    sent_at: datetime
    recorded: bool = Field(
        description="False when the audience had already been marked sent (nothing changed)."
    )


__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "AudienceIdPath",
    "AudienceMember",
    "AudienceOut",
    "AudiencePage",
    "DefinitionBody",
    "LimitQuery",
    "OffsetQuery",
    "SentOut",
]
