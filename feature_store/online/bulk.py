"""Vectorized encoding of a snapshot's tables into the online store's values (polars).

Produces exactly the JSON that :mod:`feature_store.online.profile` writes one value at a time:
profiles as JSON arrays in PROFILE_FIELDS order, recent purchases as JSON arrays of
``{"o","i","t","q","a"}`` objects, newest first. :func:`audience_tables` and
:func:`parquet_bytes` encode what audiences read of the snapshot (member, item and coded
recent-purchase tables) as Parquet files (feature_store/online/audience_data.py stores them).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from feature_store.errors import DataError
from feature_store.member_columns import (
    ITEM_TABLE_COLUMNS,
    MEMBER_TABLE_COLUMNS,
    recent_purchase_table,
)
from feature_store.online.profile import PROFILE_FIELDS, TS_POLARS_FORMAT, Kind

#: Fields taken from members.parquet (``as_of`` comes from the manifest).
SNAPSHOT_FIELDS = tuple(f for f in PROFILE_FIELDS if f.name != "as_of")
RECENT_COLUMNS = ("member_id", "order_id", "item_id", "ts", "quantity", "amount")


def _json_value(expr: pl.Expr) -> pl.Expr:
    """JSON text of each value (strings escaped, nulls as ``null``), via ``{"v":...}``."""
    wrapped = pl.struct(expr.alias("v")).struct.json_encode()
    return wrapped.str.slice(5, wrapped.str.len_chars() - 6)


#: Characters a JSON string must escape.
_NEEDS_ESCAPE = r'["\\\x00-\x1f]'


def _needs_escape(frame: pl.DataFrame, name: str, kind: Kind) -> bool:
    col = frame[name]
    if kind is Kind.TEXT_LIST:
        col = col.explode()
    return bool(col.str.contains(_NEEDS_ESCAPE).any())


def _json_field(name: str, kind: Kind, escape: bool) -> pl.Expr:
    """JSON text of one profile column. Numbers and timestamps are formatted directly (floats
    are checked finite and print shortest round-trip); text is quoted directly when no value
    needs escaping (``escape`` False), else goes through the JSON encoder."""
    col = pl.col(name)
    if kind in (Kind.INT, Kind.FLOAT):
        return col.cast(pl.String).fill_null("null")
    if kind is Kind.TS:
        text = col.dt.strftime(TS_POLARS_FORMAT)
        return pl.concat_str([pl.lit('"'), text, pl.lit('"')]).fill_null("null")
    if escape:
        return _json_value(col)
    if kind is Kind.TEXT_LIST:
        joined = pl.concat_str([pl.lit('["'), col.list.join('","'), pl.lit('"]')])
        return pl.when(col.list.len() == 0).then(pl.lit("[]")).otherwise(joined)
    return pl.concat_str([pl.lit('"'), col, pl.lit('"')]).fill_null("null")


def check_members(members: pl.DataFrame, path: Path) -> pl.DataFrame:
    """The profile columns, cast to their types; DataError naming the file, column and a
    member when a column is missing, has the wrong type, or is null where it may not be."""
    missing = [f.name for f in SNAPSHOT_FIELDS if f.name not in members.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; the online store needs every "
            "column of docs/feature_snapshot.md (rebuild the snapshot with `recsys features build`)"
        )
    exprs = []
    for f in SNAPSHOT_FIELDS:
        col = pl.col(f.name)
        if f.kind is Kind.TEXT_LIST:
            exprs.append(col.cast(f.kind.dtype).fill_null([]))
        else:
            exprs.append(col.cast(f.kind.dtype))
    try:
        typed = members.select(exprs)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{path}: a profile column has the wrong type: {exc}") from exc
    for f in SNAPSHOT_FIELDS:
        if not f.nullable and typed[f.name].null_count():
            first = typed.filter(pl.col(f.name).is_null())["member_id"][0]
            raise DataError(
                f"{path}: column {f.name} is empty for member {first!r} "
                f"({typed[f.name].null_count()} row(s)); it may not be null"
            )
    for f in SNAPSHOT_FIELDS:
        if f.kind is Kind.FLOAT and not typed[f.name].drop_nulls().is_finite().all():
            first = typed.filter(~pl.col(f.name).is_finite())["member_id"][0]
            raise DataError(f"{path}: column {f.name} is not a finite number for member {first!r}")
    if typed["member_id"].is_duplicated().any():
        first = typed.filter(pl.col("member_id").is_duplicated())["member_id"][0]
        raise DataError(f"{path}: member_id {first!r} appears more than once")
    return typed


def profile_json(typed_members: pl.DataFrame, as_of: datetime) -> pl.Series:
    """One JSON array per row of :func:`check_members`'s result, with ``as_of`` last."""
    parts = [
        _json_field(
            f.name,
            f.kind,
            f.kind in (Kind.TEXT, Kind.TEXT_LIST) and _needs_escape(typed_members, f.name, f.kind),
        )
        for f in SNAPSHOT_FIELDS
    ]
    parts.append(pl.lit(f'"{as_of.isoformat(timespec="microseconds")}"'))
    return typed_members.select(
        pl.concat_str([pl.lit("["), pl.concat_str(parts, separator=","), pl.lit("]")]).alias("json")
    )["json"]


def check_recent(recent: pl.DataFrame, path: Path) -> pl.DataFrame:
    """The recent purchase lines, typed and sorted by member (then newest first)."""
    missing = [c for c in RECENT_COLUMNS if c not in recent.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    try:
        typed = recent.select(
            pl.col("member_id").cast(pl.String),
            pl.col("order_id").cast(pl.String),
            pl.col("item_id").cast(pl.String),
            pl.col("ts").cast(pl.Datetime("us")),
            pl.col("quantity").cast(pl.Int64),
            pl.col("amount").cast(pl.Float64),
        )
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{path}: a column has the wrong type: {exc}") from exc
    nulls = [c for c in RECENT_COLUMNS if typed[c].null_count()]
    if nulls:
        raise DataError(f"{path}: column {nulls[0]} has empty values")
    member, ts = pl.col("member_id"), pl.col("ts")
    in_order = (member > member.shift(1)) | ((member == member.shift(1)) & (ts <= ts.shift(1)))
    if not typed.select(in_order.fill_null(True).all()).item():
        typed = typed.sort(["member_id", "ts"], descending=[False, True], maintain_order=True)
    if not typed["amount"].is_finite().all():
        first = typed.filter(~pl.col("amount").is_finite())["member_id"][0]
        raise DataError(f"{path}: column amount is not a finite number for member {first!r}")
    return typed


def recent_json(lines: pl.DataFrame, cap: int) -> pl.DataFrame:
    """``member_id`` and ``json`` (the member's first ``cap`` lines, which are the newest:
    ``lines`` come from :func:`check_recent`, sorted by member, then newest first)."""
    if lines.is_empty():
        return pl.DataFrame(schema={"member_id": pl.String, "json": pl.String})
    starts = (lines["member_id"] != lines["member_id"].shift(1)).fill_null(True).arg_true()
    sizes = np.diff(np.append(starts.to_numpy(), lines.height))
    if sizes.max() > cap:
        lines = lines.filter(pl.int_range(pl.len()).over("member_id") < cap)
    row = pl.concat_str(
        [
            pl.lit('{"o":'),
            _json_field("order_id", Kind.TEXT, _needs_escape(lines, "order_id", Kind.TEXT)),
            pl.lit(',"i":'),
            _json_field("item_id", Kind.TEXT, _needs_escape(lines, "item_id", Kind.TEXT)),
            pl.lit(',"t":'),
            _json_field("ts", Kind.TS, False),
            pl.lit(',"q":'),
            _json_field("quantity", Kind.INT, False),
            pl.lit(',"a":'),
            _json_field("amount", Kind.FLOAT, False),
            pl.lit("}"),
        ]
    )
    return (
        lines.select("member_id", row.alias("row"))
        .group_by("member_id", maintain_order=True)
        .agg(pl.col("row"))
        .select(
            "member_id",
            pl.concat_str([pl.lit("["), pl.col("row").list.join(","), pl.lit("]")]).alias("json"),
        )
    )


#: The audience tables, in the order they are stored and hashed.
AUDIENCE_TABLES: Final[tuple[str, ...]] = ("members", "items", "recent", "recent_items")
#: Integer columns that Parquet stores as deltas (sorted or clustered values): the coded
#: recent-purchase table is sorted by item, then member row.
_DELTA_TABLES: Final[frozenset[str]] = frozenset({"recent"})


def audience_tables(
    typed_members: pl.DataFrame, typed_recent: pl.DataFrame, items: pl.DataFrame, items_path: Path
) -> dict[str, pl.DataFrame]:
    """The tables audiences read, from :func:`check_members`' and :func:`check_recent`'s
    results and items.parquet: ``members`` (:data:`MEMBER_TABLE_COLUMNS`, snapshot order),
    ``items`` (:data:`ITEM_TABLE_COLUMNS`), ``recent`` and ``recent_items``
    (:func:`~feature_store.member_columns.recent_purchase_table`)."""
    missing = [c for c in ITEM_TABLE_COLUMNS if c not in items.columns]
    if missing:
        raise DataError(
            f"{items_path}: missing column(s) {', '.join(missing)}; audiences need them "
            "(rebuild the snapshot with `recsys features build`)"
        )
    recent, recent_items = recent_purchase_table(typed_members["member_id"], typed_recent)
    return {
        "members": typed_members.select(MEMBER_TABLE_COLUMNS),
        "items": items.select(ITEM_TABLE_COLUMNS),
        "recent": recent,
        "recent_items": recent_items.to_frame(),
    }


def parquet_bytes(name: str, frame: pl.DataFrame) -> bytes:
    """``frame`` as a Parquet file (zstd), the bytes the online store keeps for table
    ``name``. Deterministic for given data and library versions."""
    table = frame.to_arrow()
    buffer = io.BytesIO()
    if name in _DELTA_TABLES:
        encodings: Mapping[str, str] = {c: "DELTA_BINARY_PACKED" for c in frame.columns}
        pq.write_table(
            table, buffer, compression="zstd", use_dictionary=False, column_encoding=encodings
        )
    else:
        pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


__all__ = [
    "AUDIENCE_TABLES",
    "RECENT_COLUMNS",
    "SNAPSHOT_FIELDS",
    "audience_tables",
    "check_members",
    "check_recent",
    "parquet_bytes",
    "profile_json",
    "recent_json",
]
