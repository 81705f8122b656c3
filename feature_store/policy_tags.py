"""The tag rules of the feature policy: a member gets a tag when conditions on their features hold
(docs/features.md, "Tags").

A rule's conditions are ``feature op value``; :data:`TAG_FEATURES` lists the member features a
rule may test and :data:`OPERATORS_BY_KIND` the operators each kind of feature allows. Values are
checked against the policy's own tiers, lifecycle stages and RFM segments while reading
(:class:`TagRuleTable` is a ``[[tags]]`` table of the policy file, :func:`build_tags` checks the
names). feature_store.transforms.tags evaluates the rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Self

from pydantic import Field, field_validator, model_validator

from feature_store.config_model import ConfigModel, ConfigValueError, Items, Loc, Text
from feature_store.policy_lifecycle import LIFECYCLE_STAGES
from feature_store.policy_rfm import RfmPolicy
from feature_store.policy_tiers import TierPolicy


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


#: The allowed values of the features whose values are names: the policy's tiers, the
#: lifecycle stages and its RFM segments.
NameChoices = Mapping[FeatureKind, tuple[str, ...]]


class ConditionTable(ConfigModel):
    """One ``{feature, op, value}`` of a rule's ``all`` or ``any``."""

    feature: Text
    op: Text
    value: Any
    category: Text | None = None

    @field_validator("feature")
    @classmethod
    def _known_feature(cls, feature: str) -> str:
        if feature not in TAG_FEATURES:
            raise ValueError(
                f"unknown feature {feature!r}; known: {', '.join(sorted(TAG_FEATURES))}"
            )
        return feature

    @model_validator(mode="after")
    def _fits_the_feature(self) -> Self:
        kind = TAG_FEATURES[self.feature]
        allowed = OPERATORS_BY_KIND[kind]
        if self.op not in allowed:
            raise ConfigValueError(
                f"operator {self.op!r} cannot be used with {self.feature!r}; "
                f"use one of {', '.join(allowed)}",
                "op",
            )
        if kind is FeatureKind.CATEGORY_SHARE and self.category is None:
            raise ConfigValueError("missing required string", "category")
        if kind is not FeatureKind.CATEGORY_SHARE and self.category is not None:
            raise ConfigValueError(
                "unknown key (only the category_share feature takes one)", "category"
            )
        self.build({FeatureKind.LIFECYCLE: LIFECYCLE_STAGES})
        return self

    def build(self, choices: NameChoices) -> Condition:
        """The condition; ConfigValueError (at ``value``) when the value does not fit the
        feature."""
        kind = TAG_FEATURES[self.feature]
        value = _condition_value(self.value, kind, self.op, choices.get(kind))
        return Condition(feature=self.feature, op=self.op, value=value, category=self.category)


class TagRuleTable(ConfigModel):
    """A ``[[tags]]`` table."""

    name: Text
    description: Text = "-"
    all: Items[ConditionTable] = Field(default=(), min_length=1)
    any: Items[ConditionTable] = Field(default=(), min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _named(cls, data: Any) -> Any:
        """Errors name a rule by its name (``tags[vip_coffee]``), so it must have one."""
        if isinstance(data, dict):
            name = data.get("name")
            if not isinstance(name, str) or not name.strip():
                raise ValueError("every tag rule needs a non-empty string 'name'")
        return data

    @model_validator(mode="after")
    def _has_conditions(self) -> Self:
        if not self.all and not self.any:
            raise ValueError("needs at least one condition in 'all' or 'any'")
        return self

    def build(self, choices: NameChoices) -> TagRule:
        groups: dict[str, tuple[Condition, ...]] = {}
        for group, conditions in (("all", self.all), ("any", self.any)):
            built = []
            for i, condition in enumerate(conditions):
                try:
                    built.append(condition.build(choices))
                except ConfigValueError as exc:
                    raise exc.under(group, i) from None
            groups[group] = tuple(built)
        return TagRule(
            name=self.name, description=self.description, all=groups["all"], any=groups["any"]
        )


def build_tags(
    rules: tuple[TagRuleTable, ...], tiers: TierPolicy, rfm: RfmPolicy
) -> tuple[TagRule, ...]:
    """The tag rules, their values checked against the policy's own tiers, lifecycle stages
    and RFM segments; ConfigValueError below ``tags`` for the first that does not fit."""
    choices: NameChoices = {
        FeatureKind.TIER: tiers.names,
        FeatureKind.LIFECYCLE: LIFECYCLE_STAGES,
        FeatureKind.SEGMENT: rfm.segment_names,
    }
    out: list[TagRule] = []
    for i, rule in enumerate(rules):
        if any(rule.name == other.name for other in out):
            raise ConfigValueError("tag rule defined twice", "tags", i, "name")
        try:
            out.append(rule.build(choices))
        except ConfigValueError as exc:
            raise exc.under("tags", i) from None
    return tuple(out)


def tag_labels(data: Mapping[str, object]) -> dict[Loc, str]:
    """How errors name the ``[[tags]]`` of parsed policy TOML: by name, not by position."""
    rules = data.get("tags")
    if not isinstance(rules, list):
        return {}
    return {
        ("tags", i): f"tags[{rule['name']}]"
        for i, rule in enumerate(rules)
        if isinstance(rule, dict) and isinstance(rule.get("name"), str) and rule["name"].strip()
    }


def _condition_value(
    raw: object, kind: FeatureKind, op: str, choices: tuple[str, ...] | None
) -> ConditionValue:
    if op in ("in", "not_in"):
        if not isinstance(raw, list) or not raw:
            raise ConfigValueError(f"operator {op!r} needs a non-empty list, got {raw!r}", "value")
        items = [_scalar_value(v, kind, choices) for v in raw]
        if kind is FeatureKind.NUMBER:
            return tuple(float(v) for v in items)
        return tuple(str(v) for v in items)
    return _scalar_value(raw, kind, choices)


def _scalar_value(
    raw: object, kind: FeatureKind, choices: tuple[str, ...] | None
) -> float | bool | str:
    if kind in (FeatureKind.NUMBER, FeatureKind.CATEGORY_SHARE):
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise ConfigValueError(f"must be a number, got {raw!r}", "value")
        return float(raw)
    if kind is FeatureKind.BOOL:
        if not isinstance(raw, bool):
            raise ConfigValueError(f"must be true or false, got {raw!r}", "value")
        return raw
    if not isinstance(raw, str) or not raw:
        raise ConfigValueError(f"must be a non-empty string, got {raw!r}", "value")
    if choices is not None and raw not in choices:
        raise ConfigValueError(f"{raw!r} is not one of {', '.join(choices)}", "value")
    return raw


__all__ = [
    "OPERATORS_BY_KIND",
    "TAG_FEATURES",
    "Condition",
    "ConditionTable",
    "ConditionValue",
    "FeatureKind",
    "TagRule",
    "TagRuleTable",
    "build_tags",
    "tag_labels",
]
