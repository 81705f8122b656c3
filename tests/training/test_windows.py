"""Three windows, the refit and the automatic mode, on data whose right answer is known:

* the windows are placed as documented (validation just before the test cutoff);
* changing only purchases inside the test window leaves the search's choice unchanged;
* the shipped (refit) model knows a member whose first purchase is in the last week;
* on data planted so that one model family must win (item pairs that only an item-item
  model can represent), the automatic mode picks that family.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.bundle_recommender import BundleRecommender
from feature_store.errors import DataError
from training.config import SearchConfig, SplitConfig, load_config
from training.pipeline import TrainOptions, TrainResult, train
from training.windows import resolve_windows

SMALL = """
name = "small"
[split]
test_days = 30
[model]
kind = "als"
[model.params]
factors = 16
iterations = 5
[blend]
candidates = 50
trending_candidates = 20
[evaluation]
ks = [10]
[bundle]
item_index = "exact"
member_index = "none"
precomputed_candidates = 10
[search]
families = [{families}]
max_trials = {trials}
budget_minutes = 5.0
"""


def small_config(tmp_path: Path, families: str = '"als"', trials: int = 4) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL.format(families=families, trials=trials), encoding="utf-8")
    return path


def copy_dataset(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for name in ("members", "items", "purchases"):
        shutil.copy(source / f"{name}.parquet", target / f"{name}.parquet")
    return target


# -- windows ---------------------------------------------------------------------------------


def purchases_between(first: str, last: str) -> pl.DataFrame:
    return pl.DataFrame({"ts": [datetime.fromisoformat(first), datetime.fromisoformat(last)]})


def test_validation_window_ends_where_the_test_window_starts() -> None:
    purchases = purchases_between("2025-01-05 10:00", "2025-06-30 18:00")
    windows = resolve_windows(SplitConfig(test_days=30), purchases)
    assert windows.test.cutoff == datetime(2025, 6, 1)
    assert windows.test.test_end == datetime(2025, 7, 1)
    assert windows.validation.test_end == windows.test.cutoff
    assert windows.validation.cutoff == datetime(2025, 5, 2)  # as long as the test window
    assert windows.as_of == datetime(2025, 7, 1)  # the day after the last purchase
    assert windows.refit.cutoff == windows.refit.test_end == windows.as_of

    fixed = SplitConfig(cutoff=date(2025, 3, 1), test_end=date(2025, 3, 14), validation_days=7)
    windows = resolve_windows(fixed, purchases)
    assert windows.validation.cutoff == datetime(2025, 2, 22)
    assert windows.describe() == {
        "validation_start": "2025-02-22",
        "validation_last_day": "2025-02-28",
        "test_start": "2025-03-01",
        "test_last_day": "2025-03-14",
        "refit_as_of": "2025-07-01",  # refit on everything, not only up to the test window
    }
    as_of = resolve_windows(SplitConfig(test_days=10, as_of=date(2025, 4, 1)), purchases)
    assert (as_of.test.cutoff, as_of.as_of) == (datetime(2025, 3, 22), datetime(2025, 4, 1))


def test_windows_that_leave_nothing_to_learn_from_are_refused() -> None:
    purchases = purchases_between("2025-06-10 10:00", "2025-06-30 18:00")
    with pytest.raises(DataError, match="nothing to train on before it"):
        resolve_windows(SplitConfig(test_days=30), purchases)
    late = SplitConfig(cutoff=date(2025, 3, 1), test_end=date(2025, 5, 1), as_of=date(2025, 4, 1))
    with pytest.raises(DataError, match="after the refit date"):
        resolve_windows(late, purchases_between("2025-01-01 10:00", "2025-06-30 18:00"))


# -- the test window never influences the choice ---------------------------------------------


def perturb_test_window(data: Path, cutoff: datetime) -> None:
    """Drop every other purchase line inside the test window and triple the rest."""
    path = data / "purchases.parquet"
    purchases = pl.read_parquet(path).with_row_index("row")
    inside = pl.col("ts") >= cutoff
    changed = purchases.filter(~inside | (pl.col("row") % 2 == 0)).with_columns(
        pl.when(inside)
        .then(pl.col("quantity") * 3)
        .otherwise(pl.col("quantity"))
        .alias("quantity"),
        pl.when(inside).then(pl.col("amount") * 3).otherwise(pl.col("amount")).alias("amount"),
    )
    changed.drop("row").write_parquet(path)


def test_purchases_inside_the_test_window_do_not_change_the_choice(
    synthetic_data: Path, tmp_path: Path
) -> None:
    config = load_config(small_config(tmp_path, '"als", "personal_knn"', trials=5))

    def run(data: Path, name: str) -> TrainResult:
        return train(
            TrainOptions(data=data, config=config, out=tmp_path / name, auto=True, track=False)
        )

    first = run(synthetic_data, "original")
    perturbed = copy_dataset(synthetic_data, tmp_path / "perturbed")
    perturb_test_window(perturbed, first.split.cutoff)
    second = run(perturbed, "perturbed")

    assert first.search is not None
    assert second.search is not None
    assert [t.objective for t in first.search.trials] == [t.objective for t in second.search.trials]
    assert first.search.best.values == second.search.best.values
    assert (first.config.model, first.config.weights, first.config.blend) == (
        second.config.model,
        second.config.weights,
        second.config.blend,
    )
    # the perturbation is real: the test score (scored once, after the choice) moved
    assert first.report.result("blend").value("ndcg", 10, "all") != second.report.result(
        "blend"
    ).value("ndcg", 10, "all")
    chosen = first.search.best
    assert chosen.objective >= max(
        t.objective for t in first.search.trials if t.name == "own_frequent_then_bestsellers"
    )
    assert (tmp_path / "original" / "search" / "best_config.toml").is_file()
    reproduced = load_config(tmp_path / "original" / "search" / "best_config.toml")
    assert reproduced.model == first.config.model


# -- the refit ships what happened last ------------------------------------------------------


def test_the_refit_model_knows_a_member_who_first_bought_last_week(
    synthetic_data: Path, tmp_path: Path
) -> None:
    data = copy_dataset(synthetic_data, tmp_path / "data")
    purchases = pl.read_parquet(data / "purchases.parquet")
    last = purchases.get_column("ts").max()
    assert isinstance(last, datetime)
    members = pl.read_parquet(data / "members.parquet")
    newbie = members.head(1).with_columns(
        pl.lit("NEWBIE").alias("member_id"), pl.lit(last - timedelta(days=6)).alias("joined_at")
    )
    pl.concat([members, newbie]).write_parquet(data / "members.parquet")
    bought = purchases.head(2).with_columns(
        pl.lit("NEWBIE").alias("member_id"),
        pl.lit("ONEWBIE").alias("order_id"),
        pl.lit(last - timedelta(days=3)).alias("ts"),
    )
    pl.concat([purchases, bought]).write_parquet(data / "purchases.parquet")

    config = load_config(small_config(tmp_path))
    shipped = train(TrainOptions(data=data, config=config, out=tmp_path / "refit", track=False))
    assert shipped.facts["refit"] is True
    assert shipped.facts["trained_before"] == (last.date() + timedelta(days=1)).isoformat()
    recommender = BundleRecommender.from_path(shipped.bundle)
    found = recommender.recommend(["NEWBIE"], 5)
    assert found.known.tolist() == [True]
    row = int(recommender.member_ids.lookup(["NEWBIE"])[0])
    assert np.abs(recommender.blender.history[row].toarray()).sum() > 0

    evaluated = replace(config, split=replace(config.split, refit=False))
    old = train(TrainOptions(data=data, config=evaluated, out=tmp_path / "old", track=False))
    assert BundleRecommender.from_path(old.bundle).recommend(["NEWBIE"], 5).known.tolist() == [
        False
    ]


# -- the automatic mode picks a planted winner ------------------------------------------------


def pair_dataset(folder: Path, seed: int = 3) -> Path:
    """3,000 items in 1,500 random pairs. "Teachers" buy whole pairs (and three unpaired items,
    noise) before the validation window; "learners" buy one item of six pairs before it, then
    the partners of three inside the validation window and of the other three inside the test
    window. A pair is an item-item fact with no low-rank shape: EASE
    represents it exactly, a 16-128 factor ALS cannot."""
    rng = np.random.default_rng(seed)
    n_items, n_teachers, n_learners = 3000, 3000, 800
    partner = np.empty(n_items, dtype=np.int64)
    order = rng.permutation(n_items)
    partner[order[::2]], partner[order[1::2]] = order[1::2], order[::2]
    start, end = datetime(2025, 1, 1), datetime(2025, 6, 30)
    test_cut, validation_cut = end - timedelta(days=29), end - timedelta(days=59)
    rows: list[tuple[str, str, str, datetime]] = []

    def buy(member: str, item: int, when: datetime) -> None:
        rows.append((f"O{len(rows):07d}", member, f"I{item:04d}", when))

    for t in range(n_teachers):
        for item in rng.choice(n_items, size=3, replace=False):
            when = start + timedelta(days=int(rng.integers(0, 110)))
            buy(f"T{t:05d}", int(item), when)
            buy(f"T{t:05d}", int(partner[item]), when + timedelta(hours=1))
        for item in rng.choice(n_items, size=3, replace=False):  # noise: unpaired purchases
            buy(f"T{t:05d}", int(item), start + timedelta(days=int(rng.integers(0, 110))))
    for learner in range(n_learners):
        member = f"L{learner:05d}"
        for position, item in enumerate(rng.choice(n_items, size=6, replace=False)):
            window = validation_cut if position < 3 else test_cut
            buy(member, int(item), start + timedelta(days=int(rng.integers(0, 100))))
            buy(member, int(partner[item]), window + timedelta(days=int(rng.integers(0, 25))))
    folder.mkdir(parents=True)
    ids = [f"T{t:05d}" for t in range(n_teachers)] + [f"L{i:05d}" for i in range(n_learners)]
    pl.DataFrame(
        {"member_id": ids, "joined_at": [start - timedelta(days=1)] * len(ids)}
    ).write_parquet(folder / "members.parquet")
    pl.DataFrame(
        {
            "item_id": [f"I{i:04d}" for i in range(n_items)],
            "category": [f"c{i % 10}" for i in range(n_items)],
            "price": [5.0] * n_items,
        }
    ).write_parquet(folder / "items.parquet")
    order_id, member_id, item_id, ts = zip(*rows, strict=True)
    pl.DataFrame(
        {
            "order_id": order_id,
            "member_id": member_id,
            "item_id": item_id,
            "ts": ts,
            "quantity": [1] * len(rows),
            "amount": [5.0] * len(rows),
        }
    ).write_parquet(folder / "purchases.parquet")
    return folder


def test_the_automatic_mode_picks_the_planted_winner(tmp_path: Path) -> None:
    data = pair_dataset(tmp_path / "pairs")
    config = load_config(small_config(tmp_path, '"als", "ease"', trials=7))
    assert config.search == replace(SearchConfig(), families=("als", "ease"), max_trials=7)
    result = train(
        TrainOptions(data=data, config=config, out=tmp_path / "out", auto=True, track=False)
    )
    assert result.search is not None
    assert result.search.best.name == "ease"
    assert result.config.model.kind == "ease"
    best_als = max(t.objective for t in result.search.trials if t.name == "als" and t.ok)
    assert result.search.best.objective > best_als + 0.1
    # and the win carries to the test window, scored once
    assert result.report.result("blend").value("ndcg", 10, "new") > 0.3


def test_families_too_large_for_the_data_are_left_out_of_the_search(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """personal-kNN's exact neighbour search is quadratic in members and EASE's solve in items;
    above their limits they are not tried (a trial cannot be interrupted by the budget)."""
    import training.search

    monkeypatch.setattr(training.search, "PERSONAL_KNN_MAX_MEMBERS", 10)
    config = load_config(small_config(tmp_path, '"als", "personal_knn"', trials=4))
    result = train(
        TrainOptions(
            data=synthetic_data, config=config, out=tmp_path / "out", auto=True, track=False
        )
    )
    assert result.search is not None
    assert result.search.facts.families == ("als",)
    assert {t.name for t in result.search.trials} <= {
        "als",
        "own_frequent_then_bestsellers",
        "als_plain",
    }
