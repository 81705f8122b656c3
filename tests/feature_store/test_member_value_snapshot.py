"""Member value in the feature snapshot: columns, nulls, the manifest's model, agreement with the
one-member scorer, the p_alive lifecycle rule, and the planted truth of the synthetic data."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cli.main import app
from feature_store.offline import build_snapshot
from feature_store.policy import load_policy
from feature_store.synthetic.config import SynthConfig
from feature_store.synthetic.generate import write_synthetic
from feature_store.value import MemberValueStats, ValueParams, score_member

CFG = SynthConfig(members=1500, items=300, purchases=40_000, seed=11)
AS_OF = CFG.end_date + timedelta(days=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("value_data")
    write_synthetic(CFG, folder)
    return folder


@pytest.fixture(scope="module")
def snapshot(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("value_snap") / "snap"
    build_snapshot(data, AS_OF, out)
    return out


def _members(snapshot: Path) -> pl.DataFrame:
    return pl.read_parquet(snapshot / "members.parquet")


def test_every_buyer_gets_values_and_non_buyers_get_nulls(snapshot: Path) -> None:
    members = _members(snapshot)
    buyers = members.filter(pl.col("n_orders") > 0)
    others = members.filter(pl.col("n_orders") == 0)
    assert buyers.height > 1000
    assert others.height > 0
    for column in ("p_alive", "expected_orders_90d", "expected_spend_90d", "clv"):
        assert buyers[column].null_count() == 0, column
        assert others[column].null_count() == others.height, column
    assert (others["purchase_days"] == 0).all()
    assert buyers["p_alive"].is_between(0, 1).all()
    assert (buyers["clv"] >= buyers["expected_spend_90d"] * 0.99).all()  # a year >= 90 days
    # single-purchase members get the model's values too (p_alive 1 in BG/NBD)
    single = buyers.filter(pl.col("purchase_days") == 1)
    assert single.height > 0
    assert (single["p_alive"] == 1.0).all()
    assert (single["expected_orders_90d"] > 0).all()


def test_manifest_holds_the_fitted_model(snapshot: Path) -> None:
    manifest = json.loads((snapshot / "manifest.json").read_text())
    params = ValueParams.model_validate(manifest["value_model"]["params"])
    assert manifest["value_model"]["note"] is None
    assert params.fitted_at_as_of == AS_OF
    assert params.n_members == _members(snapshot).filter(pl.col("purchase_days") > 0).height


def test_snapshot_values_equal_the_one_member_scorer(snapshot: Path) -> None:
    """The event path's scorer, fed the member's statistics, gives the snapshot's values."""
    manifest = json.loads((snapshot / "manifest.json").read_text())
    params = ValueParams.model_validate(manifest["value_model"]["params"])
    rows = _members(snapshot).filter(pl.col("purchase_days") > 0).head(50).iter_rows(named=True)
    for row in rows:
        stats = MemberValueStats(
            purchase_days=row["purchase_days"],
            first_day=row["first_purchase_at"].date(),
            last_day=row["last_purchase_at"].date(),
            repeat_spend=row["repeat_day_spend"],
        )
        got = score_member(params, *stats.inputs(AS_OF), horizon_days=90, clv_months=12)
        assert math.isclose(got.p_alive, row["p_alive"], rel_tol=1e-9)
        assert math.isclose(got.expected_orders, row["expected_orders_90d"], rel_tol=1e-9)
        assert math.isclose(got.clv, row["clv"], rel_tol=1e-9)


def test_planted_churners_have_a_lower_p_alive(snapshot: Path, data: Path) -> None:
    truth = pl.read_parquet(data / "ground_truth" / "members.parquet")
    joined = _members(snapshot).join(truth.select("member_id", "status"), on="member_id")
    mean = dict(
        joined.filter(pl.col("p_alive").is_not_null())
        .group_by("status")
        .agg(pl.col("p_alive").mean())
        .iter_rows()
    )
    assert mean["churned"] < mean["established"] - 0.1


def test_lifecycle_rule_p_alive(data: Path, tmp_path: Path) -> None:
    text = (
        load_policy()
        .source.read_text()
        .replace('rule = "days"', 'rule = "p_alive"')
        .replace("at_risk_below = 0.5", "at_risk_below = 0.95")
    )
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(text)
    build_snapshot(data, AS_OF, tmp_path / "snap", policy_file)
    members = _members(tmp_path / "snap")
    by_days = _members_days(data, tmp_path)
    joined = members.join(by_days, on="member_id", suffix="_days")
    # churned (by the day windows) and new stay as they were; the rest split on p_alive < 0.95
    same = joined.filter(pl.col("lifecycle_days").is_in(["new", "churned"]))
    assert (same["lifecycle"] == same["lifecycle_days"]).all()
    rest = joined.filter(~pl.col("lifecycle_days").is_in(["new", "churned"]))
    expected = pl.when(pl.col("p_alive") < 0.95).then(pl.lit("at_risk")).otherwise(pl.lit("active"))
    assert rest.height > 100
    assert (rest["lifecycle"] == rest.select(expected).to_series()).all()
    assert set(rest["lifecycle"].unique()) == {"active", "at_risk"}


def _members_days(data: Path, tmp_path: Path) -> pl.DataFrame:
    build_snapshot(data, AS_OF, tmp_path / "snap_days")
    return _members(tmp_path / "snap_days").select("member_id", "lifecycle")


def test_value_model_off(data: Path, tmp_path: Path) -> None:
    text = load_policy().source.read_text().replace("enabled = true", "enabled = false")
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(text)
    build_snapshot(data, AS_OF, tmp_path / "snap", policy_file)
    members = _members(tmp_path / "snap")
    assert members["p_alive"].null_count() == members.height
    assert (members.filter(pl.col("n_orders") > 0)["purchase_days"] > 0).all()
    manifest = json.loads((tmp_path / "snap" / "manifest.json").read_text())
    assert manifest["value_model"] == {
        "params": None,
        "note": "the value model is off ([value] enabled = false)",
    }


def _at_risk(snapshot: Path, tmp_path: Path, *args: str) -> pl.DataFrame:
    out = tmp_path / "at_risk.csv"
    result = CliRunner().invoke(
        app, ["members", "at-risk", "--snapshot", str(snapshot), "--out", str(out), *args]
    )
    assert result.exit_code == 0, result.output
    return pl.read_csv(out)


def test_at_risk_list_order_and_filters(snapshot: Path, tmp_path: Path) -> None:
    listed = _at_risk(snapshot, tmp_path, "--below", "0.9")
    members = _members(snapshot)
    expected = members.filter(pl.col("p_alive") < 0.9)
    assert listed.height == expected.height > 10
    assert (listed["p_alive"] < 0.9).all()
    risk = listed["clv"] * (1 - listed["p_alive"])
    assert (listed["value_at_risk"] - risk).abs().max() < 1e-9
    assert listed["value_at_risk"].is_sorted(descending=True)
    top = _at_risk(snapshot, tmp_path, "--below", "0.9", "--top", "5", "--min-clv", "100")
    want = listed.filter(pl.col("clv") >= 100).head(5)
    assert top["member_id"].to_list() == want["member_id"].to_list()


def test_at_risk_as_of_a_later_date_lists_members_who_did_not_come_back(
    snapshot: Path, tmp_path: Path
) -> None:
    now = _at_risk(snapshot, tmp_path, "--below", "0.9")
    later = _at_risk(
        snapshot, tmp_path, "--below", "0.9", "--as-of", (AS_OF + timedelta(days=180)).isoformat()
    )
    assert set(now["member_id"]) < set(later["member_id"])
    both = now.join(later, on="member_id", suffix="_later")
    assert (both["p_alive_later"] < both["p_alive"]).all()
    bad = CliRunner().invoke(
        app, ["members", "at-risk", "--snapshot", str(snapshot), "--as-of", "2020-01-01"]
    )
    assert bad.exit_code == 1
    assert "before the values' date" in bad.output
