"""The tier section of the feature policy: the ladder, what qualifies a member for each tier and
when members move up or down it (docs/features.md, "Tiers").

:meth:`TierPolicy.qualifying_tier` and :meth:`TierPolicy.growth_points` are the pure scalar rules
the batch transforms (feature_store.transforms.tiers) and the online updates share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from feature_store.policy_toml import PolicySection

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


def parse_tiers(sec: PolicySection) -> TierPolicy:
    """The ``[tiers]`` table: ``[[tiers.levels]]`` lowest first, then the movement rules."""
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


__all__ = ["EvaluationPeriod", "Match", "TierLevel", "TierPolicy", "parse_tiers"]
