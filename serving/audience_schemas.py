"""Request and response bodies of the campaign audience API (``/v1/audiences``).

The request body of ``POST /v1/audiences`` is the audience definition document
(docs/audiences.md). :class:`AudienceDefinition` is its typed form in the OpenAPI document (unknown
keys are errors: ``additionalProperties: false``) and checks its shape: types, required sections
and the ranges of single values. The rules that tie values together or need the model and the
snapshot (an empty seed, ``points.min <= points.max``, unknown tier names, a seed none of whose
items the model knows) stay in :func:`engine.audience.parse_definition` and the scorer, so that the
API and ``recsys audience build`` accept exactly the same documents. Either way an error is a 422
whose field uses the document's own paths (``filters.tiers[0]``, ``size.top_n``, ``filtres``).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import Body, Path, Query
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from serving.errors import BadRequestError, validation_errors
from serving.schemas import QUERY_INT, WHOLE, Finite

MAX_PAGE = 10_000
DEFAULT_PAGE = 1_000
#: Longest exclusion window (100 years): longer ones would reach before year 1.
MAX_DAYS = 36_500

#: What ``str.isspace`` calls whitespace, which ``str.strip()`` (the engine's test) removes.
WHITESPACE_CLASS: Final = "\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: A string holding at least one character that is not whitespace.
NON_BLANK_PATTERN: Final = f"[^{WHITESPACE_CLASS}]"
DATE_PATTERN: Final = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DATE: Final = re.compile("[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SEED_KEYS: Final = ("items", "categories", "item_tags", "members")
_SIZE_KEYS: Final = ("top_n", "min_score", "top_percent")

DEFINITION_REF: Final = "#/components/schemas/AudienceDefinition"
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


def _non_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must be a non-empty string")
    return value


def _iso_date(value: object) -> date:
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError("date", "must be a date YYYY-MM-DD")


NonBlank = Annotated[
    StrictStr,
    AfterValidator(_non_blank),
    WithJsonSchema({"type": "string", "minLength": 1, "pattern": NON_BLANK_PATTERN}),
]
Names = list[NonBlank] | None
IsoDate = Annotated[
    date,
    BeforeValidator(_iso_date),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]
Days = Annotated[int, Field(ge=1, le=MAX_DAYS), WHOLE]


def _given(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": [key], "properties": {key: schema}}


_NON_EMPTY: Final[dict[str, Any]] = {"type": "array", "minItems": 1}
_SEED_RULES: Final[dict[str, Any]] = {
    "anyOf": [_given(key, _NON_EMPTY) for key in _SEED_KEYS],
    "not": {
        "allOf": [
            _given("members", _NON_EMPTY),
            {"anyOf": [_given(key, _NON_EMPTY) for key in _SEED_KEYS[:3]]},
        ]
    },
}
_SIZE_RULES: Final[dict[str, Any]] = {
    "anyOf": [_given(key, {"not": {"type": "null"}}) for key in _SIZE_KEYS]
}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AudienceSeed(_In):
    """What the audience is for: at least one non-empty list; `members` (a lookalike seed)
    cannot be combined with the other three."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_SEED_RULES)

    items: Names = Field(default=None, description="Item ids.")
    categories: Names = Field(default=None, description="Item categories.")
    item_tags: Names = Field(default=None, description="Item tags.")
    members: Names = Field(
        default=None, description="Member ids: members who resemble them (lookalike)."
    )


class AudienceTags(_In):
    any: Names = Field(default=None, description="The member has at least one of these tags.")
    all: Names = Field(default=None, description="The member has every one of these tags.")
    none: Names = Field(
        default=None, description="The member has none of these (none also in `all`)."
    )


class AudiencePoints(_In):
    min: Finite | None = Field(default=None, description="Lowest points balance (inclusive).")
    max: Finite | None = Field(
        default=None, description="Highest points balance (inclusive, >= min)."
    )


class AudienceJoined(_In):
    after: IsoDate | None = Field(default=None, description="Joined on or after this date.")
    before: IsoDate | None = Field(
        default=None, description="Joined strictly before this date (later than after)."
    )


class AudiencePAlive(_In):
    min: Annotated[Finite, Field(ge=0, le=1)] | None = Field(
        default=None, description="Lowest probability of still being active (inclusive)."
    )
    max: Annotated[Finite, Field(ge=0, le=1)] | None = Field(
        default=None, description="Highest probability of still being active (inclusive, >= min)."
    )


class AudienceClv(_In):
    min: Finite | None = Field(default=None, description="Lowest lifetime value (inclusive).")
    max: Finite | None = Field(
        default=None, description="Highest lifetime value (inclusive, >= min)."
    )
    top_percent: Annotated[Finite, Field(gt=0, le=100)] | None = Field(
        default=None,
        description="Among the top p% of all members with a known lifetime value.",
    )


class AudienceFilters(_In):
    """Member attribute filters, combined with AND; the values of one list with OR."""

    tiers: Names = Field(
        default=None, description="Tier names of the snapshot's ladder (unknown: 422)."
    )
    lifecycle: list[Literal["new", "active", "at_risk", "churned"]] | None = Field(
        default=None, description="Lifecycle stages."
    )
    segments: Names = Field(
        default=None, description="RFM segment names of the feature policy (unknown: 422)."
    )
    tags: AudienceTags | None = None
    regions: Names = Field(default=None, description="Member regions.")
    birth_months: list[Annotated[int, Field(ge=1, le=12), WHOLE]] | None = Field(
        default=None, description="Birth months 1..12."
    )
    points: AudiencePoints | None = None
    joined: AudienceJoined | None = None
    p_alive: AudiencePAlive | None = Field(
        default=None,
        description="Member value: probability of still being active (members without "
        "purchases have none and never pass).",
    )
    clv: AudienceClv | None = Field(
        default=None,
        description="Member value: predicted lifetime value (members without purchases have "
        "none and never pass).",
    )


class AudienceExclusions(_In):
    bought_seed_within_days: Days | None = Field(
        default=None, description="Leave out members who bought a seed item in the last N days."
    )
    contacted_within_days: Days | None = Field(
        default=None,
        description="Leave out members of audiences marked sent in the last N days.",
    )


class AudienceSize(_In):
    """At least one rule; all given apply, so the smallest wins."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_SIZE_RULES)

    top_n: Annotated[int, Field(ge=1), WHOLE] | None = Field(
        default=None, description="At most N members."
    )
    min_score: Finite | None = Field(
        default=None, description="Only members scoring at least this."
    )
    top_percent: Annotated[Finite, Field(gt=0, le=100)] | None = Field(
        default=None, description="At most ceil(p% of the scored members)."
    )
    rank_by: Literal["score", "expected_value", "uplift"] | None = Field(
        default=None,
        description="Order cut by top_n / top_percent: `score` (default), `expected_value` "
        "(the score, floored at 0, times the member's expected spend in the next 90 days) or "
        "`uplift` (predicted incremental response; needs RECSYS_UPLIFT_MODEL).",
    )


class AudienceHoldout(_In):
    """A randomised control group kept out of the send (docs/campaigns.md)."""

    percent: Annotated[Finite, Field(gt=0, lt=100)] = Field(
        description="Share (%) of the audience kept out as the control group (0 < p < 100)."
    )
    salt: NonBlank | None = Field(
        default=None, description="Changes the assignment (default: none); recorded."
    )


class AudienceDefinition(_In):
    """The audience definition document (docs/audiences.md); `null` means absent."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [DEFINITION_EXAMPLE]})

    name: StrictStr | None = Field(default=None, description="Shown with the audience.")
    seed: AudienceSeed
    filters: AudienceFilters | None = None
    exclude: AudienceExclusions | None = None
    size: AudienceSize
    holdout: AudienceHoldout | None = None


_MESSAGES: Final = {"extra_forbidden": "unknown key", "missing": "required"}


def read_definition(document: object) -> dict[str, Any]:
    """The definition document with its shape checked (:class:`AudienceDefinition`), as the
    engine reads it (``5.0`` became ``5``, dates are dates, ``null`` is left out). A bad shape
    raises :class:`BadRequestError` (422) whose fields are the document's paths
    (``filters.tiers[0]``; ``definition`` for the document itself)."""
    try:
        definition = AudienceDefinition.model_validate(document)
    except ValidationError as exc:
        errors = validation_errors(exc.errors())
        for error, raw in zip(errors, exc.errors(), strict=True):
            error["field"] = error["field"] or "definition"
            error["message"] = _MESSAGES.get(raw["type"], error["message"])
        first = errors[0]
        raise BadRequestError(
            f"{first['field']}: {first['message']}", extra={"errors": errors}
        ) from None
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
    "AudienceDefinition",
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
