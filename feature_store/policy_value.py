"""The ``[value]`` section of the feature policy: member value from customer-base models.

At every snapshot a BG/NBD model of repeat buying and a Gamma-Gamma model of spend per purchase
day are fitted (feature_store.value) and each member gets ``p_alive``, ``expected_orders_90d``,
``expected_spend_90d`` and ``clv``. This section says over how many months the lifetime value
runs, at which monthly discount rate, and below which ``p_alive`` a member counts as slipping
away (the early-warning list, and the lifecycle stage ``at_risk`` when ``[lifecycle] rule =
"p_alive"``). docs/features.md explains each key in a marketer's words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from feature_store.policy_toml import PolicySection

#: The horizon of ``expected_orders_90d`` and ``expected_spend_90d`` (their names say it).
EXPECTED_HORIZON_DAYS: Final[int] = 90


@dataclass(frozen=True, slots=True)
class ValuePolicy:
    """How member value is computed (docs/features.md, "Member value")."""

    #: Fit the models at every snapshot; False leaves the value columns null.
    enabled: bool = True
    #: Months of purchases the lifetime value counts (30-day months).
    clv_months: int = 12
    #: Discount per month applied to future spend (0.01 = 1% a month).
    monthly_discount: float = 0.01
    #: A member whose ``p_alive`` is below this is "slipping away" (early warning list).
    at_risk_below: float = 0.5
    #: At most this many members (a seeded random sample) are used to fit the models; every
    #: member is scored. 0 = fit on all members.
    fit_sample: int = 300_000


def parse_value(sec: PolicySection | None) -> ValuePolicy:
    """The optional ``[value]`` table (absent: the defaults)."""
    if sec is None:
        return ValuePolicy()
    default = ValuePolicy()
    enabled = sec.raw("enabled") if sec.has("enabled") else default.enabled
    if not isinstance(enabled, bool):
        raise sec.error("enabled", f"must be true or false, got {enabled!r}")
    policy = ValuePolicy(
        enabled=enabled,
        clv_months=sec.integer("clv_months", default.clv_months, minimum=1, maximum=120),
        monthly_discount=sec.number("monthly_discount", default.monthly_discount, minimum=0),
        at_risk_below=sec.number("at_risk_below", default.at_risk_below, above=0),
        fit_sample=sec.integer("fit_sample", default.fit_sample, minimum=0),
    )
    if policy.monthly_discount >= 1:
        raise sec.error("monthly_discount", f"must be < 1, got {policy.monthly_discount!r}")
    if policy.at_risk_below >= 1:
        raise sec.error("at_risk_below", f"must be < 1, got {policy.at_risk_below!r}")
    if 0 < policy.fit_sample < 1_000:
        raise sec.error("fit_sample", f"must be 0 (all) or >= 1000, got {policy.fit_sample}")
    sec.finish()
    return policy


__all__ = ["EXPECTED_HORIZON_DAYS", "ValuePolicy", "parse_value"]
