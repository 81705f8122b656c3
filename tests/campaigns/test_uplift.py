"""Uplift targeting on planted data, the metrics on a hand example, and model persistence."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.campaigns.errors import CampaignInputError, ModelFormatError
from engine.campaigns.report_files import qini_figure
from engine.campaigns.uplift import fit_propensity, fit_uplift, load_model, model_from_dict
from engine.campaigns.uplift_metrics import (
    auuc,
    evaluate_uplift,
    qini_coefficient,
    qini_curve,
    true_gain_at,
    uplift_at_k,
    uplift_curve,
)
from feature_store.synthetic.campaigns import (
    CampaignSimConfig,
    simulate_campaigns,
    synthetic_population,
)

# hand example: six members, already sorted by score
Y = np.array([1, 0, 1, 1, 0, 0])
T = np.array([1, 0, 1, 0, 1, 0])
S = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])


def test_curves_hand_example() -> None:
    # Q(k) = y_t - y_c n_t / n_c (0 while no control): k=1: 1; 2: 1; 3: 2; 4: 2 - 1*2/2 = 1;
    # 5: 2 - 1*3/2 = 0.5; 6: 2 - 1*3/3 = 1
    x, q = qini_curve(Y, S, T)
    assert x.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert q.tolist() == [0, 1, 1, 2, 1, 0.5, 1]
    # U(k) = (y_t/n_t - y_c/n_c) k: 1, 2, 3, (1 - 1/2) 4 = 2, (2/3 - 1/2) 5 = 5/6, (2/3 - 1/3) 6 = 2
    _, u = uplift_curve(Y, S, T)
    assert u == pytest.approx([0, 1, 2, 3, 2, 5 / 6, 2])
    # Qini coefficient: area under the curve 6.0, random line (0,0)-(6,1) 3.0; the perfect
    # ranking (treated responders first, control responders last) has points
    # (0,0) (2,2) (5,2) (6,1), area 9.5 -> (6 - 3) / (9.5 - 3) = 0.4615385
    assert qini_coefficient(Y, S, T) == pytest.approx(3 / 6.5)
    # uplift@50%: top 3 = two treated responders and one control non-responder: 1 - 0
    assert uplift_at_k(Y, S, T, 0.5) == pytest.approx(1.0)


def test_metrics_agree_with_scikit_uplift() -> None:
    sklift_metrics = pytest.importorskip("sklift.metrics")
    rng = np.random.default_rng(0)
    y, t = rng.integers(0, 2, 3_000), rng.integers(0, 2, 3_000)
    s = np.round(rng.normal(size=3_000), 1)  # with ties
    with warnings.catch_warnings():  # sklift calls sklearn's deprecated stable_cumsum
        warnings.simplefilter("ignore", FutureWarning)
        assert qini_coefficient(y, s, t) == pytest.approx(sklift_metrics.qini_auc_score(y, s, t))
        assert auuc(y, s, t) == pytest.approx(sklift_metrics.uplift_auc_score(y, s, t))
        for strategy in ("overall", "by_group"):
            expected = sklift_metrics.uplift_at_k(y, s, t, strategy=strategy, k=0.3)
            assert uplift_at_k(y, s, t, 0.3, strategy) == pytest.approx(expected)
        assert np.allclose(qini_curve(y, s, t)[1], sklift_metrics.qini_curve(y, s, t)[1])


def _columns(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    names = ("r_score", "f_score", "m_score", "tier", "lifecycle", "audience_score")
    return {n: frame.get_column(n).to_numpy() for n in names}


@pytest.fixture(scope="module")
def planted() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Four past campaigns with a 30% control group: three to learn from, one held out."""
    population = synthetic_population(20_000, seed=1)
    cfg = CampaignSimConfig(campaigns=4, seed=5, holdout=0.3, audience_share=0.5, items=100)
    members = simulate_campaigns(population, cfg).members.join(population, on="member_id")
    last = members.get_column("campaign_id").max()
    return members.filter(pl.col("campaign_id") != last), members.filter(
        pl.col("campaign_id") == last
    )


def test_uplift_beats_propensity_on_planted_data(
    planted: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path
) -> None:
    train, test = planted
    y, t = train.get_column("converted").to_numpy(), train.get_column("treated").to_numpy()
    uplift = fit_uplift(_columns(train), t, y, seed=0)
    propensity = fit_propensity(_columns(train), y, seed=0)
    yt, tt = test.get_column("converted").to_numpy(), test.get_column("treated").to_numpy()
    effect = test.get_column("effect").to_numpy()
    scores = {
        "uplift": uplift.predict(_columns(test)),
        "propensity": propensity.predict(_columns(test)),
        "audience_score": test.get_column("audience_score").to_numpy(),
    }
    size = int(0.3 * test.height)  # the same audience size for every ranking
    gain = {k: float(true_gain_at(s, effect, [size])[0]) for k, s in scores.items()}
    qini = {k: qini_coefficient(yt, s, tt) for k, s in scores.items()}
    print(f"incremental conversions in the top {size}: {gain}; Qini: {qini}")
    assert gain["uplift"] > 1.5 * max(gain["propensity"], gain["audience_score"])
    assert qini["uplift"] > max(qini["propensity"], qini["audience_score"])
    report = evaluate_uplift(yt, scores["uplift"], tt)
    assert report.qini == pytest.approx(qini["uplift"])
    assert report.uplift_at[0.1] > 0
    curves = {k: qini_curve(yt, s, tt) for k, s in scores.items()}
    qini_figure(curves, "held-out campaign").savefig(tmp_path / "qini.png")
    assert (tmp_path / "qini.png").stat().st_size > 0


def test_class_transformation_also_learns(planted: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    train, test = planted
    model = fit_uplift(
        _columns(train), train.get_column("treated").to_numpy(),
        train.get_column("converted").to_numpy(), method="class_transformation",
    )  # fmt: skip
    # the planted effect given the features (the segment draw itself is not learnable)
    expected = test.get_column("expected_effect").to_numpy()
    correlation = np.corrcoef(model.predict(_columns(test)), expected)[0, 1]
    print(f"class transformation: correlation with the planted effect {correlation:.3f}")
    assert correlation > 0.8


def test_model_round_trips_through_json(
    planted: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path
) -> None:
    train, test = planted
    model = fit_uplift(
        _columns(train),
        train.get_column("treated").to_numpy(),
        train.get_column("converted").to_numpy(),
    )
    loaded = load_model(model.save(tmp_path / "uplift.json"))
    assert np.array_equal(loaded.predict(_columns(test)), model.predict(_columns(test)))
    assert loaded.encoder.categorical["tier"] == (
        "diamond",
        "gold",
        "platinum",
        "regular",
        "silver",
    )
    with pytest.raises(ModelFormatError):
        model_from_dict({**model.to_dict(), "format": "pickle"})
    broken = model.to_dict()
    broken["parts"]["treated"]["coef"] = [1.0]
    with pytest.raises(ModelFormatError, match="coef"):
        model_from_dict(broken)


def test_bad_training_input_names_the_field() -> None:
    cols = {"r_score": np.array([1, 2, 3, 4]), "f_score": np.array([1, 2, 3, 4]), "m_score": np.array([1, 1, 2, 2]),
            "tier": np.array(["a", "b", "a", "b"]), "lifecycle": np.array(["new"] * 4), "audience_score": np.ones(4)}  # fmt: skip
    with pytest.raises(CampaignInputError, match="treatment"):
        fit_uplift(cols, [0, 1, 2, 1], [0, 1, 0, 1])
    with pytest.raises(CampaignInputError, match="outcome"):
        fit_uplift(cols, [0, 1, 0, 1], [0, 1, 0, 0])  # controls never convert
    with pytest.raises(CampaignInputError, match=r"features\.audience_score"):
        fit_uplift(
            {k: v for k, v in cols.items() if k != "audience_score"}, [0, 1, 0, 1], [0, 1, 1, 0]
        )
