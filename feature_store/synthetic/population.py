"""Members: taste clusters, heavy-tailed activity, lifecycle windows, tiers, birthdays and tags."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feature_store.synthetic.calendar import SECONDS_PER_DAY, Calendar
from feature_store.synthetic.catalog import allocate
from feature_store.synthetic.config import SynthConfig
from feature_store.synthetic.taste import Taste

#: lifecycle status per member, as written to the ground truth
STATUSES: tuple[str, ...] = ("established", "new", "churned")
ESTABLISHED, NEW, CHURNED = 0, 1, 2
#: a churned member was active for at least this many days
_MIN_ACTIVE_DAYS = 30
#: members who joined before the history did so up to this many days earlier
_MAX_TENURE_DAYS = 5 * 365

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolMatrix = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Population:
    primary: IntArray
    secondary: IntArray
    primary_weight: FloatArray
    #: relative purchase rate per unit of seasonal volume
    rate: FloatArray
    #: expected share of all purchase lines (rate x seasonal volume of the active window)
    planned: FloatArray
    #: seconds since the epoch
    joined_at: IntArray
    #: first and last active day (inclusive), in calendar days
    first_day: IntArray
    last_day: IntArray
    status: npt.NDArray[np.int8]
    #: index into cfg.tiers
    tier: npt.NDArray[np.int8]
    #: eligibility level for exclusive items (0 = none)
    level: IntArray
    birth_date: npt.NDArray[np.datetime64]
    region: IntArray
    #: planted category shares, shape (members, categories)
    category_share: npt.NDArray[np.float32]
    #: loves-<category> tags, shape (members, categories)
    loves: BoolMatrix
    #: CRM tags, shape (members, len(cfg.crm_tags))
    crm: BoolMatrix

    @property
    def size(self) -> int:
        return int(self.primary.size)


def build_population(
    cfg: SynthConfig, taste: Taste, calendar: Calendar, rng: np.random.Generator
) -> Population:
    n, K, S = cfg.members, taste.clusters, calendar.days

    primary = rng.choice(K, size=n, p=taste.prevalence).astype(np.int64)
    secondary = (primary + 1 + rng.integers(0, max(K - 1, 1), size=n)) % K if K > 1 else primary
    lo, hi = cfg.primary_weight
    primary_weight = rng.uniform(lo, hi, size=n)

    # Lifecycle: joined before the history, during it, or recently; some of the others churn.
    u = rng.random(n)
    is_new = u < cfg.new_member_share
    before = ~is_new & (u < cfg.new_member_share + cfg.joined_before_share)
    recent_start = S - cfg.new_member_days
    first_day = np.where(
        before,
        0,
        np.where(
            is_new,
            rng.integers(recent_start, S, size=n),
            rng.integers(0, max(recent_start, 1), size=n),
        ),
    ).astype(np.int64)
    joined_day = np.where(before, -rng.integers(1, _MAX_TENURE_DAYS + 1, size=n), first_day)
    # Joined before opening time on their first day, so no purchase precedes joining.
    joined_at = (
        calendar.start_seconds
        + joined_day * SECONDS_PER_DAY
        + rng.integers(0, cfg.opening_hour * 3_600, size=n)
    )

    latest_churn = S - 1 - cfg.churn_gap_days
    can_churn = ~is_new & (first_day + _MIN_ACTIVE_DAYS <= latest_churn)
    churned = can_churn & (rng.random(n) < cfg.churn_share)
    churn_day = rng.integers(
        np.minimum(first_day + _MIN_ACTIVE_DAYS, latest_churn), max(latest_churn, 0) + 1
    )
    last_day = np.where(churned, churn_day, S - 1).astype(np.int64)
    status = np.where(is_new, NEW, np.where(churned, CHURNED, ESTABLISHED)).astype(np.int8)

    # Heavy-tailed activity; tiers from planned activity quantiles.
    rate = rng.lognormal(0.0, cfg.activity_sigma, size=n)
    planned = rate * (calendar.cdf[last_day + 1] - calendar.cdf[first_day])
    planned /= planned.sum()
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(planned, kind="stable")] = np.arange(n)
    tier_counts = allocate(n, np.asarray(cfg.tier_shares, dtype=np.float64))
    tier = np.searchsorted(np.cumsum(tier_counts), rank, side="right").astype(np.int8)
    exclusive_rank = np.array([cfg.tiers.index(t) for t in cfg.exclusive_tiers], dtype=np.int8)
    level = (tier[:, None] >= exclusive_rank[None, :]).sum(axis=1).astype(np.int64)

    age_days = np.round(np.clip(rng.normal(cfg.age_mean, cfg.age_sd, size=n), 18, 90) * 365.25)
    birth_date = np.datetime64(cfg.end_date, "D") - age_days.astype("timedelta64[D]")
    region_p = np.array([p for _, p in cfg.regions], dtype=np.float64)
    region = rng.choice(region_p.size, size=n, p=region_p / region_p.sum()).astype(np.int64)

    w = primary_weight[:, None]
    category_share = (
        w * taste.category_share[primary] + (1 - w) * taste.category_share[secondary]
    ).astype(np.float32)
    loves = category_share >= cfg.loves_threshold
    percentile = rank / max(n - 1, 1)
    crm = (
        np.column_stack(
            [rng.random(n) < base + extra * percentile for _, base, extra in cfg.crm_tags]
        )
        if cfg.crm_tags
        else np.zeros((n, 0), dtype=np.bool_)
    )

    return Population(
        primary=primary,
        secondary=secondary,
        primary_weight=primary_weight,
        rate=rate,
        planned=planned,
        joined_at=joined_at,
        first_day=first_day,
        last_day=last_day,
        status=status,
        tier=tier,
        level=level,
        birth_date=birth_date,
        region=region,
        category_share=category_share,
        loves=loves,
        crm=crm,
    )
