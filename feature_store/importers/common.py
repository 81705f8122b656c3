"""What every importer shares: ordered reject rules, the import report, writing the output.

An importer turns a source file into the three canonical tables. Every source row is accounted
for: it becomes a purchase row, or it is rejected by the **first** rule it breaks (rules are
ordered; one reason per row) and written to ``<out>/rejects/import_rejects.csv`` with its
original cells, its source location, the column at fault, the reason and a detail. The report
(``<out>/import_report.json``) counts rows in, kept and rejected per reason, and an importer
refuses to finish when ``kept + rejected != rows in``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import polars as pl

from feature_store.dataset import Dataset, Format, write_dataset
from feature_store.errors import DataError
from feature_store.schema import Col

Progress = Callable[[str], None]

#: Where rejected source rows go, relative to the output folder.
REJECTS_FILE = Path("rejects") / "import_rejects.csv"
#: The machine-readable import report, relative to the output folder.
REPORT_FILE = Path("import_report.json")

#: Columns an importer adds in front of the original cells of a rejected row.
LOCATION: Final = "_line"  # CSV: line number, the header is line 1
ROW_NUMBER: Final = "_row"  # Parquet: 1-based row number
REJECT_COLUMN = "_column"
REJECT_REASON = "_reason"
REJECT_DETAIL = "_detail"
_REJECT_META = (REJECT_COLUMN, REJECT_REASON, REJECT_DETAIL)


@dataclass(frozen=True, slots=True)
class SourceRows:
    """Source rows as text cells plus their location column (``_line`` or ``_row``)."""

    path: Path
    frame: pl.DataFrame
    #: Original column names, in file order.
    columns: tuple[str, ...]
    #: ``_line`` for CSV files (header is line 1), ``_row`` for Parquet (1-based).
    location: Literal["_line", "_row"]

    @property
    def unit(self) -> str:
        return "line" if self.location == LOCATION else "row"


def read_source(
    path: Path,
    required: Sequence[str],
    allowed: Sequence[str] | None = None,
    *,
    what: str,
) -> SourceRows:
    """Read a CSV (``.csv``, ``.csv.gz``) or Parquet file with every cell as text.

    ``required`` columns must be there (DataError naming the missing ones); when ``allowed`` is
    given, any other column is an error too. Cells keep their text: empty cells are null. For
    Parquet, non-text columns are cast to text (datetimes as ``YYYY-MM-DD HH:MM:SS[.ffffff]``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (the {what} source)")
    is_parquet = path.name.lower().endswith(".parquet")
    try:
        if is_parquet:
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=False)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {what} ({first})") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; the first line must be a header "
            f"naming at least {', '.join(required)} (found: {', '.join(frame.columns) or 'none'})"
        )
    clashes = [c for c in frame.columns if c in (LOCATION, ROW_NUMBER, *_REJECT_META)]
    if clashes:
        raise DataError(f"{path}: column name(s) {', '.join(clashes)} are reserved; rename them")
    if allowed is not None:
        extra = [c for c in frame.columns if c not in allowed]
        if extra:
            raise DataError(
                f"{path}: unexpected column(s) {', '.join(extra)} (allowed: "
                f"{', '.join(allowed)}); remove them or pass --ignore-extra"
            )
    text = [_as_text(name, dtype) for name, dtype in frame.schema.items()]
    location: Literal["_line", "_row"] = "_row" if is_parquet else "_line"
    offset = 1 if is_parquet else 2
    frame = frame.select(text).with_row_index(location, offset=offset)
    frame = frame.with_columns(pl.col(location).cast(pl.Int64))
    return SourceRows(path, frame, tuple(c for c in frame.columns if c != location), location)


def _as_text(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        return col.dt.strftime("%Y-%m-%d %H:%M:%S%.f").alias(name)
    if isinstance(dtype, pl.Date):
        return col.dt.strftime("%Y-%m-%d").alias(name)
    if dtype == pl.String:
        return col
    return col.cast(pl.String).alias(name)


@dataclass(frozen=True, slots=True)
class Rule:
    """One reject rule: rows where ``when`` is true (and no earlier rule matched) get ``reason``."""

    reason: str
    #: Source column at fault ("" when the row as a whole is at fault).
    column: str
    when: pl.Expr
    #: Text explaining this row's problem (e.g. "exact duplicate of line 12").
    detail: pl.Expr


def first_match(cases: Sequence[tuple[pl.Expr, pl.Expr]], default: pl.Expr) -> pl.Expr:
    """The value of the first case whose condition holds (null conditions count as false)."""
    expr = default
    for cond, value in reversed(cases):
        expr = pl.when(cond.fill_null(False)).then(value).otherwise(expr)
    return expr


def apply_rules(frame: pl.DataFrame, rules: Sequence[Rule]) -> pl.DataFrame:
    """Add ``_column``, ``_reason``, ``_detail`` from the first matching rule (null: kept)."""
    none = pl.lit(None, pl.String)
    return frame.with_columns(
        first_match([(r.when, pl.lit(r.column)) for r in rules], none).alias(REJECT_COLUMN),
        first_match([(r.when, pl.lit(r.reason)) for r in rules], none).alias(REJECT_REASON),
        first_match([(r.when, r.detail.cast(pl.String)) for r in rules], none).alias(REJECT_DETAIL),
    )


def split_rejects(checked: pl.DataFrame, source: SourceRows) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept rows, rejects file frame: location, column, reason, detail, original cells)."""
    bad = pl.col(REJECT_REASON).is_not_null()
    rejects = checked.filter(bad).select(source.location, *_REJECT_META, *source.columns)
    return checked.filter(~bad), rejects


def counts_by_reason(rejects: pl.DataFrame, rules: Sequence[Rule]) -> dict[str, int]:
    """Rejected rows per reason, in rule order, including reasons that matched nothing."""
    counts = dict.fromkeys((r.reason for r in rules), 0)
    for reason, n in rejects.group_by(REJECT_REASON).len().iter_rows():
        counts[reason] = int(n)
    return counts


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did, as counts. ``rows_in == rows_kept + rows_rejected`` always holds."""

    importer: str
    source: Path
    rows_in: int
    rows_kept: int
    rejects_by_reason: dict[str, int]
    members: int
    items: int
    #: Distinct order ids among kept rows with a positive quantity.
    orders: int
    #: Kept rows with a negative quantity (returns and cancellations).
    return_rows: int
    #: Distinct order ids among kept rows with a negative quantity.
    return_orders: int
    #: Importer-specific facts (source profile, category coverage, ...).
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejects_by_reason.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "importer": self.importer,
            "source": str(self.source),
            "rows_in": self.rows_in,
            "rows_kept": self.rows_kept,
            "rows_rejected": self.rows_rejected,
            "rejects_by_reason": self.rejects_by_reason,
            "members": self.members,
            "items": self.items,
            "orders": self.orders,
            "return_rows": self.return_rows,
            "return_orders": self.return_orders,
            "facts": self.facts,
        }

    def summary(self) -> str:
        lines = [
            f"imported {self.source} ({self.importer})",
            f"  rows in     {self.rows_in:>10,}",
            f"  rows kept   {self.rows_kept:>10,}",
            f"  rejected    {self.rows_rejected:>10,}",
        ]
        lines += [f"    {n:>10,}  {reason}" for reason, n in self.rejects_by_reason.items() if n]
        lines += [
            f"  members     {self.members:>10,}",
            f"  items       {self.items:>10,}",
            f"  orders      {self.orders:>10,}",
            f"  returns     {self.return_rows:>10,} rows in {self.return_orders:,} orders",
        ]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ImportResult:
    """The canonical tables built from a source, its rejected rows, and the report."""

    dataset: Dataset
    rejects: pl.DataFrame
    report: ImportReport


def purchase_counts(purchases: pl.DataFrame) -> tuple[int, int, int]:
    """(orders, return rows, return orders) of a canonical purchases frame."""
    q = pl.col(Col.QUANTITY)
    row = purchases.select(
        pl.col(Col.ORDER_ID).filter(q > 0).n_unique().alias("orders"),
        (q < 0).sum().alias("return_rows"),
        pl.col(Col.ORDER_ID).filter(q < 0).n_unique().alias("return_orders"),
    ).row(0)
    return int(row[0]), int(row[1]), int(row[2])


def check_accounted(rows_in: int, kept: int, rejected: int, source: Path) -> None:
    """Refuse to go on when a source row was neither kept nor rejected (a bug, not bad data)."""
    if kept + rejected != rows_in:
        raise RuntimeError(
            f"{source}: {rows_in} rows read but {kept} kept + {rejected} rejected = "
            f"{kept + rejected}; every row must be accounted for (importer bug)"
        )


def write_import(result: ImportResult, out: Path, fmt: Format) -> dict[str, Path]:
    """Write the dataset, the rejects file and the report into ``out``; returns their paths."""
    out = Path(out)
    paths = write_dataset(result.dataset, out, fmt)
    rejects_path = out / REJECTS_FILE
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    result.rejects.write_csv(rejects_path)
    report_path = out / REPORT_FILE
    report_path.write_text(json.dumps(result.report.to_dict(), indent=2) + "\n")
    return {**paths, "rejects": rejects_path, "report": report_path}
