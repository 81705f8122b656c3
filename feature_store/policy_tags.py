"""The tag rules of the feature policy: a member gets a tag when conditions on their features hold
(docs/features.md, "Tags").

A rule's conditions are ``feature op value``; :data:`TAG_FEATURES` lists the member features a
rule may test and :data:`OPERATORS_BY_KIND` the operators each kind of feature allows. Values are
checked against the policy's own tiers, lifecycle stages and RFM segments while reading.
feature_store.transforms.tags evaluates the rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from feature_store.errors import ConfigError
from feature_store.policy_lifecycle import LIFECYCLE_STAGES
from feature_store.policy_rfm import RfmPolicy
from feature_store.policy_tiers import TierPolicy
from feature_store.policy_toml import PolicySection


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


def parse_tags(
    path: Path, sections: list[PolicySection], tiers: TierPolicy, rfm: RfmPolicy
) -> tuple[TagRule, ...]:
    """The ``[[tags]]`` tables; errors name the rule (``tags[vip_coffee]``), not its position."""
    rules: list[TagRule] = []
    for i, sec in enumerate(sections):
        name = sec.data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}: tags[{i}]: every tag rule needs a non-empty string 'name'")
        # from here on errors name the rule, not its position
        rule_sec = sec.child(f"tags[{name}]", sec.data)
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
    sec: PolicySection, key: str, tiers: TierPolicy, rfm: RfmPolicy
) -> tuple[Condition, ...]:
    if not sec.has(key):
        return ()
    value = sec.raw(key)
    if not isinstance(value, list) or not value:
        raise sec.error(key, "must be a non-empty array of {feature, op, value} tables")
    return tuple(
        _parse_condition(sec.child(f"{sec.where(key)}[{i}]", c), tiers, rfm)
        for i, c in enumerate(value)
    )


def _parse_condition(sec: PolicySection, tiers: TierPolicy, rfm: RfmPolicy) -> Condition:
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
    sec: PolicySection, raw: object, kind: FeatureKind, op: str, tiers: TierPolicy, rfm: RfmPolicy
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
    sec: PolicySection, raw: object, kind: FeatureKind, tiers: TierPolicy, rfm: RfmPolicy
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
    "OPERATORS_BY_KIND",
    "TAG_FEATURES",
    "Condition",
    "ConditionValue",
    "FeatureKind",
    "TagRule",
    "parse_tags",
]
