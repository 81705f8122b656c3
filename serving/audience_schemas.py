"""Request and response bodies of the campaign audience API (``/v1/audiences``).

The request body of ``POST /v1/audiences`` is the audience definition document
(docs/audiences.md): its one typed form is the engine's pydantic model
(engine.audience_document.AudienceDefinition, re-exported here), which the OpenAPI document
publishes (unknown keys are errors: ``additionalProperties: false``) and which checks every rule
of the document alone, as ``recsys audience build`` does: the API and the CLI accept exactly the
same documents. The rules that need the model and the snapshot (unknown tier names, a seed none
of whose items the model knows) are the scorer's. Either way an error is a 422 whose field uses
the document's own paths (``filters.tiers[0]``, ``size.top_n``, ``filtres``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Final

from fastapi import Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from engine.audience_document import (
    DEFINITION_EXAMPLE,
    MAX_DAYS,
    NON_BLANK_PATTERN,
    AudienceDefinition,
    AudienceFilters,
    DefinitionError,
    IsoDate,
    read_document,
)
from serving.errors import BadRequestError
from serving.schemas import QUERY_INT

MAX_PAGE = 10_000
DEFAULT_PAGE = 1_000

DEFINITION_REF: Final = "#/components/schemas/AudienceDefinition"


def read_definition(document: object) -> dict[str, Any]:
    """The definition document validated by :class:`AudienceDefinition`, as the engine reads
    it (``5.0`` became ``5``, dates are dates, ``null`` is left out). An invalid one raises
    :class:`BadRequestError` (422) listing every culprit by its path in the document
    (``filters.tiers[0]``; ``definition`` for the document itself)."""
    try:
        definition = read_document(document)
    except DefinitionError as exc:
        raise BadRequestError(str(exc), extra={"errors": exc.errors}) from None
    return definition.model_dump(exclude_none=True)


#: The definition document: typed in the OpenAPI document by :class:`AudienceDefinition`, checked
#: by :func:`read_definition` and the engine (serving/routes/audiences.py).
DefinitionBody = Annotated[
    Any, Body(openapi_examples={"winter range": {"value": DEFINITION_EXAMPLE}})
]
AudienceIdPath = Annotated[
    str, Path(min_length=1, max_length=64, description="The audience id (aud_...).")
]
OffsetQuery = Annotated[
    int, Query(ge=0, description="Rank - 1 of the first member returned."), QUERY_INT
]
LimitQuery = Annotated[
    int, Query(ge=1, le=MAX_PAGE, description=f"Members per page (1-{MAX_PAGE:,})."), QUERY_INT
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


class HoldoutOut(_Out):
    percent: float
    salt: str | None
    scheme: str = Field(description="The assignment scheme (hash) recorded with the campaign.")


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
        "excluded_<reason>, excluded, scored, selected; with a holdout also treatment and "
        "control (size = treatment)."
    )
    holdout: HoldoutOut | None = Field(description="The control group, if the definition has one.")
    breakdown: dict[str, dict[str, int]] = Field(
        description="tier / segment / lifecycle -> name -> members of the audience."
    )
    seed: dict[str, int] = Field(description="What the seed resolved to in the model.")
    preview: list[AudienceMember] = Field(description="The best 20 members.")
    model_version: str
    bundle_id: str
    snapshot: SnapshotRef
    definition: Annotated[
        dict[str, Any],
        WithJsonSchema(
            {"allOf": [{"$ref": DEFINITION_REF}], "description": "The definition, normalized."}
        ),
    ]
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
    campaign_id: str | None = Field(
        description="The campaign recorded in the campaign database (null: none configured)."
    )
    contacts: int = Field(description="Members recorded as contacted (the treatment group).")
    control: int = Field(description="Members of the control group, kept out of the send.")
    sent_at: datetime
    recorded: bool = Field(
        description="False when the audience had already been marked sent (nothing changed)."
    )


__all__ = [
    "DEFAULT_PAGE",
    "DEFINITION_REF",
    "MAX_DAYS",
    "MAX_PAGE",
    "NON_BLANK_PATTERN",
    "AudienceDefinition",
    "AudienceFilters",
    "AudienceIdPath",
    "AudienceMember",
    "AudienceOut",
    "AudiencePage",
    "DefinitionBody",
    "IsoDate",
    "LimitQuery",
    "OffsetQuery",
    "SentOut",
    "read_definition",
]
