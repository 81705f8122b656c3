"""Tier-aware training on data with tier-specific tastes (``SynthConfig.tier_taste``).

With ``tier_taste = 1`` platinum and diamond members buy premium and exclusive items several
times more often than regular members (docs/synthetic_data.md). Two questions:

* Is that a signal training can pick up? Yes: the tier-conditioned popularity baseline
  (``popular_in_tier``) beats the global one (``popularity``) on platinum and diamond members
  by a clear margin, and does not without the knob.
* Do tier multipliers (``[weights.tier]``, per purchase line by the tier at purchase time)
  make the blend better for platinum and diamond members? No. Over 5 seeds of 20k members
  (``python -m benchmarks tier_taste``) the change is -0.0003 [-0.0007, +0.0002] NDCG@10 for
  them and 0.000 overall. Platinum and diamond members are the heaviest buyers: their own
  long histories already carry their tier's taste, so even a ranking by the planted truth
  gains only +0.0005 NDCG@10 from knowing the tier tilt (the benchmark's oracle headroom).
  That test is a strict xfail on assertion errors: it records the requirement, and it turns
  red (XPASS) if tier-aware training ever meets it, so that the marker gets removed.

Everything is seeded: the same code gives the same numbers on every run (about 15 s).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from feature_store.synthetic import SynthConfig, write_synthetic
from training.config import BaselineConfig, TrainConfig, load_config
from training.evaluate import EvaluationReport, ModelResult
from training.pipeline import TrainOptions, train

#: small enough for a few seconds per training run, large enough for ~500 platinum and diamond
#: test members
DATA = SynthConfig(members=6_000, items=1_000, purchases=100_000, seed=3, tier_taste=1.0)
TIERS = ("regular", "silver", "gold", "platinum", "diamond")
HIGH = ("platinum", "diamond")
BLIND = dict.fromkeys(TIERS, 1.0)
AWARE = {"regular": 1.0, "silver": 1.5, "gold": 2.0, "platinum": 3.0, "diamond": 4.0}
#: NDCG@10 points tier-aware training must add for platinum and diamond members: well above
#: the seed-to-seed spread of a paired difference at this size (about 0.002)
MIN_GAIN = 0.005
#: largest relative loss of overall NDCG@10 allowed for it
MAX_OVERALL_LOSS = 0.01
#: the tier signal: popular_in_tier over popularity on platinum and diamond members, with the
#: knob (measured +0.03..+0.05) and without it (measured -0.004..+0.001)
SIGNAL_ON, SIGNAL_OFF = 0.015, 0.01


def config(multipliers: Mapping[str, float], *, popularity: bool = False) -> TrainConfig:
    """The default config with these tier multipliers; the two popularity baselines or none."""
    base = load_config()
    weights = dataclasses.replace(base.weights, tier=MappingProxyType(dict(multipliers)))
    baselines: tuple[BaselineConfig, ...] = ()
    if popularity:
        baselines = tuple(b for b in base.baselines if b.kind in ("popularity", "popular_in_tier"))
        assert len(baselines) == 2
    return base.replace(weights=weights, baselines=baselines)


def run(data: Path, out: Path, cfg: TrainConfig) -> EvaluationReport:
    return train(TrainOptions(data=data, config=cfg, out=out, track=False)).report


def high_tier_ndcg(result: ModelResult) -> float:
    """NDCG@10 ("all") over the platinum and diamond test members together."""
    groups = [result.breakdowns[("all", "tier", tier)] for tier in HIGH]
    members = sum(g.n_members for g in groups)
    assert members >= 300, members  # enough members for the comparison to mean something
    return sum(g.ndcg * g.n_members for g in groups) / members


def overall_ndcg(result: ModelResult) -> float:
    return result.value("ndcg", 10, "all")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The dataset with the knob on, and the same dataset with it off."""
    out = {}
    for name, cfg in (("on", DATA), ("off", replace(DATA, tier_taste=0.0))):
        out[name] = tmp_path_factory.mktemp(f"tier_taste_{name}")
        write_synthetic(cfg, out[name])
    return out


@pytest.fixture(scope="module")
def blind(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> EvaluationReport:
    """Tier-blind training (every multiplier 1) on the knob-on data, with popularity baselines."""
    return run(folders["on"], tmp_path_factory.mktemp("blind"), config(BLIND, popularity=True))


def test_the_planted_tier_taste_is_a_signal_tier_conditioned_training_picks_up(
    folders: dict[str, Path], blind: EvaluationReport, tmp_path: Path
) -> None:
    off = run(folders["off"], tmp_path / "off", config(BLIND, popularity=True))

    def signal(report: EvaluationReport) -> float:
        return high_tier_ndcg(report.result("popular_in_tier")) - high_tier_ndcg(
            report.result("popularity")
        )

    assert signal(blind) > SIGNAL_ON, signal(blind)
    assert signal(off) < SIGNAL_OFF, signal(off)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="tier multipliers do not raise platinum/diamond NDCG@10 on tier_taste data "
    "(benchmarks/bench_tier_taste.py: -0.0003 [-0.0007, +0.0002] over 5 seeds), and the "
    "planted tier taste leaves at most +0.0005 to gain there (oracle headroom)",
)
def test_tier_multipliers_raise_platinum_and_diamond_ndcg_at_little_overall_cost(
    folders: dict[str, Path], blind: EvaluationReport, tmp_path: Path
) -> None:
    aware = run(folders["on"], tmp_path / "aware", config(AWARE))
    gain = high_tier_ndcg(aware.result("blend")) - high_tier_ndcg(blind.result("blend"))
    overall = overall_ndcg(aware.result("blend")) / overall_ndcg(blind.result("blend")) - 1
    assert overall >= -MAX_OVERALL_LOSS, f"overall NDCG@10 {overall:+.2%}"
    assert gain >= MIN_GAIN, f"platinum+diamond NDCG@10 {gain:+.4f} (overall {overall:+.2%})"
