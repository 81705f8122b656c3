"""A dataset folder: find, read, validate and write the three canonical tables.

``load_dataset(path)`` is the one entry point for code that consumes data: it reads the tables,
validates them (feature_store.validation) and returns only valid rows plus a report of every
rejected row. ``write_dataset`` writes frames in canonical form (CSV or Parquet).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import polars as pl

from feature_store.errors import DataError
from feature_store.schema import (
    DEFAULT_TIERS,
    ITEMS,
    MEMBERS,
    PURCHASES,
    TABLES,
    TAG_SEPARATOR,
    Kind,
    TableSpec,
    conform,
)
from feature_store.validation import validate_tables
from feature_store.validation_report import ValidationReport

Format = Literal["parquet", "csv"]
_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".csv.gz")


@dataclass(frozen=True, slots=True)
class Dataset:
    """The three canonical tables, typed as in feature_store.schema."""

    members: pl.DataFrame
    items: pl.DataFrame
    purchases: pl.DataFrame

    def table(self, spec: TableSpec) -> pl.DataFrame:
        frame: pl.DataFrame = getattr(self, spec.name)
        return frame


def table_path(folder: Path, spec: TableSpec) -> Path:
    """The file holding ``spec`` in ``folder``; a clear error if none or several are there."""
    found = [
        folder / f"{spec.name}{s}" for s in _SUFFIXES if (folder / f"{spec.name}{s}").is_file()
    ]
    if not found:
        names = ", ".join(f"{spec.name}{s}" for s in _SUFFIXES)
        raise DataError(f"{folder}: no {spec.name} table (expected one of {names})")
    if len(found) > 1:
        raise DataError(
            f"{folder}: {spec.name} is there twice ({', '.join(p.name for p in found)}); keep one"
        )
    return found[0]


def read_raw(path: Path, spec: TableSpec) -> pl.DataFrame:
    """Read a table file without casting: CSV cells stay strings, Parquet keeps its own types.

    Raises DataError when the file cannot be read at all or lacks a required column.
    """
    try:
        if path.name.endswith(".parquet"):
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as {spec.name}: {exc}") from exc
    missing = [c for c in spec.required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing required column(s) {', '.join(missing)} "
            f"(the {spec.name} table needs {', '.join(spec.required)})"
        )
    return frame


def _to_csv_frame(frame: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """Flatten list columns to '|'-separated text for CSV."""
    exprs = []
    for name in frame.columns:
        kind = spec.column(name).kind if name in spec.column_names else None
        if kind is Kind.TAGS:
            exprs.append(pl.col(name).list.join(TAG_SEPARATOR).alias(name))
        else:
            exprs.append(pl.col(name))
    return frame.select(exprs)


def write_table(frame: pl.DataFrame, spec: TableSpec, folder: Path, fmt: Format) -> Path:
    """Write one canonical table (conformed to the spec) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in _SUFFIXES:  # never leave two versions of a table behind
        (folder / f"{spec.name}{suffix}").unlink(missing_ok=True)
    frame = conform(frame, spec)
    if fmt == "parquet":
        path = folder / f"{spec.name}.parquet"
        frame.write_parquet(path, compression="zstd", statistics=True)
    else:
        path = folder / f"{spec.name}.csv"
        _to_csv_frame(frame, spec).write_csv(path, datetime_format="%Y-%m-%dT%H:%M:%S%.f")
    return path


def write_dataset(dataset: Dataset, folder: Path, fmt: Format = "parquet") -> dict[str, Path]:
    """Write all three tables into ``folder``; returns table name -> path."""
    return {spec.name: write_table(dataset.table(spec), spec, folder, fmt) for spec in TABLES}


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """What validation checks against."""

    #: Timestamps after this instant are rejected as "in the future" (default: now).
    now: datetime | None = None
    #: Allowed tier names for members.tier and items.min_tier.
    tiers: tuple[str, ...] = DEFAULT_TIERS


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The valid rows of a dataset folder and the report of every rejected row."""

    dataset: Dataset
    report: ValidationReport


def load_dataset(
    folder: Path, options: LoadOptions | None = None, rejects_dir: Path | None = None
) -> LoadResult:
    """Read and validate the dataset in ``folder``: valid rows as typed frames, plus the report.

    Rejected rows (with file, line, column and reason) go to ``rejects_dir/<table>.csv`` when a
    folder is given. Raises DataError when a table is missing or lacks a required column.
    """
    options = options or LoadOptions()
    now = options.now or datetime.now()
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder not found")
    specs = (MEMBERS, ITEMS, PURCHASES)
    files = {spec.name: table_path(folder, spec) for spec in specs}
    raws = {spec.name: read_raw(files[spec.name], spec) for spec in specs}
    frames, report = validate_tables(
        folder, files, raws, tiers=options.tiers, now=now, rejects_dir=rejects_dir
    )
    dataset = Dataset(
        members=frames[MEMBERS.name], items=frames[ITEMS.name], purchases=frames[PURCHASES.name]
    )
    return LoadResult(dataset, report)


__all__ = [
    "Dataset",
    "Format",
    "LoadOptions",
    "LoadResult",
    "load_dataset",
    "read_raw",
    "table_path",
    "write_dataset",
    "write_table",
]
