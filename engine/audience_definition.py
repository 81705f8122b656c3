"""Campaign audience definitions: the JSON / TOML document of docs/audiences.md, parsed and checked.

An :class:`AudienceDefinition` names a **seed** (items, categories, item tags, or lookalike
members), **filters** on member attributes, **exclusions** (turned into masks by the caller) and
a **size**. :func:`parse_definition` validates a document and raises :class:`DefinitionError`
naming the field at fault; :meth:`AudienceDefinition.to_dict` writes the document back. What
can only be checked against a model and a snapshot (unknown tiers, seeds the model does not
know) is checked by engine.audience.AudienceScorer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

from engine.errors import InvalidInputError

#: Unknown ids quoted in a warning (the count is always given in full).
_SHOWN: Final[int] = 5


class DefinitionError(InvalidInputError):
    """An audience definition is invalid; ``field`` is the dotted path of the culprit
    (``"filters.tiers[1]"``, ``"size.top_n"``, ``"seed"``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


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
RANK_BY: Final[tuple[str, ...]] = ("score", "expected_value", "uplift")


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


_TOP_KEYS: Final = ("name", "seed", "filters", "exclude", "size", "holdout")
_SEED_KEYS: Final = ("items", "categories", "item_tags", "members")
_FILTER_KEYS: Final = (
    "tiers",
    "lifecycle",
    "segments",
    "tags",
    "regions",
    "birth_months",
    "points",
    "joined",
    "p_alive",
    "clv",
)
_TAG_KEYS: Final = ("any", "all", "none")
_EXCLUDE_KEYS: Final = ("bought_seed_within_days", "contacted_within_days")
_SIZE_KEYS: Final = ("top_n", "min_score", "top_percent", "rank_by")


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DefinitionError(where, f"must be an object, got {type(value).__name__}")
    return value


def _section(data: Mapping[str, Any], key: str, prefix: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    return _mapping(value, f"{prefix}{key}")


def _known_keys(data: Mapping[str, Any], allowed: Sequence[str], prefix: str) -> None:
    for key in data:
        if key not in allowed:
            raise DefinitionError(
                f"{prefix}{key}", f"unknown key; allowed here: {', '.join(allowed)}"
            )


def _strings(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    """A list of non-empty strings, duplicates dropped (first kept)."""
    value = data.get(key)
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise DefinitionError(where, "must be a list of strings")
    out: dict[str, None] = {}
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise DefinitionError(f"{where}[{i}]", f"must be a non-empty string, got {item!r}")
        out.setdefault(item, None)
    return tuple(out)


def _integer(value: object, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DefinitionError(where, f"must be a whole number, got {value!r}")
    if value < minimum:
        raise DefinitionError(where, f"must be at least {minimum}, got {value}")
    return value


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DefinitionError(where, f"must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise DefinitionError(where, f"must be a finite number, got {value!r}")
    return number


def _date(value: object, where: str) -> date:
    if isinstance(value, datetime):
        raise DefinitionError(where, f"must be a date YYYY-MM-DD without a time, got {value!r}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise DefinitionError(where, f"must be a date YYYY-MM-DD, got {value!r}")


def _parse_seed(data: Mapping[str, Any]) -> Seed:
    if data.get("seed") is None:
        raise DefinitionError("seed", "required: items, categories, item_tags or members")
    raw = _mapping(data["seed"], "seed")
    _known_keys(raw, _SEED_KEYS, "seed.")
    seed = Seed(**{key: _strings(raw, key, f"seed.{key}") for key in _SEED_KEYS})
    if not (seed.items or seed.categories or seed.item_tags or seed.members):
        raise DefinitionError(
            "seed", "is empty: give items, categories, item_tags or members (lookalike)"
        )
    if seed.members and (seed.items or seed.categories or seed.item_tags):
        raise DefinitionError(
            "seed.members",
            "a lookalike seed (members) cannot be combined with items, categories or item_tags: "
            "members and items are scored in different spaces; build two audiences",
        )
    return seed


def _parse_filters(data: Mapping[str, Any]) -> Filters:
    raw = _section(data, "filters", "")
    _known_keys(raw, _FILTER_KEYS, "filters.")
    tags_raw = _section(raw, "tags", "filters.")
    _known_keys(tags_raw, _TAG_KEYS, "filters.tags.")
    tags = TagFilter(
        any_of=_strings(tags_raw, "any", "filters.tags.any"),
        all_of=_strings(tags_raw, "all", "filters.tags.all"),
        none_of=_strings(tags_raw, "none", "filters.tags.none"),
    )
    both = [t for t in tags.all_of if t in tags.none_of]
    if both:
        raise DefinitionError(
            "filters.tags", f"tag {both[0]!r} is in both 'all' and 'none': nobody could match"
        )
    months_raw = raw.get("birth_months")
    months: tuple[int, ...] = ()
    if months_raw is not None:
        if isinstance(months_raw, str) or not isinstance(months_raw, Sequence):
            raise DefinitionError("filters.birth_months", "must be a list of months 1..12")
        seen: dict[int, None] = {}
        for i, month in enumerate(months_raw):
            where = f"filters.birth_months[{i}]"
            value = _integer(month, where, 1)
            if value > 12:
                raise DefinitionError(where, f"must be a month 1..12, got {value}")
            seen.setdefault(value, None)
        months = tuple(seen)
    points = _section(raw, "points", "filters.")
    _known_keys(points, ("min", "max"), "filters.points.")
    low = None if points.get("min") is None else _number(points["min"], "filters.points.min")
    high = None if points.get("max") is None else _number(points["max"], "filters.points.max")
    if low is not None and high is not None and low > high:
        raise DefinitionError("filters.points", f"min {low:g} is greater than max {high:g}")
    joined = _section(raw, "joined", "filters.")
    _known_keys(joined, ("after", "before"), "filters.joined.")
    after = None if joined.get("after") is None else _date(joined["after"], "filters.joined.after")
    before = (
        None if joined.get("before") is None else _date(joined["before"], "filters.joined.before")
    )
    if after is not None and before is not None and after >= before:
        raise DefinitionError(
            "filters.joined",
            f"after ({after.isoformat()}) must be earlier than before ({before.isoformat()})",
        )
    p_alive_min, p_alive_max = _bounds(raw, "p_alive", (), low=0.0, high=1.0)
    clv = _section(raw, "clv", "filters.")
    clv_min, clv_max = _bounds(raw, "clv", ("top_percent",))
    clv_top = None
    if clv.get("top_percent") is not None:
        clv_top = _number(clv["top_percent"], "filters.clv.top_percent")
        if not 0 < clv_top <= 100:
            raise DefinitionError(
                "filters.clv.top_percent", f"must be in (0, 100], got {clv['top_percent']!r}"
            )
    return Filters(
        p_alive_min=p_alive_min,
        p_alive_max=p_alive_max,
        clv_min=clv_min,
        clv_max=clv_max,
        clv_top_percent=clv_top,
        tiers=_strings(raw, "tiers", "filters.tiers"),
        lifecycle=_strings(raw, "lifecycle", "filters.lifecycle"),
        segments=_strings(raw, "segments", "filters.segments"),
        tags=tags,
        regions=_strings(raw, "regions", "filters.regions"),
        birth_months=months,
        points_min=low,
        points_max=high,
        joined_after=after,
        joined_before=before,
    )


def _bounds(
    raw: Mapping[str, Any],
    key: str,
    extra: tuple[str, ...],
    *,
    low: float | None = None,
    high: float | None = None,
) -> tuple[float | None, float | None]:
    """``filters.<key>.min`` / ``.max`` (each optional, within [low, high] when given)."""
    where = f"filters.{key}"
    sec = _section(raw, key, "filters.")
    _known_keys(sec, ("min", "max", *extra), f"{where}.")
    out: list[float | None] = []
    for bound in ("min", "max"):
        if sec.get(bound) is None:
            out.append(None)
            continue
        value = _number(sec[bound], f"{where}.{bound}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise DefinitionError(
                f"{where}.{bound}", f"must be in [{low:g}, {high:g}], got {value!r}"
            )
        out.append(value)
    lo, hi = out
    if lo is not None and hi is not None and lo > hi:
        raise DefinitionError(where, f"min {lo:g} is greater than max {hi:g}")
    return lo, hi


def _parse_exclusions(data: Mapping[str, Any]) -> Exclusions:
    raw = _section(data, "exclude", "")
    _known_keys(raw, _EXCLUDE_KEYS, "exclude.")
    days = {
        key: None if raw.get(key) is None else _integer(raw[key], f"exclude.{key}", 1)
        for key in _EXCLUDE_KEYS
    }
    return Exclusions(**days)


def _parse_size(data: Mapping[str, Any]) -> Size:
    if data.get("size") is None:
        raise DefinitionError("size", "required: top_n, min_score and/or top_percent")
    raw = _mapping(data["size"], "size")
    _known_keys(raw, _SIZE_KEYS, "size.")
    top_n = None if raw.get("top_n") is None else _integer(raw["top_n"], "size.top_n", 1)
    min_score = (
        None if raw.get("min_score") is None else _number(raw["min_score"], "size.min_score")
    )
    top_percent = None
    if raw.get("top_percent") is not None:
        top_percent = _number(raw["top_percent"], "size.top_percent")
        if not 0 < top_percent <= 100:
            raise DefinitionError(
                "size.top_percent", f"must be in (0, 100], got {raw['top_percent']!r}"
            )
    if top_n is None and min_score is None and top_percent is None:
        raise DefinitionError("size", "give at least one of top_n, min_score, top_percent")
    rank_by = raw.get("rank_by", "score")
    if rank_by is None:
        rank_by = "score"
    if not isinstance(rank_by, str) or rank_by not in RANK_BY:
        raise DefinitionError(
            "size.rank_by", f"must be one of {', '.join(RANK_BY)}; got {rank_by!r}"
        )
    return Size(top_n=top_n, min_score=min_score, top_percent=top_percent, rank_by=rank_by)


def _parse_holdout(data: Mapping[str, Any]) -> Holdout | None:
    if data.get("holdout") is None:
        return None
    raw = _mapping(data["holdout"], "holdout")
    _known_keys(raw, ("percent", "salt"), "holdout.")
    if raw.get("percent") is None:
        raise DefinitionError("holdout.percent", "required: the share (%) of the audience kept out")
    percent = _number(raw["percent"], "holdout.percent")
    if not 0 < percent < 100:
        raise DefinitionError(
            "holdout.percent",
            f"must be greater than 0 and less than 100 (got {raw['percent']!r}): 0 measures "
            "nothing and 100 contacts nobody",
        )
    salt = raw.get("salt")
    if salt is not None and (not isinstance(salt, str) or not salt.strip()):
        raise DefinitionError("holdout.salt", f"must be a non-empty string, got {salt!r}")
    return Holdout(percent=percent, salt=salt)


def parse_definition(data: Mapping[str, Any]) -> AudienceDefinition:
    """Validate the JSON / TOML document of an audience; :class:`DefinitionError` names the
    field at fault. Unknown keys are errors (a typo must not silently widen an audience)."""
    root = _mapping(data, "definition")
    _known_keys(root, _TOP_KEYS, "")
    name = root.get("name", "")
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise DefinitionError("name", f"must be a string, got {name!r}")
    return AudienceDefinition(
        seed=_parse_seed(root),
        size=_parse_size(root),
        filters=_parse_filters(root),
        exclusions=_parse_exclusions(root),
        name=name,
        holdout=_parse_holdout(root),
    )


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
    "parse_definition",
    "quote",
]
