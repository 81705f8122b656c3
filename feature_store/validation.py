"""Validate the canonical tables: types, required values, ranges, uniqueness, references.

Every problem is reported with the file, the row (the line number for CSV files, counting the
header as line 1; the 1-based row number for Parquet), the column and a reason. A row with any
problem is rejected as a whole: it is kept out of the returned frames and written, with its
original cells and all its reasons, to ``<rejects_dir>/<table>.csv``. Nothing is dropped
silently: ``rows_read == rows_valid + rows_rejected`` for every table.

Rules (one reason string each; the value that failed is reported beside it):
- a required column missing from the file: the whole dataset is unusable (DataError);
- a required cell empty: ``missing value``;
- a cell of the wrong type: ``not a number``, ``not an integer``, ``not a boolean``,
  ``not a date (YYYY-MM-DD)``, ``not a timestamp (ISO 8601)``, ``not a finite number``;
- ranges: ``negative price``, ``zero quantity``, ``negative points balance``,
  ``timestamp in the future``, ``date in the future``, ``amount sign disagrees with quantity``,
  ``unknown tier``;
- uniqueness: ``duplicate member_id`` / ``duplicate item_id`` (later occurrences; the first is
  kept), ``duplicate row`` (a purchase line identical in every column to an earlier one);
- references: ``unknown member_id`` / ``unknown item_id`` (not among the valid rows of members /
  items; a reference to a rejected row is reported as such).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from feature_store.schema import ITEMS, MEMBERS, PURCHASES, TAG_SEPARATOR, Col, Kind, TableSpec
from feature_store.validation_report import TableReport, ValidationReport

_ROW = "__row"  # 0-based position of the row in its file
_REASONS = "__reasons"  # list of "column: reason (value)" strings per row

_DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_DATETIME_TZ_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z")
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


# --------------------------------------------------------------------------- typing of cells


@dataclass(frozen=True, slots=True)
class _Check:
    """One rule: a cheap boolean condition, and the message text built only for failing rows."""

    cond: pl.Expr
    text: pl.Expr


def _problem(cond: pl.Expr, column: str, reason: str, value: pl.Expr | None = None) -> _Check:
    """A check whose text is ``column: reason`` (plus the value) where ``cond`` holds."""
    text = pl.lit(f"{column}\x1f{reason}\x1f")
    if value is not None:
        text = text + value.cast(pl.String).fill_null("")
    return _Check(cond.fill_null(False), pl.when(cond).then(text).otherwise(None))


@dataclass(slots=True)
class _Checked:
    """Typed rows (with _ROW) and, for the rows that failed a check so far, their reasons."""

    frame: pl.DataFrame
    reasons: list[pl.DataFrame]

    def add(self, checks: list[_Check], source: pl.DataFrame | None = None) -> None:
        """Evaluate ``checks`` on ``source`` (default: the typed frame); keep failing rows' texts.

        Conditions run over every row; message texts only over the rows that fail.
        """
        if not checks:
            return
        base = self.frame if source is None else source
        bad = base.select(pl.any_horizontal([c.cond for c in checks])).to_series()
        if not bad.any():
            return
        failing = base.filter(bad).select(
            pl.col(_ROW), pl.concat_list([c.text for c in checks]).list.drop_nulls().alias(_REASONS)
        )
        self.reasons.append(failing)

    def add_duplicates(self, keys: list[str], reason: str) -> None:
        """Every occurrence after the first among rows sharing ``keys`` (non-null keys)."""
        not_null = pl.all_horizontal([pl.col(k).is_not_null() for k in keys])
        # A 64-bit row hash finds candidate groups cheaply; the exact comparison then runs on
        # the candidates only, so a hash collision can never reject a row.
        candidates = self.frame.filter(not_null & pl.struct(keys).hash(seed=7).is_duplicated())
        if candidates.height == 0:
            return
        dups = candidates.filter(~pl.struct(keys).is_first_distinct())
        if dups.height == 0:
            return
        firsts = (
            candidates.join(dups.select(keys).unique(), on=keys, how="semi")
            .group_by(keys)
            .agg(pl.col(_ROW).min().alias("__first"))
        )
        column = keys[0] if len(keys) == 1 else "*"
        # The first occurrence as a 0-based row; the report adds the file's line offset.
        check = _problem(pl.lit(True), column, reason, pl.col("__first"))
        self.reasons.append(
            dups.join(firsts, on=keys, how="left").select(
                pl.col(_ROW), pl.concat_list([check.text]).alias(_REASONS)
            )
        )

    def add_reference(self, column: str, table: str, valid: pl.Series, all_ids: pl.Series) -> None:
        """Reject rows whose ``column`` is not a valid id; say when it points at a rejected row."""
        orphans = self.frame.filter(pl.col(column).is_not_null()).join(
            valid.unique().to_frame(column), on=column, how="anti"
        )
        if orphans.height == 0:
            return
        in_file = pl.col(column).is_in(all_ids.unique().implode())
        checks = [
            _problem(~in_file, column, f"unknown {column}", pl.col(column)),
            _problem(in_file, column, f"{column} refers to a rejected {table} row", pl.col(column)),
        ]
        self.add(checks, source=orphans)

    def rejected_reasons(self) -> pl.DataFrame:
        """_ROW -> all reasons of each rejected row, in check order."""
        if not self.reasons:
            return pl.DataFrame(
                schema={_ROW: self.frame.schema[_ROW], _REASONS: pl.List(pl.String)}
            )
        return (
            pl.concat(self.reasons)
            .group_by(_ROW, maintain_order=True)
            .agg(pl.col(_REASONS).list.explode(keep_nulls=False, empty_as_null=False))
            .sort(_ROW)
        )


def parse_datetime(raw: pl.Expr) -> pl.Expr:
    """Parse ISO 8601 text (date, date-time, optional fraction and offset) to naive Datetime("us").

    Offsets are converted to UTC; unparseable text gives null.
    """
    naive = pl.coalesce(
        [raw.str.to_datetime(f, strict=False, time_unit="us") for f in _DATETIME_FORMATS]
    )
    aware = pl.coalesce(
        [
            raw.str.replace(r"Z$", "+00:00")
            .str.to_datetime(f, strict=False, time_unit="us", time_zone="UTC")
            .dt.replace_time_zone(None)
            for f in _DATETIME_TZ_FORMATS
        ]
    )
    return pl.coalesce([naive, aware])


def _typed(column: str, kind: Kind, dtype: pl.DataType) -> tuple[pl.Expr, _Check | None]:
    """(typed value, type problem) expressions for one column of whatever input dtype."""
    c = pl.col(column)
    value: pl.Expr
    if dtype == kind.dtype:
        if kind is Kind.FLOAT:
            return c, _problem(c.is_not_null() & ~c.is_finite(), column, "not a finite number", c)
        if kind is Kind.ID:
            # Already text: an empty id is reported as missing; no copy of 20M strings.
            return c, None
        if kind is Kind.TEXT:
            stripped = c.str.strip_chars()
            return pl.when(stripped == "").then(None).otherwise(stripped), None
        return c, None
    if kind is Kind.TAGS and isinstance(dtype, pl.List):
        return c.cast(pl.List(pl.String)), None
    if isinstance(dtype, pl.Datetime) and kind is Kind.DATETIME:
        value = c.dt.convert_time_zone("UTC").dt.replace_time_zone(None) if dtype.time_zone else c
        return value.cast(pl.Datetime("us")), None
    if isinstance(dtype, pl.Date) and kind is Kind.DATETIME:
        return c.cast(pl.Datetime("us")), None
    if dtype.is_integer() and kind in (Kind.ID, Kind.TEXT):
        return c.cast(pl.String), None
    if dtype.is_numeric() and kind in (Kind.FLOAT, Kind.INT):
        cast: pl.Expr = c.cast(kind.dtype, strict=False)
        reason = "not an integer" if kind is Kind.INT else "not a number"
        bad = c.is_not_null() & (cast.is_null() | (cast.cast(pl.Float64) != c.cast(pl.Float64)))
        return cast, _problem(bad, column, reason, c)

    # Everything else is parsed from text (CSV cells are always text).
    raw = c.cast(pl.String).str.strip_chars()
    raw = pl.when(raw == "").then(None).otherwise(raw)
    present = raw.is_not_null()
    if kind in (Kind.ID, Kind.TEXT):
        return raw, None
    if kind is Kind.TAGS:
        tags = raw.str.split(TAG_SEPARATOR).list.eval(pl.element().str.strip_chars())
        return tags.list.eval(pl.element().filter(pl.element() != "")), None
    if kind is Kind.FLOAT:
        value = raw.cast(pl.Float64, strict=False)
        nan = value.is_not_null() & ~value.is_finite()
        unparsed = present & value.is_null()
        text = (
            pl.when(unparsed).then(pl.lit("not a number")).otherwise(pl.lit("not a finite number"))
        )
        check = _Check(
            (unparsed | nan).fill_null(False),
            pl.when(unparsed | nan).then(pl.lit(f"{column}\x1f") + text + pl.lit("\x1f") + raw),
        )
        return value, check
    if kind is Kind.INT:
        value = raw.cast(pl.Int64, strict=False)
        return value, _problem(present & value.is_null(), column, "not an integer", raw)
    if kind is Kind.BOOL:
        low = raw.str.to_lowercase()
        value = pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
        return value, _problem(present & value.is_null(), column, "not a boolean", raw)
    if kind is Kind.DATE:
        value = raw.str.to_date("%Y-%m-%d", strict=False)
        return value, _problem(present & value.is_null(), column, "not a date (YYYY-MM-DD)", raw)
    if kind is Kind.DATETIME:
        value = parse_datetime(raw)
        return value, _problem(present & value.is_null(), column, "not a timestamp (ISO 8601)", raw)
    raise AssertionError(f"unhandled kind {kind}")  # pragma: no cover - Kind is closed


def _type_table(raw: pl.DataFrame, spec: TableSpec) -> _Checked:
    """Typed columns of ``spec`` (with _ROW), and the rows whose cells failed typing."""
    typed: list[pl.Expr] = []
    checks: list[_Check] = []
    for col in spec.columns:
        if col.name not in raw.columns:
            typed.append(pl.lit(None, dtype=col.kind.dtype).alias(col.name))
            continue
        value, problem = _typed(col.name, col.kind, raw.schema[col.name])
        typed.append(value.alias(col.name))
        if problem is not None:
            checks.append(problem)
        if col.required:
            failed_type = problem.cond if problem is not None else pl.lit(False)
            missing = value.is_null() | (value == "") if col.kind is Kind.ID else value.is_null()
            checks.append(_problem(missing & ~failed_type, col.name, "missing value"))
    source = raw.with_row_index(_ROW)
    checked = _Checked(source.select(pl.col(_ROW), *typed), [])
    checked.add(checks, source=source)
    return checked


# --------------------------------------------------------------------------- per-table rules


def _range_checks(spec: TableSpec, tiers: list[str], now: datetime) -> list[_Check]:
    future_ts = pl.lit(now, dtype=pl.Datetime("us"))
    if spec is MEMBERS:
        return [
            _problem(pl.col(Col.JOINED_AT) > future_ts, Col.JOINED_AT, "timestamp in the future", pl.col(Col.JOINED_AT)),
            _problem(pl.col(Col.BIRTH_DATE) > pl.lit(now.date()), Col.BIRTH_DATE, "date in the future", pl.col(Col.BIRTH_DATE)),
            _problem(pl.col(Col.POINTS_BALANCE) < 0, Col.POINTS_BALANCE, "negative points balance", pl.col(Col.POINTS_BALANCE)),
            _problem(pl.col(Col.TIER).is_not_null() & ~pl.col(Col.TIER).is_in(tiers), Col.TIER, "unknown tier", pl.col(Col.TIER)),
        ]  # fmt: skip
    if spec is ITEMS:
        return [
            _problem(pl.col(Col.PRICE) < 0, Col.PRICE, "negative price", pl.col(Col.PRICE)),
            _problem(pl.col(Col.MIN_TIER).is_not_null() & ~pl.col(Col.MIN_TIER).is_in(tiers), Col.MIN_TIER, "unknown tier", pl.col(Col.MIN_TIER)),
        ]  # fmt: skip
    q, a = pl.col(Col.QUANTITY), pl.col(Col.AMOUNT)
    return [
        _problem(q == 0, Col.QUANTITY, "zero quantity", q),
        _problem(pl.col(Col.TS) > future_ts, Col.TS, "timestamp in the future", pl.col(Col.TS)),
        _problem(((q > 0) & (a < 0)) | ((q < 0) & (a > 0)), Col.AMOUNT, "amount sign disagrees with quantity", a),
    ]  # fmt: skip


def _split(checked: _Checked) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid typed rows, rejected rows as _ROW + _REASONS)."""
    rejected = checked.rejected_reasons()
    valid = checked.frame.join(rejected.select(_ROW), on=_ROW, how="anti", maintain_order="left")
    return valid, rejected


def _problems_frame(rejected: pl.DataFrame) -> pl.DataFrame:
    exploded = rejected.select(_ROW, _REASONS).explode(_REASONS)
    parts = pl.col(_REASONS).str.split_exact("\x1f", 2)
    return exploded.select(
        pl.col(_ROW).cast(pl.Int64).alias("row"),
        parts.struct.field("field_0").alias("column"),
        parts.struct.field("field_1").alias("reason"),
        pl.when(parts.struct.field("field_2") == "")
        .then(None)
        .otherwise(parts.struct.field("field_2"))
        .alias("value"),
    )


def _describe_duplicates(problems: pl.DataFrame, is_csv: bool) -> pl.DataFrame:
    """Turn the 0-based row of a first occurrence into the file's own line/row number."""
    offset = 2 if is_csv else 1
    unit = "line" if is_csv else "row"
    first = pl.col("value").cast(pl.Int64, strict=False) + offset
    is_dup = pl.col("reason").str.starts_with("duplicate")
    return problems.with_columns(
        pl.when(is_dup)
        .then(pl.format("first seen at {} {}", pl.lit(unit), first))
        .otherwise(pl.col("value"))
        .alias("value")
    )


def _write_rejects(
    raw: pl.DataFrame,
    rejected: pl.DataFrame,
    report_problems: pl.DataFrame,
    path: Path,
    is_csv: bool,
) -> None:
    """Original cells of each rejected row, with its line/row and all its reasons."""
    offset = 2 if is_csv else 1
    messages = (
        report_problems.with_columns(
            pl.concat_str(
                pl.col("column"),
                pl.lit(": "),
                pl.col("reason"),
                pl.when(pl.col("value").is_not_null())
                .then(pl.format(" ({})", pl.col("value")))
                .otherwise(pl.lit("")),
            ).alias("msg")
        )
        .group_by("row", maintain_order=True)
        .agg(pl.col("msg").str.join("; ").alias("_reasons"))
    )
    text_cols = [
        pl.col(c).list.join(TAG_SEPARATOR) if isinstance(raw.schema[c], pl.List) else pl.col(c).cast(pl.String)
        for c in raw.columns
    ]  # fmt: skip
    original = raw.with_row_index("row").select(pl.col("row").cast(pl.Int64), *text_cols)
    where = "_line" if is_csv else "_row"
    out = (
        original.join(rejected.select(pl.col(_ROW).cast(pl.Int64).alias("row")), on="row")
        .join(messages, on="row", how="left")
        .with_columns((pl.col("row") + offset).alias(where))
        .sort(where)
        .select(where, "_reasons", *raw.columns)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    out.write_csv(path)


def _finish(
    spec: TableSpec,
    file: Path,
    raw: pl.DataFrame,
    checked: _Checked,
    rejects_dir: Path | None,
) -> tuple[pl.DataFrame, TableReport]:
    valid, rejected = _split(checked)
    is_csv = not file.name.endswith(".parquet")
    problems = _describe_duplicates(_problems_frame(rejected), is_csv)
    rejects_file = None
    if rejects_dir is not None:
        rejects_file = rejects_dir / f"{spec.name}.csv"
        rejects_file.unlink(missing_ok=True)
        if rejected.height:
            _write_rejects(raw, rejected, problems, rejects_file, is_csv)
        else:
            rejects_file = None
    clean = valid.drop(_ROW)
    if spec is ITEMS:
        clean = clean.with_columns(pl.col(Col.ACTIVE).fill_null(True))
    tag_fill = [pl.col(Col.TAGS).fill_null([])] if Col.TAGS in spec.column_names else []
    clean = clean.with_columns(tag_fill)
    report = TableReport(
        table=spec.name,
        file=file,
        rows_read=raw.height,
        rows_valid=clean.height,
        problems=problems,
        ignored_columns=tuple(c for c in raw.columns if c not in spec.column_names),
        rejects_file=rejects_file,
    )
    return clean, report


def validate_tables(
    folder: Path,
    files: dict[str, Path],
    raws: dict[str, pl.DataFrame],
    *,
    tiers: tuple[str, ...],
    now: datetime,
    rejects_dir: Path | None = None,
) -> tuple[dict[str, pl.DataFrame], ValidationReport]:
    """Validate the raw tables (as read from ``files``, keyed by table name): the valid rows
    of each table as typed frames, and the report of every rejected row.

    ``tiers`` are the allowed tier names, ``now`` the instant after which timestamps are "in
    the future". Rejected rows go to ``rejects_dir/<table>.csv`` when a folder is given.
    """
    frames: dict[str, pl.DataFrame] = {}
    reports: dict[str, TableReport] = {}
    typed_ids: dict[str, pl.Series] = {}
    for spec in (MEMBERS, ITEMS):
        checked = _type_table(raws[spec.name], spec)
        key = spec.key or spec.column_names[0]
        typed_ids[spec.name] = checked.frame.get_column(key)
        checked.add(_range_checks(spec, list(tiers), now))
        checked.add_duplicates([key], f"duplicate {key}")
        frames[spec.name], reports[spec.name] = _finish(
            spec, files[spec.name], raws[spec.name], checked, rejects_dir
        )

    checked = _type_table(raws[PURCHASES.name], PURCHASES)
    checked.add(_range_checks(PURCHASES, list(tiers), now))
    for column, spec in ((Col.MEMBER_ID, MEMBERS), (Col.ITEM_ID, ITEMS)):
        valid_ids = frames[spec.name].get_column(column)
        checked.add_reference(column, spec.name, valid_ids, typed_ids[spec.name])
    checked.add_duplicates(list(PURCHASES.column_names), "duplicate row")
    frames[PURCHASES.name], reports[PURCHASES.name] = _finish(
        PURCHASES, files[PURCHASES.name], raws[PURCHASES.name], checked, rejects_dir
    )
    return frames, ValidationReport(folder, reports, rejects_dir)
