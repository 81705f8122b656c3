"""The lifecycle section of the feature policy: a member's stage (new, active, at risk, churned)
from their own purchase rhythm (docs/features.md, "Lifecycle").

:meth:`LifecyclePolicy.stage` is the pure scalar rule the batch transform
(feature_store.transforms.lifecycle) and the online updates share. :class:`LifecycleTable` is
the ``[lifecycle]`` table of the policy file (feature_store.config_model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Self, get_args

from pydantic import Field, model_validator

from feature_store.config_model import ConfigModel, ConfigValueError

#: Lifecycle stages, in the order of a member's life.
LIFECYCLE_STAGES: Final[tuple[str, ...]] = ("new", "active", "at_risk", "churned")

#: How ``at_risk`` is decided: by day windows, or by the value model's ``p_alive``.
LifecycleRule = Literal["days", "p_alive"]
LIFECYCLE_RULES: Final[tuple[str, ...]] = get_args(LifecycleRule)


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

    With ``rule = "p_alive"`` the day windows decide only ``churned``; a member not churned is
    ``at_risk`` when the value model's ``p_alive`` is below ``p_alive_below`` (the policy's
    ``[value] at_risk_below``), else ``active``. A member without ``p_alive`` (value model off
    or not fitted) falls back to the day windows.
    """

    new_days: int
    default_interval_days: float
    active: Threshold
    churn: Threshold
    rule: LifecycleRule = "days"
    p_alive_below: float = 0.5

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
        p_alive: float | None = None,
    ) -> str:
        """One of ``new``, ``active``, ``at_risk``, ``churned``."""
        if days_since_joined < self.new_days:
            return "new"
        if n_orders <= 0 or days_since_last_purchase is None:
            return "churned"
        interval = self.interval(avg_interpurchase_days, n_orders)
        churn_days = max(self.churn.days(interval), self.active.days(interval))
        if self.rule == "p_alive" and p_alive is not None:
            if days_since_last_purchase > churn_days:
                return "churned"
            return "at_risk" if p_alive < self.p_alive_below else "active"
        if days_since_last_purchase <= self.active.days(interval):
            return "active"
        if days_since_last_purchase <= churn_days:
            return "at_risk"
        return "churned"


class ThresholdTable(ConfigModel):
    """``[lifecycle.active]`` or ``[lifecycle.churn]``."""

    multiplier: float = Field(ge=0)
    floor_days: float = Field(ge=0)
    cap_days: float = Field(ge=0)

    @model_validator(mode="after")
    def _cap_above_floor(self) -> Self:
        if self.cap_days < self.floor_days:
            raise ConfigValueError(
                f"must be >= floor_days ({self.floor_days:g}), got {self.cap_days:g}", "cap_days"
            )
        return self

    def build(self) -> Threshold:
        return Threshold(
            multiplier=self.multiplier, floor_days=self.floor_days, cap_days=self.cap_days
        )


class LifecycleTable(ConfigModel):
    """The ``[lifecycle]`` table; the churn limits may not be below the active ones."""

    new_days: int = Field(default=30, ge=0)
    default_interval_days: float = Field(default=60.0, gt=0)
    active: ThresholdTable
    churn: ThresholdTable
    rule: LifecycleRule = "days"

    @model_validator(mode="after")
    def _churn_after_active(self) -> Self:
        active, churn = self.active, self.churn
        if churn.floor_days < active.floor_days or churn.cap_days < active.cap_days:
            raise ConfigValueError(
                "floor_days and cap_days must be >= those of lifecycle.active", "churn"
            )
        if churn.multiplier < active.multiplier:
            raise ConfigValueError("must be >= lifecycle.active.multiplier", "churn", "multiplier")
        return self

    def build(self) -> LifecyclePolicy:
        """The policy (feature_store.policy sets ``p_alive_below`` from ``[value]``)."""
        return LifecyclePolicy(
            new_days=self.new_days,
            default_interval_days=self.default_interval_days,
            active=self.active.build(),
            churn=self.churn.build(),
            rule=self.rule,
        )


__all__ = [
    "LIFECYCLE_RULES",
    "LIFECYCLE_STAGES",
    "LifecyclePolicy",
    "LifecycleRule",
    "LifecycleTable",
    "Threshold",
    "ThresholdTable",
]
