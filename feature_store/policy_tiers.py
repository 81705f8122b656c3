"""The tier section of the feature policy: the ladder, what qualifies a member for each tier and
when members move up or down it (docs/features.md, "Tiers").

:meth:`TierPolicy.qualifying_tier` and :meth:`TierPolicy.growth_points` are the pure scalar rules
the batch transforms (feature_store.transforms.tiers) and the online updates share.
:class:`TiersTable` is the ``[tiers]`` table of the policy file (feature_store.config_model).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from feature_store.config_model import ConfigModel, ConfigValueError, Items, Text

Match = Literal["all", "any"]


class EvaluationPeriod(StrEnum):
    """How often tier downgrades are evaluated (at the first instant of each period)."""

    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"

    @property
    def months(self) -> int:
        return {"monthly": 1, "quarterly": 3, "yearly": 12}[self.value]


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


class TierLevelTable(ConfigModel):
    """A ``[[tiers.levels]]`` table."""

    name: Text
    min_spend: float | None = Field(default=None, ge=0)
    min_orders: int | None = Field(default=None, ge=0)
    min_growth_points: float | None = Field(default=None, ge=0)
    match: Match = "all"

    def build(self) -> TierLevel:
        return TierLevel(
            name=self.name,
            min_spend=self.min_spend,
            min_orders=self.min_orders,
            min_growth_points=self.min_growth_points,
            match=self.match,
        )


class TiersTable(ConfigModel):
    """The ``[tiers]`` table: ``[[tiers.levels]]`` lowest first, then the movement rules."""

    levels: Items[TierLevelTable] = Field(min_length=1)
    window_days: int = Field(default=365, ge=1)
    evaluation_period: Literal["monthly", "quarterly", "yearly"] = "yearly"
    period_start_month: int = Field(default=1, ge=1, le=12)
    protection_days: int = Field(default=365, ge=0)
    max_downgrade_steps: int = Field(default=1, ge=0)
    points_per_currency: float = Field(default=1.0, ge=0)
    points_per_order: float = Field(default=0.0, ge=0)

    @field_validator("levels")
    @classmethod
    def _a_ladder(cls, levels: tuple[TierLevelTable, ...]) -> tuple[TierLevelTable, ...]:
        """Names are unique; the lowest tier has no thresholds, every other tier has one."""
        seen: set[str] = set()
        for i, table in enumerate(levels):
            level = table.build()
            if level.name in seen:
                raise ConfigValueError(f"tier {level.name!r} is defined twice", i, "name")
            seen.add(level.name)
            if i == 0 and not level.is_base:
                raise ConfigValueError(
                    f"the lowest tier {level.name!r} must have no thresholds (everyone qualifies)",
                    i,
                )
            if i > 0 and level.is_base:
                raise ConfigValueError(
                    f"tier {level.name!r} needs at least one of min_spend, min_orders, "
                    "min_growth_points",
                    i,
                )
        return levels

    def build(self) -> TierPolicy:
        return TierPolicy(
            levels=tuple(level.build() for level in self.levels),
            window_days=self.window_days,
            evaluation_period=EvaluationPeriod(self.evaluation_period),
            period_start_month=self.period_start_month,
            protection_days=self.protection_days,
            max_downgrade_steps=self.max_downgrade_steps,
            points_per_currency=self.points_per_currency,
            points_per_order=self.points_per_order,
        )


__all__ = ["EvaluationPeriod", "Match", "TierLevel", "TierLevelTable", "TierPolicy", "TiersTable"]
