"""The feature policy: tiers, RFM, lifecycle, member tags and item bands, loaded from TOML.

A policy is a frozen, typed value (:class:`FeaturePolicy`) read by :func:`load_policy`. Every
problem in the file raises :class:`~feature_store.errors.ConfigError` naming the file and the key
(``tiers.levels[2].min_spend``) or the tag rule (``tags[vip_coffee]``). The packaged default is
``feature_store/policies/default.toml``; docs/features.md explains every key.

Besides the data, the policy offers the pure scalar rules that incremental (online) updates reuse,
so batch and online code agree: :meth:`TierPolicy.qualifying_tier`,
:meth:`TierPolicy.growth_points`, :meth:`LifecyclePolicy.stage`, :meth:`RfmPolicy.segment`.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal

from feature_store.errors import ConfigError

#: The packaged default policy.
DEFAULT_POLICY_PATH: Final[Path] = Path(__file__).parent / "policies" / "default.toml"

#: Lifecycle stages, in the order of a member's life.
LIFECYCLE_STAGES: Final[tuple[str, ...]] = ("new", "active", "at_risk", "churned")

#: The standard RFM segment names (docs/features.md shows the default R x FM map).
RFM_SEGMENTS: Final[tuple[str, ...]] = (
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Cannot Lose Them",
    "Hibernating",
    "Lost",
)

#: RFM scores run from 1 to SCORE_LEVELS (quintiles).
SCORE_LEVELS: Final[int] = 5

Match = Literal["all", "any"]


class EvaluationPeriod(StrEnum):
    """How often tier downgrades are evaluated (at the first instant of each period)."""

    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"

    @property
    def months(self) -> int:
        return {"monthly": 1, "quarterly": 3, "yearly": 12}[self.value]


# --------------------------------------------------------------------------------------------
# Tiers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierLevel:
    """One tier and what qualifies a member for it (over the trailing window).

    A threshold left out (None) is not part of the rule. ``match="all"`` needs every given
    threshold, ``"any"`` at least one. The lowest tier has no thresholds: everyone qualifies.
    """

    name: str
    min_spend: float | None = None
    min_orders: int | None = None
    min_growth_points: float | None = None
    match: Match = "all"

    @property
    def is_base(self) -> bool:
        return self.min_spend is None and self.min_orders is None and self.min_growth_points is None

    def is_met(self, spend: float, orders: int, growth_points: float) -> bool:
        checks = [
            value >= threshold
            for value, threshold in (
                (spend, self.min_spend),
                (float(orders), self.min_orders),
                (growth_points, self.min_growth_points),
            )
            if threshold is not None
        ]
        if not checks:
            return True
        return all(checks) if self.match == "all" else any(checks)


@dataclass(frozen=True, slots=True)
class TierPolicy:
    """The tier ladder (lowest first) and when members move up or down it.

    - Upgrade: as soon as a purchase makes the member qualify for a higher tier.
    - Downgrade: only at the start of an evaluation period (``evaluation_period``, years and
      quarters counted from ``period_start_month``), only when at least ``protection_days``
      have passed since the member's last upgrade, and at most ``max_downgrade_steps`` tiers
      at a time (0: straight down to the qualifying tier).
    - Qualification looks at the trailing ``window_days`` of net spend, purchase orders and
      growth points (``points_per_currency * spend + points_per_order * orders``).
    """

    levels: tuple[TierLevel, ...]
    window_days: int = 365
    evaluation_period: EvaluationPeriod = EvaluationPeriod.YEARLY
    period_start_month: int = 1
    protection_days: int = 365
    max_downgrade_steps: int = 1
    points_per_currency: float = 1.0
    points_per_order: float = 0.0

    @property
    def names(self) -> tuple[str, ...]:
        """Tier names, lowest first."""
        return tuple(level.name for level in self.levels)

    @property
    def base(self) -> str:
        return self.levels[0].name

    def rank(self, tier: str) -> int:
        """Position of ``tier`` in the ladder (0 = lowest); ValueError for an unknown name."""
        try:
            return self.names.index(tier)
        except ValueError:
            raise ValueError(
                f"unknown tier {tier!r}; the policy's tiers are {', '.join(self.names)}"
            ) from None

    def growth_points(self, amount: float, orders: int) -> float:
        """Growth points earned by ``amount`` of net spend over ``orders`` purchase orders."""
        return self.points_per_currency * amount + self.points_per_order * orders

    def qualifying_tier(self, spend: float, orders: int, growth_points: float) -> str:
        """The highest tier whose rules are met by these trailing-window figures."""
        for level in reversed(self.levels):
            if level.is_met(spend, orders, growth_points):
                return level.name
        return self.base  # unreachable: the base level has no rules

    def period_starts(self, start: datetime, end: datetime) -> list[datetime]:
        """Evaluation instants (period starts, 00:00) with ``start < t <= end``, ascending."""
        step = self.evaluation_period.months
        # index months from the anchor so quarters/years start at period_start_month
        first = (start.year * 12 + start.month - 1) - (self.period_start_month - 1)
        k = first // step + 1
        out: list[datetime] = []
        while True:
            month_index = k * step + (self.period_start_month - 1)
            t = datetime(month_index // 12, month_index % 12 + 1, 1)
            if t > end:
                return out
            if t > start:
                out.append(t)
            k += 1


# --------------------------------------------------------------------------------------------
# RFM
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RfmSegmentRule:
    """A segment covers the cells (r, fm) with r in ``r`` and fm in ``fm``."""

    name: str
    r: tuple[int, ...]
    fm: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RfmPolicy:
    """RFM over the trailing ``window_days``; segments from an R x FM score map.

    ``fm = (f_score + m_score + 1) // 2`` (the mean, rounded half up). Every one of the 25
    (r, fm) cells belongs to exactly one segment.
    """

    window_days: int
    segments: tuple[RfmSegmentRule, ...]

    @property
    def segment_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments)

    @property
    def segment_grid(self) -> tuple[str, ...]:
        """Segment of each cell, row-major: index ``(r - 1) * 5 + (fm - 1)``."""
        grid = [""] * (SCORE_LEVELS * SCORE_LEVELS)
        for seg in self.segments:
            for r in seg.r:
                for fm in seg.fm:
                    grid[(r - 1) * SCORE_LEVELS + fm - 1] = seg.name
        return tuple(grid)

    @staticmethod
    def fm_score(f_score: int, m_score: int) -> int:
        return (f_score + m_score + 1) // 2

    def segment(self, r_score: int, f_score: int, m_score: int) -> str:
        """The named segment of a member with these 1-5 scores."""
        for score in (r_score, f_score, m_score):
            if not 1 <= score <= SCORE_LEVELS:
                raise ValueError(f"RFM scores run from 1 to {SCORE_LEVELS}, got {score}")
        fm = self.fm_score(f_score, m_score)
        return self.segment_grid[(r_score - 1) * SCORE_LEVELS + fm - 1]


# --------------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Threshold:
    """A member-relative limit in days: ``clamp(multiplier * interval, floor_days, cap_days)``."""

    multiplier: float
    floor_days: float
    cap_days: float

    def days(self, interval_days: float) -> float:
        return min(max(self.multiplier * interval_days, self.floor_days), self.cap_days)


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """Lifecycle stage from a member's own purchase rhythm.

    - ``new``: joined less than ``new_days`` days ago.
    - otherwise, without any purchase order: ``churned`` (never activated).
    - otherwise ``interval`` is the member's average inter-purchase interval (days) when they
      have at least two orders, else ``default_interval_days``; ``active`` while days since the
      last purchase <= ``active.days(interval)``, ``at_risk`` while <= ``churn.days(interval)``,
      then ``churned``.
    """

    new_days: int
    default_interval_days: float
    active: Threshold
    churn: Threshold

    def interval(self, avg_interpurchase_days: float | None, n_orders: int) -> float:
        if n_orders >= 2 and avg_interpurchase_days is not None:
            return avg_interpurchase_days
        return self.default_interval_days

    def stage(
        self,
        days_since_joined: int,
        days_since_last_purchase: int | None,
        avg_interpurchase_days: float | None,
        n_orders: int,
    ) -> str:
        """One of ``new``, ``active``, ``at_risk``, ``churned``."""
        if days_since_joined < self.new_days:
            return "new"
        if n_orders <= 0 or days_since_last_purchase is None:
            return "churned"
        interval = self.interval(avg_interpurchase_days, n_orders)
        if days_since_last_purchase <= self.active.days(interval):
            return "active"
        if days_since_last_purchase <= max(self.churn.days(interval), self.active.days(interval)):
            return "at_risk"
        return "churned"


# --------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------


class FeatureKind(StrEnum):
    """What a tag-rule feature holds; decides which operators and values are allowed."""

    NUMBER = "number"
    BOOL = "bool"
    TEXT = "text"
    TIER = "tier"  # ordered by the tier ladder
    LIFECYCLE = "lifecycle"
    SEGMENT = "segment"
    TAGS = "tags"  # a list of strings (CRM tags)
    CATEGORY_SHARE = "category_share"  # number, needs `category`


#: Member features a tag rule may test (docs/features.md describes each).
TAG_FEATURES: Final[dict[str, FeatureKind]] = {
    "spend_window": FeatureKind.NUMBER,
    "orders_window": FeatureKind.NUMBER,
    "growth_points": FeatureKind.NUMBER,
    "recency_days": FeatureKind.NUMBER,
    "frequency": FeatureKind.NUMBER,
    "monetary": FeatureKind.NUMBER,
    "r_score": FeatureKind.NUMBER,
    "f_score": FeatureKind.NUMBER,
    "m_score": FeatureKind.NUMBER,
    "days_since_last_purchase": FeatureKind.NUMBER,
    "avg_interpurchase_days": FeatureKind.NUMBER,
    "days_since_joined": FeatureKind.NUMBER,
    "n_orders": FeatureKind.NUMBER,
    "total_spend": FeatureKind.NUMBER,
    "return_rate": FeatureKind.NUMBER,
    "points_balance": FeatureKind.NUMBER,
    "birth_month": FeatureKind.NUMBER,
    "birthday_this_month": FeatureKind.BOOL,
    "region": FeatureKind.TEXT,
    "tier": FeatureKind.TIER,
    "lifecycle": FeatureKind.LIFECYCLE,
    "rfm_segment": FeatureKind.SEGMENT,
    "crm_tags": FeatureKind.TAGS,
    "category_share": FeatureKind.CATEGORY_SHARE,
}

_COMPARE: Final[tuple[str, ...]] = ("==", "!=", "<", "<=", ">", ">=")
_EQUALITY: Final[tuple[str, ...]] = ("==", "!=", "in", "not_in")
OPERATORS_BY_KIND: Final[dict[FeatureKind, tuple[str, ...]]] = {
    FeatureKind.NUMBER: (*_COMPARE, "in", "not_in"),
    FeatureKind.CATEGORY_SHARE: _COMPARE,
    FeatureKind.BOOL: ("==", "!="),
    FeatureKind.TEXT: _EQUALITY,
    FeatureKind.TIER: (*_COMPARE, "in", "not_in"),
    FeatureKind.LIFECYCLE: _EQUALITY,
    FeatureKind.SEGMENT: _EQUALITY,
    FeatureKind.TAGS: ("contains", "not_contains"),
}

ConditionValue = float | bool | str | tuple[float, ...] | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Condition:
    """``feature op value``; ``category`` only for the ``category_share`` feature."""

    feature: str
    op: str
    value: ConditionValue
    category: str | None = None

    @property
    def kind(self) -> FeatureKind:
        return TAG_FEATURES[self.feature]


@dataclass(frozen=True, slots=True)
class TagRule:
    """A member gets tag ``name`` when every ``all`` condition holds and, if ``any`` is given,
    at least one ``any`` condition holds."""

    name: str
    description: str
    all: tuple[Condition, ...]
    any: tuple[Condition, ...]

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return self.all + self.any


# --------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemPolicy:
    """Price bands: items are split into ``len(price_bands)`` equal-count bands by price rank
    within their category (lowest prices first)."""

    price_bands: tuple[str, ...] = ("budget", "mid", "premium")


# --------------------------------------------------------------------------------------------
# The whole policy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeaturePolicy:
    tiers: TierPolicy
    rfm: RfmPolicy
    lifecycle: LifecyclePolicy
    tags: tuple[TagRule, ...]
    items: ItemPolicy
    #: The file it was read from and the SHA-256 of its bytes (recorded in snapshot manifests).
    source: Path
    sha256: str


def load_policy(path: Path | None = None) -> FeaturePolicy:
    """Read and validate a policy file (None: the packaged default).

    Raises ConfigError naming the file and the offending key or rule.
    """
    path = DEFAULT_POLICY_PATH if path is None else path
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the feature policy: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    root = _Section(path, "", data)
    tiers = _parse_tiers(root.section("tiers"))
    rfm = _parse_rfm(root.section("rfm"))
    lifecycle = _parse_lifecycle(root.section("lifecycle"))
    items = _parse_items(root.optional_section("items"))
    tags = _parse_tags(path, root.table_list("tags", required=False), tiers, rfm)
    root.finish()
    return FeaturePolicy(
        tiers=tiers,
        rfm=rfm,
        lifecycle=lifecycle,
        tags=tags,
        items=items,
        source=path,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


# --------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------


class _Section:
    """A TOML table being read: typed getters that name ``file: key`` on error, and a check
    that no unknown key is left over."""

    def __init__(self, path: Path, prefix: str, data: object) -> None:
        self.path = path
        self.prefix = prefix
        if not isinstance(data, dict):
            raise self.error("", f"must be a table, got {type(data).__name__}")
        self.data: dict[str, object] = data
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        if not key:
            return self.prefix or "<root>"
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.where(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> object:
        self.used.add(key)
        return self.data[key]

    def section(self, key: str) -> _Section:
        if key not in self.data:
            raise self.error(key, "missing required table")
        return _Section(self.path, self.where(key), self.raw(key))

    def optional_section(self, key: str) -> _Section | None:
        return self.section(key) if key in self.data else None

    def table_list(self, key: str, *, required: bool = True) -> list[_Section]:
        if key not in self.data:
            if required:
                raise self.error(key, "missing (give it as [[...]] tables)")
            return []
        value = self.raw(key)
        if not isinstance(value, list):
            raise self.error(key, "must be an array of tables ([[...]])")
        return [_Section(self.path, f"{self.where(key)}[{i}]", v) for i, v in enumerate(value)]

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        above: float | None = None,
    ) -> float:
        value = self.optional_number(key, minimum=minimum, above=above)
        if value is None:
            if default is None:
                raise self.error(key, "missing required number")
            return default
        return value

    def optional_number(
        self, key: str, *, minimum: float | None = None, above: float | None = None
    ) -> float | None:
        if key not in self.data:
            return None
        value = self.raw(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.error(key, f"must be a finite number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum:g}, got {value!r}")
        if above is not None and value <= above:
            raise self.error(key, f"must be > {above:g}, got {value!r}")
        return float(value)

    def integer(
        self,
        key: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        if key not in self.data:
            if default is None:
                raise self.error(key, "missing required integer")
            return default
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be <= {maximum}, got {value}")
        return value

    def optional_integer(self, key: str, *, minimum: int = 0) -> int | None:
        return self.integer(key, minimum=minimum) if key in self.data else None

    def string(
        self, key: str, default: str | None = None, *, choices: tuple[str, ...] | None = None
    ) -> str:
        if key not in self.data:
            if default is None:
                raise self.error(key, "missing required string")
            return default
        value = self.raw(key)
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def string_list(self, key: str) -> tuple[str, ...]:
        value = self.raw(key) if key in self.data else None
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v for v in value)
        ):
            raise self.error(key, f"must be a non-empty list of strings, got {value!r}")
        if len(set(value)) != len(value):
            raise self.error(key, f"has duplicates: {value!r}")
        return tuple(value)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(
                unknown[0], f"unknown key (known here: {', '.join(sorted(self.used)) or 'none'})"
            )


def _parse_tiers(sec: _Section) -> TierPolicy:
    levels: list[TierLevel] = []
    for lv in sec.table_list("levels"):
        name = lv.string("name")
        if name in {level.name for level in levels}:
            raise lv.error("name", f"tier {name!r} is defined twice")
        level = TierLevel(
            name=name,
            min_spend=lv.optional_number("min_spend", minimum=0),
            min_orders=lv.optional_integer("min_orders", minimum=0),
            min_growth_points=lv.optional_number("min_growth_points", minimum=0),
            match="all" if lv.string("match", "all", choices=("all", "any")) == "all" else "any",
        )
        lv.finish()
        if not levels and not level.is_base:
            raise lv.error(
                "", f"the lowest tier {name!r} must have no thresholds (everyone qualifies)"
            )
        if levels and level.is_base:
            raise lv.error(
                "", f"tier {name!r} needs at least one of min_spend, min_orders, min_growth_points"
            )
        levels.append(level)
    if len(levels) < 1:
        raise sec.error("levels", "needs at least one tier")
    policy = TierPolicy(
        levels=tuple(levels),
        window_days=sec.integer("window_days", 365, minimum=1),
        evaluation_period=EvaluationPeriod(
            sec.string(
                "evaluation_period", "yearly", choices=tuple(p.value for p in EvaluationPeriod)
            )
        ),
        period_start_month=sec.integer("period_start_month", 1, minimum=1, maximum=12),
        protection_days=sec.integer("protection_days", 365, minimum=0),
        max_downgrade_steps=sec.integer("max_downgrade_steps", 1, minimum=0),
        points_per_currency=sec.number("points_per_currency", 1.0, minimum=0),
        points_per_order=sec.number("points_per_order", 0.0, minimum=0),
    )
    sec.finish()
    return policy


def _score_list(sec: _Section, key: str) -> tuple[int, ...]:
    value = sec.raw(key) if sec.has(key) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= SCORE_LEVELS for v in value
        )
    ):
        raise sec.error(
            key, f"must be a score or list of scores from 1 to {SCORE_LEVELS}, got {value!r}"
        )
    return tuple(sorted(set(value)))


def _parse_rfm(sec: _Section) -> RfmPolicy:
    window_days = sec.integer("window_days", 365, minimum=1)
    rules: list[RfmSegmentRule] = []
    owner: dict[tuple[int, int], str] = {}
    for s in sec.table_list("segments"):
        name = s.string("name")
        if name in {r.name for r in rules}:
            raise s.error("name", f"segment {name!r} is defined twice")
        rule = RfmSegmentRule(name=name, r=_score_list(s, "r"), fm=_score_list(s, "fm"))
        s.finish()
        for r in rule.r:
            for fm in rule.fm:
                if (r, fm) in owner:
                    raise s.error(
                        "", f"segment {name!r} overlaps {owner[r, fm]!r} at r={r}, fm={fm}"
                    )
                owner[r, fm] = name
        rules.append(rule)
    missing = [
        f"r={r},fm={fm}"
        for r in range(1, SCORE_LEVELS + 1)
        for fm in range(1, SCORE_LEVELS + 1)
        if (r, fm) not in owner
    ]
    if missing:
        raise sec.error(
            "segments", f"the R x FM map leaves cells without a segment: {', '.join(missing)}"
        )
    sec.finish()
    return RfmPolicy(window_days=window_days, segments=tuple(rules))


def _parse_threshold(sec: _Section) -> Threshold:
    t = Threshold(
        multiplier=sec.number("multiplier", minimum=0),
        floor_days=sec.number("floor_days", minimum=0),
        cap_days=sec.number("cap_days", minimum=0),
    )
    if t.cap_days < t.floor_days:
        raise sec.error("cap_days", f"must be >= floor_days ({t.floor_days:g}), got {t.cap_days:g}")
    sec.finish()
    return t


def _parse_lifecycle(sec: _Section) -> LifecyclePolicy:
    policy = LifecyclePolicy(
        new_days=sec.integer("new_days", 30, minimum=0),
        default_interval_days=sec.number("default_interval_days", 60.0, above=0),
        active=_parse_threshold(sec.section("active")),
        churn=_parse_threshold(sec.section("churn")),
    )
    if (
        policy.churn.floor_days < policy.active.floor_days
        or policy.churn.cap_days < policy.active.cap_days
    ):
        raise sec.error("churn", "floor_days and cap_days must be >= those of lifecycle.active")
    if policy.churn.multiplier < policy.active.multiplier:
        raise sec.error("churn.multiplier", "must be >= lifecycle.active.multiplier")
    sec.finish()
    return policy


def _parse_items(sec: _Section | None) -> ItemPolicy:
    if sec is None:
        return ItemPolicy()
    policy = ItemPolicy(
        price_bands=sec.string_list("price_bands")
        if sec.has("price_bands")
        else ItemPolicy().price_bands
    )
    sec.finish()
    return policy


def _parse_tags(
    path: Path, sections: list[_Section], tiers: TierPolicy, rfm: RfmPolicy
) -> tuple[TagRule, ...]:
    rules: list[TagRule] = []
    for i, sec in enumerate(sections):
        name = sec.data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}: tags[{i}]: every tag rule needs a non-empty string 'name'")
        # from here on errors name the rule, not its position
        rule_sec = _Section(path, f"tags[{name}]", sec.data)
        rule_sec.used.add("name")
        if name in {r.name for r in rules}:
            raise rule_sec.error("name", "tag rule defined twice")
        description = rule_sec.string("description", "-")
        all_conds = _parse_conditions(rule_sec, "all", tiers, rfm)
        any_conds = _parse_conditions(rule_sec, "any", tiers, rfm)
        rule_sec.finish()
        if not all_conds and not any_conds:
            raise rule_sec.error("", "needs at least one condition in 'all' or 'any'")
        rules.append(TagRule(name=name, description=description, all=all_conds, any=any_conds))
    return tuple(rules)


def _parse_conditions(
    sec: _Section, key: str, tiers: TierPolicy, rfm: RfmPolicy
) -> tuple[Condition, ...]:
    if not sec.has(key):
        return ()
    value = sec.raw(key)
    if not isinstance(value, list) or not value:
        raise sec.error(key, "must be a non-empty array of {feature, op, value} tables")
    return tuple(
        _parse_condition(_Section(sec.path, f"{sec.where(key)}[{i}]", c), tiers, rfm)
        for i, c in enumerate(value)
    )


def _parse_condition(sec: _Section, tiers: TierPolicy, rfm: RfmPolicy) -> Condition:
    feature = sec.string("feature")
    if feature not in TAG_FEATURES:
        raise sec.error(
            "feature", f"unknown feature {feature!r}; known: {', '.join(sorted(TAG_FEATURES))}"
        )
    kind = TAG_FEATURES[feature]
    op = sec.string("op")
    allowed = OPERATORS_BY_KIND[kind]
    if op not in allowed:
        raise sec.error(
            "op",
            f"operator {op!r} cannot be used with {feature!r}; use one of {', '.join(allowed)}",
        )
    category: str | None = None
    if kind is FeatureKind.CATEGORY_SHARE:
        category = sec.string("category")
    if not sec.has("value"):
        raise sec.error("value", "missing")
    value = _condition_value(sec, sec.raw("value"), kind, op, tiers, rfm)
    sec.finish()
    return Condition(feature=feature, op=op, value=value, category=category)


def _condition_value(
    sec: _Section, raw: object, kind: FeatureKind, op: str, tiers: TierPolicy, rfm: RfmPolicy
) -> ConditionValue:
    if op in ("in", "not_in"):
        if not isinstance(raw, list) or not raw:
            raise sec.error("value", f"operator {op!r} needs a non-empty list, got {raw!r}")
        items = [_scalar_value(sec, v, kind, tiers, rfm) for v in raw]
        if kind is FeatureKind.NUMBER:
            return tuple(float(v) for v in items)
        return tuple(str(v) for v in items)
    return _scalar_value(sec, raw, kind, tiers, rfm)


def _scalar_value(
    sec: _Section, raw: object, kind: FeatureKind, tiers: TierPolicy, rfm: RfmPolicy
) -> float | bool | str:
    if kind in (FeatureKind.NUMBER, FeatureKind.CATEGORY_SHARE):
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise sec.error("value", f"must be a number, got {raw!r}")
        return float(raw)
    if kind is FeatureKind.BOOL:
        if not isinstance(raw, bool):
            raise sec.error("value", f"must be true or false, got {raw!r}")
        return raw
    if not isinstance(raw, str) or not raw:
        raise sec.error("value", f"must be a non-empty string, got {raw!r}")
    choices: tuple[str, ...] | None = {
        FeatureKind.TIER: tiers.names,
        FeatureKind.LIFECYCLE: LIFECYCLE_STAGES,
        FeatureKind.SEGMENT: rfm.segment_names,
    }.get(kind)
    if choices is not None and raw not in choices:
        raise sec.error("value", f"{raw!r} is not one of {', '.join(choices)}")
    return raw


__all__ = [
    "DEFAULT_POLICY_PATH",
    "LIFECYCLE_STAGES",
    "RFM_SEGMENTS",
    "SCORE_LEVELS",
    "TAG_FEATURES",
    "Condition",
    "ConfigError",
    "EvaluationPeriod",
    "FeatureKind",
    "FeaturePolicy",
    "ItemPolicy",
    "LifecyclePolicy",
    "RfmPolicy",
    "RfmSegmentRule",
    "TagRule",
    "Threshold",
    "TierLevel",
    "TierPolicy",
    "load_policy",
]
