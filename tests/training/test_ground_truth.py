"""Ground-truth recovery: on synthetic data the learned rankings agree with the planted tastes.

The generator plants, for member ``m`` with taste clusters ``k1`` (weight ``w``) and ``k2``,
the purchase probability ``p(i | m) = w p(i | k1) + (1 - w) p(i | k2)`` (ground_truth/items
holds ``log p(i | k)`` per cluster). The measure is the **planted top-decile precision@10**:
the share of a member's 10 recommended *new* items (never bought before the cutoff, the "new"
variant) that lie in the top 10% of the catalogue by that member's planted probability.
Random recommendations score 0.10; global popularity scores what a non-personal list gets
(popular items are in many members' top decile). The blend must beat both by far.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from training.config import load_config
from training.pipeline import TrainOptions, train

CONFIG = """
name = "ground-truth"
[split]
test_days = 45
[weights.tags]
boost = 1.5
category_prefix = "loves-"
[weights.bm25]
enabled = true
[model.params]
factors = 32
iterations = 10
regularization = 0.05
[blend]
buy_again = 10.0
trending = 0.5
[evaluation]
ks = [10]
[[baselines]]
name = "popularity"
kind = "popularity"
params = { measure = "members" }
[tracking]
enabled = false
"""


def planted_top_decile(folder: Path, members: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
    """Boolean (members x items): item in the member's planted top 10%, items in bundle order."""
    truth = folder / "ground_truth"
    m = (
        pl.DataFrame({"member_id": members})
        .join(pl.read_parquet(truth / "members.parquet"), on="member_id", how="left")
        .select("primary_cluster", "secondary_cluster", "primary_weight")
    )
    items = (
        pl.DataFrame({"item_id": item_ids})
        .join(pl.read_parquet(truth / "items.parquet"), on="item_id", how="left")
        .get_column("cluster_log_affinity")
        .to_numpy()
    )
    affinity = np.exp(np.asarray(items, dtype=np.float64)).T  # clusters x items
    w = m.get_column("primary_weight").to_numpy()[:, None]
    planted = (
        w * affinity[m.get_column("primary_cluster").to_numpy()]
        + (1 - w) * affinity[m.get_column("secondary_cluster").to_numpy()]
    )
    threshold = np.quantile(planted, 0.9, axis=1, keepdims=True)
    top: np.ndarray = planted >= threshold
    return top


def test_blend_recovers_planted_preferences(synthetic_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "gt.toml"
    path.write_text(CONFIG, encoding="utf-8")
    result = train(
        TrainOptions(data=synthetic_data, config=load_config(path), out=tmp_path / "out")
    )
    members = result.evaluated["new"]
    items = np.load(result.bundle / "item_ids.npy")
    top = planted_top_decile(synthetic_data, members, items)
    rows = np.arange(members.size)[:, None]

    def precision(ranked: np.ndarray) -> float:
        hits = np.where(ranked >= 0, top[rows, np.maximum(ranked, 0)], False)
        return float(hits.sum() / (ranked >= 0).sum())

    blend = precision(result.report.result("blend").rankings["new"][:, :10])
    popularity = precision(result.report.result("popularity").rankings["new"][:, :10])
    print(f"planted top-decile precision@10 (new): blend {blend:.3f}, popularity {popularity:.3f}")
    assert blend >= 0.4  # four times chance (0.10)
    assert blend >= popularity + 0.1
