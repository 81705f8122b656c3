"""The canonical data model: three tables, their columns, types and rules.

A dataset is a folder holding ``members``, ``items`` and ``purchases`` as CSV (``.csv`` or
``.csv.gz``) or Parquet (``.parquet``). In memory each table is a polars DataFrame whose columns
have exactly the dtypes declared here (:func:`TableSpec.polars_schema`). Ids are opaque strings;
timestamps are naive datetimes in the retailer's local time (microsecond precision); tags are
lists of strings in memory and ``|``-separated text in CSV files.

Column names are used through the constants of :class:`Col`, never as loose strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import polars as pl

#: Default tier ladder, lowest first. A tier policy (feature_store.policy) may define another.
DEFAULT_TIERS: tuple[str, ...] = ("regular", "silver", "gold", "platinum", "diamond")

#: Separator of tags inside one CSV cell.
TAG_SEPARATOR = "|"


class Col:
    """Canonical column names."""

    MEMBER_ID = "member_id"
    JOINED_AT = "joined_at"
    TIER = "tier"
    TAGS = "tags"
    BIRTH_DATE = "birth_date"
    POINTS_BALANCE = "points_balance"
    REGION = "region"

    ITEM_ID = "item_id"
    CATEGORY = "category"
    PRICE = "price"
    TITLE = "title"
    MIN_TIER = "min_tier"
    ACTIVE = "active"

    ORDER_ID = "order_id"
    TS = "ts"
    QUANTITY = "quantity"
    AMOUNT = "amount"


class Kind(StrEnum):
    """Logical column types; each maps to one polars dtype."""

    ID = "id"
    TEXT = "text"
    DATETIME = "datetime"
    DATE = "date"
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    TAGS = "tags"

    @property
    def dtype(self) -> pl.DataType:
        return _DTYPES[self]


_DTYPES: dict[Kind, pl.DataType] = {
    Kind.ID: pl.String(),
    Kind.TEXT: pl.String(),
    Kind.DATETIME: pl.Datetime("us"),
    Kind.DATE: pl.Date(),
    Kind.FLOAT: pl.Float64(),
    Kind.INT: pl.Int64(),
    Kind.BOOL: pl.Boolean(),
    Kind.TAGS: pl.List(pl.String()),
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: Kind
    required: bool
    description: str


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    #: Column whose values must be unique (None: no single-column key).
    key: str | None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    def polars_schema(self, present: tuple[str, ...] | None = None) -> dict[str, pl.DataType]:
        """Dtypes of the columns (all, or those in ``present``, in canonical order)."""
        names = (
            self.column_names
            if present is None
            else tuple(n for n in self.column_names if n in present)
        )
        return {n: self.column(n).kind.dtype for n in names}


MEMBERS = TableSpec(
    name="members",
    key=Col.MEMBER_ID,
    columns=(
        Column(Col.MEMBER_ID, Kind.ID, True, "member (customer) id"),
        Column(Col.JOINED_AT, Kind.DATETIME, True, "when the member joined the programme"),
        Column(Col.TIER, Kind.TEXT, False, "CRM tier, if the retailer already has one"),
        Column(Col.TAGS, Kind.TAGS, False, "CRM tags, '|'-separated in CSV"),
        Column(Col.BIRTH_DATE, Kind.DATE, False, "date of birth"),
        Column(Col.POINTS_BALANCE, Kind.INT, False, "loyalty points balance (>= 0)"),
        Column(Col.REGION, Kind.TEXT, False, "region or country"),
    ),
)

ITEMS = TableSpec(
    name="items",
    key=Col.ITEM_ID,
    columns=(
        Column(Col.ITEM_ID, Kind.ID, True, "item (product, SKU) id"),
        Column(Col.CATEGORY, Kind.TEXT, True, "category"),
        Column(Col.PRICE, Kind.FLOAT, True, "list price (>= 0)"),
        Column(Col.TITLE, Kind.TEXT, False, "display name"),
        Column(Col.TAGS, Kind.TAGS, False, "item tags, '|'-separated in CSV"),
        Column(Col.MIN_TIER, Kind.TEXT, False, "lowest tier allowed to see the item"),
        Column(Col.ACTIVE, Kind.BOOL, False, "whether the item can be recommended (default true)"),
    ),
)

PURCHASES = TableSpec(
    name="purchases",
    key=None,
    columns=(
        Column(Col.ORDER_ID, Kind.ID, True, "order (invoice) id; a return has its own order id"),
        Column(Col.MEMBER_ID, Kind.ID, True, "who bought"),
        Column(Col.ITEM_ID, Kind.ID, True, "what was bought"),
        Column(Col.TS, Kind.DATETIME, True, "when"),
        Column(
            Col.QUANTITY, Kind.INT, True, "units; negative for a return or cancellation, never 0"
        ),
        Column(
            Col.AMOUNT, Kind.FLOAT, True, "money paid; same sign as quantity (0 for free items)"
        ),
    ),
)

TABLES: tuple[TableSpec, ...] = (MEMBERS, ITEMS, PURCHASES)
TABLES_BY_NAME: dict[str, TableSpec] = {t.name: t for t in TABLES}


def empty_frame(spec: TableSpec) -> pl.DataFrame:
    """An empty frame with the table's canonical schema."""
    return pl.DataFrame(schema=spec.polars_schema())


def conform(frame: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """Order columns canonically, add missing optional columns as nulls, cast to canonical dtypes.

    For frames built in code (importers, the synthetic generator). It does not validate values:
    use :func:`feature_store.dataset.validate` for that. Raises ``KeyError`` naming a missing
    required column.
    """
    missing = [c for c in spec.required if c not in frame.columns]
    if missing:
        raise KeyError(f"{spec.name}: missing required column(s) {', '.join(missing)}")
    exprs = []
    for col in spec.columns:
        if col.name in frame.columns:
            exprs.append(pl.col(col.name).cast(col.kind.dtype))
        else:
            exprs.append(pl.lit(None, dtype=col.kind.dtype).alias(col.name))
    return frame.select(exprs)
