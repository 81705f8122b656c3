"""The ``[value]`` section of the feature policy: member value from customer-base models.

At every snapshot a BG/NBD model of repeat buying and a Gamma-Gamma model of spend per purchase
day are fitted (feature_store.value) and each member gets ``p_alive``, ``expected_orders_90d``,
``expected_spend_90d`` and ``clv``. This section says over how many months the lifetime value
runs, at which monthly discount rate, and below which ``p_alive`` a member counts as slipping
away (the early-warning list, and the lifecycle stage ``at_risk`` when ``[lifecycle] rule =
"p_alive"``). docs/features.md explains each key in a marketer's words; :class:`ValueTable` is
the ``[value]`` table of the policy file (feature_store.config_model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pydantic import Field, field_validator

from feature_store.config_model import ConfigModel

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


class ValueTable(ConfigModel):
    """The optional ``[value]`` table (absent: the defaults of :class:`ValuePolicy`)."""

    enabled: bool = True
    clv_months: int = Field(default=12, ge=1, le=120)
    monthly_discount: float = Field(default=0.01, ge=0, lt=1)
    at_risk_below: float = Field(default=0.5, gt=0, lt=1)
    fit_sample: int = Field(default=300_000, ge=0)

    @field_validator("fit_sample")
    @classmethod
    def _all_or_enough(cls, value: int) -> int:
        if 0 < value < 1_000:
            raise ValueError(f"must be 0 (all) or >= 1000, got {value}")
        return value

    def build(self) -> ValuePolicy:
        return ValuePolicy(
            enabled=self.enabled,
            clv_months=self.clv_months,
            monthly_discount=self.monthly_discount,
            at_risk_below=self.at_risk_below,
            fit_sample=self.fit_sample,
        )


__all__ = ["EXPECTED_HORIZON_DAYS", "ValuePolicy", "ValueTable"]
