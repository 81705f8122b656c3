"""Generate a synthetic dataset with planted structure, and write it with its ground truth."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from feature_store.dataset import Dataset, Format, write_dataset
from feature_store.schema import Col
from feature_store.synthetic.calendar import build_calendar
from feature_store.synthetic.catalog import ITEM_TAGS, build_catalog
from feature_store.synthetic.config import SynthConfig
from feature_store.synthetic.frames import dataset_frames, ids, truth_frames
from feature_store.synthetic.population import STATUSES, build_population
from feature_store.synthetic.purchases import Purchases, generate_purchases
from feature_store.synthetic.taste import build_taste, tier_tilts

#: independent random streams, one per stage, so that changing one stage leaves the others alone
STREAMS: tuple[str, ...] = (
    "catalog", "taste", "population", "lines", "baskets", "time", "amounts", "returns", "points",
)  # fmt: skip
GROUND_TRUTH_DIR = "ground_truth"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class SynthResult:
    dataset: Dataset
    #: ground-truth tables: members, items, clusters, staples
    truth: dict[str, pl.DataFrame]
    #: counts and facts for the summary and synth.json
    stats: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SynthSummary:
    folder: Path
    stats: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    def lines(self) -> list[str]:
        s = self.stats
        tiers = ", ".join(f"{t} {n:,}" for t, n in s["tiers"].items())
        status = ", ".join(f"{k} {n:,}" for k, n in s["statuses"].items())
        return [
            f"synthetic dataset in {self.folder} (seed {s['seed']})",
            f"  members    {s['members']:>12,}   tiers: {tiers}",
            f"             {'':>12}   lifecycle: {status}",
            f"  items      {s['items']:>12,}   exclusive: {s['exclusive_items']:,}",
            f"  purchases  {s['purchases']:>12,}   returns: {s['returns']:,}, "
            f"orders: {s['orders']:,} ({s['return_orders']:,} returns)",
            f"  time span  {s['first_ts']} .. {s['last_ts']}",
            f"  ground truth in {self.folder / GROUND_TRUTH_DIR}",
        ]


def random_streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {
        name: np.random.default_rng(child) for name, child in zip(STREAMS, children, strict=True)
    }


def generate(cfg: SynthConfig, progress: Callable[[str], None] | None = None) -> SynthResult:
    """Generate the three canonical tables and the ground truth, deterministically from cfg."""
    step = progress or (lambda _: None)
    rngs = random_streams(cfg.seed)
    step("catalogue")
    calendar = build_calendar(cfg)
    catalog = build_catalog(cfg, rngs["catalog"])
    taste = build_taste(cfg, catalog, rngs["taste"])
    step("members")
    people = build_population(cfg, taste, calendar, rngs["population"])
    purchases = generate_purchases(cfg, catalog, taste, people, calendar, rngs, step)

    step("tables")
    member_ids = ids("M", cfg.members)
    item_ids = ids("I", cfg.items)
    dataset = dataset_frames(cfg, catalog, people, purchases, member_ids, item_ids, rngs["points"])
    truth = truth_frames(cfg, catalog, taste, people, purchases, member_ids, item_ids)

    ts = dataset.purchases.get_column(Col.TS)
    stats: dict[str, Any] = {
        "seed": cfg.seed,
        "members": cfg.members,
        "items": cfg.items,
        "purchases": dataset.purchases.height,
        "sale_lines": dataset.purchases.height - purchases.returns,
        "returns": purchases.returns,
        "orders": purchases.orders,
        "return_orders": purchases.return_orders,
        "exclusive_items": int((catalog.min_level > 0).sum()),
        "staples": int(purchases.staples.item.size),
        "first_ts": str(ts.min()) if ts.len() else None,
        "last_ts": str(ts.max()) if ts.len() else None,
        "tiers": {t: int((people.tier == i).sum()) for i, t in enumerate(cfg.tiers)},
        "statuses": {s: int((people.status == i).sum()) for i, s in enumerate(STATUSES)},
    }
    if cfg.tier_taste > 0:  # only then, so that default outputs keep their bytes
        stats["bonus_line_share"] = _bonus_line_share(cfg, taste.bonus, people.tier, purchases)
    return SynthResult(dataset, truth, stats)


def _bonus_line_share(
    cfg: SynthConfig,
    bonus: npt.NDArray[np.int8],
    tier: npt.NDArray[np.int8],
    purchases: Purchases,
) -> dict[str, float]:
    """Share of each tier's sale lines that buy a premium or exclusive item (tier_taste)."""
    sale = purchases.quantity > 0
    line_tier = tier[purchases.member[sale]]
    hit = bonus[purchases.item[sale]] > 0
    lines = np.bincount(line_tier, minlength=len(cfg.tiers))
    hits = np.bincount(line_tier, weights=hit, minlength=len(cfg.tiers))
    return {
        t: round(float(hits[i] / lines[i]), 4) if lines[i] else 0.0 for i, t in enumerate(cfg.tiers)
    }


def write_synthetic(
    cfg: SynthConfig,
    folder: Path,
    fmt: Format = "parquet",
    progress: Callable[[str], None] | None = None,
) -> SynthSummary:
    """Generate and write the dataset to ``folder`` and the ground truth to folder/ground_truth.

    Ground-truth tables are always Parquet (they hold vector columns); synth.json holds every
    parameter, the seed and the counts.
    """
    step = progress or (lambda _: None)
    result = generate(cfg, step)
    step("writing tables")
    files = write_dataset(result.dataset, folder, fmt)
    truth_dir = folder / GROUND_TRUTH_DIR
    truth_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in result.truth.items():
        path = truth_dir / f"{name}.parquet"
        frame.write_parquet(path, compression="zstd", statistics=True)
        files[f"{GROUND_TRUTH_DIR}/{name}"] = path
    meta = {
        "generator": "feature_store.synthetic",
        "format_version": FORMAT_VERSION,
        "seed": cfg.seed,
        "parameters": cfg.to_json(),
        "categories": [c.name for c in cfg.categories],
        "tiers": list(cfg.tiers),
        "exclusive_tiers": list(cfg.exclusive_tiers),
        "statuses": list(STATUSES),
        "item_tags": list(ITEM_TAGS),
        "stats": result.stats,
        "files": {k: str(p.relative_to(folder)) for k, p in sorted(files.items())},
    }
    if cfg.tier_taste > 0:  # only then, so that default outputs keep their bytes
        meta["tier_tilt"] = dict(zip(cfg.tiers, tier_tilts(cfg).tolist(), strict=True))
    meta_path = truth_dir / "synth.json"
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    files[f"{GROUND_TRUTH_DIR}/synth"] = meta_path
    return SynthSummary(folder, result.stats, files)
