"""Campaign audience definitions: the domain objects the scorer reads, built from the document.

An :class:`AudienceDefinition` names a **seed** (items, categories, item tags, or lookalike
members), **filters** on member attributes, **exclusions** (turned into masks by the caller) and
a **size**. The document of docs/audiences.md (JSON or TOML) is one pydantic model,
engine.audience_document.AudienceDefinition, which the API publishes as its request body;
:func:`parse_definition` validates a document with it, raising :class:`DefinitionError` naming
the field at fault, and builds the definition; :meth:`AudienceDefinition.to_dict` writes the
document back. What can only be checked against a model and a snapshot (unknown tiers, seeds the
model does not know) is checked by engine.audience.AudienceScorer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, TypeVar, get_args

from engine import audience_document as doc
from engine.audience_document import RankBy, read_document
from engine.audience_errors import DefinitionError

#: Unknown ids quoted in a warning (the count is always given in full).
_SHOWN: Final[int] = 5
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Seed:
    """What the audience is for. ``members`` is a lookalike seed (best customers to resemble)."""

    items: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    item_tags: tuple[str, ...] = ()
    members: tuple[str, ...] = ()

    @property
    def is_lookalike(self) -> bool:
        return bool(self.members)


@dataclass(frozen=True, slots=True)
class TagFilter:
    """Member tags: at least one of ``any_of``, every one of ``all_of``, none of ``none_of``."""

    any_of: tuple[str, ...] = ()
    all_of: tuple[str, ...] = ()
    none_of: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Filters:
    """Member attribute filters; an empty tuple / None means "no filter"."""

    tiers: tuple[str, ...] = ()
    lifecycle: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    tags: TagFilter = field(default_factory=TagFilter)
    regions: tuple[str, ...] = ()
    birth_months: tuple[int, ...] = ()
    points_min: float | None = None
    points_max: float | None = None
    #: joined on or after this date (joined_at >= after 00:00)
    joined_after: date | None = None
    #: joined strictly before this date (joined_at < before 00:00)
    joined_before: date | None = None
    #: member value (docs/features.md, "Member value"): probability of still being active
    p_alive_min: float | None = None
    p_alive_max: float | None = None
    #: lifetime value bounds, and "among the top X% of members by lifetime value"
    clv_min: float | None = None
    clv_max: float | None = None
    clv_top_percent: float | None = None


@dataclass(frozen=True, slots=True)
class Exclusions:
    """Exclusions the caller turns into masks (it has the purchases and the contact history)."""

    bought_seed_within_days: int | None = None
    contacted_within_days: int | None = None


#: How the members that pass are ordered before the size rules cut the list.
RANK_BY: Final[tuple[str, ...]] = get_args(RankBy)


@dataclass(frozen=True, slots=True)
class Size:
    """At least one rule; all given apply, so the smallest wins. ``min_score`` always tests
    the audience score; ``rank_by`` chooses the order ``top_n`` and ``top_percent`` cut:
    ``score`` (the audience score), ``expected_value`` (the score, floored at 0, times the
    member's expected spend in the next 90 days: for campaigns with a budget) or ``uplift``
    (the predicted incremental response of contacting the member, from an uplift model fitted
    on past campaigns with control groups; docs/campaigns.md)."""

    top_n: int | None = None
    min_score: float | None = None
    top_percent: float | None = None
    rank_by: str = "score"


@dataclass(frozen=True, slots=True)
class Holdout:
    """A randomised control group kept out of the send (docs/campaigns.md): each member of the
    audience is in control when a hash of (campaign, salt, member) falls below ``percent``."""

    percent: float
    salt: str | None = None


@dataclass(frozen=True, slots=True)
class AudienceDefinition:
    seed: Seed
    size: Size
    filters: Filters = field(default_factory=Filters)
    exclusions: Exclusions = field(default_factory=Exclusions)
    name: str = ""
    holdout: Holdout | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON / TOML document (docs/audiences.md); ``parse_definition`` reads it back."""
        seed = _nonempty(
            ("items", self.seed.items),
            ("categories", self.seed.categories),
            ("item_tags", self.seed.item_tags),
            ("members", self.seed.members),
        )
        f = self.filters
        filters: dict[str, Any] = _nonempty(
            ("tiers", f.tiers),
            ("lifecycle", f.lifecycle),
            ("segments", f.segments),
            ("regions", f.regions),
            ("birth_months", f.birth_months),
        )
        tags = _nonempty(("any", f.tags.any_of), ("all", f.tags.all_of), ("none", f.tags.none_of))
        if tags:
            filters["tags"] = tags
        points = _present(("min", f.points_min), ("max", f.points_max))
        if points:
            filters["points"] = points
        joined = _present(
            ("after", f.joined_after.isoformat() if f.joined_after else None),
            ("before", f.joined_before.isoformat() if f.joined_before else None),
        )
        if joined:
            filters["joined"] = joined
        p_alive = _present(("min", f.p_alive_min), ("max", f.p_alive_max))
        if p_alive:
            filters["p_alive"] = p_alive
        clv = _present(("min", f.clv_min), ("max", f.clv_max), ("top_percent", f.clv_top_percent))
        if clv:
            filters["clv"] = clv
        out: dict[str, Any] = {"name": self.name, "seed": seed}
        if filters:
            out["filters"] = filters
        exclude = _present(
            ("bought_seed_within_days", self.exclusions.bought_seed_within_days),
            ("contacted_within_days", self.exclusions.contacted_within_days),
        )
        if exclude:
            out["exclude"] = exclude
        out["size"] = _present(
            ("top_n", self.size.top_n),
            ("min_score", self.size.min_score),
            ("top_percent", self.size.top_percent),
        )
        if self.size.rank_by != "score":
            out["size"]["rank_by"] = self.size.rank_by
        if self.holdout is not None:
            out["holdout"] = _present(
                ("percent", self.holdout.percent), ("salt", self.holdout.salt)
            )
        return out


def _present(*pairs: tuple[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in pairs if value is not None}


def _nonempty(*pairs: tuple[str, tuple[Any, ...]]) -> dict[str, Any]:
    return {key: list(values) for key, values in pairs if values}


def parse_definition(data: Mapping[str, Any]) -> AudienceDefinition:
    """Validate the JSON / TOML document of an audience (engine.audience_document) and build the
    definition; :class:`DefinitionError` names the field at fault. Unknown keys are errors (a
    typo must not silently widen an audience)."""
    return from_document(read_document(data))


def from_document(document: doc.AudienceDefinition) -> AudienceDefinition:
    """The definition of a validated document (lists without their repeats, first kept)."""
    seed = document.seed
    f = document.filters or doc.AudienceFilters()
    tags = f.tags or doc.AudienceTags()
    points = f.points or doc.AudiencePoints()
    joined = f.joined or doc.AudienceJoined()
    p_alive = f.p_alive or doc.AudiencePAlive()
    clv = f.clv or doc.AudienceClv()
    exclude = document.exclude or doc.AudienceExclusions()
    size = document.size
    holdout = document.holdout
    return AudienceDefinition(
        seed=Seed(
            items=_unique(seed.items),
            categories=_unique(seed.categories),
            item_tags=_unique(seed.item_tags),
            members=_unique(seed.members),
        ),
        size=Size(
            top_n=size.top_n,
            min_score=size.min_score,
            top_percent=size.top_percent,
            rank_by=size.rank_by or "score",
        ),
        filters=Filters(
            tiers=_unique(f.tiers),
            lifecycle=_unique(f.lifecycle),
            segments=_unique(f.segments),
            tags=TagFilter(
                any_of=_unique(tags.any), all_of=_unique(tags.all), none_of=_unique(tags.none)
            ),
            regions=_unique(f.regions),
            birth_months=_unique(f.birth_months),
            points_min=points.min,
            points_max=points.max,
            joined_after=joined.after,
            joined_before=joined.before,
            p_alive_min=p_alive.min,
            p_alive_max=p_alive.max,
            clv_min=clv.min,
            clv_max=clv.max,
            clv_top_percent=clv.top_percent,
        ),
        exclusions=Exclusions(
            bought_seed_within_days=exclude.bought_seed_within_days,
            contacted_within_days=exclude.contacted_within_days,
        ),
        name=document.name or "",
        holdout=None if holdout is None else Holdout(percent=holdout.percent, salt=holdout.salt),
    )


def _unique(values: Sequence[_T] | None) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(values or ()))


def quote(values: Iterable[str]) -> str:
    """The first few ``values`` quoted for a message, ``...`` when there are more."""
    shown = list(values)
    text = ", ".join(repr(v) for v in shown[:_SHOWN])
    return text + (", ..." if len(shown) > _SHOWN else "")


__all__ = [
    "RANK_BY",
    "AudienceDefinition",
    "DefinitionError",
    "Exclusions",
    "Filters",
    "Holdout",
    "Seed",
    "Size",
    "TagFilter",
    "from_document",
    "parse_definition",
    "quote",
]
