"""Simulated campaigns with a known truth: who was contacted, who would have bought anyway.

Each member of a campaign's audience belongs to one of four response **segments** (the standard
uplift-marketing typology), drawn afresh for every campaign with probabilities that depend on
the member's features:

=============== ================================ =======================================
segment         buys when not contacted / when   where they live (default segment model)
                contacted (``ResponseModel``)
=============== ================================ =======================================
persuadable     0 / ``persuadable``              mid engagement (RFM around the middle)
sure_thing      ``sure_thing`` / same            high engagement (high RFM, high tier)
lost_cause      0 / 0                            low engagement, churned members
sleeping_dog    ``sleeping_dog[0]`` / ``[1]``    lapsing members (``at_risk``), high tiers
=============== ================================ =======================================

So uplift (the effect of contacting) is learnable from the features and differs from propensity
(the chance of buying at all, highest for sure things, who gain nothing from a message).

**Engagement** e in [0, 1] is the mean of (r_score-1)/4, (f_score-1)/4 and (m_score-1)/4, plus a
small tier term; the segment log-odds are smooth functions of e, the tier rank and the lifecycle
stage (:func:`segment_probabilities`). Any population frame with ``member_id`` and the
:data:`FEATURES` columns works (scores 1..5, tier names from ``tiers``, lifecycle stages from
:data:`LIFECYCLE_STAGES`); :func:`synthetic_population` makes one.

Per campaign: the audience is a random share of the population; a random ``holdout`` share of
it is the control group (numpy RNG, not the production hash: this is a simulation); each member
gets a segment, the planted **individual effect** tau = P(buy | contacted) - P(buy | not) of that
segment, and a planted outcome ("converted": bought a seed item within the window).

**True effect** of a campaign (``true_effect``): the mean of tau over the campaign's audience
members (given their drawn segments): the sample average treatment effect that a randomised
comparison estimates. ``expected_effect`` averages over the segment draw too (the effect the
same audience would have on average).

:func:`campaign_purchases` turns the outcomes into canonical purchase lines: each converted member
buys one or two seed items (plus other items) at a random time in the window; every member also
has background orders of non-seed items spread from 30 days before the send to 30 days after the
window (independent of treatment, so "bought anything" and revenue carry noise); a share of seed
lines is returned later (negative quantity, own order id). A seed item is never bought outside
a conversion, so "bought a seed item in the window" recovers the planted outcome exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from feature_store.schema import DEFAULT_TIERS, PURCHASES, Col, conform

SEGMENTS: Final[tuple[str, ...]] = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
PERSUADABLE, SURE_THING, LOST_CAUSE, SLEEPING_DOG = 0, 1, 2, 3
LIFECYCLE_STAGES: Final[tuple[str, ...]] = ("new", "active", "at_risk", "churned")
#: member features the default segment model reads
FEATURES: Final[tuple[str, ...]] = ("r_score", "f_score", "m_score", "tier", "lifecycle")
AUDIENCE_SCORE: Final[str] = "audience_score"
_DAY_US: Final[int] = 86_400_000_000

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ResponseModel:
    """P(buy a seed item in the window) per segment: (not contacted, contacted)."""

    persuadable: float = 0.5
    sure_thing: float = 0.6
    sleeping_dog: tuple[float, float] = (0.4, 0.1)

    def rates(self) -> tuple[FloatArray, FloatArray]:
        """(P(buy | control), P(buy | treated)) indexed by segment code."""
        control = np.array([0.0, self.sure_thing, 0.0, self.sleeping_dog[0]])
        treated = np.array([self.persuadable, self.sure_thing, 0.0, self.sleeping_dog[1]])
        for p in (*control, *treated):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"response probabilities must be in [0, 1] (got {p})")
        return control, treated


@dataclass(frozen=True, slots=True)
class CampaignSimConfig:
    """How many campaigns, their audiences, groups, windows and purchase lines."""

    campaigns: int = 1
    seed: int = 0
    #: share of the population drawn into each campaign's audience
    audience_share: float = 1.0
    #: share of each audience held out as the control group
    holdout: float = 0.1
    responses: ResponseModel = field(default_factory=ResponseModel)
    tiers: tuple[str, ...] = DEFAULT_TIERS
    window_days: int = 30
    #: first send time (UTC); later campaigns follow every ``spacing_days``
    first_send: datetime = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
    spacing_days: int = 7
    #: catalogue size and seed items per campaign
    items: int = 500
    seed_items: int = 5
    #: expected background orders per member per 30 days (scaled by engagement)
    background_orders: float = 0.6
    #: share of seed lines returned later (negative quantity, own order id)
    return_share: float = 0.05

    def __post_init__(self) -> None:
        if self.campaigns < 1 or self.window_days < 1 or self.items <= self.seed_items:
            raise ValueError("need campaigns >= 1, window_days >= 1 and items > seed_items")
        if not 0.0 < self.audience_share <= 1.0 or not 0.0 < self.holdout < 1.0:
            raise ValueError("need audience_share in (0, 1] and holdout in (0, 1)")
        if self.first_send.tzinfo is None:
            raise ValueError("first_send must be timezone-aware (UTC)")


@dataclass(frozen=True, slots=True)
class SimulatedCampaigns:
    """The simulated campaigns and their truth."""

    #: campaign_id, sent_at (UTC), window_days, seed_items (list), n_treatment, n_control,
    #: true_effect, expected_effect, true_rate_treated, true_rate_control
    campaigns: pl.DataFrame
    #: campaign_id, member_id, group ("treatment" | "control"), treated, segment, p_control,
    #: p_treated, effect (tau), expected_effect, converted; one row per audience member
    members: pl.DataFrame
    item_ids: tuple[str, ...]


def synthetic_population(
    members: int, seed: int = 0, tiers: tuple[str, ...] = DEFAULT_TIERS
) -> pl.DataFrame:
    """A member population with RFM scores, tier, lifecycle and an audience score.

    Scores are correlated through a latent activity level; tiers follow monetary value;
    lifecycle follows recency. ``audience_score`` is a noisy propensity proxy (like today's
    audience ranking: high for members likely to buy anyway).
    """
    rng = np.random.default_rng(seed)
    activity = rng.normal(size=members)

    def score(noise: float) -> npt.NDArray[np.int8]:
        latent = activity + rng.normal(scale=noise, size=members)
        ranks = np.argsort(np.argsort(latent))
        return (1 + ranks * 5 // max(members, 1)).astype(np.int8)

    r, f, m = score(0.9), score(0.6), score(0.7)
    tier_latent = m + rng.normal(scale=0.8, size=members)
    cuts = np.quantile(tier_latent, [0.5, 0.75, 0.9, 0.97][: len(tiers) - 1])
    tier = np.searchsorted(cuts, tier_latent)
    lifecycle = np.select(
        [rng.random(members) < 0.06, r >= 3, r == 2], [0, 1, 2], default=3
    )  # new | active | at_risk | churned
    engagement = ((r - 1) + (f - 1) + (m - 1)) / 12.0
    audience = 1 / (1 + np.exp(-(5.0 * (engagement - 0.5) + rng.normal(scale=0.7, size=members))))
    width = max(6, len(str(members)))
    return pl.DataFrame(
        {
            Col.MEMBER_ID: [f"M{i:0{width}d}" for i in range(1, members + 1)],
            "r_score": r,
            "f_score": f,
            "m_score": m,
            "tier": np.asarray(tiers)[tier],
            "lifecycle": np.asarray(LIFECYCLE_STAGES)[lifecycle],
            AUDIENCE_SCORE: audience.astype(np.float64),
        }
    )


def segment_probabilities(
    population: pl.DataFrame, tiers: tuple[str, ...] = DEFAULT_TIERS
) -> FloatArray:
    """P(segment) per member, shape (members, 4), in :data:`SEGMENTS` order."""
    missing = [c for c in FEATURES if c not in population.columns]
    if missing:
        raise KeyError(f"population: missing feature column(s) {', '.join(missing)}")
    rfm = [
        population.get_column(c).fill_null(1).to_numpy().astype(np.float64) for c in FEATURES[:3]
    ]
    tier_rank = (
        population.get_column("tier").replace_strict(
            {t: i for i, t in enumerate(tiers)}, default=0, return_dtype=pl.Int64
        )
    ).to_numpy() / max(len(tiers) - 1, 1)
    stage = population.get_column("lifecycle").fill_null("active").to_numpy()
    at_risk, churned = (stage == "at_risk").astype(float), (stage == "churned").astype(float)
    e = np.clip((sum(rfm) - 3.0) / 12.0 * 0.85 + 0.15 * tier_rank, 0.0, 1.0)
    logits = np.column_stack(
        [
            1.2 - 14.0 * (e - 0.5) ** 2,  # persuadable: mid engagement
            -2.0 + 5.0 * e + 1.0 * tier_rank,  # sure thing: high engagement
            1.5 - 6.0 * e + 1.5 * churned,  # lost cause: low engagement, churned
            -2.2 + 2.5 * at_risk + 1.5 * tier_rank,  # sleeping dog: lapsing, high tiers
        ]
    )
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return np.asarray(weights / weights.sum(axis=1, keepdims=True), dtype=np.float64)


def simulate_campaigns(population: pl.DataFrame, cfg: CampaignSimConfig) -> SimulatedCampaigns:
    """Simulate ``cfg.campaigns`` sends to random audiences drawn from ``population``."""
    rng = np.random.default_rng(cfg.seed)
    probs = segment_probabilities(population, cfg.tiers)
    p_control, p_treated = cfg.responses.rates()
    expected_tau = probs @ (p_treated - p_control)
    ids = population.get_column(Col.MEMBER_ID).to_numpy()
    width = max(6, len(str(cfg.items)))
    item_ids = tuple(f"I{i:0{width}d}" for i in range(1, cfg.items + 1))
    cumulative = probs.cumsum(axis=1)
    cumulative[:, -1] = 1.0
    # seed items: disjoint between campaigns while the catalogue allows, wrapping around after
    order = rng.permutation(cfg.items)
    seed_rows = order[np.arange(cfg.campaigns * cfg.seed_items) % cfg.items].reshape(
        cfg.campaigns, cfg.seed_items
    )

    member_parts: list[pl.DataFrame] = []
    campaign_rows: list[dict[str, object]] = []
    for k in range(cfg.campaigns):
        campaign_id = f"sim-{cfg.seed}-{k + 1:04d}"
        rows = np.flatnonzero(rng.random(ids.size) < cfg.audience_share)
        treated = rng.random(rows.size) >= cfg.holdout
        segment = (rng.random(rows.size)[:, None] > cumulative[rows]).sum(axis=1)
        pc, pt = p_control[segment], p_treated[segment]
        converted = rng.random(rows.size) < np.where(treated, pt, pc)
        tau = pt - pc
        seeds = seed_rows[k]
        campaign_rows.append(
            {
                "campaign_id": campaign_id,
                "sent_at": cfg.first_send + timedelta(days=k * cfg.spacing_days),
                "window_days": cfg.window_days,
                "seed_items": [item_ids[i] for i in sorted(seeds)],
                "n_treatment": int(treated.sum()),
                "n_control": int((~treated).sum()),
                "true_effect": float(tau.mean()) if rows.size else 0.0,
                "expected_effect": float(expected_tau[rows].mean()) if rows.size else 0.0,
                "true_rate_treated": float(pt.mean()) if rows.size else 0.0,
                "true_rate_control": float(pc.mean()) if rows.size else 0.0,
            }
        )
        member_parts.append(
            pl.DataFrame(
                {
                    "campaign_id": np.full(rows.size, campaign_id),
                    Col.MEMBER_ID: ids[rows],
                    "group": np.where(treated, "treatment", "control"),
                    "treated": treated,
                    "segment": np.asarray(SEGMENTS)[segment],
                    "p_control": pc,
                    "p_treated": pt,
                    "effect": tau,
                    "expected_effect": expected_tau[rows],
                    "converted": converted,
                },
                schema_overrides={"campaign_id": pl.String, Col.MEMBER_ID: pl.String},
            )
        )
    campaigns = pl.DataFrame(campaign_rows, schema_overrides={"sent_at": pl.Datetime("us", "UTC")})
    return SimulatedCampaigns(campaigns, pl.concat(member_parts), item_ids)


def campaign_purchases(
    sim: SimulatedCampaigns,
    cfg: CampaignSimConfig,
    population: pl.DataFrame | None = None,
    seed: int | None = None,
) -> pl.DataFrame:
    """Canonical purchase lines for the simulated campaigns (see the module docstring).

    Timestamps are naive, in UTC (the data time zone of the simulation). Background orders
    scale with engagement when ``population`` (with the RFM scores) is given.
    """
    rng = np.random.default_rng(cfg.seed + 1 if seed is None else seed)
    members = sim.members.join(
        sim.campaigns.select("campaign_id", "sent_at"),
        on="campaign_id",
        how="left",
        maintain_order="left",
    )
    n = members.height
    send_us = (
        members.get_column("sent_at").dt.replace_time_zone(None).dt.epoch("us").to_numpy()
    ).astype(np.int64)
    window_us = cfg.window_days * _DAY_US
    price = np.round(rng.lognormal(np.log(6.0), 0.7, size=cfg.items), 2)

    # conversions: one order with one or two seed lines, sometimes another item
    item_index = {item: i for i, item in enumerate(sim.item_ids)}
    seed_matrix = np.array(
        [[item_index[s] for s in lst] for lst in sim.campaigns.get_column("seed_items").to_list()]
    )
    campaign_no = _campaign_numbers(members, sim.campaigns)
    seeds_all = np.unique(seed_matrix)
    others = np.setdiff1d(np.arange(len(sim.item_ids)), seeds_all)
    if others.size == 0:
        raise ValueError("every item is a seed item: raise CampaignSimConfig.items")

    def pick_seed(rows: IntArray) -> IntArray:
        col = rng.integers(0, seed_matrix.shape[1], size=rows.size)
        return np.asarray(seed_matrix[campaign_no[rows], col], dtype=np.int64)

    conv = np.flatnonzero(members.get_column("converted").to_numpy())
    conv_ts = send_us[conv] + rng.integers(0, window_us, size=conv.size)
    lines = [(conv, conv_ts, pick_seed(conv), 0)]
    two = conv[rng.random(conv.size) < 0.3]
    lines.append((two, conv_ts[np.searchsorted(conv, two)], pick_seed(two), 0))

    # background orders (non-seed items) from 30 days before the send to 30 days after the window
    activity = np.ones(n)
    if population is not None and "f_score" in population.columns:
        f = members.select(Col.MEMBER_ID).join(
            population.select(Col.MEMBER_ID, "f_score"), on=Col.MEMBER_ID, how="left"
        )
        activity = f.get_column("f_score").fill_null(1).to_numpy() / 3.0
    span_days = cfg.window_days + 60
    counts = rng.poisson(cfg.background_orders * activity * span_days / 30.0)
    who = np.repeat(np.arange(n), counts)
    bg_ts = send_us[who] - 30 * _DAY_US + rng.integers(0, span_days * _DAY_US, size=who.size)
    lines.append((who, bg_ts, others[rng.integers(0, others.size, size=who.size)], 1))
    extra = conv[rng.random(conv.size) < 0.4]
    lines.append(
        (
            extra,
            conv_ts[np.searchsorted(conv, extra)],
            others[rng.integers(0, others.size, extra.size)],
            0,
        )
    )

    # order numbers: conversion lines share one order per member; background lines their own
    row = np.concatenate([x[0] for x in lines])
    ts = np.concatenate([x[1] for x in lines])
    item = np.concatenate([x[2] for x in lines])
    kind = np.concatenate([np.full(x[0].size, x[3]) for x in lines])
    order_key = np.where(kind == 0, row, n + np.arange(row.size))
    _, order_no = np.unique(order_key, return_inverse=True)
    quantity = 1 + rng.poisson(0.3, size=row.size)
    amount = np.round(quantity * price[item], 2)

    # returns of some seed lines, within 10 days, as their own orders
    is_seed = np.isin(item, seeds_all)
    back = np.flatnonzero(is_seed & (rng.random(row.size) < cfg.return_share))
    ret_ts = ts[back] + rng.integers(_DAY_US // 24, 10 * _DAY_US, size=back.size)
    order_no = np.concatenate([order_no, order_no.max(initial=-1) + 1 + np.arange(back.size)])
    row, item = np.concatenate([row, row[back]]), np.concatenate([item, item[back]])
    ts = np.concatenate([ts, ret_ts])
    quantity = np.concatenate([quantity, -quantity[back]])
    amount = np.concatenate([amount, -amount[back]])

    rows = pl.Series(row, dtype=pl.Int64)
    frame = pl.DataFrame(
        {
            Col.ORDER_ID: pl.select(
                pl.lit("S")
                + pl.lit(pl.Series(order_no, dtype=pl.Int64)).cast(pl.String).str.zfill(9)
            ).to_series(),
            Col.MEMBER_ID: members.get_column(Col.MEMBER_ID).gather(rows),
            Col.ITEM_ID: pl.Series(sim.item_ids, dtype=pl.String).gather(
                pl.Series(item, dtype=pl.Int64)
            ),
            Col.TS: pl.Series(ts, dtype=pl.Int64).cast(pl.Datetime("us")),
            Col.QUANTITY: quantity.astype(np.int64),
            Col.AMOUNT: amount.astype(np.float64),
        }
    )
    return conform(frame, PURCHASES).sort(Col.TS, Col.ORDER_ID)


def _campaign_numbers(members: pl.DataFrame, campaigns: pl.DataFrame) -> IntArray:
    """Each member row's campaign as a row number of ``campaigns``."""
    numbers = campaigns.select("campaign_id").with_row_index("__no")
    joined = members.select("campaign_id").join(
        numbers, on="campaign_id", how="left", maintain_order="left"
    )
    return joined.get_column("__no").to_numpy().astype(np.int64)
