"""`recsys audience build` on a model trained from small synthetic data: the CSV holds the
best members under the definition's filters, by the score of docs/audiences.md ("Scoring"),
recomputed here from the bundle's arrays:

* item / category / tag seeds: ``m / max|m| + W * log1p(h) / max log1p(h)``, ``W = 2``, ``m`` =
  member vector . seed vector, ``h`` = the member's buy-again history summed over the seed's
  items, both maxima over every member of the snapshot with a vector (before filters); a
  category's items weigh by their distinct buyers in the snapshot (items.parquet ``buyers``);
* lookalike seeds: the pure ``m`` against the mean of the seed members' L2-normalised vectors.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from engine.bundle import Bundle, read_bundle
from feature_store.synthetic import SynthConfig, write_synthetic
from training.config import load_config
from training.pipeline import TrainOptions, TrainResult, train

runner = CliRunner()
TINY = SynthConfig(members=800, items=150, purchases=15_000, seed=11)
CONFIG = """
name = "tiny-audience"
[split]
test_days = 30
[model]
kind = "als"
[model.params]
factors = 8
iterations = 4
[blend]
buy_again = 1.0
trending = 0.1
candidates = 30
trending_candidates = 10
[evaluation]
ks = [10]
[bundle]
item_index = "exact"
member_index = "exact"
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    folder = tmp_path_factory.mktemp("audience-cli")
    write_synthetic(TINY, folder / "data")
    config = folder / "tiny.toml"
    config.write_text(CONFIG, encoding="utf-8")
    options = TrainOptions(
        data=folder / "data", config=load_config(config), out=folder / "run", track=False
    )
    return train(options)


def snapshot_of(result: TrainResult) -> Path:
    return result.bundle.parent / "snapshot"


def build(result: TrainResult, definition: Path, out: Path, *extra: str) -> Result:
    return runner.invoke(
        app,
        [
            "audience",
            "build",
            "--definition",
            str(definition),
            "--out",
            str(out),
            "--model",
            str(result.bundle),
            "--snapshot",
            str(snapshot_of(result)),
            *extra,
        ],
    )


#: W of docs/audiences.md (engine.audience.HISTORY_WEIGHT)
HISTORY_WEIGHT = 2.0


def snapshot_members(result: TrainResult, bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """The snapshot's member ids (snapshot order) and their model rows (-1: no vector)."""
    members = pl.read_parquet(snapshot_of(result) / "members.parquet")["member_id"].to_numpy()
    members = members.astype(str)
    return members, bundle.member_ids.lookup(members)


def item_seed_scores(
    bundle: Bundle, seed: np.ndarray, item_rows: np.ndarray, over: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per model member: the expected score, its ``m`` and its ``h`` (float64, dense); the
    maxima are taken over the model rows ``over`` (the snapshot's members with a vector)."""
    vectors = np.asarray(bundle.arrays["member_vectors"], dtype=np.float64)
    m = vectors @ seed
    history = bundle.sparse["buy_again"].toarray().astype(np.float64)
    h = np.clip(history[:, item_rows].sum(axis=1), 0, None)
    affinity = np.log1p(h)
    top, peak = np.abs(m[over]).max(), affinity[over].max()
    assert top > 0  # both terms present
    assert peak > 0
    return m / top + HISTORY_WEIGHT * affinity / peak, m, h


def best_first(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best, ties by position; checks the order is not a near tie."""
    order = np.lexsort((np.arange(scores.size), -scores))[: k + 1]
    assert np.all(np.abs(np.diff(scores[order])) > 1e-5)  # float32 rounding cannot reorder
    return order[:k]


def test_build_writes_the_best_members_for_the_seed(trained: TrainResult, tmp_path: Path) -> None:
    bundle = read_bundle(trained.bundle)
    item = str(bundle.item_ids.ids[0])
    definition = tmp_path / "gold.toml"
    definition.write_text(
        f'name = "gold+"\n[seed]\nitems = ["{item}"]\n'
        '[filters]\ntiers = ["gold", "platinum", "diamond"]\n[size]\ntop_n = 25\n',
        encoding="utf-8",
    )
    out = tmp_path / "gold.csv"
    result = build(trained, definition, out)
    assert result.exit_code == 0, result.output
    assert "gold+" in result.stdout
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    with out.open() as handle:
        assert handle.readline().strip() == "member_id,score,rank,percentile,tier,segment"

    members = pl.read_parquet(snapshot_of(trained) / "members.parquet")
    tiers = dict(zip(members["member_id"], members["tier"], strict=True))
    _, all_rows = snapshot_members(trained, bundle)
    eligible = [
        m
        for m in members["member_id"].to_list()
        if tiers[m] in {"gold", "platinum", "diamond"} and bundle.member_ids.get(m) >= 0
    ]
    # the right answer, computed here: the model term plus the history term, maxima over every
    # member of the model, then the eligible members' best 25, ties by snapshot row
    seed = np.asarray(bundle.arrays["item_vectors"][0], dtype=np.float64)
    every, m, h = item_seed_scores(bundle, seed, np.asarray([0]), all_rows[all_rows >= 0])
    model_rows = bundle.member_ids.lookup(np.asarray(eligible))
    scores = every[model_rows]
    order = best_first(scores, 25)
    # the history term matters here: the pure m would rank other members
    assert 0 < np.count_nonzero(h[model_rows[order]]) < 25
    assert not np.array_equal(order, np.lexsort((np.arange(len(eligible)), -m[model_rows]))[:25])
    assert len(rows) == 25
    assert [r["member_id"] for r in rows] == [eligible[i] for i in order]
    assert [float(r["score"]) for r in rows] == pytest.approx(
        scores[order].tolist(), rel=1e-5, abs=1e-6
    )
    assert [int(r["rank"]) for r in rows] == list(range(1, 26))
    assert all(r["tier"] == tiers[r["member_id"]] for r in rows)
    percentiles = [float(r["percentile"]) for r in rows]
    assert percentiles[0] == pytest.approx(100.0)
    assert percentiles == sorted(percentiles, reverse=True)


def test_a_category_seed_weighs_its_items_by_buyers(trained: TrainResult, tmp_path: Path) -> None:
    bundle = read_bundle(trained.bundle)
    items = pl.read_parquet(snapshot_of(trained) / "items.parquet")
    categories = np.asarray(bundle.arrays["item_category"]).astype(str)
    category = "beverages"
    item_rows = np.flatnonzero(categories == category)
    assert item_rows.size > 1
    buyers = dict(zip(items["item_id"], items["buyers"], strict=True))
    weights = np.asarray(
        [buyers[str(i)] for i in bundle.item_ids.ids_at(item_rows)], dtype=np.float64
    )
    assert np.unique(weights).size > 1  # the weighting is not uniform
    vectors = np.asarray(bundle.arrays["item_vectors"], dtype=np.float64)[item_rows]
    members, model_rows = snapshot_members(trained, bundle)
    scored = np.flatnonzero(model_rows >= 0)
    every, _, h = item_seed_scores(
        bundle, weights @ vectors / weights.sum(), item_rows, model_rows[scored]
    )

    definition = tmp_path / "drinks.json"
    definition.write_text(json.dumps({"seed": {"categories": [category]}, "size": {"top_n": 150}}))
    out = tmp_path / "drinks.csv"
    result = build(trained, definition, out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))

    scores = every[model_rows[scored]]
    order = best_first(scores, 150)
    # members who bought the category and members who never did (ranked by their vectors)
    assert 0 < np.count_nonzero(h[model_rows[scored[order]]]) < 150
    assert [r["member_id"] for r in rows] == members[scored[order]].tolist()
    assert [float(r["score"]) for r in rows] == pytest.approx(
        scores[order].tolist(), rel=1e-5, abs=1e-6
    )
    # weighting by the trending prior instead would give other scores
    trending = np.asarray(bundle.arrays["trending"], dtype=np.float64)[item_rows]
    other, _, _ = item_seed_scores(
        bundle, trending @ vectors / trending.sum(), item_rows, model_rows[scored]
    )
    assert [float(r["score"]) for r in rows] != pytest.approx(
        other[model_rows[scored[order]]].tolist(), rel=1e-5, abs=1e-6
    )


def test_build_reads_json_and_a_lookalike_seed(trained: TrainResult, tmp_path: Path) -> None:
    bundle = read_bundle(trained.bundle)
    vectors = np.asarray(bundle.arrays["member_vectors"], dtype=np.float64)
    # three seed members whose vector is not all zeros (some members of this model have one)
    seeds = [str(m) for m in bundle.member_ids.ids_at(np.flatnonzero(vectors.any(axis=1))[:3])]
    definition = tmp_path / "like.json"
    definition.write_text(json.dumps({"seed": {"members": seeds}, "size": {"top_percent": 10}}))
    out = tmp_path / "like.csv"
    result = build(trained, definition, out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert not set(seeds) & {r["member_id"] for r in rows}  # seed members are left out
    # the right answer: the pure m against the mean of the seeds' normalised vectors (no
    # normalisation by the maximum, no history term), over the snapshot's members with a vector
    # but the seeds; the top 10 %
    seed_vectors = vectors[bundle.member_ids.lookup(np.asarray(seeds))]
    seed = (seed_vectors / np.linalg.norm(seed_vectors, axis=1, keepdims=True)).mean(axis=0)
    members, model_rows = snapshot_members(trained, bundle)
    scored = np.flatnonzero((model_rows >= 0) & ~np.isin(members, seeds))
    scores = vectors[model_rows[scored]] @ seed
    k = -(-scored.size // 10)  # ceil(10 % of the scored members)
    order = best_first(scores, k)
    assert len(rows) == k
    assert [r["member_id"] for r in rows] == members[scored[order]].tolist()
    assert [float(r["score"]) for r in rows] == pytest.approx(
        scores[order].tolist(), rel=1e-5, abs=1e-6
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            "[seed]\nitems = [ITEM]\n[filters]\ntiers = ['golden']\n[size]\ntop_n = 5",
            "filters.tiers[0]",
        ),
        ("[seed]\n[size]\ntop_n = 5", "seed"),
        ("[seed]\nitems = [ITEM]\n[size]\ntop_n = 0", "size.top_n"),
        ("[seed]\nitems = ['no-such-item']\n[size]\ntop_n = 5", "seed"),
        # the contact history lives in the online store: without --redis-url it is an error
        (
            "[seed]\nitems = [ITEM]\n[size]\ntop_n = 1\n[exclude]\ncontacted_within_days = 7",
            "exclude.contacted_within_days",
        ),
    ],
)
def test_bad_definitions_exit_1_naming_the_field(
    trained: TrainResult, tmp_path: Path, text: str, field: str
) -> None:
    item = str(read_bundle(trained.bundle).item_ids.ids[0])
    definition = tmp_path / "bad.toml"
    definition.write_text(text.replace("ITEM", repr(item)) + "\n", encoding="utf-8")
    out = tmp_path / "bad.csv"
    result = build(trained, definition, out)
    assert result.exit_code == 1, result.output
    assert f"{field}:" in result.output
    assert not out.exists()


def test_build_refuses_other_file_types(trained: TrainResult, tmp_path: Path) -> None:
    definition = tmp_path / "def.yaml"
    definition.write_text("seed: {}")
    result = build(trained, definition, tmp_path / "x.csv")
    assert result.exit_code == 1
    assert ".json or .toml" in result.output


def _ids(path: Path) -> list[str]:
    return [r["member_id"] for r in csv.DictReader(io.StringIO(path.read_text()))]


def test_a_holdout_writes_treatment_and_control_files(trained: TrainResult, tmp_path: Path) -> None:
    from engine.campaigns import split_holdout

    item = str(read_bundle(trained.bundle).item_ids.ids[0])
    body = f'name = "spring"\n[seed]\nitems = ["{item}"]\n[size]\ntop_n = 400\n'
    plain = tmp_path / "plain.toml"
    plain.write_text(body, encoding="utf-8")
    assert build(trained, plain, tmp_path / "all.csv").exit_code == 0
    everyone = _ids(tmp_path / "all.csv")
    assert len(everyone) == 400

    held = tmp_path / "held.toml"
    held.write_text(body + "[holdout]\npercent = 20\n", encoding="utf-8")
    out = tmp_path / "spring.csv"
    result = build(trained, held, out)
    assert result.exit_code == 0, result.output
    treatment, control = _ids(out), _ids(tmp_path / "spring.control.csv")
    # the campaign id is the definition's name; order is kept within each group
    expected = split_holdout("spring", everyone, 20.0)
    assert treatment == expected.treatment.tolist()
    assert control == expected.control.tolist()
    assert sorted(treatment + control) == sorted(everyone)
    assert 0 < len(control) < 400
    assert abs(len(control) - 80) <= 3 * (400 * 0.16) ** 0.5
    assert f"treatment: {len(treatment):,} members" in result.stdout
    assert f"control:   {len(control):,} members" in result.stdout
    with out.open() as handle:
        assert handle.readline().strip() == "member_id,score,rank,percentile,tier,segment"

    # another campaign id (and a salt) draws another control group, to an explicit file
    salted = tmp_path / "salted.toml"
    salted.write_text(body + '[holdout]\npercent = 20\nsalt = "s2"\n', encoding="utf-8")
    other = tmp_path / "other-control.csv"
    again = build(
        trained, salted, tmp_path / "t.csv", "--campaign-id", "cmp-7", "--control-out", str(other)
    )
    assert again.exit_code == 0, again.output
    assert _ids(other) == split_holdout("cmp-7", everyone, 20.0, "s2").control.tolist()
    assert _ids(other) != control


def test_a_holdout_without_a_name_needs_a_campaign_id(trained: TrainResult, tmp_path: Path) -> None:
    item = str(read_bundle(trained.bundle).item_ids.ids[0])
    definition = tmp_path / "anon.json"
    definition.write_text(
        json.dumps({"seed": {"items": [item]}, "size": {"top_n": 5}, "holdout": {"percent": 10}})
    )
    out = tmp_path / "anon.csv"
    result = build(trained, definition, out)
    assert result.exit_code == 1
    assert "--campaign-id" in result.output
    assert not out.exists()
    assert not (tmp_path / "anon.control.csv").exists()


def test_rank_by_uplift_uses_the_uplift_model(trained: TrainResult, tmp_path: Path) -> None:
    from engine.campaigns.uplift import FORMAT

    item = str(read_bundle(trained.bundle).item_ids.ids[0])
    definition = tmp_path / "uplift.json"
    definition.write_text(
        json.dumps({"seed": {"items": [item]}, "size": {"top_n": 30, "rank_by": "uplift"}})
    )
    without = build(trained, definition, tmp_path / "none.csv")
    assert without.exit_code == 1
    assert "size.rank_by:" in without.output
    # a model whose uplift falls with the audience score (persuadables are not the sure things):
    # P(convert | contacted) = sigmoid(-score), P(convert | not) = 1/2
    model = tmp_path / "model.json"
    model.write_text(
        json.dumps(
            {
                "format": FORMAT,
                "method": "two_model",
                "encoder": {"categorical": [], "numeric": [["audience_score", 0.0, 1.0]]},
                "parts": {
                    "treated": {"coef": [-1.0], "intercept": 0.0},
                    "control": {"coef": [0.0], "intercept": 0.0},
                },
            }
        )
    )
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"seed": {"items": [item]}, "size": {"top_percent": 100}}))
    assert build(trained, plain, tmp_path / "all.csv").exit_code == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "all.csv").read_text())))
    out = tmp_path / "ranked.csv"
    result = build(trained, definition, out, "--uplift-model", str(model))
    assert result.exit_code == 0, result.output
    ranked = list(csv.DictReader(io.StringIO(out.read_text())))
    # the 30 lowest audience scores, lowest first (ties by the audience order)
    lowest = sorted(rows, key=lambda r: float(r["score"]))[:30]
    assert [r["member_id"] for r in ranked] == [r["member_id"] for r in lowest]
    assert [float(r["score"]) for r in ranked] == sorted(float(r["score"]) for r in ranked)
