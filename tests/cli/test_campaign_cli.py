"""`recsys campaign ...` and the demo's campaign on small synthetic data (SQLite).

The world: a synthetic dataset (3,000 members), its feature snapshot (built without the value
model, which takes seconds to fit) and a bundle of random vectors for its members and items.
Four campaigns are simulated over the snapshot's members with the planted-effect model of
feature_store.synthetic.campaigns (via cli.demo_campaign.simulated_purchases): 80% of the
members each, 30% held out by the production hash, the purchases of their 30-day windows
appended to the campaign database's event log and also written as a dataset's purchases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner, Result

from cli import campaign
from cli.demo_campaign import population_from_snapshot, run_campaign_demo, simulated_purchases
from engine.bundle import write_bundle
from engine.campaigns import HOLDOUT_SCHEME, load_model, split_holdout
from engine.campaigns.features import uplift_features
from feature_store.campaigns import CampaignStore, default_url
from feature_store.member_columns import read_member_columns
from feature_store.offline import build_snapshot, open_snapshot
from feature_store.policy import DEFAULT_POLICY_PATH
from feature_store.synthetic import SynthConfig, write_synthetic

runner = CliRunner()
root = typer.Typer()
root.add_typer(campaign.app, name="campaign")


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "RECSYS_DATA_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str) -> Result:
    return runner.invoke(root, ["campaign", *args])


@dataclass(frozen=True)
class World:
    data: Path
    snapshot: Path
    bundle: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    folder = tmp_path_factory.mktemp("campaign-world")
    write_synthetic(
        SynthConfig(members=3_000, items=300, purchases=40_000, seed=11), folder / "data"
    )
    policy = folder / "policy.toml"
    policy.write_text(
        DEFAULT_POLICY_PATH.read_text().replace("\nenabled = true\n", "\nenabled = false\n")
    )
    last = json.loads((folder / "data" / "ground_truth" / "synth.json").read_text())["stats"]
    as_of = datetime.fromisoformat(last["last_ts"]).date() + timedelta(days=1)
    build_snapshot(folder / "data", as_of, folder / "snapshot", policy)
    members = pl.read_parquet(folder / "snapshot" / "members.parquet")["member_id"].to_list()
    items = pl.read_parquet(folder / "snapshot" / "items.parquet")["item_id"].to_list()
    rng = np.random.default_rng(0)
    bundle = write_bundle(
        folder / "bundle",
        manifest={"kind": "als", "label": "random"},
        arrays={
            "member_vectors": rng.normal(size=(len(members), 8)).astype(np.float32),
            "item_vectors": rng.normal(size=(len(items), 8)).astype(np.float32),
        },
        member_ids=members,
        item_ids=items,
    )
    return World(folder / "data", folder / "snapshot", bundle)


@dataclass(frozen=True)
class Simulated:
    store_dir: Path
    purchases: Path  # a dataset folder with the simulated purchases only
    campaigns: list[str]


@pytest.fixture(scope="module")
def simulated(world: World, tmp_path_factory: pytest.TempPathFactory) -> Simulated:
    folder = tmp_path_factory.mktemp("campaign-store")
    snap = open_snapshot(world.snapshot)
    population = population_from_snapshot(world.snapshot)
    items = pl.read_parquet(world.snapshot / "items.parquet")["item_id"].to_list()
    ids = population["member_id"].to_numpy().astype(str)
    rfm = population.select(pl.col("r_score", "f_score", "m_score").fill_null(1)).to_numpy()
    rng = np.random.default_rng(0)
    # a propensity-like audience score: high for engaged members (who buy anyway)
    score = 1 / (
        1 + np.exp(-(5 * ((rfm.sum(axis=1) - 3) / 12 - 0.5) + rng.normal(0, 0.7, ids.size)))
    )
    store = CampaignStore.from_url(default_url(folder))
    store.migrate()
    first = datetime.combine(snap.as_of, datetime.min.time(), tzinfo=UTC)
    names, lines = [], []
    for k in range(4):
        cid, sent = f"sim-{k + 1}", first + timedelta(days=7 * k)
        chosen = np.flatnonzero(rng.random(ids.size) < 0.8)
        split = split_holdout(cid, ids[chosen], 30.0)
        control = np.isin(ids[chosen], split.control)
        seeds = items[10 * k : 10 * k + 5]
        events = simulated_purchases(
            population, split.treatment, split.control, campaign_id=cid,
            sent_local=sent.replace(tzinfo=None), seed_items=seeds, item_ids=items,
            tiers=snap.tiers, seed=k,
        )  # fmt: skip
        store.events.record(events.to_dicts())
        store.record_campaign(
            campaign_id=cid, treatment=split.treatment, control=split.control, sent_at=sent,
            holdout_percent=30.0, holdout_scheme=HOLDOUT_SCHEME, seed={"items": seeds},
            definition={"seed": {"items": seeds}},
            name=f"Simulated {k + 1}", model_version="random@1",
            treatment_scores=score[chosen][~control], control_scores=score[chosen][control],
        )  # fmt: skip
        names.append(cid)
        lines.append(events.drop("event_id"))
    store.dispose()
    dataset = folder / "dataset"
    dataset.mkdir()
    pl.concat(lines).write_parquet(dataset / "purchases.parquet")
    return Simulated(folder, dataset, names)


def test_list_and_show(simulated: Simulated, tmp_path: Path) -> None:
    listed = run("list", "--data-dir", str(simulated.store_dir))
    assert listed.exit_code == 0, listed.output
    for cid in simulated.campaigns:
        assert cid in listed.stdout
    assert listed.stdout.index("sim-4") < listed.stdout.index("sim-1")  # newest first
    assert "random@1" in listed.stdout
    shown = run("show", "sim-2", "--data-dir", str(simulated.store_dir))
    assert shown.exit_code == 0, shown.output
    assert "Simulated 2" in shown.stdout
    assert "holdout        30% by blake2b-64/v1" in shown.stdout
    assert "5 seed item(s): I000011, I000012" in shown.stdout
    # a folder without a database: nothing recorded, and no empty database left behind
    empty = run("list", "--data-dir", str(tmp_path / "none"))
    assert empty.exit_code == 0
    assert "no campaigns recorded" in empty.stdout
    assert not (tmp_path / "none").exists()


def _hand_conversion(simulated: Simulated, cid: str) -> dict[str, float]:
    """Share of each group with a seed item line (quantity > 0) in [send, send + 30 days)."""
    store = CampaignStore.from_url(default_url(simulated.store_dir))
    c = store.get(cid)
    groups = store.groups(cid)
    store.dispose()
    start = c.sent_at.replace(tzinfo=None)
    buyers = (
        pl.read_parquet(simulated.purchases / "purchases.parquet")
        .filter(
            pl.col("item_id").is_in(list(c.seed_items)),
            pl.col("quantity") > 0,
            pl.col("ts") >= start,
            pl.col("ts") < start + timedelta(days=30),
        )
        .get_column("member_id")
        .unique()
    )
    flagged = groups.with_columns(pl.col("member_id").is_in(buyers.implode()).alias("bought"))
    means = flagged.group_by("group").agg(pl.col("bought").mean())
    return dict(zip(means["group"].to_list(), means["bought"].to_list(), strict=True))


def _numbers(metrics: list[dict[str, Any]]) -> dict[str, float]:
    """Every number of a report's metrics by dotted name (NaN for None)."""
    flat: dict[str, float] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}", item)
        elif value is None or isinstance(value, int | float):
            flat[prefix] = float("nan") if value is None else float(value)

    for m in metrics:
        walk(m["name"], m)
    return flat


def test_report_from_events_and_from_a_dataset(simulated: Simulated, tmp_path: Path) -> None:
    common = ("--data-dir", str(simulated.store_dir), "--window-days", "30")
    from_events = run("report", "sim-1", "--out", str(tmp_path / "events"), *common)
    assert from_events.exit_code == 0, from_events.output
    out = from_events.stdout
    for text in ("Conversion (bought a seed item)", "95% interval", "incremental revenue",
                 "minimum detectable effect", "outcomes from events", "tier upgrades: not measured"):  # fmt: skip
        assert text in out
    files = {p.name for p in (tmp_path / "events").iterdir()}
    assert {
        "report.md",
        "report.csv",
        "report.json",
        "conversion_by_day.png",
        "uplift.png",
    } <= files
    report = json.loads((tmp_path / "events" / "report.json").read_text())
    seed = next(m for m in report["metrics"] if m["name"] == "conversion_seed")
    hand = _hand_conversion(simulated, "sim-1")
    assert seed["treatment"]["value"] == pytest.approx(hand["treatment"])
    assert seed["control"]["value"] == pytest.approx(hand["control"])
    assert (
        seed["difference"]["ci_low"]
        < seed["difference"]["estimate"]
        < seed["difference"]["ci_high"]
    )

    from_data = run(
        "report",
        "sim-1",
        "--out",
        str(tmp_path / "data"),
        "--data",
        str(simulated.purchases),
        *common,
    )
    assert from_data.exit_code == 0, from_data.output
    assert "outcomes from dataset:" in from_data.stdout
    other = json.loads((tmp_path / "data" / "report.json").read_text())
    # the same numbers (up to the order of floating-point sums over differently ordered lines)
    assert _numbers(other["metrics"]) == pytest.approx(
        _numbers(report["metrics"]), rel=1e-9, nan_ok=True
    )
    store = CampaignStore.from_url(default_url(simulated.store_dir))
    cached = store.cached_report("sim-1", 30, "events")
    store.dispose()
    assert cached is not None
    assert _numbers(cached["metrics"]) == pytest.approx(_numbers(report["metrics"]), nan_ok=True)


def test_report_cuts_the_window_in_the_data_time_zone(tmp_path: Path) -> None:
    store = CampaignStore.from_url(default_url(tmp_path))
    store.migrate()
    sent = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # 08:00 in New York (EDT, UTC-4)
    store.record_campaign(
        campaign_id="tz", treatment=["T1"], control=["C1"], sent_at=sent, holdout_percent=50,
        definition={}, seed={"items": ["I1"]},
    )  # fmt: skip
    lines = [("e1", "T1", datetime(2025, 6, 2, 7, 30)), ("e2", "T1", datetime(2025, 6, 2, 8, 30))]
    store.events.record(
        [
            {"event_id": e, "member_id": m, "order_id": e, "item_id": "I1", "ts": ts,
             "quantity": 1, "amount": 10.0}
            for e, m, ts in lines
        ]
    )  # fmt: skip
    store.dispose()

    def revenue(zone: str) -> float:
        result = run(
            "report",
            "tz",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / zone.replace("/", "_")),
            "--data-timezone",
            zone,
        )
        assert result.exit_code == 0, result.output
        report = json.loads((tmp_path / zone.replace("/", "_") / "report.json").read_text())
        revenue = next(m for m in report["metrics"] if m["name"] == "revenue_per_member")
        return float(revenue["treatment"]["value"])

    # local 07:30 is before the send (11:30 UTC), 08:30 after it; in UTC both are before 12:00
    assert revenue("America/New_York") == pytest.approx(10.0)
    assert revenue("UTC") == pytest.approx(0.0)


def test_bad_input_names_what_is_wrong(simulated: Simulated, tmp_path: Path) -> None:
    where = ("--data-dir", str(simulated.store_dir))
    unknown = run("report", "nope", "--out", str(tmp_path / "r"), *where)
    assert unknown.exit_code == 1
    assert "'nope' not found" in unknown.output
    assert run("show", "nope", *where).exit_code == 1
    window = run("report", "sim-1", "--out", str(tmp_path / "r"), "--window-days", "0", *where)
    assert window.exit_code == 1
    assert "--window-days" in window.output
    assert not (tmp_path / "r").exists()
    fit = run("uplift", "fit", "--snapshot", str(tmp_path), "--campaign", "nope", *where)
    assert fit.exit_code == 1
    assert "'nope' not found" in fit.output
    zone = run(
        "report", "sim-1", "--out", str(tmp_path / "r"), "--data-timezone", "Mars/Base", *where
    )
    assert zone.exit_code == 1
    assert "data_timezone" in zone.output
    missing = run("show", "sim-1", "--data-dir", str(tmp_path / "none"))
    assert missing.exit_code == 1
    assert "no campaign database" in missing.output


def test_uplift_fit_beats_propensity_on_held_out_campaigns(
    simulated: Simulated, world: World, tmp_path: Path
) -> None:
    out = tmp_path / "uplift.json"
    result = run(
        "uplift",
        "fit",
        "--snapshot",
        str(world.snapshot),
        "--out",
        str(out),
        "--data-dir",
        str(simulated.store_dir),
    )
    assert result.exit_code == 0, result.output
    assert "Held out: the latest 1 campaign(s) (sim-4)" in result.stdout
    table = pl.read_csv(tmp_path / "uplift.evaluation.csv")
    qini = dict(zip(table["ranking"], table["qini"], strict=True))
    assert set(qini) == {"uplift model", "propensity model", "audience score"}
    # the planted persuadables sit mid-engagement: uplift ranks them first, propensity does not
    assert qini["uplift model"] > qini["propensity model"] + 0.03
    assert qini["uplift model"] > qini["audience score"]
    assert (tmp_path / "uplift.qini.png").stat().st_size > 0
    assert "| uplift model |" in (tmp_path / "uplift.evaluation.md").read_text()
    model = load_model(out)
    assert model.info["campaigns"] == simulated.campaigns
    assert model.info["features"] == "uplift-features/v1"
    assert model.info["evaluation"]["uplift model"]["qini"] == pytest.approx(
        qini["uplift model"], abs=1e-4
    )
    columns = read_member_columns(world.snapshot)
    rows = np.arange(len(columns))
    predicted = model.predict(uplift_features(columns, rows, np.full(rows.size, 0.5)))
    assert predicted.shape == rows.shape
    assert np.isfinite(predicted).all()

    # the same from the dataset's purchases, one campaign: a seeded member split
    one = run("uplift", "fit", "--snapshot", str(world.snapshot), "--out", str(tmp_path / "one.json"),
              "--campaign", "sim-2", "--data", str(simulated.purchases), "--data-dir", str(simulated.store_dir))  # fmt: skip
    assert one.exit_code == 0, one.output
    assert "One campaign: 30% of its members held out (seed 0)" in one.stdout


def test_run_campaign_demo_sends_simulates_and_reports(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    run_campaign_demo(world.data, world.snapshot, world.bundle, out)
    first = capsys.readouterr().out
    cid = f"cmp_demo_{open_snapshot(world.snapshot).as_of:%Y%m%d}"
    assert f"campaign {cid} (Demo: " in first
    assert "Conversion (bought a seed item)" in first
    store = CampaignStore.from_url(default_url(out))
    c = store.get(cid)
    assert c.sent_at == datetime.combine(
        open_snapshot(world.snapshot).as_of, datetime.min.time(), tzinfo=UTC
    )
    assert c.counts["total"] == 1_500  # the best half of the 3,000 members
    assert c.counts["control"] / c.counts["total"] == pytest.approx(
        0.2, abs=3 * (0.16 / 1_500) ** 0.5
    )
    assert c.seed_items
    assert (c.seed or {})["categories"]
    assert store.groups(cid)["score"].null_count() == 0
    events = store.events.purchases(datetime(2000, 1, 1), datetime(2100, 1, 1))
    assert events.height > 0
    assert events["event_id"].str.starts_with(f"{cid}-").all()
    report = json.loads((out / "campaigns" / cid / "report.json").read_text())
    assert report["counts"] == {"treatment": c.counts["treatment"], "control": c.counts["control"]}

    # again: nothing recorded twice, the same report
    run_campaign_demo(world.data, world.snapshot, world.bundle, out)
    second = capsys.readouterr().out
    assert "already recorded" in second
    assert store.count() == 1
    assert (
        store.events.purchases(datetime(2000, 1, 1), datetime(2100, 1, 1)).height == events.height
    )
    again = json.loads((out / "campaigns" / cid / "report.json").read_text())
    assert _numbers(again["metrics"]) == pytest.approx(_numbers(report["metrics"]), nan_ok=True)
    store.dispose()
    listed = run("list", "--data-dir", str(out))
    assert cid in listed.stdout
