"""Import a generic purchase log (one row per purchase line) as a canonical dataset.

Input: a CSV file with a header naming ``member_id, item_id, ts`` and optionally ``quantity``,
``amount``, ``order_id`` (any order). Another column is an error unless ``ignore_extra``.
Defaults, for an absent column or an empty cell: quantity 1, amount 0.0, order_id
``<member_id>@<ts>`` (ts in ISO form, so one member's lines at one instant form one order).

Each row is kept or rejected by the first rule it breaks, checked column by column:
``empty id`` (member_id, item_id), ``unparseable timestamp``, ``timestamp in the future``,
``not an integer`` / ``zero quantity`` (quantity), ``not a finite number`` /
``amount sign disagrees with quantity`` (amount), and ``duplicate row`` (equal in every
canonical value to an earlier row). Timestamps are read like the dataset validator reads them
(ISO 8601 date or date-time, optional fraction and UTC offset).

Members are the ids of kept rows (joined_at = first ts); items are the ids of kept rows with
category ``uncategorized`` and price = median of amount / quantity over rows that gave an amount
(0 when none did).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from feature_store.dataset import Dataset, Format
from feature_store.importers.common import (
    ImportReport,
    ImportResult,
    Progress,
    Rule,
    SourceRows,
    apply_rules,
    check_accounted,
    counts_by_reason,
    purchase_counts,
    read_source,
    split_rejects,
    write_import,
)
from feature_store.schema import ITEMS, MEMBERS, PURCHASES, Col, conform
from feature_store.validation import parse_datetime

IMPORTER = "csv"
#: Category given to every item of a generic log.
UNCATEGORIZED = "uncategorized"

REQUIRED: tuple[str, ...] = (Col.MEMBER_ID, Col.ITEM_ID, Col.TS)
OPTIONAL: tuple[str, ...] = (Col.QUANTITY, Col.AMOUNT, Col.ORDER_ID)

# Internal typed columns.
_MEMBER, _ITEM, _TS, _QTY, _AMOUNT, _ORDER, _FIRST = (
    "__member",
    "__item",
    "__ts",
    "__qty",
    "__amount",
    "__order",
    "__first",
)
_HAS_AMOUNT = "__has_amount"


def _cell(source: SourceRows, column: str) -> pl.Expr:
    """The trimmed text of ``column`` (null when empty or when the column is absent)."""
    if column not in source.columns:
        return pl.lit(None, pl.String)
    stripped = pl.col(column).str.strip_chars()
    return pl.when(stripped == "").then(None).otherwise(stripped)


def _parse(source: SourceRows) -> pl.DataFrame:
    ts = parse_datetime(_cell(source, Col.TS))
    ts_text = (
        pl.when(pl.col(_TS).dt.microsecond() == 0)
        .then(pl.col(_TS).dt.strftime("%Y-%m-%dT%H:%M:%S"))
        .otherwise(pl.col(_TS).dt.strftime("%Y-%m-%dT%H:%M:%S%.6f"))
    )
    typed = source.frame.with_columns(
        _cell(source, Col.MEMBER_ID).alias(_MEMBER),
        _cell(source, Col.ITEM_ID).alias(_ITEM),
        ts.alias(_TS),
        _cell(source, Col.QUANTITY).cast(pl.Int64, strict=False).alias(_QTY),
        _cell(source, Col.AMOUNT).cast(pl.Float64, strict=False).alias(_AMOUNT),
        _cell(source, Col.AMOUNT).is_not_null().alias(_HAS_AMOUNT),
    ).with_columns(
        pl.when(_cell(source, Col.QUANTITY).is_null()).then(1).otherwise(pl.col(_QTY)).alias(_QTY),
        pl.when(pl.col(_HAS_AMOUNT)).then(pl.col(_AMOUNT)).otherwise(0.0).alias(_AMOUNT),
        pl.coalesce(
            _cell(source, Col.ORDER_ID), pl.format("{}@{}", pl.col(_MEMBER), ts_text)
        ).alias(_ORDER),
    )
    key = [_ORDER, _MEMBER, _ITEM, _TS, _QTY, _AMOUNT]
    return typed.with_columns(pl.col(source.location).min().over(key).alias(_FIRST))


def _rules(source: SourceRows, now: datetime) -> list[Rule]:
    c = pl.col

    def shown(column: str) -> pl.Expr:
        raw = c(column).fill_null("") if column in source.columns else pl.lit("")
        return pl.format("{} is '{}'", pl.lit(column), raw)

    q, a = c(_QTY), c(_AMOUNT)
    has_qty = _cell(source, Col.QUANTITY).is_not_null()
    return [
        Rule("empty id", Col.MEMBER_ID, c(_MEMBER).is_null(), pl.lit("member_id is empty")),
        Rule("empty id", Col.ITEM_ID, c(_ITEM).is_null(), pl.lit("item_id is empty")),
        Rule("unparseable timestamp", Col.TS, c(_TS).is_null(), shown(Col.TS)),
        Rule("timestamp in the future", Col.TS, c(_TS) > pl.lit(now, pl.Datetime("us")),
             shown(Col.TS)),
        Rule("not an integer", Col.QUANTITY, has_qty & q.is_null(), shown(Col.QUANTITY)),
        Rule("zero quantity", Col.QUANTITY, q == 0, shown(Col.QUANTITY)),
        Rule("not a finite number", Col.AMOUNT, a.is_null() | ~a.is_finite(), shown(Col.AMOUNT)),
        Rule("amount sign disagrees with quantity", Col.AMOUNT,
             ((q > 0) & (a < 0)) | ((q < 0) & (a > 0)),
             pl.format("quantity {} with amount {}", q, a)),
        Rule("duplicate row", "", c(source.location) != c(_FIRST),
             pl.format("same purchase as {} {} in every column", pl.lit(source.unit), c(_FIRST))),
    ]  # fmt: skip


def _tables(kept: pl.DataFrame) -> Dataset:
    purchases = conform(
        kept.select(
            pl.col(_ORDER).alias(Col.ORDER_ID),
            pl.col(_MEMBER).alias(Col.MEMBER_ID),
            pl.col(_ITEM).alias(Col.ITEM_ID),
            pl.col(_TS).alias(Col.TS),
            pl.col(_QTY).alias(Col.QUANTITY),
            pl.col(_AMOUNT).alias(Col.AMOUNT),
        ),
        PURCHASES,
    )
    members = (
        kept.group_by(_MEMBER)
        .agg(pl.col(_TS).min().alias(Col.JOINED_AT))
        .rename({_MEMBER: Col.MEMBER_ID})
        .with_columns(pl.lit([], pl.List(pl.String)).alias(Col.TAGS))
        .sort(Col.MEMBER_ID)
    )
    unit_price = pl.col(_AMOUNT) / pl.col(_QTY)
    items = (
        kept.group_by(_ITEM)
        .agg(unit_price.filter(pl.col(_HAS_AMOUNT)).median().fill_null(0.0).alias(Col.PRICE))
        .rename({_ITEM: Col.ITEM_ID})
        .with_columns(
            pl.lit(UNCATEGORIZED).alias(Col.CATEGORY),
            pl.lit([], pl.List(pl.String)).alias(Col.TAGS),
            pl.lit(True).alias(Col.ACTIVE),
        )
        .sort(Col.ITEM_ID)
    )
    return Dataset(conform(members, MEMBERS), conform(items, ITEMS), purchases)


def build_csv_log(
    path: Path,
    *,
    ignore_extra: bool = False,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Read the purchase log at ``path`` and build the canonical tables (nothing written).

    ``now`` bounds timestamps (later ones are rejected as in the future; default: now).
    """
    step = progress or (lambda _name: None)
    step("reading the log")
    allowed = None if ignore_extra else (*REQUIRED, *OPTIONAL)
    source = read_source(Path(path), REQUIRED, allowed, what="purchase log")
    step("checking rows")
    rules = _rules(source, now or datetime.now())
    kept, rejects = split_rejects(apply_rules(_parse(source), rules), source)
    check_accounted(source.frame.height, kept.height, rejects.height, source.path)
    step("building members, items and purchases")
    dataset = _tables(kept)
    orders, return_rows, return_orders = purchase_counts(dataset.purchases)
    report = ImportReport(
        importer=IMPORTER,
        source=source.path,
        rows_in=source.frame.height,
        rows_kept=kept.height,
        rejects_by_reason=counts_by_reason(rejects, rules),
        members=dataset.members.height,
        items=dataset.items.height,
        orders=orders,
        return_rows=return_rows,
        return_orders=return_orders,
        facts={
            "columns_given": [c for c in source.columns if c in (*REQUIRED, *OPTIONAL)],
            "columns_ignored": [c for c in source.columns if c not in (*REQUIRED, *OPTIONAL)],
        },
    )
    return ImportResult(dataset, rejects, report)


def import_csv_log(
    path: Path,
    out: Path,
    fmt: Format = "parquet",
    *,
    ignore_extra: bool = False,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import the log at ``path`` into the dataset folder ``out`` (tables, rejects, report)."""
    result = build_csv_log(path, ignore_extra=ignore_extra, now=now, progress=progress)
    if progress is not None:
        progress("writing the dataset")
    write_import(result, out, fmt)
    return result.report
