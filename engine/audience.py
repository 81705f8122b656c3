"""Campaign audiences: rank members for a seed (items, categories, item tags or lookalike members).

The reverse of "for you": for a theme, which members are most likely to respond. A definition
(:class:`AudienceDefinition`, parsed and validated by :func:`parse_definition` from the JSON /
TOML document of docs/audiences.md) names a **seed**, **filters** on member attributes,
**exclusions** and a **size**. :class:`AudienceScorer` holds a model's member and item vectors
aligned once with the member attributes of a feature snapshot, and builds an :class:`Audience`:

1. the seed becomes one vector: item seeds map to item vectors, a lookalike seed to member
   vectors (docs/audiences.md, "Scoring");
2. every member with a vector is scored exactly, ``member_vectors @ seed`` (one float32 matrix
   product over all members); given the members' purchase history (a bundle's ``buy_again``
   matrix), item seeds add the member's own history with the seed items:
   ``score = model / max|model| + W * log1p(h) / max log1p(h)``, ``h`` = history summed over
   the seed's items (column slices of a CSC matrix), maxima over every member with a vector;
   the filters select the eligible members by vectorized lookups on integer codes (tags:
   counts over the selected columns of a CSR matrix);
3. members without a vector are never in an audience (counted as ``unscored``); exclusion masks
   given by the caller remove more (counted per reason);
4. the size rules (top N, minimum score, top percent; all given apply) keep a prefix of the
   members ordered by score descending, ties by attribute row.

Pure numpy/scipy: the caller reads the snapshot and computes the exclusion masks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from engine.errors import InvalidInputError
from engine.ids import IdMap

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

#: Reason under which lookalike seed members are excluded from their own audience.
SEED_MEMBER: Final[str] = "seed_member"
#: Breakdown key of members whose tier / segment / lifecycle is null.
UNKNOWN: Final[str] = "unknown"
#: Default weight of the member's own history with the seed items (docs/audiences.md).
HISTORY_WEIGHT: Final[float] = 2.0
#: Unknown ids quoted in a warning (the count is always given in full).
_SHOWN: Final[int] = 5


# --------------------------------------------------------------------------------------------
# Definition
# --------------------------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class Exclusions:
    """Exclusions the caller turns into masks (it has the purchases and the contact history)."""

    bought_seed_within_days: int | None = None
    contacted_within_days: int | None = None


@dataclass(frozen=True, slots=True)
class Size:
    """At least one rule; all given apply, so the smallest wins."""

    top_n: int | None = None
    min_score: float | None = None
    top_percent: float | None = None


@dataclass(frozen=True, slots=True)
class AudienceDefinition:
    seed: Seed
    size: Size
    filters: Filters = field(default_factory=Filters)
    exclusions: Exclusions = field(default_factory=Exclusions)
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON / TOML document (docs/audiences.md); ``parse_definition`` reads it back."""
        seed = {
            key: list(values)
            for key, values in (
                ("items", self.seed.items),
                ("categories", self.seed.categories),
                ("item_tags", self.seed.item_tags),
                ("members", self.seed.members),
            )
            if values
        }
        f = self.filters
        filters: dict[str, Any] = {
            key: list(values)
            for key, values in (
                ("tiers", f.tiers),
                ("lifecycle", f.lifecycle),
                ("segments", f.segments),
                ("regions", f.regions),
                ("birth_months", f.birth_months),
            )
            if values
        }
        tags = {
            key: list(values)
            for key, values in (
                ("any", f.tags.any_of),
                ("all", f.tags.all_of),
                ("none", f.tags.none_of),
            )
            if values
        }
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
        return out


def _present(*pairs: tuple[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in pairs if value is not None}


_TOP_KEYS: Final = ("name", "seed", "filters", "exclude", "size")
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
)
_TAG_KEYS: Final = ("any", "all", "none")
_EXCLUDE_KEYS: Final = ("bought_seed_within_days", "contacted_within_days")
_SIZE_KEYS: Final = ("top_n", "min_score", "top_percent")


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
    return Filters(
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
    return Size(top_n=top_n, min_score=min_score, top_percent=top_percent)


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
    )


# --------------------------------------------------------------------------------------------
# Inputs of the scorer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemSide:
    """The model's items (bundle order) and the attributes item seeds expand through."""

    ids: IdMap
    vectors: npt.NDArray[np.float32]
    #: category per item, "" for none
    categories: npt.NDArray[np.str_]
    #: bool (n_items, len(tag_names)), or None when items carry no tags
    tags: sp.csr_array | None
    tag_names: tuple[str, ...]
    #: weights items of a category / tag seed (e.g. distinct buyers); None = uniform
    popularity: npt.NDArray[np.floating[Any]] | npt.NDArray[np.integer[Any]] | None


class MemberAttributes(Protocol):
    """Member attribute columns (feature_store.member_columns.MemberColumns satisfies it)."""

    @property
    def member_ids(self) -> npt.NDArray[np.str_]: ...
    @property
    def tier_codes(self) -> npt.NDArray[np.int16]: ...
    @property
    def tier_names(self) -> tuple[str, ...]: ...
    @property
    def lifecycle_codes(self) -> npt.NDArray[np.int16]: ...
    @property
    def lifecycle_names(self) -> tuple[str, ...]: ...
    @property
    def segment_codes(self) -> npt.NDArray[np.int16]: ...
    @property
    def segment_names(self) -> tuple[str, ...]: ...
    @property
    def region_codes(self) -> npt.NDArray[np.int16]: ...
    @property
    def region_names(self) -> tuple[str, ...]: ...
    @property
    def tags(self) -> sp.csr_array: ...
    @property
    def tag_names(self) -> tuple[str, ...]: ...
    @property
    def birth_month(self) -> npt.NDArray[np.int8]: ...
    @property
    def points(self) -> npt.NDArray[np.float64]: ...
    @property
    def joined_at(self) -> npt.NDArray[np.datetime64]: ...


@dataclass(frozen=True, slots=True)
class Audience:
    """Members of an audience, best first."""

    #: attribute rows (int64)
    rows: IntArray
    member_ids: npt.NDArray[np.str_]
    #: float32, descending
    scores: FloatArray
    #: 1-based
    ranks: IntArray
    #: share (in %) of the scored eligible members scoring <= this one, in (0, 100]
    percentiles: FloatArray
    #: names per member ("" when null), for export
    tiers: npt.NDArray[np.str_]
    segments: npt.NDArray[np.str_]
    lifecycles: npt.NDArray[np.str_]
    #: members, eligible, unscored, excluded_<reason>..., excluded, scored, selected
    counts: dict[str, int]
    #: "tier" / "segment" / "lifecycle" -> name -> members in the audience
    breakdown: dict[str, dict[str, int]]
    warnings: tuple[str, ...]
    #: items / categories / tags / members of the seed found in the model, item_rows expanded
    seed_summary: dict[str, int]

    def __len__(self) -> int:
        return int(self.rows.shape[0])


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Resolved:
    """A seed resolved against the model: its vector, and what it expanded to."""

    vector: FloatArray
    item_rows: IntArray
    member_rows: IntArray  # model rows of the lookalike seed members (kept out of the audience)
    summary: dict[str, int]
    warnings: list[str]


def _quote(values: Iterable[str]) -> str:
    shown = list(values)
    text = ", ".join(repr(v) for v in shown[:_SHOWN])
    return text + (", ..." if len(shown) > _SHOWN else "")


def _lut(size: int, codes: Iterable[int]) -> BoolArray:
    """A lookup table over codes -1..size-1 shifted by one (index 0 is null: never passes)."""
    table = np.zeros(size + 1, dtype=np.bool_)
    for code in codes:
        table[code + 1] = True
    return table


def _names(names: Sequence[str]) -> npt.NDArray[np.str_]:
    """Names with "" appended, so that code -1 (null) indexes ""."""
    return np.array([*names, ""], dtype=np.str_)


class AudienceScorer:
    """A model's vectors aligned once with member attributes; builds audiences."""

    def __init__(
        self,
        attributes: MemberAttributes,
        member_vectors: npt.NDArray[np.float32],
        member_ids: IdMap,
        items: ItemSide,
        *,
        known_segments: Sequence[str] | None = None,
        history: sp.sparray | sp.spmatrix | None = None,
        history_weight: float = HISTORY_WEIGHT,
    ) -> None:
        """``history``: the members' purchase history with the items, (model members x
        items) in ``member_ids`` and ``items.ids`` order, e.g. a blend bundle's recency-weighted
        ``buy_again`` matrix; it adds ``history_weight`` times the history term to the score of
        item, category and tag seeds (docs/audiences.md, "Scoring"). None, or a weight of 0:
        the score is the pure vector score."""
        vectors = np.asarray(member_vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(member_ids):
            raise InvalidInputError(
                f"AudienceScorer: member_vectors has shape {vectors.shape}, expected "
                f"({len(member_ids)}, d) for the {len(member_ids)} member ids"
            )
        item_vectors = np.asarray(items.vectors)
        if item_vectors.ndim != 2 or item_vectors.shape != (len(items.ids), vectors.shape[1]):
            raise InvalidInputError(
                f"AudienceScorer: item vectors have shape {item_vectors.shape}, expected "
                f"({len(items.ids)}, {vectors.shape[1]})"
            )
        if items.categories.shape != (len(items.ids),):
            raise InvalidInputError("AudienceScorer: items.categories needs one entry per item")
        if items.tags is not None and items.tags.shape != (len(items.ids), len(items.tag_names)):
            raise InvalidInputError(
                f"AudienceScorer: items.tags has shape {items.tags.shape}, expected "
                f"({len(items.ids)}, {len(items.tag_names)})"
            )
        if items.popularity is not None and np.shape(items.popularity) != (len(items.ids),):
            raise InvalidInputError("AudienceScorer: items.popularity needs one value per item")
        n = int(np.shape(attributes.member_ids)[0])
        for what in (
            "tier_codes",
            "lifecycle_codes",
            "segment_codes",
            "region_codes",
            "birth_month",
            "points",
            "joined_at",
        ):
            if np.shape(getattr(attributes, what)) != (n,):
                raise InvalidInputError(
                    f"AudienceScorer: attributes.{what} needs one value per member ({n})"
                )
        if attributes.tags.shape != (n, len(attributes.tag_names)):
            raise InvalidInputError(
                f"AudienceScorer: attributes.tags has shape {attributes.tags.shape}, expected "
                f"({n}, {len(attributes.tag_names)})"
            )
        if not (isinstance(history_weight, int | float) and math.isfinite(history_weight)) or (
            history_weight < 0
        ):
            raise InvalidInputError(
                f"AudienceScorer: history_weight must be a finite number >= 0, got "
                f"{history_weight!r}"
            )
        self._history: sp.csc_array | None = None
        if history is not None:
            if not sp.issparse(history):
                raise InvalidInputError(
                    f"AudienceScorer: history must be a scipy sparse matrix, got "
                    f"{type(history).__name__}"
                )
            expected = (len(member_ids), len(items.ids))
            if history.shape != expected:
                raise InvalidInputError(
                    f"AudienceScorer: history has shape {history.shape}, expected {expected} "
                    "(model members x model items)"
                )
            # CSC: the seed items' columns are contiguous slices of (indices, data); float32 to
            # halve the copy (sums are accumulated in float64)
            self._history = sp.csc_array(history, dtype=np.float32)
            self._history.sum_duplicates()
        self._history_weight = float(history_weight) if self._history is not None else 0.0
        self._attributes = attributes
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._member_ids = member_ids
        self._items = items
        self._item_vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self._n = n
        #: model row of each attribute row, -1 where the member has no vector
        self._model_rows = member_ids.lookup(attributes.member_ids)
        self._has_vector = self._model_rows >= 0
        self._segments = (
            tuple(known_segments) if known_segments is not None else attributes.segment_names
        )
        tags = sp.csr_array(attributes.tags)
        #: attribute row of each stored tag, and its tag column: tag counts by bincount
        self._tag_rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(tags.indptr))
        self._tag_columns = np.asarray(tags.indices, dtype=np.int64)
        self._tag_index = {name: i for i, name in enumerate(attributes.tag_names)}
        self._region_index = {name: i for i, name in enumerate(attributes.region_names)}
        self._category_set = set(np.unique(items.categories).tolist()) - {""}
        self._item_tag_index = {name: i for i, name in enumerate(items.tag_names)}
        self._tier_labels = _names(attributes.tier_names)
        self._segment_labels = _names(attributes.segment_names)
        self._lifecycle_labels = _names(attributes.lifecycle_names)

    @property
    def members(self) -> int:
        """Attribute rows (members of the snapshot)."""
        return self._n

    @property
    def history_weight(self) -> float:
        """Weight of the history term in item seed scores; 0 without a history matrix."""
        return self._history_weight

    @property
    def model_rows(self) -> IntArray:
        """Model row of each attribute row; -1 where the member has no vector."""
        return self._model_rows

    # -- checking -------------------------------------------------------------------------

    def check(self, definition: AudienceDefinition) -> list[str]:
        """Raise :class:`DefinitionError` for what cannot be right (unknown tier, lifecycle
        stage or segment; a seed nothing of which is in the model); return warnings for what may
        be (some unknown seed ids, tags or regions nobody has)."""
        self._check_names(definition.filters)
        return self._resolve(definition.seed).warnings + self._filter_warnings(definition.filters)

    def _check_names(self, filters: Filters) -> None:
        a = self._attributes
        for key, values, known in (
            ("tiers", filters.tiers, a.tier_names),
            ("lifecycle", filters.lifecycle, a.lifecycle_names),
            ("segments", filters.segments, self._segments),
        ):
            for i, value in enumerate(values):
                if value not in known:
                    raise DefinitionError(
                        f"filters.{key}[{i}]",
                        f"unknown {key.rstrip('s')} {value!r}; known: {', '.join(known)}",
                    )

    def _filter_warnings(self, filters: Filters) -> list[str]:
        warnings = []
        tags = filters.tags
        for key, values in (("any", tags.any_of), ("all", tags.all_of), ("none", tags.none_of)):
            unknown = [t for t in values if t not in self._tag_index]
            if unknown:
                warnings.append(f"filters.tags.{key}: no member has tag(s) {_quote(unknown)}")
        unknown = [r for r in filters.regions if r not in self._region_index]
        if unknown:
            warnings.append(f"filters.regions: no member is in region(s) {_quote(unknown)}")
        return warnings

    # -- seeds ----------------------------------------------------------------------------

    def seed_items(self, seed: Seed) -> IntArray:
        """Dense item rows (sorted, unique) the seed expands to: its items, the items of its
        categories and the items with any of its tags. Empty for a lookalike seed."""
        explicit, by_category, by_tag = self._seed_item_parts(seed)
        return np.unique(np.concatenate([explicit, by_category, by_tag]))

    def _seed_item_parts(self, seed: Seed) -> tuple[IntArray, IntArray, IntArray]:
        items = self._items
        explicit = items.ids.lookup(np.array(seed.items, dtype=np.str_)) if seed.items else None
        explicit_rows = (
            np.unique(explicit[explicit >= 0]) if explicit is not None else np.empty(0, np.int64)
        )
        by_category = (
            np.flatnonzero(np.isin(items.categories, np.array(seed.categories, dtype=np.str_)))
            if seed.categories
            else np.empty(0, np.int64)
        )
        columns = [self._item_tag_index[t] for t in seed.item_tags if t in self._item_tag_index]
        if columns and items.tags is not None:
            tagged = sp.csr_array(items.tags)[:, columns].sum(axis=1)
            by_tag = np.flatnonzero(np.asarray(tagged).ravel() > 0)
        else:
            by_tag = np.empty(0, np.int64)
        return explicit_rows, by_category.astype(np.int64), by_tag.astype(np.int64)

    def _weighted_mean(self, rows: IntArray) -> FloatArray:
        vectors = self._item_vectors[rows]
        weights = None
        if self._items.popularity is not None:
            weights = np.clip(np.asarray(self._items.popularity, dtype=np.float64)[rows], 0, None)
            if not weights.sum() > 0:
                weights = None
        mean = np.average(vectors.astype(np.float64), axis=0, weights=weights)
        return np.asarray(mean, dtype=np.float32)

    def _resolve(self, seed: Seed) -> _Resolved:
        warnings: list[str] = []
        d = self._vectors.shape[1]
        if seed.is_lookalike:
            rows = self._member_ids.lookup(np.array(seed.members, dtype=np.str_))
            unknown = [m for m, r in zip(seed.members, rows.tolist(), strict=True) if r < 0]
            found = np.unique(rows[rows >= 0])
            vectors = self._vectors[found].astype(np.float64)
            norms = np.linalg.norm(vectors, axis=1)
            usable = norms > 0
            if not usable.any():
                raise DefinitionError(
                    "seed",
                    f"none of the {len(seed.members)} seed members has a vector in the model",
                )
            if unknown:
                warnings.append(
                    f"seed.members: {len(unknown)} of {len(seed.members)} have no vector in the "
                    f"model and were ignored: {_quote(unknown)}"
                )
            if not usable.all():
                warnings.append(
                    f"seed.members: {int((~usable).sum())} have an all-zero vector (no "
                    "interactions the model learned from) and do not shape the seed"
                )
            vector = (vectors[usable] / norms[usable, None]).mean(axis=0).astype(np.float32)
            summary = {"items": 0, "categories": 0, "tags": 0, "members": int(usable.sum())}
            summary["item_rows"] = 0
            # every seed member the model knows stays out of the audience, zero vector or not
            return _Resolved(vector, np.empty(0, np.int64), found, summary, warnings)

        explicit, by_category, by_tag = self._seed_item_parts(seed)
        parts: list[FloatArray] = []
        if seed.items:
            known = self._items.ids.lookup(np.array(seed.items, dtype=np.str_))
            unknown = [i for i, r in zip(seed.items, known.tolist(), strict=True) if r < 0]
            if unknown:
                warnings.append(
                    f"seed.items: {len(unknown)} of {len(seed.items)} are not in the model and "
                    f"were ignored: {_quote(unknown)}"
                )
            if explicit.size:
                parts.append(self._item_vectors[explicit].astype(np.float64).mean(axis=0))
        categories = [c for c in seed.categories if c in self._category_set]
        if seed.categories:
            missing = [c for c in seed.categories if c not in self._category_set]
            if missing:
                warnings.append(
                    f"seed.categories: no item of the model is in {_quote(missing)}; ignored"
                )
            if by_category.size:
                parts.append(self._weighted_mean(by_category))
        tags = [t for t in seed.item_tags if t in self._item_tag_index]
        if seed.item_tags:
            missing = [t for t in seed.item_tags if t not in self._item_tag_index]
            if missing:
                warnings.append(f"seed.item_tags: no item has tag(s) {_quote(missing)}; ignored")
            if by_tag.size:
                parts.append(self._weighted_mean(by_tag))
        if not parts:
            raise DefinitionError(
                "seed", "none of the seed items, categories or item tags is in the model"
            )
        vector = np.mean(np.stack(parts), axis=0).astype(np.float32)
        item_rows = np.unique(np.concatenate([explicit, by_category, by_tag]))
        summary = {
            "items": int(explicit.size),
            "categories": len(categories),
            "tags": len(tags) if by_tag.size else 0,
            "members": 0,
            "item_rows": int(item_rows.size),
        }
        if d and not np.any(vector):
            warnings.append("seed: the seed vector is zero; every member scores 0")
        return _Resolved(vector, item_rows, np.empty(0, np.int64), summary, warnings)

    # -- filters --------------------------------------------------------------------------

    def _tag_counts(self, names: Sequence[str]) -> IntArray:
        """Per attribute row, how many of the tags ``names`` (known ones) the member has."""
        selected = np.zeros(len(self._tag_index) + 1, dtype=np.bool_)
        for name in names:
            if name in self._tag_index:
                selected[self._tag_index[name]] = True
        hit = selected[self._tag_columns]
        return np.bincount(self._tag_rows[hit], minlength=self._n).astype(np.int64)

    def eligible(self, filters: Filters) -> BoolArray:
        """Attribute rows passing every filter (vector or not)."""
        a = self._attributes
        mask = np.ones(self._n, dtype=np.bool_)
        for values, names, codes in (
            (filters.tiers, a.tier_names, a.tier_codes),
            (filters.lifecycle, a.lifecycle_names, a.lifecycle_codes),
            (filters.segments, a.segment_names, a.segment_codes),
            (filters.regions, a.region_names, a.region_codes),
        ):
            if values:
                index = {name: i for i, name in enumerate(names)}
                table = _lut(len(names), (index[v] for v in values if v in index))
                mask &= table[np.asarray(codes, dtype=np.int64) + 1]
        tags = filters.tags
        if tags.any_of:
            mask &= self._tag_counts(tags.any_of) > 0
        if tags.all_of:
            if all(t in self._tag_index for t in tags.all_of):
                mask &= self._tag_counts(tags.all_of) == len(tags.all_of)
            else:
                mask[:] = False
        if tags.none_of:
            mask &= self._tag_counts(tags.none_of) == 0
        if filters.birth_months:
            table = np.zeros(13, dtype=np.bool_)
            table[list(filters.birth_months)] = True
            months = np.asarray(a.birth_month, dtype=np.int64)
            valid = (months >= 1) & (months <= 12)  # anything else is unknown: never passes
            mask &= valid & table[np.where(valid, months, 0)]
        if filters.points_min is not None:
            mask &= np.asarray(a.points) >= filters.points_min  # nan (unknown) fails
        if filters.points_max is not None:
            mask &= np.asarray(a.points) <= filters.points_max
        joined = np.asarray(a.joined_at).astype("datetime64[us]")
        if filters.joined_after is not None:
            mask &= joined >= np.datetime64(filters.joined_after, "us")
        if filters.joined_before is not None:
            mask &= joined < np.datetime64(filters.joined_before, "us")
        return mask

    # -- building -------------------------------------------------------------------------

    def scores(self, seed: Seed) -> FloatArray:
        """Score of every attribute row for ``seed`` (nan where the member has no vector)."""
        return self._attribute_scores(self._resolve(seed))

    def seed_history(self, item_rows: IntArray) -> npt.NDArray[np.float64]:
        """Per model member, the history summed over the items ``item_rows`` (negative sums,
        more returned than bought, count as 0); zeros without a history matrix."""
        n_model = self._vectors.shape[0]
        history = self._history
        if history is None or item_rows.size == 0:
            return np.zeros(n_model, dtype=np.float64)
        columns = np.asarray(item_rows, dtype=np.int64)
        starts = history.indptr[columns].astype(np.int64)
        lengths = history.indptr[columns + 1].astype(np.int64) - starts
        total = int(lengths.sum())
        # positions of every stored value of the selected columns, without a Python loop
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        positions = offsets + np.arange(total, dtype=np.int64)
        summed = np.bincount(
            history.indices[positions], weights=history.data[positions], minlength=n_model
        )
        return np.maximum(summed, 0.0)

    def _attribute_scores(self, resolved: _Resolved) -> FloatArray:
        rows = self._model_rows[self._has_vector]
        scored = (self._vectors @ resolved.vector)[rows]
        if self._history_weight > 0 and resolved.item_rows.size:
            history = self.seed_history(resolved.item_rows)[rows]
            scored = _with_history(scored, history, self._history_weight)
        out = np.full(self._n, np.nan, dtype=np.float32)
        out[self._has_vector] = scored
        return out

    def build(
        self, definition: AudienceDefinition, *, exclude: Mapping[str, BoolArray] | None = None
    ) -> Audience:
        """The audience of ``definition``. ``exclude`` maps a reason ("bought_seed",
        "contacted") to a bool mask over attribute rows of members to leave out."""
        self._check_names(definition.filters)
        resolved = self._resolve(definition.seed)
        warnings = resolved.warnings + self._filter_warnings(definition.filters)
        masks: dict[str, BoolArray] = {}
        for reason, mask in (exclude or {}).items():
            array = np.asarray(mask)
            if array.dtype != np.bool_ or array.shape != (self._n,):
                raise InvalidInputError(
                    f"exclude[{reason!r}]: expected a bool mask of shape ({self._n},), "
                    f"got {array.dtype} {array.shape}"
                )
            masks[reason] = array
        if resolved.member_rows.size:
            seed_mask = np.zeros(self._n, dtype=np.bool_)
            is_seed = np.zeros(self._vectors.shape[0], dtype=np.bool_)
            is_seed[resolved.member_rows] = True
            seed_mask[self._has_vector] = is_seed[self._model_rows[self._has_vector]]
            masks[SEED_MEMBER] = seed_mask

        eligible = self.eligible(definition.filters)
        all_scores = self._attribute_scores(resolved)
        scorable = eligible & self._has_vector & np.isfinite(all_scores)
        counts = {
            "members": self._n,
            "eligible": int(np.count_nonzero(eligible)),
            "unscored": int(np.count_nonzero(eligible & ~scorable)),
        }
        keep = scorable.copy()
        for reason, mask in masks.items():
            counts[f"excluded_{reason}"] = int(np.count_nonzero(scorable & mask))
            keep &= ~mask
        counts["excluded"] = int(np.count_nonzero(scorable)) - int(np.count_nonzero(keep))
        population = np.flatnonzero(keep)
        scores = all_scores[population]
        n_scored = int(population.size)
        counts["scored"] = n_scored

        k = self._size(definition.size, scores)
        chosen = _top(scores, k)
        rows = population[chosen]
        top_scores = scores[chosen]
        counts["selected"] = int(rows.size)
        if n_scored and definition.size.top_n and definition.size.top_n > k:
            warnings.append(
                f"size.top_n: only {k:,} members qualify (of {n_scored:,} scored), "
                f"fewer than {definition.size.top_n:,}"
            )
        if counts["unscored"]:
            warnings.append(
                f"{counts['unscored']:,} eligible members have no vector in the model and are "
                "not in the audience (unscored)"
            )
        a = self._attributes
        return Audience(
            rows=rows.astype(np.int64),
            member_ids=np.asarray(a.member_ids)[rows],
            scores=top_scores.astype(np.float32),
            ranks=np.arange(1, rows.size + 1, dtype=np.int64),
            percentiles=_percentiles(top_scores, n_scored),
            tiers=self._tier_labels[np.asarray(a.tier_codes)[rows]],
            segments=self._segment_labels[np.asarray(a.segment_codes)[rows]],
            lifecycles=self._lifecycle_labels[np.asarray(a.lifecycle_codes)[rows]],
            counts=counts,
            breakdown={
                "tier": _breakdown(np.asarray(a.tier_codes)[rows], a.tier_names),
                "segment": _breakdown(np.asarray(a.segment_codes)[rows], a.segment_names),
                "lifecycle": _breakdown(np.asarray(a.lifecycle_codes)[rows], a.lifecycle_names),
            },
            warnings=tuple(warnings),
            seed_summary=resolved.summary,
        )

    @staticmethod
    def _size(size: Size, scores: FloatArray) -> int:
        k = int(scores.size)
        if size.top_n is not None:
            k = min(k, size.top_n)
        if size.top_percent is not None:
            k = min(k, math.ceil(scores.size * size.top_percent / 100 - 1e-9))
        if size.min_score is not None:
            k = min(k, int(np.count_nonzero(scores.astype(np.float64) >= size.min_score)))
        return k


def _with_history(model: FloatArray, history: npt.NDArray[np.float64], weight: float) -> FloatArray:
    """``model / max|model| + weight * log1p(history) / max log1p(history)``, the maxima taken
    over the given members (a zero maximum leaves its term at 0)."""
    vector = model.astype(np.float64)
    finite = np.abs(vector[np.isfinite(vector)])
    top = float(finite.max()) if finite.size else 0.0
    if top > 0:
        vector /= top
    affinity = np.log1p(history)
    peak = float(affinity.max()) if affinity.size else 0.0
    if peak > 0:
        vector += affinity * (weight / peak)
    return vector.astype(np.float32)


def _top(scores: FloatArray, k: int) -> IntArray:
    """Positions of the ``k`` best scores, best first; ties by position (stable)."""
    n = int(scores.size)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    negative = -scores
    if k < n:
        threshold = np.partition(negative, k - 1)[k - 1]
        better = np.flatnonzero(negative < threshold)
        tied = np.flatnonzero(negative == threshold)[: k - better.size]
        part = np.concatenate([better, tied])
    else:
        part = np.arange(n, dtype=np.int64)
    order = np.lexsort((part, negative[part]))
    return part[order].astype(np.int64)


def _percentiles(top_scores: FloatArray, n_scored: int) -> FloatArray:
    """Share (%) of the ``n_scored`` members scoring <= each of ``top_scores`` (a best-first
    prefix of them): members above a score are exactly those before its first tie."""
    if top_scores.size == 0:
        return np.empty(0, dtype=np.float32)
    ascending = -top_scores  # best-first scores, negated, ascend
    above = np.searchsorted(ascending, ascending, side="left")
    return ((n_scored - above) / n_scored * 100.0).astype(np.float32)


def _breakdown(codes: npt.NDArray[Any], names: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(np.asarray(codes, dtype=np.int64) + 1, minlength=len(names) + 1)
    out = {name: int(counts[i + 1]) for i, name in enumerate(names)}
    if counts[0]:
        out[UNKNOWN] = int(counts[0])
    return out


__all__ = [
    "HISTORY_WEIGHT",
    "SEED_MEMBER",
    "UNKNOWN",
    "Audience",
    "AudienceDefinition",
    "AudienceScorer",
    "DefinitionError",
    "Exclusions",
    "Filters",
    "ItemSide",
    "MemberAttributes",
    "Seed",
    "Size",
    "TagFilter",
    "parse_definition",
]
