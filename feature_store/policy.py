"""The feature policy: tiers, RFM, lifecycle, member tags and item bands, loaded from TOML.

A policy is a frozen, typed value (:class:`FeaturePolicy`) read by :func:`load_policy`. Every
problem in the file raises :class:`~feature_store.errors.ConfigError` naming the file and the key
(``tiers.levels[2].min_spend``) or the tag rule (``tags[vip_coffee]``). The packaged default is
``feature_store/policies/default.toml``; docs/features.md explains every key.

Besides the data, the policy offers the pure scalar rules that incremental (online) updates reuse,
so batch and online code agree: :meth:`TierPolicy.qualifying_tier`,
:meth:`TierPolicy.growth_points`, :meth:`LifecyclePolicy.stage`, :meth:`RfmPolicy.segment`.

Each section lives in its own module, with the code that reads it: feature_store.policy_tiers,
feature_store.policy_rfm, feature_store.policy_lifecycle and feature_store.policy_tags (the
tables are read by feature_store.policy_toml). This module assembles them and is where the rest
of the code imports every policy name from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from feature_store.errors import ConfigError
from feature_store.policy_lifecycle import (
    LIFECYCLE_STAGES,
    LifecyclePolicy,
    Threshold,
    parse_lifecycle,
)
from feature_store.policy_rfm import (
    RFM_SEGMENTS,
    SCORE_LEVELS,
    RfmPolicy,
    RfmSegmentRule,
    parse_rfm,
)
from feature_store.policy_tags import (
    TAG_FEATURES,
    Condition,
    FeatureKind,
    TagRule,
    parse_tags,
)
from feature_store.policy_tiers import EvaluationPeriod, TierLevel, TierPolicy, parse_tiers
from feature_store.policy_toml import PolicySection
from feature_store.policy_value import EXPECTED_HORIZON_DAYS, ValuePolicy, parse_value
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


def load_policy(path: Path | None = None) -> FeaturePolicy:
    """Read and validate a policy file (None: the packaged default).

    Raises ConfigError naming the file and the offending key or rule.
    """
    path = DEFAULT_POLICY_PATH if path is None else path
    data, raw = read_toml(path, "feature policy")
    root = PolicySection(path, "", data)
    tiers = parse_tiers(root.section("tiers"))
    rfm = parse_rfm(root.section("rfm"))
    lifecycle = parse_lifecycle(root.section("lifecycle"))
    items = _parse_items(root.optional_section("items"))
    value = parse_value(root.optional_section("value"))
    tags = parse_tags(path, root.table_list("tags", required=False), tiers, rfm)
    root.finish()
    if lifecycle.rule == "p_alive":
        if not value.enabled:
            raise ConfigError(
                f'{path}: lifecycle.rule: "p_alive" needs the value model; '
                'set [value] enabled = true or use rule = "days"'
            )
        lifecycle = replace(lifecycle, p_alive_below=value.at_risk_below)
    return FeaturePolicy(
        tiers=tiers,
        rfm=rfm,
        lifecycle=lifecycle,
        tags=tags,
        items=items,
        value=value,
        source=path,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _parse_items(sec: PolicySection | None) -> ItemPolicy:
    if sec is None:
        return ItemPolicy()
    policy = ItemPolicy(
        price_bands=sec.string_list("price_bands")
        if sec.has("price_bands")
        else ItemPolicy().price_bands
    )
    sec.finish()
    return policy


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
    "LifecyclePolicy",
    "RfmPolicy",
    "RfmSegmentRule",
    "TagRule",
    "Threshold",
    "TierLevel",
    "TierPolicy",
    "ValuePolicy",
    "load_policy",
]
