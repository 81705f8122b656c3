"""The report's 95% interval for the incremental conversion covers the planted true effect.

200 simulated campaigns (feature_store.synthetic.campaigns) go through the whole path: purchase
lines -> outcome extraction -> report. The **true effect** of a campaign is the mean planted
individual effect tau = P(buy | contacted) - P(buy | not) over the campaign's audience members,
given the segments drawn for them (the sample average treatment effect that a randomised
comparison estimates; with potential outcomes fixed by the segments, the interval is slightly
conservative for it). Target: coverage >= 93%.
"""

from __future__ import annotations

import polars as pl

from engine.campaigns import CampaignFacts, GroupOutcomes, build_report
from feature_store.campaigns import member_outcomes
from feature_store.synthetic.campaigns import (
    CampaignSimConfig,
    campaign_purchases,
    simulate_campaigns,
    synthetic_population,
)

CAMPAIGNS = 200


def test_interval_coverage_over_200_campaigns() -> None:
    population = synthetic_population(2_000, seed=11)
    cfg = CampaignSimConfig(
        campaigns=CAMPAIGNS, seed=12, audience_share=0.5, holdout=0.2, items=1_200,
        spacing_days=1, background_orders=0.3,
    )  # fmt: skip
    sim = simulate_campaigns(population, cfg)
    purchases = campaign_purchases(sim, cfg, population).lazy()
    members = sim.members.partition_by("campaign_id", as_dict=True, include_key=False)
    covered = covered_expected = 0
    for campaign in sim.campaigns.iter_rows(named=True):
        group = members[(campaign["campaign_id"],)].select("member_id", "group")
        out = member_outcomes(
            purchases, group, sent_at=campaign["sent_at"], window_days=cfg.window_days,
            seed_items=campaign["seed_items"],
        )  # fmt: skip
        facts = CampaignFacts(campaign["campaign_id"], campaign["sent_at"], cfg.window_days)
        report = build_report(
            facts,
            GroupOutcomes.from_columns(out.columns("treatment")),
            GroupOutcomes.from_columns(out.columns("control")),
        )
        d = report.metric("conversion_seed").difference
        assert d.ci_low is not None
        assert d.ci_high is not None
        covered += d.ci_low <= campaign["true_effect"] <= d.ci_high
        covered_expected += d.ci_low <= campaign["expected_effect"] <= d.ci_high
    coverage = covered / CAMPAIGNS
    print(
        f"coverage of the true effect: {coverage:.3f}; of the expected effect: {covered_expected / CAMPAIGNS:.3f}"
    )
    assert coverage >= 0.93
    assert covered_expected / CAMPAIGNS >= 0.93


def test_extraction_recovers_the_planted_outcome() -> None:
    population = synthetic_population(3_000, seed=3)
    cfg = CampaignSimConfig(campaigns=3, seed=4, items=200)
    sim = simulate_campaigns(population, cfg)
    purchases = campaign_purchases(sim, cfg, population)
    for campaign in sim.campaigns.iter_rows(named=True):
        truth = sim.members.filter(pl.col("campaign_id") == campaign["campaign_id"])
        out = member_outcomes(
            purchases, truth.select("member_id", "group"), sent_at=campaign["sent_at"],
            window_days=cfg.window_days, seed_items=campaign["seed_items"],
        )  # fmt: skip
        joined = out.frame.join(truth.select("member_id", "converted"), on="member_id")
        assert joined.height == truth.height
        assert (joined.get_column("bought_seed") == joined.get_column("converted")).all()
