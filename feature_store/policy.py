"""The feature policy: tiers, RFM, lifecycle, member tags and item bands, loaded from TOML.

A policy is a frozen, typed value (:class:`FeaturePolicy`) read by :func:`load_policy`. Every
problem in the file raises :class:`~feature_store.errors.ConfigError` naming the file and the key
(``tiers.levels[2].min_spend``) or the tag rule (``tags[vip_coffee]``). The packaged default is
``feature_store/policies/default.toml``; docs/features.md explains every key.

Besides the data, the policy offers the pure scalar rules that incremental (online) updates reuse,
so batch and online code agree: :meth:`TierPolicy.qualifying_tier`,
:meth:`TierPolicy.growth_points`, :meth:`LifecyclePolicy.stage`, :meth:`RfmPolicy.segment`.

Each section lives in its own module, with the pydantic model of its table (the ``*Table``
classes, see feature_store.config_model): feature_store.policy_tiers, feature_store.policy_rfm,
feature_store.policy_lifecycle, feature_store.policy_value and feature_store.policy_tags.
This module holds the model of the whole file (:class:`PolicyFile`), assembles the sections and
is where the rest of the code imports every policy name from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Self

from pydantic import Field, field_validator, model_validator

from feature_store.config_model import ConfigModel, ConfigValueError, Items, Text, validate
from feature_store.errors import ConfigError
from feature_store.policy_lifecycle import (
    LIFECYCLE_STAGES,
    LifecyclePolicy,
    LifecycleTable,
    Threshold,
)
from feature_store.policy_rfm import (
    RFM_SEGMENTS,
    SCORE_LEVELS,
    RfmPolicy,
    RfmSegmentRule,
    RfmTable,
)
from feature_store.policy_tags import (
    TAG_FEATURES,
    Condition,
    FeatureKind,
    TagRule,
    TagRuleTable,
    build_tags,
    tag_labels,
)
from feature_store.policy_tiers import EvaluationPeriod, TierLevel, TierPolicy, TiersTable
from feature_store.policy_value import EXPECTED_HORIZON_DAYS, ValuePolicy, ValueTable
from feature_store.toml_table import read_toml

#: The packaged default policy.
DEFAULT_POLICY_PATH: Final[Path] = Path(__file__).parent / "policies" / "default.toml"


# --------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemPolicy:
    """Price bands: items are split into ``len(price_bands)`` equal-count bands by price rank
    within their category (lowest prices first)."""

    price_bands: tuple[str, ...] = ("budget", "mid", "premium")


class ItemsTable(ConfigModel):
    """The optional ``[items]`` table."""

    price_bands: Items[Text] = Field(default=ItemPolicy().price_bands, min_length=1)

    @field_validator("price_bands")
    @classmethod
    def _distinct(cls, bands: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(bands)) != len(bands):
            raise ValueError(f"has duplicates: {list(bands)!r}")
        return bands


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
    value: ValuePolicy
    #: The file it was read from and the SHA-256 of its bytes (recorded in snapshot manifests).
    source: Path
    sha256: str


class PolicyFile(ConfigModel):
    """A feature policy file: ``[tiers]``, ``[rfm]`` and ``[lifecycle]`` are required,
    ``[items]``, ``[value]`` and the ``[[tags]]`` optional. Tag rules are checked against the
    file's own tiers and RFM segments."""

    tiers: TiersTable
    rfm: RfmTable
    lifecycle: LifecycleTable
    items: ItemsTable = Field(default_factory=ItemsTable)
    value: ValueTable = Field(default_factory=ValueTable)
    tags: Items[TagRuleTable] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.lifecycle.rule == "p_alive" and not self.value.enabled:
            raise ConfigValueError(
                '"p_alive" needs the value model; set [value] enabled = true or use rule = "days"',
                "lifecycle",
                "rule",
            )
        self.tag_rules()
        return self

    def tag_rules(self) -> tuple[TagRule, ...]:
        return build_tags(self.tags, self.tiers.build(), self.rfm.build())

    def build(self, source: Path, sha256: str) -> FeaturePolicy:
        value = self.value.build()
        lifecycle = self.lifecycle.build()
        if lifecycle.rule == "p_alive":
            lifecycle = replace(lifecycle, p_alive_below=value.at_risk_below)
        return FeaturePolicy(
            tiers=self.tiers.build(),
            rfm=self.rfm.build(),
            lifecycle=lifecycle,
            tags=self.tag_rules(),
            items=ItemPolicy(price_bands=self.items.price_bands),
            value=value,
            source=source,
            sha256=sha256,
        )


def load_policy(path: Path | None = None) -> FeaturePolicy:
    """Read and validate a policy file (None: the packaged default).

    Raises ConfigError naming the file and the offending key or rule.
    """
    path = DEFAULT_POLICY_PATH if path is None else path
    data, raw = read_toml(path, "feature policy")
    checked = validate(PolicyFile, data, path, labels=tag_labels(data))
    return checked.build(path, hashlib.sha256(raw).hexdigest())


__all__ = [
    "DEFAULT_POLICY_PATH",
    "EXPECTED_HORIZON_DAYS",
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
    "ItemsTable",
    "LifecyclePolicy",
    "PolicyFile",
    "RfmPolicy",
    "RfmSegmentRule",
    "TagRule",
    "Threshold",
    "TierLevel",
    "TierPolicy",
    "ValuePolicy",
    "load_policy",
]
