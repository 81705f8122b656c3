"""The synthetic generator: exact sizes, determinism, and that every planted structure shows.

One small dataset is generated per module and checked through the public tables; each test
measures one planted effect against its "no structure" baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from feature_store.dataset import Dataset, LoadOptions, load_dataset
from feature_store.errors import ConfigError
from feature_store.schema import DEFAULT_TIERS, Col
from feature_store.synthetic import (
    GROUND_TRUTH_DIR,
    SynthConfig,
    generate,
    write_synthetic,
)

CFG = SynthConfig(members=3_000, items=1_000, purchases=60_000, seed=7)
#: the same data with tier-specific tastes at full strength
TIER_CFG = replace(CFG, tier_taste=1.0)
TIER_RANK = {t: i for i, t in enumerate(DEFAULT_TIERS)}
TRUTH_TABLES = ("members", "items", "clusters", "staples")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic(CFG, out)
    return out


@pytest.fixture(scope="module")
def data(folder: Path) -> Dataset:
    result = load_dataset(folder, LoadOptions(now=datetime(2026, 1, 1)))
    assert result.report.rejected_count == 0, result.report.summary()
    return result.dataset


@pytest.fixture(scope="module")
def truth(folder: Path) -> dict[str, pl.DataFrame]:
    return {n: pl.read_parquet(folder / GROUND_TRUTH_DIR / f"{n}.parquet") for n in TRUTH_TABLES}


@pytest.fixture(scope="module")
def tier_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_tier_taste")
    write_synthetic(TIER_CFG, out)
    return out


@pytest.fixture(scope="module")
def tier_data(tier_folder: Path) -> Dataset:
    result = load_dataset(tier_folder, LoadOptions(now=datetime(2026, 1, 1)))
    assert result.report.rejected_count == 0, result.report.summary()
    return result.dataset


def sales(data: Dataset) -> pl.DataFrame:
    return data.purchases.filter(pl.col(Col.QUANTITY) > 0)


# --------------------------------------------------------------------------- contract


def test_output_loads_with_zero_rejects_and_exact_sizes(data: Dataset) -> None:
    assert data.members.height == CFG.members
    assert data.items.height == CFG.items
    assert data.purchases.height == CFG.purchases


@pytest.mark.parametrize("purchases", [0, 1, 2, 7, 999, 12_345])
def test_purchase_rows_are_exactly_as_asked(purchases: int) -> None:
    cfg = SynthConfig(members=200, items=120, purchases=purchases, seed=1)
    result = generate(cfg)
    assert result.dataset.purchases.height == purchases
    returns = result.dataset.purchases.filter(pl.col(Col.QUANTITY) < 0).height
    assert returns == min(round(cfg.return_rate * purchases), purchases // 2)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    cfg = SynthConfig(members=400, items=150, purchases=6_000, seed=11)
    write_synthetic(cfg, tmp_path / "a")
    write_synthetic(cfg, tmp_path / "b")
    write_synthetic(replace(cfg, seed=12), tmp_path / "c")
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert len(files) == 3 + 5  # three tables; four ground-truth tables and synth.json
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    a = pl.read_parquet(tmp_path / "a" / "purchases.parquet")
    c = pl.read_parquet(tmp_path / "c" / "purchases.parquet")
    assert not a.equals(c)


def test_csv_output_loads_with_zero_rejects(tmp_path: Path) -> None:
    write_synthetic(SynthConfig(members=300, items=100, purchases=3_000, seed=2), tmp_path, "csv")
    assert (tmp_path / "purchases.csv").is_file()
    result = load_dataset(tmp_path)
    assert result.report.rejected_count == 0, result.report.summary()
    assert result.dataset.purchases.height == 3_000


def test_history_spans_two_years_up_to_the_fixed_end_date(data: Dataset) -> None:
    ts = data.purchases.get_column(Col.TS)
    end = datetime(2025, 12, 31, 23, 59, 59)
    assert ts.max() <= end  # type: ignore[operator]
    assert ts.max() >= end - timedelta(days=2)  # type: ignore[operator]
    assert ts.min() >= datetime(2024, 1, 2)  # type: ignore[operator]
    assert ts.min() <= datetime(2024, 1, 9)  # type: ignore[operator]


def test_end_date_moves_the_whole_history() -> None:
    result = generate(
        SynthConfig(members=200, items=100, purchases=2_000, end_date=date(2023, 6, 30))
    )
    assert result.dataset.purchases.get_column(Col.TS).max() <= datetime(2023, 6, 30, 23, 59, 59)  # type: ignore[operator]


def test_ground_truth_files_describe_the_run(folder: Path, truth: dict[str, pl.DataFrame]) -> None:
    meta = json.loads((folder / GROUND_TRUTH_DIR / "synth.json").read_text())
    assert meta["seed"] == 7
    assert meta["parameters"]["members"] == CFG.members
    assert meta["parameters"]["end_date"] == "2025-12-31"
    assert meta["stats"]["purchases"] == CFG.purchases
    assert len(meta["categories"]) == len(CFG.categories)
    assert truth["members"].height == CFG.members
    assert truth["items"].height == CFG.items
    assert truth["clusters"].height == CFG.clusters
    assert truth["items"].schema["cluster_log_affinity"] == pl.Array(pl.Float32, CFG.clusters)


def test_bad_parameters_are_refused_with_the_parameter_named() -> None:
    with pytest.raises(ConfigError, match="members must be >= 1"):
        SynthConfig(members=0)
    with pytest.raises(ConfigError, match="return_rate"):
        SynthConfig(return_rate=0.7)
    with pytest.raises(ConfigError, match="exclusive_items"):
        SynthConfig(exclusive_items=(("vip", 0.1),))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="tier_taste must be in"):
            SynthConfig(tier_taste=bad)


# --------------------------------------------------------------------------- planted structure


def test_item_popularity_is_heavy_tailed(data: Dataset) -> None:
    counts = sales(data).group_by(Col.ITEM_ID).len().get_column("len").sort(descending=True)
    top = float(counts.head(CFG.items // 100).sum()) / float(counts.sum())
    assert top > 0.10  # top 1% of items: over 10x their uniform share


def test_median_spend_rises_with_tier(data: Dataset) -> None:
    spend = data.purchases.group_by(Col.MEMBER_ID).agg(pl.col(Col.AMOUNT).sum().alias("spend"))
    medians = (
        data.members.join(spend, on=Col.MEMBER_ID, how="left")
        .with_columns(pl.col("spend").fill_null(0.0))
        .group_by(Col.TIER)
        .agg(pl.col("spend").median())
    )
    by_tier = dict(zip(medians[Col.TIER], medians["spend"], strict=True))
    ordered = [by_tier[t] for t in DEFAULT_TIERS]
    assert ordered == sorted(ordered)
    assert ordered[0] < ordered[-1] / 5
    counts = data.members.group_by(Col.TIER).len()
    shares = {t: n / CFG.members for t, n in counts.iter_rows()}
    assert shares == pytest.approx(dict(zip(DEFAULT_TIERS, CFG.tier_shares, strict=True)))


def test_members_tagged_loves_category_spend_more_of_their_money_there(data: Dataset) -> None:
    spend = (
        sales(data)
        .join(data.items.select(Col.ITEM_ID, Col.CATEGORY), on=Col.ITEM_ID)
        .group_by(Col.MEMBER_ID, Col.CATEGORY)
        .agg(pl.col(Col.AMOUNT).sum())
        .with_columns(share=pl.col(Col.AMOUNT) / pl.col(Col.AMOUNT).sum().over(Col.MEMBER_ID))
    )
    buyers = data.members.join(spend.select(Col.MEMBER_ID).unique(), on=Col.MEMBER_ID)
    checked = 0
    for category in [c.name for c in CFG.categories]:
        shares = buyers.join(
            spend.filter(pl.col(Col.CATEGORY) == category), on=Col.MEMBER_ID, how="left"
        ).with_columns(
            pl.col("share").fill_null(0.0),
            tagged=pl.col(Col.TAGS).list.contains(f"loves-{category}"),
        )
        tagged = shares.filter("tagged").get_column("share")
        others = shares.filter(~pl.col("tagged")).get_column("share")
        if tagged.len() >= 20:
            checked += 1
            assert tagged.mean() > 1.5 * others.mean(), category  # type: ignore[operator]
    assert checked >= 5


def test_crm_tags_are_present(data: Dataset) -> None:
    tags = data.members.get_column(Col.TAGS).explode()
    for name, base, _ in CFG.crm_tags:
        share = (tags == name).sum() / CFG.members
        assert base * 0.7 < share < base + 0.5, name


def test_exclusive_items_are_bought_only_by_eligible_tiers(data: Dataset) -> None:
    lines = (
        data.purchases.join(data.items.select(Col.ITEM_ID, Col.MIN_TIER), on=Col.ITEM_ID)
        .join(data.members.select(Col.MEMBER_ID, Col.TIER), on=Col.MEMBER_ID)
        .filter(pl.col(Col.MIN_TIER).is_not_null())
    )
    assert lines.height > 100
    assert set(lines.get_column(Col.MIN_TIER).unique()) == {"gold", "platinum"}
    for min_tier, tier in lines.select(Col.MIN_TIER, Col.TIER).unique().iter_rows():
        assert TIER_RANK[tier] >= TIER_RANK[min_tier], (min_tier, tier)


def test_returns_are_negative_own_orders_after_a_sale_of_the_same_item(data: Dataset) -> None:
    p = data.purchases
    returns = p.filter(pl.col(Col.QUANTITY) < 0)
    assert returns.height == round(CFG.return_rate * CFG.purchases)
    assert (returns.get_column(Col.AMOUNT) < 0).all()
    mixed = p.group_by(Col.ORDER_ID).agg((pl.col(Col.QUANTITY) < 0).n_unique().alias("kinds"))
    assert (mixed.get_column("kinds") == 1).all()  # a return has its own order id
    sold = sales(data).select(
        Col.MEMBER_ID,
        Col.ITEM_ID,
        pl.col(Col.TS).alias("sold_at"),
        pl.col(Col.QUANTITY).alias("sold"),
    )
    matched = (
        returns.join(sold, on=[Col.MEMBER_ID, Col.ITEM_ID])
        .filter((pl.col("sold_at") < pl.col(Col.TS)) & (-pl.col(Col.QUANTITY) <= pl.col("sold")))
        .select(Col.ORDER_ID, Col.ITEM_ID)
        .unique()
    )
    assert matched.height == returns.height


def test_orders_group_distinct_lines_of_one_visit(data: Dataset) -> None:
    orders = (
        sales(data)
        .group_by(Col.ORDER_ID)
        .agg(
            pl.len(),
            pl.col(Col.MEMBER_ID).n_unique().alias("members"),
            pl.col(Col.TS).n_unique().alias("times"),
            pl.col(Col.ITEM_ID).n_unique().alias("items"),
        )
    )
    assert (orders["members"] == 1).all()
    assert (orders["times"] == 1).all()
    assert (orders["items"] == orders["len"]).all()  # no item twice in one order
    assert 2.0 < orders["len"].mean() < 4.0  # type: ignore[operator]
    # Order ids follow time.
    firsts = data.purchases.group_by(Col.ORDER_ID).agg(pl.col(Col.TS).first()).sort(Col.ORDER_ID)
    assert firsts.get_column(Col.TS).is_sorted()


def test_members_rebuy_their_staples(data: Dataset, truth: dict[str, pl.DataFrame]) -> None:
    s = sales(data)
    repeat = 1 - s.select(pl.struct(Col.MEMBER_ID, Col.ITEM_ID).n_unique()).item() / s.height
    assert repeat > 0.4
    # For active members the first staple slot is among their three most bought items.
    counts = s.group_by(Col.MEMBER_ID, Col.ITEM_ID).len()
    top3 = (
        counts.sort("len", Col.ITEM_ID, descending=[True, False])
        .group_by(Col.MEMBER_ID, maintain_order=True)
        .head(3)
    )
    active = s.group_by(Col.MEMBER_ID).len().filter(pl.col("len") >= 60).select(Col.MEMBER_ID)
    first = truth["staples"].filter(pl.col("slot") == 0).join(active, on=Col.MEMBER_ID)
    hits = first.join(top3, on=[Col.MEMBER_ID, Col.ITEM_ID], how="semi").height
    assert first.height >= 50
    assert hits / first.height > 0.8


def test_december_is_the_busiest_month(data: Dataset) -> None:
    per_day = sales(data).group_by(pl.col(Col.TS).dt.date().alias("day")).len()
    dec = per_day.filter(pl.col("day").dt.month() == 12).get_column("len").mean()
    overall = sales(data).height / (CFG.span_days)
    assert dec > 1.3 * overall  # type: ignore[operator]


def test_some_purchases_happen_near_the_birthday(data: Dataset) -> None:
    orders = (
        sales(data)
        .unique(Col.ORDER_ID)
        .join(data.members.select(Col.MEMBER_ID, Col.BIRTH_DATE), on=Col.MEMBER_ID)
    )
    gap = (pl.col(Col.TS).dt.ordinal_day() - pl.col(Col.BIRTH_DATE).dt.ordinal_day()).abs()
    near = orders.select((gap <= CFG.birthday_window_days).mean()).item()
    chance = (2 * CFG.birthday_window_days + 1) / 365
    assert near > 1.7 * chance


def test_lifecycle_windows_hold(data: Dataset, truth: dict[str, pl.DataFrame]) -> None:
    span = data.purchases.group_by(Col.MEMBER_ID).agg(
        pl.col(Col.TS).min().alias("first"), pl.col(Col.TS).max().alias("last")
    )
    gt = (
        truth["members"]
        .join(span, on=Col.MEMBER_ID)
        .join(data.members.select(Col.MEMBER_ID, Col.JOINED_AT), on=Col.MEMBER_ID)
    )
    assert (gt["first"] >= gt[Col.JOINED_AT]).all()
    churned = gt.filter(pl.col("status") == "churned")
    assert churned.height > 100
    assert (churned["last"].dt.date() <= churned["last_active"]).all()
    assert (churned["last_active"] <= date(2025, 12, 31) - timedelta(days=CFG.churn_gap_days)).all()
    new = (
        truth["members"]
        .filter(pl.col("status") == "new")
        .join(data.members.select(Col.MEMBER_ID, Col.JOINED_AT), on=Col.MEMBER_ID)
    )
    assert new.height > 100
    assert (
        new[Col.JOINED_AT] >= datetime(2025, 12, 31) - timedelta(days=CFG.new_member_days)
    ).all()


def test_ground_truth_clusters_predict_what_members_buy(
    data: Dataset, truth: dict[str, pl.DataFrame]
) -> None:
    top = (
        truth["clusters"]
        .select("cluster", pl.col("top_items").arr.to_list())
        .explode("top_items")
        .rename({"top_items": Col.ITEM_ID})
    )
    lines = sales(data).join(
        truth["members"].select(Col.MEMBER_ID, "primary_cluster"), on=Col.MEMBER_ID
    )
    other = (pl.col("primary_cluster") + CFG.clusters // 2) % CFG.clusters
    own_share = (
        lines.join(
            top,
            left_on=["primary_cluster", Col.ITEM_ID],
            right_on=["cluster", Col.ITEM_ID],
            how="semi",
        ).height
        / lines.height
    )
    other_share = (
        lines.with_columns(other.alias("other"))
        .join(top, left_on=["other", Col.ITEM_ID], right_on=["cluster", Col.ITEM_ID], how="semi")
        .height
        / lines.height
    )
    chance = top.height / CFG.clusters / CFG.items
    assert own_share > 2 * other_share
    assert own_share > 5 * chance


def bonus_share_by_tier(data: Dataset) -> dict[str, float]:
    """Share of each tier's sale lines that buy a premium-tagged or an exclusive item."""
    shares = (
        sales(data)
        .join(data.items.select(Col.ITEM_ID, Col.TAGS, Col.MIN_TIER), on=Col.ITEM_ID)
        .join(data.members.select(Col.MEMBER_ID, Col.TIER), on=Col.MEMBER_ID)
        .group_by(Col.TIER)
        .agg(
            (pl.col(Col.TAGS).list.contains("premium") | pl.col(Col.MIN_TIER).is_not_null()).mean()
        )
    )
    return {t: float(v) for t, v in shares.iter_rows()}


def test_tier_taste_tilts_higher_tiers_toward_premium_and_exclusive_items(
    data: Dataset, tier_data: Dataset
) -> None:
    flat = bonus_share_by_tier(data)
    tilted = bonus_share_by_tier(tier_data)
    ordered = [tilted[t] for t in DEFAULT_TIERS]
    assert ordered == sorted(ordered), tilted
    assert tilted["diamond"] > 4 * tilted["regular"]
    assert tilted["platinum"] > 3 * tilted["regular"]
    # Without the knob only the exclusives (gold and up) separate the tiers, a little.
    assert flat["diamond"] < 1.5 * flat["regular"]
    # The lowest tier's taste is not tilted.
    assert tilted["regular"] == pytest.approx(flat["regular"], abs=0.03)


def test_tier_taste_changes_which_items_are_bought_and_nothing_else(
    folder: Path, tier_folder: Path, truth: dict[str, pl.DataFrame]
) -> None:
    tilted = {
        n: pl.read_parquet(tier_folder / GROUND_TRUTH_DIR / f"{n}.parquet") for n in TRUTH_TABLES
    }
    assert tilted["members"].equals(truth["members"])  # tiers, clusters, shares, lines
    assert tilted["clusters"].equals(truth["clusters"])
    assert tilted["items"].drop("tier_bonus").equals(truth["items"])
    keep = ["member_id", "slot", "planned_share"]
    assert tilted["staples"].select(keep).equals(truth["staples"].select(keep))
    assert not tilted["staples"].equals(truth["staples"])  # but other staple items
    for name in ("members", "items"):
        a = pl.read_parquet(folder / f"{name}.parquet").drop(Col.POINTS_BALANCE, strict=False)
        b = pl.read_parquet(tier_folder / f"{name}.parquet").drop(Col.POINTS_BALANCE, strict=False)
        assert a.equals(b), name  # points follow spend, which premium items raise


def test_tier_taste_is_recorded_in_the_ground_truth_only_when_on(
    folder: Path, tier_folder: Path, truth: dict[str, pl.DataFrame], tier_data: Dataset
) -> None:
    meta = json.loads((folder / GROUND_TRUTH_DIR / "synth.json").read_text())
    assert "tier_taste" not in meta["parameters"]  # default outputs keep their bytes
    assert "tier_tilt" not in meta
    assert "bonus_line_share" not in meta["stats"]
    assert "tier_bonus" not in truth["items"].columns

    meta = json.loads((tier_folder / GROUND_TRUTH_DIR / "synth.json").read_text())
    assert meta["parameters"]["tier_taste"] == 1.0
    assert meta["tier_tilt"] == pytest.approx(
        {"regular": 0.0, "silver": 0.75, "gold": 1.5, "platinum": 2.25, "diamond": 3.0}
    )
    assert meta["stats"]["bonus_line_share"] == pytest.approx(
        bonus_share_by_tier(tier_data), abs=1e-4
    )
    items = pl.read_parquet(tier_folder / GROUND_TRUTH_DIR / "items.parquet").join(
        tier_data.items, on=Col.ITEM_ID
    )
    expected = pl.col(Col.TAGS).list.contains("premium").cast(pl.Int32) + pl.col(
        Col.MIN_TIER
    ).is_not_null().cast(pl.Int32)
    assert items.select((pl.col("tier_bonus") == expected).all()).item()
    assert set(items.get_column("tier_bonus").unique()) == {0, 1, 2}


def test_points_balance_never_exceeds_net_spend(data: Dataset) -> None:
    spend = data.purchases.group_by(Col.MEMBER_ID).agg(pl.col(Col.AMOUNT).sum().alias("net"))
    joined = data.members.join(spend, on=Col.MEMBER_ID, how="left").with_columns(
        pl.col("net").fill_null(0.0)
    )
    assert (joined[Col.POINTS_BALANCE] >= 0).all()
    assert (joined[Col.POINTS_BALANCE] <= joined["net"].clip(lower_bound=0) + 1e-9).all()
    assert joined.select(pl.corr(Col.POINTS_BALANCE, "net")).item() > 0.5


# --------------------------------------------------------------------------- command line


def test_cli_writes_a_dataset_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "data", "synth", "--members", "300", "--items", "80",
         "--purchases", "2500", "--seed", "4", "--out", str(out), "--format", "csv",
         "--end-date", "2024-06-30"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2,500" in done.stdout
    result = load_dataset(out)
    assert result.report.rejected_count == 0
    assert result.dataset.purchases.get_column(Col.TS).max() <= datetime(2024, 6, 30, 23, 59, 59)  # type: ignore[operator]
    assert (out / GROUND_TRUTH_DIR / "synth.json").is_file()


def test_cli_refuses_bad_sizes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "data", "synth", "--members", "0", "--out", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--members" in done.stderr
