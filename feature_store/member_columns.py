"""A feature snapshot as numpy columns, for audience scoring (engine.audience).

:func:`read_member_columns` turns members.parquet into one array per attribute a campaign filter
tests: categorical columns (tier, lifecycle, RFM segment, region) as small integer codes into a
tuple of names (``-1`` = null), member tags as a boolean CSR matrix, birth month, points and
joined date as plain arrays. :func:`read_item_columns` does the same for items.parquet and
:func:`recent_buyers` answers "who bought these items since ..." from recent_purchases.parquet.

Everything is vectorized with polars (tags: explode + categorical codes); rows keep the
snapshot's order (sorted by id). See docs/feature_snapshot.md for the columns read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from feature_store.errors import DataError
from feature_store.offline import RECENT_PURCHASES_PER_MEMBER, Snapshot, open_snapshot
from feature_store.schema import Col
from feature_store.transforms import Feat

#: Lifecycle stages in the order of their codes (docs/features.md).
LIFECYCLE_STAGES: Final[tuple[str, ...]] = ("new", "active", "at_risk", "churned")

_ROW = "__row"
_CODE = "__code"


@dataclass(frozen=True, slots=True)
class MemberColumns:
    """One row per member of members.parquet, in snapshot order (sorted by member_id)."""

    member_ids: npt.NDArray[np.str_]
    #: int16 code into tier_names (the manifest's ladder, lowest first); -1 = null
    tier_codes: npt.NDArray[np.int16]
    tier_names: tuple[str, ...]
    lifecycle_codes: npt.NDArray[np.int16]
    lifecycle_names: tuple[str, ...]
    #: -1 = never purchased (no segment)
    segment_codes: npt.NDArray[np.int16]
    #: segment names present in the data, sorted
    segment_names: tuple[str, ...]
    region_codes: npt.NDArray[np.int16]
    region_names: tuple[str, ...]
    #: bool csr_array (members, len(tag_names)): member tags
    tags: sp.csr_array
    tag_names: tuple[str, ...]
    #: 0 = unknown, else 1..12
    birth_month: npt.NDArray[np.int8]
    #: points_balance; nan = unknown
    points: npt.NDArray[np.float64]
    joined_at: npt.NDArray[np.datetime64]
    #: net spend in the RFM window (0 for members without purchases in it)
    monetary: npt.NDArray[np.float64]
    as_of: date

    def __len__(self) -> int:
        return int(self.member_ids.shape[0])


@dataclass(frozen=True, slots=True)
class ItemColumns:
    """One row per item of items.parquet, in snapshot order (sorted by item_id)."""

    item_ids: npt.NDArray[np.str_]
    #: "" when an item has no category
    categories: npt.NDArray[np.str_]
    #: bool csr_array (items, len(tag_names))
    tags: sp.csr_array
    tag_names: tuple[str, ...]
    #: distinct buyers before as_of
    buyers: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])


def _open(snapshot: Path | Snapshot) -> Snapshot:
    return snapshot if isinstance(snapshot, Snapshot) else open_snapshot(Path(snapshot))


def _strings(series: pl.Series) -> npt.NDArray[np.str_]:
    """A string column as fixed-width unicode ('' for null)."""
    values = series.fill_null("").to_numpy()
    if values.size == 0:
        return np.empty(0, dtype="<U1")
    return np.asarray(values.astype(np.str_))


def _codes(
    series: pl.Series, names: Sequence[str], where: str
) -> tuple[npt.NDArray[np.int16], tuple[str, ...]]:
    """Codes of ``series`` into ``names`` (-1 for null); DataError for a value not in names."""
    names = tuple(names)
    if len(names) >= np.iinfo(np.int16).max:
        raise DataError(f"{where}: {len(names):,} distinct values is too many to code")
    mapping = {name: i for i, name in enumerate(names)}
    coded = series.replace_strict(mapping, default=-1, return_dtype=pl.Int16)
    unknown = series.is_not_null() & (coded == -1)
    if unknown.any():
        row = int(unknown.arg_true()[0])
        raise DataError(
            f"{where}: row {row} has value {series[row]!r}, not one of {', '.join(names)}; "
            "rebuild the snapshot with the policy that defines it"
        )
    return coded.to_numpy().astype(np.int16, copy=False), names


def _data_codes(series: pl.Series, where: str) -> tuple[npt.NDArray[np.int16], tuple[str, ...]]:
    """Codes of a string column into its sorted distinct non-null values."""
    names = tuple(str(v) for v in series.drop_nulls().unique().sort().to_list())
    return _codes(series, names, where)


def _tag_matrix(tags: pl.Series, where: str) -> tuple[sp.csr_array, tuple[str, ...]]:
    """A list[str] column as a bool CSR matrix (rows, distinct tags sorted by name)."""
    n = tags.len()
    pairs = (
        pl.DataFrame({Col.TAGS: tags})
        .with_row_index(_ROW)
        .explode(Col.TAGS)
        .drop_nulls(Col.TAGS)
        .unique(maintain_order=True)  # a tag listed twice for one row counts once
    )
    names = tuple(str(v) for v in pairs.get_column(Col.TAGS).unique().sort().to_list())
    if not names:
        return sp.csr_array((n, 0), dtype=np.bool_), names
    if len(names) >= np.iinfo(np.int32).max:
        raise DataError(f"{where}: too many distinct tags")
    coded = pairs.with_columns(pl.col(Col.TAGS).cast(pl.Enum(names)).to_physical().alias(_CODE))
    rows = coded.get_column(_ROW).to_numpy().astype(np.int64)
    columns = coded.get_column(_CODE).to_numpy().astype(np.int32)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    matrix = sp.csr_array(
        (np.ones(rows.shape[0], dtype=np.bool_), columns, indptr), shape=(n, len(names))
    )
    matrix.sort_indices()
    return matrix, names


def read_member_columns(snapshot: Path | Snapshot) -> MemberColumns:
    """members.parquet of ``snapshot`` (a folder or an opened :class:`Snapshot`) as columns."""
    snap = _open(snapshot)
    path = snap.file("members")
    try:
        frame = snap.read("members").select(
            Col.MEMBER_ID,
            Col.TIER,
            Feat.LIFECYCLE,
            Feat.RFM_SEGMENT,
            Col.REGION,
            Col.TAGS,
            Feat.BIRTH_MONTH,
            Col.POINTS_BALANCE,
            Col.JOINED_AT,
            Feat.MONETARY,
        )
    except pl.exceptions.ColumnNotFoundError as exc:
        raise DataError(f"{path}: missing column ({exc}); rebuild the snapshot") from exc
    tier_codes, tier_names = _codes(frame.get_column(Col.TIER), snap.tiers, f"{path}: tier")
    lifecycle_codes, lifecycle_names = _codes(
        frame.get_column(Feat.LIFECYCLE), LIFECYCLE_STAGES, f"{path}: lifecycle"
    )
    segment_codes, segment_names = _data_codes(
        frame.get_column(Feat.RFM_SEGMENT), f"{path}: rfm_segment"
    )
    region_codes, region_names = _data_codes(frame.get_column(Col.REGION), f"{path}: region")
    tags, tag_names = _tag_matrix(frame.get_column(Col.TAGS), f"{path}: tags")
    month = frame.get_column(Feat.BIRTH_MONTH).fill_null(0).cast(pl.Int8).to_numpy()
    points = frame.get_column(Col.POINTS_BALANCE).cast(pl.Float64).fill_null(np.nan).to_numpy()
    joined = frame.get_column(Col.JOINED_AT).cast(pl.Datetime("us")).to_numpy()
    monetary = frame.get_column(Feat.MONETARY).cast(pl.Float64).fill_null(0.0).to_numpy()
    return MemberColumns(
        member_ids=_strings(frame.get_column(Col.MEMBER_ID)),
        tier_codes=tier_codes,
        tier_names=tier_names,
        lifecycle_codes=lifecycle_codes,
        lifecycle_names=lifecycle_names,
        segment_codes=segment_codes,
        segment_names=segment_names,
        region_codes=region_codes,
        region_names=region_names,
        tags=tags,
        tag_names=tag_names,
        birth_month=np.asarray(month, dtype=np.int8),
        points=np.asarray(points, dtype=np.float64),
        joined_at=np.asarray(joined, dtype="datetime64[us]"),
        monetary=np.asarray(monetary, dtype=np.float64),
        as_of=snap.as_of,
    )


def read_item_columns(snapshot: Path | Snapshot) -> ItemColumns:
    """items.parquet of ``snapshot`` as columns."""
    snap = _open(snapshot)
    path = snap.file("items")
    try:
        frame = snap.read("items").select(Col.ITEM_ID, Col.CATEGORY, Col.TAGS, Feat.BUYERS)
    except pl.exceptions.ColumnNotFoundError as exc:
        raise DataError(f"{path}: missing column ({exc}); rebuild the snapshot") from exc
    tags, tag_names = _tag_matrix(frame.get_column(Col.TAGS), f"{path}: tags")
    buyers = frame.get_column(Feat.BUYERS).cast(pl.Int64).fill_null(0).to_numpy()
    return ItemColumns(
        item_ids=_strings(frame.get_column(Col.ITEM_ID)),
        categories=_strings(frame.get_column(Col.CATEGORY)),
        tags=tags,
        tag_names=tag_names,
        buyers=np.asarray(buyers, dtype=np.int64),
    )


def recent_buyers(
    snapshot: Path | Snapshot, item_ids: Sequence[str], since: datetime
) -> npt.NDArray[np.str_]:
    """Member ids (sorted, unique) with a purchase row (quantity > 0) of any of ``item_ids``
    at ``ts >= since``.

    Read from recent_purchases.parquet, which keeps only the last
    :data:`~feature_store.offline.RECENT_PURCHASES_PER_MEMBER` purchase rows of each member
    before the snapshot's ``as_of``: a purchase older than a member's last 50 lines is not seen.
    """
    snap = _open(snapshot)
    wanted = [str(i) for i in item_ids]
    if not wanted:
        return np.empty(0, dtype="<U1")
    found = (
        snap.scan("recent_purchases")
        .filter(
            pl.col(Col.ITEM_ID).is_in(wanted)
            & (pl.col(Col.QUANTITY) > 0)
            & (pl.col(Col.TS) >= since)
        )
        .select(pl.col(Col.MEMBER_ID).unique().sort())
        .collect()
        .get_column(Col.MEMBER_ID)
    )
    return _strings(found)


__all__ = [
    "LIFECYCLE_STAGES",
    "RECENT_PURCHASES_PER_MEMBER",
    "ItemColumns",
    "MemberColumns",
    "read_item_columns",
    "read_member_columns",
    "recent_buyers",
]
