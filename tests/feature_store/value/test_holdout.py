"""The holdout check: runs end to end on a small synthetic dataset, writes its report, and on the
real Online Retail data (slow) the model beats the past-rate and RFM baselines on MAE."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from cli import value as value_cli
from feature_store.dataset import Dataset, write_dataset
from feature_store.synthetic import SynthConfig, generate
from feature_store.value import purchase_day_counts, summaries
from feature_store.value.holdout import (
    FILES,
    MODEL,
    RATE_ALL,
    RATE_REPEAT,
    RFM,
    HoldoutResult,
    evaluate_holdout,
    write_holdout_report,
)
from tests.paths import ONLINE_RETAIL

END = date(2025, 10, 1)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate(SynthConfig(members=400, items=100, purchases=6000, seed=3)).dataset


@pytest.fixture(scope="module")
def result(dataset: Dataset) -> HoldoutResult:
    return evaluate_holdout(dataset, END, 90)


def test_members_actuals_and_methods(dataset: Dataset, result: HoldoutResult) -> None:
    scored = summaries(dataset.purchases, END)
    assert result.members_scored == scored.height
    predictions = result.predictions
    assert predictions["member_id"].sort().to_list() == scored["member_id"].to_list()
    actual = purchase_day_counts(dataset.purchases, END, END + timedelta(days=90))
    expected = scored.join(actual, on="member_id", how="left")["value_purchase_days_right"]
    got = predictions.sort("member_id")["actual_purchase_days"]
    assert got.to_list() == expected.fill_null(0).to_list()
    assert result.mean_actual == pytest.approx(float(got.mean()))  # type: ignore[arg-type]
    assert [m.method for m in result.methods] == [MODEL, RATE_ALL, RATE_REPEAT, RFM]
    for m in result.methods:
        assert m.mae >= 0
        assert -1 <= m.spearman <= 1
    for column in ("p_alive", "p_purchase", "expected_orders", "expected_spend", "clv"):
        assert predictions[column].is_finite().all(), column
    assert set(result.rfm_mapping) <= set(range(3, 16))
    # no look-ahead: the model was fitted on data before the calibration end only
    assert result.params.fitted_at_as_of == END


def test_calibration_and_churn_tables(result: HoldoutResult) -> None:
    assert [c.frequency for c in result.calibration][-1] == "7+"
    assert sum(c.members for c in result.calibration) == result.members_scored
    rules = [c.rule for c in result.churn]
    assert rules[:3] == ["p_alive < 0.3", "p_alive < 0.5", "p_alive < 0.7"]
    assert "lifecycle at_risk or churned" in rules
    positives = int((result.predictions["actual_purchase_days"] == 0).sum())
    assert result.share_no_purchase == pytest.approx(positives / result.members_scored)
    for c in result.churn:
        assert 0 <= c.true_positives <= c.flagged
        assert c.precision is None or 0 <= c.precision <= 1
        assert c.recall == pytest.approx(c.true_positives / positives)
    flagged = [c.flagged for c in result.churn[:3]]
    assert flagged == sorted(flagged)  # a higher threshold flags more


def test_report_files(result: HoldoutResult, tmp_path: Path) -> None:
    paths = write_holdout_report(result, tmp_path / "report")
    assert sorted(p.name for p in paths.values()) == sorted(FILES)
    text = paths["markdown"].read_text()
    for fragment in ("| model |", "past rate (all days)", "| 7+ |"):
        assert fragment in text
    table = pl.read_csv(paths["csv"])
    assert table.height == result.members_scored
    assert {"member_id", "expected_orders", "actual_purchase_days", "rfm_predicted"} <= set(
        table.columns
    )
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(value_cli.app, name="value")
    return app


def test_cli_evaluate_prints_the_comparison(dataset: Dataset, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_dataset(dataset, data)
    out = tmp_path / "out"
    args = ["value", "evaluate", "--data", str(data), "--calibration-end", "2025-10-01"]
    done = CliRunner().invoke(_app(), [*args, "--horizon-days", "60", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "purchase days in the holdout" in done.output
    assert "past rate (repeat days)" in done.output
    assert "RFM score" in done.output
    assert "churn check" in done.output
    assert all((out / name).is_file() for name in FILES)


def test_cli_errors_are_one_line(dataset: Dataset, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(
        _app(), ["value", "evaluate", "--data", str(tmp_path / "nope"), "--calibration-end", "2025-10-01", "--out", str(tmp_path / "o")]
    )  # fmt: skip
    assert missing.exit_code == 1
    assert "dataset folder not found" in missing.output
    data = tmp_path / "data"
    write_dataset(dataset, data)
    too_early = runner.invoke(
        _app(), ["value", "evaluate", "--data", str(data), "--calibration-end", "2020-01-01", "--out", str(tmp_path / "o")]
    )  # fmt: skip
    assert too_early.exit_code == 1
    assert "only 0 member(s) have a purchase day" in too_early.output
    assert "Traceback" not in too_early.output
    bad_date = runner.invoke(
        _app(), ["value", "evaluate", "--data", str(data), "--calibration-end", "Oct 1", "--out", str(tmp_path / "o")]
    )  # fmt: skip
    assert bad_date.exit_code == 2


@pytest.mark.slow
@pytest.mark.skipif(not ONLINE_RETAIL.is_file(), reason=f"{ONLINE_RETAIL} not present")
def test_online_retail_model_beats_baselines(tmp_path: Path) -> None:
    from feature_store.importers import build_online_retail

    dataset = build_online_retail(ONLINE_RETAIL).dataset
    result = evaluate_holdout(dataset, date(2011, 9, 9), 90)
    write_holdout_report(result, tmp_path)
    model = result.method(MODEL)
    assert model.mae < result.method(RATE_ALL).mae
    assert model.mae < result.method(RFM).mae
    assert model.spearman > 0.4
    assert result.members_scored > 3000
    assert np.isfinite(result.params.bgnbd_log_likelihood)
