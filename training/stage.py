"""One window's inputs: its feature snapshot, its prepared arrays and its evaluation set.

A training run builds up to three stages from one loaded dataset (training/windows.py): the
validation stage (the automatic search fits and scores every trial on it), the test stage (the
chosen configuration is scored once) and the refit stage (what ships). A stage prepares the
arrays once per distinct set of *preparation* settings (tag weights, buy-again half-life,
trending window) and keeps the last few, so a search that varies only model and blend settings
never re-reads the data.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from feature_store.dataset import Dataset, LoadOptions, load_dataset, read_raw, table_path
from feature_store.errors import DataError
from feature_store.offline import FeatureTables, build_features, source_fingerprint
from feature_store.policy import FeaturePolicy
from feature_store.schema import ITEMS, MEMBERS, PURCHASES, conform
from feature_store.snapshot import open_snapshot, snapshot_manifest, write_snapshot
from training.config import EvaluationConfig, TrainConfig
from training.data import PreparedData, SnapshotFrames, Split, prepare
from training.evaluate import EvalSet, build_eval_set

#: prepared variants a stage keeps (each holds the lines, history and trending arrays)
_KEEP = 2


@dataclass(frozen=True, slots=True)
class SnapshotSource:
    """Where a stage's feature snapshot comes from: built from the dataset (written to
    ``out``), or an existing folder (``existing``) whose as-of date must match."""

    data_dir: Path
    policy: FeaturePolicy
    data_fingerprint: str
    rejected_rows: int
    existing: Path | None = None


@dataclass
class Stage:
    """A split with its snapshot and prepared arrays (see the module docstring)."""

    name: str
    split: Split
    dataset: Dataset
    snapshot: SnapshotFrames
    snapshot_dir: Path
    snapshot_fingerprint: str
    _prepared: OrderedDict[tuple[Any, ...], PreparedData] = field(default_factory=OrderedDict)
    _eval_sets: dict[tuple[Any, ...], EvalSet] = field(default_factory=dict)

    def prepared(self, config: TrainConfig) -> PreparedData:
        """The arrays for ``config``'s preparation settings (cached)."""
        key = _preparation_key(config)
        if key in self._prepared:
            self._prepared.move_to_end(key)
            return self._prepared[key]
        data = prepare(self.dataset, self.snapshot, self.split, config.weights, config.blend)
        self._prepared[key] = data
        while len(self._prepared) > _KEEP:
            self._prepared.popitem(last=False)
        return data

    def eval_set(self, data: PreparedData, evaluation: EvaluationConfig) -> EvalSet:
        """The evaluated members and their relevance (the same for every preparation of this
        stage: who holds history and who bought in the window do not depend on weights)."""
        key = (evaluation.max_members, evaluation.few_purchases, evaluation.seed)
        found = self._eval_sets.get(key)
        if found is None:
            found = build_eval_set(data, evaluation)
            if found.rows.size == 0:
                raise DataError(
                    f"{self.name} window: no member bought anything between "
                    f"{self.split.cutoff_date} and {self.split.test_last_day} after buying "
                    "before it: nothing to evaluate; choose another cutoff or a longer window"
                )
            self._eval_sets[key] = found
        return found


def load_source(
    data_dir: Path, policy: FeaturePolicy, snapshot: Path | None = None
) -> tuple[Dataset, SnapshotSource]:
    """The valid rows of the dataset and where stages build their snapshots from (with the
    data's fingerprint and how many rows validation rejected).

    Validation is skipped only when it already happened on these exact bytes: ``snapshot``
    was built from files with the same fingerprint, rejected no row, and the tables are Parquet
    in canonical form (their typed columns are read as they are).
    """
    specs = (MEMBERS, ITEMS, PURCHASES)
    files = [table_path(data_dir, spec) for spec in specs]
    fingerprint = source_fingerprint(files)
    if snapshot is not None and all(f.suffix == ".parquet" for f in files):
        manifest = open_snapshot(snapshot).manifest
        if manifest.get("source_fingerprint") == fingerprint and manifest.get("rejected_rows") == 0:
            frames = [
                conform(read_raw(f, spec), spec) for f, spec in zip(files, specs, strict=True)
            ]
            return Dataset(*frames), SnapshotSource(data_dir, policy, fingerprint, 0)
    loaded = load_dataset(data_dir, LoadOptions(tiers=policy.tiers.names))
    source = SnapshotSource(data_dir, policy, fingerprint, loaded.report.rejected_count)
    return loaded.dataset, source


def split_fingerprint(data_fingerprint: str, split: Split, rows: Any, seed: int) -> str:
    """Same data, same window instants, same evaluated members: same fingerprint (what the
    promotion gate and the tuning trials compare)."""
    digest = hashlib.sha256()
    digest.update(data_fingerprint.encode())
    digest.update(f"|{split.cutoff.isoformat()}|{split.test_end.isoformat()}|{seed}|".encode())
    digest.update(np.ascontiguousarray(rows).tobytes())
    return f"sha256:{digest.hexdigest()[:32]}"


def build_stage(
    name: str, dataset: Dataset, split: Split, source: SnapshotSource, out: Path
) -> Stage:
    """The stage of ``split``: its snapshot as of the split's cutoff (read from
    ``source.existing`` when given, else built and written to ``out``)."""
    as_of = split.cutoff.date()
    tiers = source.policy.tiers.names
    if source.existing is not None:
        snapshot = open_snapshot(source.existing)
        if snapshot.as_of != as_of:
            raise DataError(
                f"{source.existing}: the snapshot is as of {snapshot.as_of}, the {name} stage "
                f"needs one as of {as_of}; build one with `recsys features build --as-of "
                f"{as_of}` or train with --as-of {snapshot.as_of}"
            )
        if snapshot.tiers != tiers:
            raise DataError(
                f"{source.existing}: the snapshot's tier ladder {list(snapshot.tiers)} differs "
                f"from the training config's feature policy {list(tiers)}"
            )
        frames, folder = SnapshotFrames.from_snapshot(snapshot), source.existing
    else:
        tables = write_cutoff_snapshot(
            source.data_dir,
            dataset,
            source.policy,
            as_of,
            out,
            source.data_fingerprint,
            source.rejected_rows,
        )
        frames, folder = SnapshotFrames.from_tables(tables, tiers), out
    fingerprint = source_fingerprint(sorted(p for p in folder.glob("*.parquet")))
    return Stage(name, split, dataset, frames, folder, fingerprint)


def write_cutoff_snapshot(
    data_dir: Path,
    dataset: Dataset,
    policy: FeaturePolicy,
    as_of: date,
    out: Path,
    data_fingerprint: str,
    rejected_rows: int,
) -> FeatureTables:
    """Build the member and item features as of the cutoff and write them as a snapshot folder
    (docs/feature_snapshot.md) at ``out``: what training and the offline audience evaluation
    learn from and what the bundle's serving rules point to."""
    tables: FeatureTables = build_features(dataset, policy, as_of)
    manifest = snapshot_manifest(
        tables,
        policy,
        fingerprint=data_fingerprint,
        source={"data_dir": str(data_dir.resolve())},
        rejected_rows=rejected_rows,
    )
    write_snapshot(tables, manifest, out)
    return tables


def _preparation_key(config: TrainConfig) -> tuple[Any, ...]:
    tags = config.weights.tags
    return (
        tags.boost,
        tags.category_prefix,
        tuple(sorted(tags.multipliers.items())),
        config.blend.buy_again_half_life_days,
        config.blend.trending_days,
    )


__all__ = [
    "SnapshotSource",
    "Stage",
    "build_stage",
    "load_source",
    "split_fingerprint",
    "write_cutoff_snapshot",
]
