"""Simulated campaigns: deterministic, shares as configured, segments that follow the features
(so uplift differs from propensity), and purchase lines in the canonical schema."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from feature_store.schema import PURCHASES
from feature_store.synthetic.campaigns import (
    SEGMENTS,
    CampaignSimConfig,
    ResponseModel,
    campaign_purchases,
    segment_probabilities,
    simulate_campaigns,
    synthetic_population,
)

POPULATION = synthetic_population(5_000, seed=2)
CFG = CampaignSimConfig(campaigns=3, seed=9, audience_share=0.6, holdout=0.25, items=100)


def test_deterministic() -> None:
    a, b = simulate_campaigns(POPULATION, CFG), simulate_campaigns(POPULATION, CFG)
    assert a.members.equals(b.members)
    assert a.campaigns.equals(b.campaigns)
    assert campaign_purchases(a, CFG, POPULATION).equals(campaign_purchases(b, CFG, POPULATION))
    assert synthetic_population(500, seed=1).equals(synthetic_population(500, seed=1))


def test_shares_and_truth() -> None:
    sim = simulate_campaigns(POPULATION, CFG)
    assert sim.campaigns.height == 3
    for row in sim.campaigns.iter_rows(named=True):
        part = sim.members.filter(pl.col("campaign_id") == row["campaign_id"])
        assert abs(part.height / POPULATION.height - 0.6) < 0.03
        assert abs(row["n_control"] / part.height - 0.25) < 0.03
        assert row["true_effect"] == pytest.approx(part.get_column("effect").mean())
        assert len(set(row["seed_items"])) == CFG.seed_items
    # seed items differ between campaigns while the catalogue allows
    seeds = [s for lst in sim.campaigns.get_column("seed_items").to_list() for s in lst]
    assert len(set(seeds)) == len(seeds)
    # planted effects per segment (defaults): persuadable +0.5, sleeping dog -0.3, others 0
    effect = sim.members.group_by("segment").agg(pl.col("effect").first())
    assert dict(effect.iter_rows()) == pytest.approx(
        {"persuadable": 0.5, "sure_thing": 0.0, "lost_cause": 0.0, "sleeping_dog": -0.3}
    )


def test_segments_follow_the_features() -> None:
    probs = segment_probabilities(POPULATION)
    assert probs.shape == (POPULATION.height, len(SEGMENTS))
    assert np.allclose(probs.sum(axis=1), 1.0)
    rfm = (
        POPULATION.select(pl.sum_horizontal("r_score", "f_score", "m_score")).to_series().to_numpy()
    )
    high, mid, low = rfm >= 13, (rfm >= 7) & (rfm <= 10), rfm <= 5
    sure, persuadable, lost = probs[:, 1], probs[:, 0], probs[:, 2]
    assert sure[high].mean() > sure[mid].mean() > sure[low].mean()
    assert persuadable[mid].mean() > max(persuadable[high].mean(), persuadable[low].mean())
    assert lost[low].mean() > lost[high].mean()
    with pytest.raises(KeyError, match="r_score"):
        segment_probabilities(POPULATION.drop("r_score"))


def test_any_population_with_the_features_works() -> None:
    own = pl.DataFrame(
        {
            "member_id": ["a", "b", "c", "d"], "r_score": [5, 1, 3, None], "f_score": [5, 1, 3, 2],
            "m_score": [5, 1, 3, 2], "tier": ["gold", "regular", "silver", None],
            "lifecycle": ["active", "churned", "at_risk", "new"],
        }
    )  # fmt: skip
    cfg = CampaignSimConfig(seed=1, items=20, responses=ResponseModel(persuadable=1.0))
    sim = simulate_campaigns(own, cfg)
    assert sim.members.height == 4
    assert campaign_purchases(sim, cfg).columns == list(PURCHASES.column_names)


def test_purchase_lines_are_canonical() -> None:
    sim = simulate_campaigns(POPULATION, CFG)
    lines = campaign_purchases(sim, CFG, POPULATION)
    assert lines.schema == pl.Schema(PURCHASES.polars_schema())
    assert (lines.get_column("quantity") != 0).all()
    assert ((lines.get_column("quantity") > 0) == (lines.get_column("amount") >= 0)).all()
    returns = lines.filter(pl.col("quantity") < 0)
    assert returns.height > 0
    # a return has its own order id
    sale_orders = set(lines.filter(pl.col("quantity") > 0).get_column("order_id").to_list())
    assert sale_orders.isdisjoint(returns.get_column("order_id").to_list())


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="holdout"):
        CampaignSimConfig(holdout=0.0)
    with pytest.raises(ValueError, match="items"):
        CampaignSimConfig(items=5, seed_items=5)
    with pytest.raises(ValueError, match="probabilities"):
        ResponseModel(persuadable=1.5).rates()
