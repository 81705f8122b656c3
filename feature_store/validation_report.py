"""What validating a dataset found: per table the rows read, kept and rejected, and every problem.

:class:`ValidationReport` is returned with the valid rows by
:func:`feature_store.dataset.load_dataset`; feature_store.validation fills it in. A problem is one
row of :attr:`TableReport.problems` (``row``, ``column``, ``reason``, ``value``); rows are 0-based
and shown as the file's own line (CSV, header = line 1) or row (Parquet) number.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl


@dataclass(frozen=True, slots=True)
class TableReport:
    table: str
    file: Path
    rows_read: int
    rows_valid: int
    #: one row per problem: line, column, reason, value
    problems: pl.DataFrame
    ignored_columns: tuple[str, ...]
    rejects_file: Path | None

    @property
    def rows_rejected(self) -> int:
        return self.rows_read - self.rows_valid

    def location(self, row: int) -> str:
        """Human location of a 0-based row: CSV line number or Parquet row number."""
        return f"row {row + 1}" if self.file.name.endswith(".parquet") else f"line {row + 2}"


@dataclass(frozen=True, slots=True)
class ValidationReport:
    folder: Path
    tables: dict[str, TableReport] = field(default_factory=dict)
    rejects_dir: Path | None = None

    @property
    def rejected_count(self) -> int:
        return sum(t.rows_rejected for t in self.tables.values())

    def counts_by_reason(self) -> dict[str, int]:
        """``"table.column: reason" -> number of problems``, most frequent first."""
        counts: Counter[str] = Counter()
        for t in self.tables.values():
            if t.problems.height:
                grouped = t.problems.group_by("column", "reason").len()
                for column, reason, n in grouped.iter_rows():
                    counts[f"{t.table}.{column}: {reason}"] += n
        return dict(counts.most_common())

    def problems(self, limit: int | None = None) -> list[str]:
        """Problems as one-line messages naming file, line/row, column, reason and value."""
        lines: list[str] = []
        for t in self.tables.values():
            frame = t.problems if limit is None else t.problems.head(limit)
            for row, column, reason, value in frame.iter_rows():
                if value is None:
                    shown = ""
                elif reason.startswith("duplicate"):
                    shown = f" ({value})"
                else:
                    shown = f" (got {value!r})"
                lines.append(f"{t.file.name} {t.location(row)}, column {column}: {reason}{shown}")
        return lines if limit is None else lines[:limit]

    def summary(self, examples: int = 5) -> str:
        out = [f"dataset {self.folder}"]
        for t in self.tables.values():
            out.append(
                f"  {t.table:<10} {t.rows_read:>12,} rows read  {t.rows_valid:>12,} valid  "
                f"{t.rows_rejected:>10,} rejected   ({t.file.name})"
            )
            if t.ignored_columns:
                out.append(f"    ignored unknown column(s): {', '.join(t.ignored_columns)}")
        if self.rejected_count:
            out.append("rejected rows by reason:")
            out.extend(f"  {n:>10,}  {key}" for key, n in self.counts_by_reason().items())
            out.append("first problems:")
            out.extend(f"  {line}" for line in self.problems(limit=examples))
            if self.rejects_dir is not None:
                out.append(f"rejected rows with their reasons: {self.rejects_dir}/<table>.csv")
        else:
            out.append("no problems found")
        return "\n".join(out)


__all__ = ["TableReport", "ValidationReport"]
