"""The training pipeline end to end on small synthetic data, with MLflow in a temporary store:
evaluation, bundle, parity of the bundle recommender with evaluation, registry and the
promotion gate, ablation, and the `recsys train` / `recsys recommend` commands."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from cli.main import app
from engine.bundle_recommender import BundleRecommender
from training.config import load_config
from training.pipeline import SERVED, TrainOptions, TrainResult, train

CONFIG = """
name = "tiny"
[split]
test_days = 45
[weights]
quantity = "log1p"
half_life_days = 120.0
[weights.tier]
gold = 1.2
[weights.tags]
boost = 1.5
category_prefix = "loves-"
[weights.bm25]
enabled = true
[model]
kind = "als"
[model.params]
factors = {factors}
iterations = 6
[blend]
buy_again = {buy_again}
trending = 0.3
candidates = 50
trending_candidates = 20
[evaluation]
ks = [5, 10]
[[baselines]]
name = "popularity"
kind = "popularity"
[[baselines]]
name = "buy_again"
kind = "buy_again"
[bundle]
item_index = "exact"
member_index = "exact"
"""


def config_file(tmp_path: Path, name: str, factors: int = 16, buy_again: float = 3.0) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(CONFIG.format(factors=factors, buy_again=buy_again), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def first_run(
    synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory, tracking_uri: str
) -> TrainResult:
    tmp = tmp_path_factory.mktemp("run1")
    options = TrainOptions(
        data=synthetic_data,
        config=load_config(config_file(tmp, "good")),
        out=tmp / "out",
        ablation=True,
        tracking_uri=tracking_uri,
    )
    steps: list[str] = []
    result = train(options, progress=steps.append)
    assert steps[0] == "loading dataset"
    assert "writing the bundle" in steps
    return result


def test_report_holds_the_blend_and_the_baselines(first_run: TrainResult) -> None:
    report = first_run.report
    assert [r.name for r in report.results] == ["blend", "served", "popularity", "buy_again"]
    assert report.members["all"] > 100
    assert 0 < report.members["new"] <= report.members["all"]
    blend, popularity = report.result("blend"), report.result("popularity")
    assert blend.value("ndcg", 10, "all") > popularity.value("ndcg", 10, "all")
    assert blend.value("ndcg", 10, "new") > popularity.value("ndcg", 10, "new")
    assert {k for (_, k) in blend.summaries} == {5, 10}
    assert ("all", "tier", "regular") in blend.breakdowns
    assert (first_run.bundle.parent / "evaluation" / "table.md").is_file()
    assert first_run.facts["tag_matched_lines"] > 0


@pytest.fixture(scope="module")
def evaluated_run(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """``--no-refit``: the bundle holds the very model scored on the test window."""
    tmp = tmp_path_factory.mktemp("norefit")
    config = load_config(config_file(tmp, "good"))
    config = config.replace(split=replace(config.split, refit=False))
    return train(TrainOptions(data=synthetic_data, config=config, out=tmp / "out", track=False))


def test_bundle_recommender_reproduces_the_evaluated_rankings(evaluated_run: TrainResult) -> None:
    """``recsys recommend``'s path serves what evaluation's ``served`` row ranked."""
    recommender = BundleRecommender.from_path(evaluated_run.bundle)
    blend = evaluated_run.report.result(SERVED)
    assert evaluated_run.facts["trained_before"] == evaluated_run.split.cutoff_date
    for variant, exclude in (("all", False), ("new", True)):
        ranked = blend.rankings[variant]
        members = evaluated_run.evaluated[variant]  # in the order they were ranked
        got = recommender.recommend(members, ranked.shape[1], exclude_purchased=exclude)
        expected = np.where(ranked >= 0, recommender.item_ids.ids_at(np.maximum(ranked, 0)), "")
        assert got.item_ids.tolist() == expected.tolist()


def test_ablation_reports_each_active_weight(first_run: TrainResult) -> None:
    names = [row.name for row in first_run.ablation]
    assert names == ["tier", "tags", "recency", "quantity", "bm25"]
    for row in first_run.ablation:
        base = first_run.report.result("blend").value("ndcg", 10, "all")
        assert row.delta_all == pytest.approx(row.ndcg_all - base)


def test_registered_and_promoted_then_gate_refuses_a_worse_model(
    first_run: TrainResult, synthetic_data: Path, tmp_path: Path, tracking_uri: str
) -> None:
    from training.tracking import Tracker

    assert first_run.tracked is not None
    assert first_run.tracked.version == 1
    assert first_run.tracked.promoted is True
    worse = TrainOptions(
        data=synthetic_data,
        config=load_config(config_file(tmp_path, "worse", factors=2, buy_again=0.0)),
        out=tmp_path / "out",
        tracking_uri=tracking_uri,
    )
    second = train(worse)
    assert second.tracked is not None
    assert second.tracked.version == 2
    assert second.tracked.promoted is False
    assert "does not beat" in (second.tracked.promotion_reason or "")
    tracker = Tracker(tracking_uri)
    champion = tracker.champion()
    assert champion is not None
    assert champion.version == 1
    assert champion.metrics["ndcg_at_10_all"] == pytest.approx(
        first_run.report.result("blend").value("ndcg", 10, "all")
    )
    assert champion.params["weights.tier.gold"] == "1.2"


def test_cli_train_and_recommend(
    synthetic_data: Path, tmp_path: Path, tracking_uri: str, first_run: TrainResult
) -> None:
    runner = CliRunner()
    out = tmp_path / "cli-run"
    done = runner.invoke(
        app,
        [
            "train",
            "--data", str(synthetic_data),
            "--config", str(config_file(tmp_path, "cli")),
            "--out", str(out),
            "--no-track",
        ],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "blend" in done.output
    assert "not tracked" in done.output
    members = tmp_path / "members.csv"
    members.write_text("member_id\nM000001\nnobody\nM000002\n", encoding="utf-8")
    csv = tmp_path / "recs.csv"
    done = runner.invoke(
        app,
        [
            "recommend",
            "--model", "models:/member-recs@champion",
            "--tracking-uri", tracking_uri,
            "--members", str(members),
            "--k", "5",
            "--out", str(csv),
        ],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    frame = pl.read_csv(csv, schema_overrides={"member_id": pl.String, "item_id": pl.String})
    assert frame.columns == ["member_id", "rank", "item_id", "score", "source"]
    assert frame.get_column("member_id").unique(maintain_order=True).to_list() == [
        "M000001",
        "nobody",
        "M000002",
    ]
    assert frame.filter(pl.col("member_id") == "nobody").get_column(
        "source"
    ).unique().to_list() == ["popular"]
    assert frame.height == 15
    all_members = tmp_path / "all.csv"
    done = runner.invoke(
        app,
        ["recommend", "--model", str(out / "bundle"), "--k", "3", "--out", str(all_members)],
    )
    assert done.exit_code == 0, done.output
    assert pl.read_csv(all_members).height == 3 * len(
        BundleRecommender.from_path(out / "bundle").member_ids
    )


def test_cli_reports_a_bad_config_naming_the_key(synthetic_data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[weights.tier]\ngolden = 2.0\n", encoding="utf-8")
    done = CliRunner().invoke(
        app, ["train", "--data", str(synthetic_data), "--config", str(bad), "--no-track"]
    )
    assert done.exit_code == 1
    assert "weights.tier.golden: unknown tier" in done.output


def test_a_prebuilt_snapshot_gives_the_same_model(
    first_run: TrainResult, synthetic_data: Path, tmp_path: Path
) -> None:
    from feature_store.errors import DataError
    from feature_store.offline import build_snapshot

    snapshot = tmp_path / "snapshot"  # the shipped (refit) model's: as of the refit date
    build_snapshot(synthetic_data, first_run.windows.as_of.date(), snapshot)
    options = TrainOptions(
        data=synthetic_data,
        config=load_config(config_file(tmp_path, "good")),
        out=tmp_path / "out",
        snapshot=snapshot,
        track=False,
    )
    result = train(options)
    assert result.facts["data_fingerprint"] == first_run.facts["data_fingerprint"]
    assert result.timings["refit_s"] < first_run.timings["refit_s"]
    for variant in ("all", "new"):
        assert result.report.result("blend").value("ndcg", 10, variant) == pytest.approx(
            first_run.report.result("blend").value("ndcg", 10, variant)
        )
    stale = tmp_path / "stale"
    build_snapshot(synthetic_data, first_run.split.cutoff.date().replace(day=1), stale)
    with pytest.raises(DataError, match=r"the snapshot is as of .* the refit stage needs"):
        train(replace(options, snapshot=stale))


def test_bundle_carries_the_item_attributes_serving_rules_need(
    first_run: TrainResult, synthetic_data: Path
) -> None:
    from engine.bundle import read_bundle

    bundle = read_bundle(first_run.bundle)
    items = pl.read_parquet(synthetic_data / "items.parquet").sort("item_id")
    assert bundle.item_ids.ids.tolist() == items["item_id"].to_list()
    assert bundle.arrays["item_category"].tolist() == items["category"].to_list()
    assert bundle.arrays["item_min_tier"].tolist() == items["min_tier"].fill_null("").to_list()
    assert bundle.arrays["item_active"].tolist() == items["active"].fill_null(True).to_list()
    assert (bundle.arrays["item_min_tier"] != "").any()  # the synthetic data has exclusives


def test_bundle_carries_each_members_precomputed_blend_list(first_run: TrainResult) -> None:
    """What serving reads instead of searching: each member's blend ranking, at most
    ``precomputed_per_category`` items of one category, first ``precomputed_candidates``."""
    from engine.blend_precompute import PRECOMPUTED_ARRAYS
    from engine.bundle import read_bundle

    bundle = read_bundle(first_run.bundle)
    width = bundle.manifest["precomputed_candidates"]
    cap = bundle.manifest["precomputed_per_category"]
    items, scores, sources = (bundle.arrays[name] for name in PRECOMPUTED_ARRAYS)
    assert (width, cap) == (50, 10)
    assert items.shape == (len(bundle.member_ids), width)
    category = bundle.arrays["item_category"]
    blender = BundleRecommender.from_path(first_run.bundle).blender
    rows = np.arange(0, len(bundle.member_ids), 7)
    full = blender.rank(rows, blender.n_items)  # the whole candidate set, blend order
    for position, row in enumerate(rows):  # a plain reference walk, one member at a time
        expected: list[int] = []
        seen: dict[str, int] = {}
        for item in full.items[position]:
            if item < 0 or len(expected) == width:
                break
            name = str(category[item])
            if name and seen.get(name, 0) >= cap:
                continue
            seen[name] = seen.get(name, 0) + 1
            expected.append(int(item))
        got = items[row][items[row] >= 0].tolist()
        assert got == expected
        order = {int(item): i for i, item in enumerate(full.items[position])}
        picked = [order[item] for item in got]
        assert np.allclose(scores[row][: len(got)], full.scores[position][picked])
        assert sources[row][: len(got)].tolist() == full.sources[position][picked].tolist()
