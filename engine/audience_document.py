"""The audience definition document (docs/audiences.md) as one typed pydantic model.

:class:`AudienceDefinition` here is the document as written: the JSON a marketer POSTs to
``/v1/audiences`` and the TOML ``recsys audience build --definition FILE`` reads. It checks every
rule that needs nothing but the document: types, closed sections (an unknown key is an error: a
typo must not silently widen an audience), ranges, and the rules that tie values together (a
non-empty seed, a lookalike seed on its own, ``min <= max``, ``joined.after < joined.before``, a
tag not both in ``all`` and ``none``, at least one size rule). The service publishes its JSON
schema as the request body of ``POST /v1/audiences`` (serving/audience_schemas.py), so the API and
the CLI accept exactly the same documents.

:func:`read_document` validates a document; a pydantic ``ValidationError`` becomes a
:class:`DefinitionError` naming the dotted path of the culprit (engine.audience_errors).
engine.audience_definition.parse_definition turns the document into the domain objects the
scorer reads (engine.audience_definition.AudienceDefinition, a dataclass of the same name). What
needs a model and a snapshot (unknown tiers, a seed the model does not know) is checked by
engine.audience.AudienceScorer.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictStr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from engine.audience_errors import DefinitionError, definition_error

#: Longest exclusion window (100 years): longer ones would reach before year 1.
MAX_DAYS: Final = 36_500
#: What ``str.isspace`` calls whitespace, which ``str.strip()`` removes.
WHITESPACE_CLASS: Final = "\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: A string holding at least one character that is not whitespace.
NON_BLANK_PATTERN: Final = f"[^{WHITESPACE_CLASS}]"
DATE_PATTERN: Final = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DATE: Final = re.compile("[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SEED_KEYS: Final = ("items", "categories", "item_tags", "members")
_SIZE_KEYS: Final = ("top_n", "min_score", "top_percent")

#: How the members that pass are ordered before the size rules cut the list.
RankBy = Literal["score", "expected_value", "uplift"]
#: Lifecycle stages (feature_store.policy.LIFECYCLE_STAGES; a test keeps the two equal).
Lifecycle = Literal["new", "active", "at_risk", "churned"]

DEFINITION_EXAMPLE: Final[dict[str, Any]] = {
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


# ---- value types ---------------------------------------------------------------------------


def _non_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must be a non-empty string")
    return value


def _iso_date(value: object) -> date:
    """A date YYYY-MM-DD: a string (JSON) or a date without a time (TOML)."""
    if isinstance(value, datetime):
        raise PydanticCustomError("date", "must be a date YYYY-MM-DD without a time")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError("date", "must be a date YYYY-MM-DD")


def _whole(value: object) -> object:
    """A JSON integer: an int, or a float without a fraction (``5.0``); never a bool or text."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise PydanticCustomError("int_type", "must be a whole number")


#: Put after the constraints: ``Annotated[int, Field(ge=1), WHOLE]`` (so the schema shows them).
WHOLE: Final = BeforeValidator(_whole)
#: A JSON number: not text, not a bool, not NaN or infinite.
Finite = Annotated[float, Strict(), AllowInfNan(False)]
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
Percent = Annotated[Finite, Field(gt=0, le=100)]
Probability = Annotated[Finite, Field(ge=0, le=1)]


# ---- the document --------------------------------------------------------------------------


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


class _Range(_In):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError(
                "range", "min {low} is greater than max {high}", _numbers(self.min, self.max)
            )
        return self


def _numbers(low: float, high: float) -> dict[str, str]:
    return {"low": f"{low:g}", "high": f"{high:g}"}


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

    @field_validator("members")
    @classmethod
    def _lookalike_alone(cls, members: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if members and any(info.data.get(key) for key in _SEED_KEYS[:3]):
            raise PydanticCustomError(
                "lookalike_mixed",
                "a lookalike seed (members) cannot be combined with items, categories or "
                "item_tags: members and items are scored in different spaces; build two audiences",
            )
        return members

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not (self.items or self.categories or self.item_tags or self.members):
            raise PydanticCustomError(
                "seed_empty", "is empty: give items, categories, item_tags or members (lookalike)"
            )
        return self


class AudienceTags(_In):
    any: Names = Field(default=None, description="The member has at least one of these tags.")
    all: Names = Field(default=None, description="The member has every one of these tags.")
    none: Names = Field(
        default=None, description="The member has none of these (none also in `all`)."
    )

    @model_validator(mode="after")
    def _satisfiable(self) -> Self:
        both = [tag for tag in self.all or () if tag in (self.none or ())]
        if both:
            raise PydanticCustomError(
                "tag_conflict",
                "tag {tag} is in both 'all' and 'none': nobody could match",
                {"tag": repr(both[0])},
            )
        return self


class AudiencePoints(_Range):
    min: Finite | None = Field(default=None, description="Lowest points balance (inclusive).")
    max: Finite | None = Field(
        default=None, description="Highest points balance (inclusive, >= min)."
    )


class AudienceJoined(_In):
    after: IsoDate | None = Field(default=None, description="Joined on or after this date.")
    before: IsoDate | None = Field(
        default=None, description="Joined strictly before this date (later than after)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.after is not None and self.before is not None and self.after >= self.before:
            raise PydanticCustomError(
                "range",
                "after ({after}) must be earlier than before ({before})",
                {"after": self.after.isoformat(), "before": self.before.isoformat()},
            )
        return self


class AudiencePAlive(_Range):
    min: Probability | None = Field(
        default=None, description="Lowest probability of still being active (inclusive)."
    )
    max: Probability | None = Field(
        default=None, description="Highest probability of still being active (inclusive, >= min)."
    )


class AudienceClv(_Range):
    min: Finite | None = Field(default=None, description="Lowest lifetime value (inclusive).")
    max: Finite | None = Field(
        default=None, description="Highest lifetime value (inclusive, >= min)."
    )
    top_percent: Percent | None = Field(
        default=None,
        description="Among the top p% of all members with a known lifetime value.",
    )


class AudienceFilters(_In):
    """Member attribute filters, combined with AND; the values of one list with OR."""

    tiers: Names = Field(
        default=None, description="Tier names of the snapshot's ladder (unknown: 422)."
    )
    lifecycle: list[Lifecycle] | None = Field(default=None, description="Lifecycle stages.")
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
    top_percent: Percent | None = Field(
        default=None, description="At most ceil(p% of the scored members)."
    )
    rank_by: RankBy | None = Field(
        default=None,
        description="Order cut by top_n / top_percent: `score` (default), `expected_value` "
        "(the score, floored at 0, times the member's expected spend in the next 90 days) or "
        "`uplift` (predicted incremental response; needs RECSYS_UPLIFT_MODEL).",
    )

    @model_validator(mode="after")
    def _some_rule(self) -> Self:
        if self.top_n is None and self.min_score is None and self.top_percent is None:
            raise PydanticCustomError(
                "size_empty", "give at least one of top_n, min_score, top_percent"
            )
        return self


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


# ---- reading ------------------------------------------------------------------------------


def read_document(data: object) -> AudienceDefinition:
    """The definition document validated (``5.0`` is ``5``, dates are dates); a
    :class:`DefinitionError` names the field at fault (``definition``: the document itself)."""
    try:
        return AudienceDefinition.model_validate(data)
    except ValidationError as exc:
        raise definition_error(exc, AudienceDefinition) from None


__all__ = [
    "DATE_PATTERN",
    "DEFINITION_EXAMPLE",
    "MAX_DAYS",
    "NON_BLANK_PATTERN",
    "WHITESPACE_CLASS",
    "WHOLE",
    "AudienceClv",
    "AudienceDefinition",
    "AudienceExclusions",
    "AudienceFilters",
    "AudienceHoldout",
    "AudienceJoined",
    "AudiencePAlive",
    "AudiencePoints",
    "AudienceSeed",
    "AudienceSize",
    "AudienceTags",
    "DefinitionError",
    "Finite",
    "IsoDate",
    "Lifecycle",
    "NonBlank",
    "RankBy",
    "read_document",
]
