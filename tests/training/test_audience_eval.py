"""training.audience_eval: metric arithmetic on a hand-made case, the evaluation on small
synthetic data (the model audience beats random; buyers and base rates recomputed from the raw
purchases; the model is the engine's scorer with the buy-again history), the CLI function
writing its reports, and (slow) the issue's quality target on the real Online Retail data."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from cli.audience_evaluate import evaluate_command
from engine.audience import HISTORY_WEIGHT
from feature_store.importers import import_online_retail
from tests.paths import ONLINE_RETAIL
from training.audience_eval import AudienceEvalOptions, evaluate_audiences
from training.audience_report import (
    BASELINES,
    MODEL,
    AudienceEvalReport,
    MethodResult,
    SeedResult,
    audience_result,
    bought_before_audience,
    lift,
    random_result,
    rfm_audience,
    summarise,
    top_rows,
)
from training.config import CONFIG_DIR, load_config

# -- hand-made arithmetic ---------------------------------------------------------------------

#: 10 eligible members; members 0, 2 and 6 buy the seed in the test window
BOUGHT = np.zeros(10, dtype=np.bool_)
BOUGHT[[0, 2, 6]] = True


def test_precision_recall_of_an_audience() -> None:
    result = audience_result(np.array([0, 1, 2]), 3, BOUGHT)
    assert result.hits == 2.0
    assert result.precision == pytest.approx(2 / 3)
    assert result.recall == pytest.approx(2 / 3)
    # a fixed size larger than the audience counts the missing places as misses
    short = audience_result(np.array([6]), 4, BOUGHT)
    assert (short.hits, short.precision) == (1.0, 0.25)
    assert short.recall == pytest.approx(1 / 3)
    # only the first N rows count
    assert audience_result(np.array([1, 3, 0, 2]), 2, BOUGHT).hits == 0.0


def test_random_baseline_is_the_exact_base_rate() -> None:
    result = random_result(3, BOUGHT)
    assert result.precision == pytest.approx(0.3)  # 3 buyers of 10
    assert result.hits == pytest.approx(0.9)
    assert result.recall == pytest.approx(0.3)  # 3 of 10 members drawn
    assert random_result(20, BOUGHT).recall == pytest.approx(1.0)  # N > eligible: everyone
    assert random_result(20, BOUGHT).precision == pytest.approx(3 / 20)


def test_lift() -> None:
    assert lift(2 / 3, 0.3) == pytest.approx(20 / 9)
    assert math.isnan(lift(0.5, 0.0))


def test_top_rows_breaks_ties_by_row() -> None:
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    assert top_rows([scores], 4).tolist() == [1, 2, 4, 3]
    assert top_rows([np.array([1.0, 1.0, 0.0]), np.array([0.0, 5.0, 9.0])], 3).tolist() == [1, 0, 2]


def test_rfm_and_bought_before_baselines() -> None:
    monetary = np.array([50.0, 10.0, 40.0, 90.0, 0.0, 70.0, 20.0, 30.0, 60.0, 80.0])
    assert rfm_audience(monetary, 3).tolist() == [3, 9, 5]
    before = np.zeros(10, dtype=np.bool_)
    before[[1, 4, 7]] = True
    spend = np.zeros(10)
    spend[[1, 4, 7]] = [5.0, 15.0, -2.0]  # member 7 returned more than bought: still a buyer
    # past buyers by their spend on the seed (4, 1, 7), then the rest by monetary (3, 9)
    assert bought_before_audience(before, spend, monetary, 5).tolist() == [4, 1, 7, 3, 9]
    assert bought_before_audience(before, spend, monetary, 2).tolist() == [4, 1]


def test_summary_averages_precisions_and_lifts() -> None:
    def seed(name: str, model: float, rnd: float, rfm: float, before: float) -> SeedResult:
        methods = {
            MODEL: MethodResult(model * 10, model, model),
            "random": MethodResult(rnd * 10, rnd, rnd),
            "rfm": MethodResult(rfm * 10, rfm, rfm),
            "bought_before": MethodResult(before * 10, before, before),
        }
        return SeedResult("category", name, 10, 10, 100, 20, methods)

    summary = summarise("category", [seed("a", 0.6, 0.1, 0.3, 0.4), seed("b", 0.2, 0.1, 0.1, 0.4)])
    assert summary is not None
    assert summary.precision[MODEL] == pytest.approx(0.4)
    assert summary.precision["bought_before"] == pytest.approx(0.4)
    assert summary.lift[MODEL]["random"] == pytest.approx(4.0)
    assert summary.lift[MODEL]["rfm"] == pytest.approx(0.4 / 0.2)
    assert summary.lift[MODEL]["bought_before"] == pytest.approx(1.0)
    assert summary.mean_lift[MODEL]["rfm"] == pytest.approx((2.0 + 2.0) / 2)
    assert summary.mean_lift[MODEL]["bought_before"] == pytest.approx((1.5 + 0.5) / 2)
    assert summary.wins[MODEL] == {"random": 2, "rfm": 2, "bought_before": 1}
    assert not summary.beats_all()  # a tie with bought_before is not a win


# -- the evaluation on synthetic data ---------------------------------------------------------


@pytest.fixture(scope="module")
def report(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> AudienceEvalReport:
    out = tmp_path_factory.mktemp("audience_eval")
    return evaluate_audiences(
        AudienceEvalOptions(
            data=synthetic_data,
            config=load_config(),
            out=out,
            categories=6,
            items=6,
            min_item_buyers=3,
        )
    )


def test_model_audience_beats_random_on_synthetic_data(report: AudienceEvalReport) -> None:
    assert set(report.summaries) == {"category", "item"}
    categories = report.summaries["category"]
    assert categories.seeds == 6
    # planted category tastes: targeting by the model is far better than random
    assert categories.lift[MODEL]["random"] > 2.0
    assert categories.wins[MODEL]["random"] == 6
    assert report.summaries["item"].lift[MODEL]["random"] > 5.0
    for r in report.results:
        assert set(r.methods) == {MODEL, *BASELINES}
        assert r.size == r.buyers  # N = buyers: precision equals recall
        for m in r.methods.values():
            assert m.precision == pytest.approx(m.recall)
            assert 0.0 <= m.precision <= 1.0


def test_buyers_and_base_rate_match_the_raw_purchases(
    report: AudienceEvalReport, synthetic_data: Path
) -> None:
    """Recompute, independently of training.data, who is eligible and who bought each seed."""
    cutoff, test_end = report.split.cutoff, report.split.test_end
    assert test_end - cutoff == timedelta(days=30)
    members = pl.read_parquet(synthetic_data / "members.parquet")
    items = pl.read_parquet(synthetic_data / "items.parquet")
    purchases = pl.read_parquet(synthetic_data / "purchases.parquet")
    eligible = members.filter(pl.col("joined_at") < cutoff).get_column("member_id")
    assert report.eligible == eligible.len()
    window = purchases.filter(
        (pl.col("ts") >= cutoff)
        & (pl.col("ts") < test_end)
        & (pl.col("quantity") > 0)
        & pl.col("member_id").is_in(eligible.implode())
    ).join(items.select("item_id", "category"), on="item_id")
    for r in report.results:
        column, value = ("category", r.seed) if r.kind == "category" else ("item_id", r.seed)
        buyers = window.filter(pl.col(column) == value).get_column("member_id").n_unique()
        assert r.buyers == buyers, r.seed
        assert r.methods["random"].precision == pytest.approx(buyers / eligible.len())


def test_categories_are_the_top_ones_by_buyers_before_the_cutoff(
    report: AudienceEvalReport, synthetic_data: Path
) -> None:
    cutoff = report.split.cutoff
    members = pl.read_parquet(synthetic_data / "members.parquet")
    eligible = members.filter(pl.col("joined_at") < cutoff).get_column("member_id")
    buyers = (
        pl.read_parquet(synthetic_data / "purchases.parquet")
        .filter(
            (pl.col("ts") < cutoff)
            & (pl.col("quantity") > 0)
            & pl.col("member_id").is_in(eligible.implode())
        )
        .join(pl.read_parquet(synthetic_data / "items.parquet"), on="item_id")
        .group_by("category")
        .agg(pl.col("member_id").n_unique().alias("buyers"))
        .sort(["buyers", "category"], descending=[True, False])
    )
    expected = buyers.get_column("category").head(6).to_list()
    assert [r.seed for r in report.results if r.kind == "category"] == expected


# -- the CLI function -------------------------------------------------------------------------


def test_cli_writes_json_and_csv_reports(synthetic_data: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(evaluate_command)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "--data",
            str(synthetic_data),
            "--out",
            str(out),
            "--categories",
            "3",
            "--items",
            "2",
            "--size",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "lift of model" in result.output
    report = json.loads((out / "audience_eval.json").read_text())
    assert report["size"] == 50
    assert report["methods"] == [MODEL, *BASELINES]
    assert set(report["summaries"]) == {"category", "item"}
    assert len(report["seeds"]) == 5
    assert all(s["size"] == 50 for s in report["seeds"])
    frame = pl.read_csv(out / "audience_eval.csv")
    assert frame.height == 5 + 2  # one row per seed, one mean row per kind
    means = frame.filter(pl.col("seed") == "__mean__")
    assert means.get_column("kind").to_list() == ["category", "item"]
    category_mean = means.row(0, named=True)
    assert category_mean["precision_model"] == pytest.approx(
        report["summaries"]["category"]["precision"][MODEL], abs=1e-6
    )


def test_cli_names_a_missing_dataset_folder(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(evaluate_command)
    result = CliRunner().invoke(
        app, ["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    assert "nope" in result.output
    assert "not found" in result.output


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="size"):
        AudienceEvalOptions(data=Path("."), config=load_config(), out=Path("."), size=0)
    with pytest.raises(ValueError, match="history_weight"):
        AudienceEvalOptions(
            data=Path("."), config=load_config(), out=Path("."), history_weight=-1.0
        )


def test_split_instants_are_whole_days(report: AudienceEvalReport) -> None:
    assert report.split.cutoff == datetime.combine(report.split.cutoff.date(), datetime.min.time())


def test_the_model_is_the_engine_score_with_the_history_term(
    report: AudienceEvalReport, synthetic_data: Path, tmp_path: Path
) -> None:
    """The default is the engine's weight; weight 0 (the pure vector score) ranks otherwise and,
    on data whose members re-buy their staples, worse."""
    assert AudienceEvalOptions(Path("."), load_config(), Path(".")).history_weight == (
        HISTORY_WEIGHT
    )
    assert report.facts["history_weight"] == HISTORY_WEIGHT
    vectors_only = evaluate_audiences(
        AudienceEvalOptions(
            data=synthetic_data,
            config=load_config(),
            out=tmp_path,
            categories=6,
            items=6,
            min_item_buyers=3,
            history_weight=0.0,
        )
    )
    assert [r.seed for r in vectors_only.results] == [r.seed for r in report.results]
    with_history = report.summaries["category"].precision[MODEL]
    assert with_history > vectors_only.summaries["category"].precision[MODEL]


@pytest.mark.slow
@pytest.mark.skipif(
    not ONLINE_RETAIL.is_file(), reason=f"Online Retail source not found at {ONLINE_RETAIL}"
)
def test_online_retail_model_audience_beats_every_baseline(tmp_path: Path) -> None:
    """The issue's quality target with the served recipe (online_retail.toml: the for-you
    bundle's vectors and buy-again history): mean precision@N over the 12 categories above
    random, RFM and "bought this category before" (measured: 0.4469 vs 0.1873 / 0.3791 /
    0.4077, docs/evaluation.md)."""
    data = tmp_path / "online_retail"
    import_online_retail(ONLINE_RETAIL, data)
    report = evaluate_audiences(
        AudienceEvalOptions(
            data=data,
            config=load_config(CONFIG_DIR / "online_retail.toml"),
            out=tmp_path / "report",
        )
    )
    assert (report.split.cutoff_date, report.split.test_last_day) == ("2011-11-09", "2011-12-09")
    categories = report.summaries["category"]
    print({m: round(p, 4) for m, p in categories.precision.items()}, categories.lift[MODEL])
    assert categories.seeds == 12
    for baseline in BASELINES:
        assert categories.precision[MODEL] > categories.precision[baseline], baseline
    assert categories.beats_all()
    assert categories.lift[MODEL]["bought_before"] > 1.05  # measured 1.096
