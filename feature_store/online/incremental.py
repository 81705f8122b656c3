"""Apply one purchase line to a member's profile: the pure rules behind ``apply_purchase``.

The rules follow docs/feature_snapshot.md so that a profile updated online agrees with what the
next snapshot computes, with these documented limits:

- "Order" means a purchase order (net quantity > 0). Whether an event's order is new is decided
  from the member's recent purchase lines (the last 50): the order's earlier lines are there
  unless 50 newer lines pushed them out.
- Window sums (``spend_window``, ``orders_window``, ``growth_points``, ``frequency``,
  ``monetary``) only grow online: purchases that age out of a window leave it at the next
  snapshot. Tiers only go up online (downgrades happen at evaluation periods, offline).
- ``return_rate``, ``tags``, ``top_categories`` and the CRM fields keep their snapshot values.
- Day counts (``recency_days``, ``days_since_last_purchase``, ``days_since_joined``) are recounted
  to the profile's new ``as_of``: the later of its previous ``as_of`` and the event's time.
- Member value: each line of a purchase order updates the member's value statistics
  (``purchase_days``, ``repeat_day_spend``, first and last purchase day;
  feature_store.value.MemberValueStats), and ``p_alive``, ``expected_orders_90d``,
  ``expected_spend_90d`` and ``clv`` are recomputed with the snapshot's fitted model (no refit),
  as of the day after the member's latest purchase day (or the profile's ``as_of`` day if
  later). A line dated before the member's last purchase day leaves the statistics to the next
  snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from typing import Final

from feature_store.online.errors import OnlineStoreError
from feature_store.online.profile import (
    FieldChange,
    MemberProfile,
    PurchaseEvent,
    RecentPurchase,
)
from feature_store.policy import EXPECTED_HORIZON_DAYS, FeaturePolicy
from feature_store.value.fit import ValueParams
from feature_store.value.scoring import score_member
from feature_store.value.summary import MemberValueStats

#: How many purchase lines a member's recent list keeps (the snapshot keeps the same number).
RECENT_CAP: Final[int] = 50
_SECONDS_PER_DAY: Final[float] = 86_400.0


@dataclass(frozen=True, slots=True)
class RfmBounds:
    """The snapshot's ``rfm_score_bounds``: 4 bounds each (scores 2..5), None when unreached."""

    recency_days: tuple[float | None, ...]
    frequency: tuple[float | None, ...]
    monetary: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class UpdateContext:
    """What an update needs besides the member's own data: the policy the snapshot was built
    with and the snapshot's RFM score bounds."""

    policy: FeaturePolicy
    rfm_bounds: RfmBounds
    #: the snapshot's fitted member-value model (None: value fields stay null)
    value_params: ValueParams | None = None
    recent_cap: int = RECENT_CAP


def new_member_profile(member_id: str, joined_at: datetime, ctx: UpdateContext) -> MemberProfile:
    """A member the snapshot does not know: joined at their first event, lowest tier, no history."""
    base = ctx.policy.tiers.base
    return MemberProfile(
        member_id=member_id,
        joined_at=joined_at,
        tier=base,
        tier_source="policy",
        policy_tier=base,
        tier_since=joined_at,
        spend_window=0.0,
        orders_window=0,
        growth_points=0.0,
        recency_days=None,
        frequency=0,
        monetary=0.0,
        r_score=None,
        f_score=None,
        m_score=None,
        rfm_segment=None,
        lifecycle=ctx.policy.lifecycle.stage(0, None, None, 0),
        days_since_last_purchase=None,
        avg_interpurchase_days=None,
        first_purchase_at=None,
        last_purchase_at=None,
        n_orders=0,
        total_spend=0.0,
        return_rate=0.0,
        days_since_joined=0,
        tags=(),
        top_categories=(),
        region=None,
        points_balance=None,
        birth_month=None,
        purchase_days=0,
        repeat_day_spend=0.0,
        p_alive=None,
        expected_orders_90d=None,
        expected_spend_90d=None,
        clv=None,
        as_of=joined_at,
    )


def _whole_days(later: datetime, earlier: datetime) -> int:
    return (later - earlier).days


def _rank(ctx: UpdateContext, tier: str, member_id: str) -> int:
    try:
        return ctx.policy.tiers.rank(tier)
    except ValueError as exc:
        raise OnlineStoreError(
            f"member {member_id!r}: {exc} (policy {ctx.policy.source}); materialize a snapshot "
            "built with the same policy as the store uses"
        ) from None


def _scores(profile: MemberProfile, bounds: RfmBounds) -> tuple[int | None, int | None, int | None]:
    if profile.n_orders <= 0:
        return None, None, None
    if profile.frequency <= 0 or profile.recency_days is None:
        return 1, 1, 1
    r = 1 + sum(1 for b in bounds.recency_days if b is not None and profile.recency_days <= b)
    f = 1 + sum(1 for b in bounds.frequency if b is not None and b <= profile.frequency)
    m = 1 + sum(1 for b in bounds.monetary if b is not None and b <= profile.monetary)
    return r, f, m


def _value_stats(profile: MemberProfile) -> MemberValueStats:
    first, last = profile.first_purchase_at, profile.last_purchase_at
    if profile.purchase_days <= 0 or first is None or last is None:
        return MemberValueStats()
    return MemberValueStats(
        profile.purchase_days, first.date(), last.date(), profile.repeat_day_spend
    )


def value_as_of(as_of: datetime, last_day: date | None) -> date:
    """The (exclusive) date member value is computed as of: ``as_of``'s day, or the day after
    the last purchase day when that is later (a purchase today counts today)."""
    day = as_of.date()
    if last_day is not None and last_day >= day:
        day = last_day + timedelta(days=1)
    return day


def with_value(profile: MemberProfile, ctx: UpdateContext) -> MemberProfile:
    """``profile`` with its value fields recomputed from its statistics (no refit)."""
    params = ctx.value_params
    stats = _value_stats(profile)
    if params is None or stats.purchase_days <= 0:
        return replace(
            profile, p_alive=None, expected_orders_90d=None, expected_spend_90d=None, clv=None
        )
    value = ctx.policy.value
    score = score_member(
        params,
        *stats.inputs(value_as_of(profile.as_of, stats.last_day)),
        horizon_days=EXPECTED_HORIZON_DAYS,
        clv_months=value.clv_months,
        monthly_discount=value.monthly_discount,
    )
    return replace(
        profile,
        p_alive=score.p_alive,
        expected_orders_90d=score.expected_orders,
        expected_spend_90d=score.expected_spend,
        clv=score.clv,
    )


def apply_event(
    profile: MemberProfile,
    recent: list[RecentPurchase],
    event: PurchaseEvent,
    ctx: UpdateContext,
) -> tuple[MemberProfile, list[RecentPurchase]]:
    """The member's profile and recent lines after ``event`` (inputs are not modified)."""
    policy = ctx.policy
    net_before = sum(line.quantity for line in recent if line.order_id == event.order_id)
    net_after = net_before + event.quantity
    orders_delta = int(net_after > 0) - int(net_before > 0)
    is_purchase_order = event.quantity > 0 and net_after > 0

    first, last = profile.first_purchase_at, profile.last_purchase_at
    if is_purchase_order:
        first = event.ts if first is None else min(first, event.ts)
        last = event.ts if last is None else max(last, event.ts)
    n_orders = profile.n_orders + orders_delta
    avg_gap = (
        (last - first).total_seconds() / _SECONDS_PER_DAY / (n_orders - 1)
        if n_orders >= 2 and first is not None and last is not None
        else None
    )
    spend_window = profile.spend_window + event.amount
    orders_window = profile.orders_window + orders_delta
    growth_points = profile.growth_points + policy.tiers.growth_points(event.amount, orders_delta)
    stats = _value_stats(profile)
    if is_purchase_order:
        stats = stats.add_purchase(event.ts.date(), event.amount)

    as_of = max(profile.as_of, event.ts)
    since_last = None if last is None else _whole_days(as_of, last)
    in_rfm_window = last is not None and last >= as_of - timedelta(days=policy.rfm.window_days)

    updated = replace(
        profile,
        spend_window=spend_window,
        orders_window=orders_window,
        growth_points=growth_points,
        frequency=profile.frequency + orders_delta,
        monetary=profile.monetary + event.amount,
        n_orders=n_orders,
        total_spend=profile.total_spend + event.amount,
        first_purchase_at=first,
        last_purchase_at=last,
        avg_interpurchase_days=avg_gap,
        as_of=as_of,
        days_since_joined=_whole_days(as_of, profile.joined_at),
        days_since_last_purchase=since_last,
        recency_days=since_last if in_rfm_window else None,
        purchase_days=stats.purchase_days,
        repeat_day_spend=stats.repeat_spend,
    )
    updated = with_value(updated, ctx)

    # Tiers: upgrade only, as soon as the window figures qualify.
    qualifying = policy.tiers.qualifying_tier(spend_window, orders_window, growth_points)
    rank_q = _rank(ctx, qualifying, profile.member_id)
    if rank_q > _rank(ctx, profile.policy_tier, profile.member_id):
        updated = replace(updated, policy_tier=qualifying, tier_since=event.ts)
    if rank_q > _rank(ctx, profile.tier, profile.member_id):
        updated = replace(updated, tier=qualifying, tier_source="policy")

    r, f, m = _scores(updated, ctx.rfm_bounds)
    updated = replace(
        updated,
        r_score=r,
        f_score=f,
        m_score=m,
        rfm_segment=None if r is None or f is None or m is None else policy.rfm.segment(r, f, m),
        lifecycle=policy.lifecycle.stage(
            updated.days_since_joined, since_last, avg_gap, n_orders, updated.p_alive
        ),
    )
    lines = sorted([event.line(), *recent], key=lambda line: line.ts, reverse=True)
    return updated, lines[: ctx.recent_cap]


def profile_changes(old: MemberProfile, new: MemberProfile) -> dict[str, FieldChange]:
    """Fields whose value differs, with both values."""
    out: dict[str, FieldChange] = {}
    for f in fields(MemberProfile):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a != b:
            out[f.name] = FieldChange(a, b)
    return out


__all__ = [
    "RECENT_CAP",
    "RfmBounds",
    "UpdateContext",
    "apply_event",
    "new_member_profile",
    "profile_changes",
    "value_as_of",
    "with_value",
]
