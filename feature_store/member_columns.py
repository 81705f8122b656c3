"""A feature snapshot as numpy columns, for audience scoring (engine.audience).

:func:`member_columns` turns the member table (the :data:`MEMBER_TABLE_COLUMNS` of
members.parquet) into one array per attribute a campaign filter tests: categorical columns (tier,
lifecycle, RFM segment, region) as small integer codes into a tuple of names (``-1`` = null),
member tags as a boolean CSR matrix, birth month, points and joined date as plain arrays.
:func:`item_columns` does the same for the item table (items.parquet) and
:class:`RecentPurchases` answers "which members bought these items since ..." from the recent
purchase lines (recent_purchases.parquet, coded by :func:`recent_purchase_table`).

The tables come from a snapshot folder (:func:`read_audience_columns`, ``read_*``) or from the
online store, which keeps them per loaded version (feature_store/online/audience_data.py): both
go through the same functions, so both give the same columns. Everything is vectorized with
polars and numpy; rows keep the snapshot's order (sorted by id). See docs/feature_snapshot.md for
the columns read here.
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
    #: member value (docs/features.md, "Member value"); nan = unknown (no purchase, no model)
    p_alive: npt.NDArray[np.float64]
    clv: npt.NDArray[np.float64]
    expected_spend: npt.NDArray[np.float64]
    #: the value statistics (feature_store.value): purchase days, repeat-day spend, first and
    #: last purchase (NaT when none), to recompute the values as of a later date
    purchase_days: npt.NDArray[np.int64]
    repeat_day_spend: npt.NDArray[np.float64]
    first_purchase_at: npt.NDArray[np.datetime64]
    last_purchase_at: npt.NDArray[np.datetime64]

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


#: Columns of members.parquet that audiences read (the online store's member table).
MEMBER_TABLE_COLUMNS: Final[tuple[str, ...]] = (
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
    Feat.P_ALIVE,
    Feat.CLV,
    Feat.EXPECTED_SPEND_90D,
    Feat.PURCHASE_DAYS,
    Feat.REPEAT_DAY_SPEND,
    Feat.FIRST_PURCHASE_AT,
    Feat.LAST_PURCHASE_AT,
)
#: Columns of items.parquet that audiences read (the online store's item table).
ITEM_TABLE_COLUMNS: Final[tuple[str, ...]] = (Col.ITEM_ID, Col.CATEGORY, Col.TAGS, Feat.BUYERS)
#: Columns of recent_purchases.parquet that "bought the seed" reads.
RECENT_SOURCE_COLUMNS: Final[tuple[str, ...]] = (Col.MEMBER_ID, Col.ITEM_ID, Col.TS, Col.QUANTITY)
#: The coded recent-purchase table (:func:`recent_purchase_table`).
MEMBER_ROW, ITEM_CODE = "member_row", "item"


def _select(frame: pl.DataFrame, columns: Sequence[str], where: str) -> pl.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}; rebuild the snapshot")
    return frame.select(columns)


def member_columns(
    frame: pl.DataFrame, tiers: Sequence[str], as_of: date, where: str
) -> MemberColumns:
    """The member table (:data:`MEMBER_TABLE_COLUMNS`, snapshot order) as columns; ``tiers``
    is the snapshot's tier ladder, ``where`` names the table in errors."""
    frame = _select(frame, MEMBER_TABLE_COLUMNS, where)
    tier_codes, tier_names = _codes(frame.get_column(Col.TIER), tiers, f"{where}: tier")
    lifecycle_codes, lifecycle_names = _codes(
        frame.get_column(Feat.LIFECYCLE), LIFECYCLE_STAGES, f"{where}: lifecycle"
    )
    segment_codes, segment_names = _data_codes(
        frame.get_column(Feat.RFM_SEGMENT), f"{where}: rfm_segment"
    )
    region_codes, region_names = _data_codes(frame.get_column(Col.REGION), f"{where}: region")
    tags, tag_names = _tag_matrix(frame.get_column(Col.TAGS), f"{where}: tags")
    month = frame.get_column(Feat.BIRTH_MONTH).fill_null(0).cast(pl.Int8).to_numpy()
    points = frame.get_column(Col.POINTS_BALANCE).cast(pl.Float64).fill_null(np.nan).to_numpy()
    joined = frame.get_column(Col.JOINED_AT).cast(pl.Datetime("us")).to_numpy()
    monetary = frame.get_column(Feat.MONETARY).cast(pl.Float64).fill_null(0.0).to_numpy()

    def _unknown_nan(name: str) -> npt.NDArray[np.float64]:
        column = frame.get_column(name).cast(pl.Float64).fill_nan(None).fill_null(np.nan)
        return np.asarray(column.to_numpy(), dtype=np.float64)

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
        as_of=as_of,
        p_alive=_unknown_nan(Feat.P_ALIVE),
        clv=_unknown_nan(Feat.CLV),
        expected_spend=_unknown_nan(Feat.EXPECTED_SPEND_90D),
        purchase_days=np.asarray(
            frame.get_column(Feat.PURCHASE_DAYS).cast(pl.Int64).fill_null(0).to_numpy(),
            dtype=np.int64,
        ),
        repeat_day_spend=np.asarray(
            frame.get_column(Feat.REPEAT_DAY_SPEND).cast(pl.Float64).fill_null(0.0).to_numpy(),
            dtype=np.float64,
        ),
        first_purchase_at=_timestamps(frame.get_column(Feat.FIRST_PURCHASE_AT)),
        last_purchase_at=_timestamps(frame.get_column(Feat.LAST_PURCHASE_AT)),
    )


def _timestamps(series: pl.Series) -> npt.NDArray[np.datetime64]:
    """A datetime column as datetime64[us] (NaT for null)."""
    return np.asarray(series.cast(pl.Datetime("us")).to_numpy(), dtype="datetime64[us]")


def item_columns(frame: pl.DataFrame, where: str) -> ItemColumns:
    """The item table (:data:`ITEM_TABLE_COLUMNS`, snapshot order) as columns."""
    frame = _select(frame, ITEM_TABLE_COLUMNS, where)
    tags, tag_names = _tag_matrix(frame.get_column(Col.TAGS), f"{where}: tags")
    buyers = frame.get_column(Feat.BUYERS).cast(pl.Int64).fill_null(0).to_numpy()
    return ItemColumns(
        item_ids=_strings(frame.get_column(Col.ITEM_ID)),
        categories=_strings(frame.get_column(Col.CATEGORY)),
        tags=tags,
        tag_names=tag_names,
        buyers=np.asarray(buyers, dtype=np.int64),
    )


def _read(snap: Snapshot, name: str, columns: Sequence[str]) -> pl.DataFrame:
    path = snap.file(name)
    try:
        return snap.read(name).select(columns)
    except pl.exceptions.ColumnNotFoundError as exc:
        raise DataError(f"{path}: missing column ({exc}); rebuild the snapshot") from exc
    except FileNotFoundError:
        raise DataError(f"{path}: missing from the snapshot; rebuild it") from None


def read_member_columns(snapshot: Path | Snapshot) -> MemberColumns:
    """members.parquet of ``snapshot`` (a folder or an opened :class:`Snapshot`) as columns."""
    snap = _open(snapshot)
    frame = _read(snap, "members", MEMBER_TABLE_COLUMNS)
    return member_columns(frame, snap.tiers, snap.as_of, str(snap.file("members")))


def read_item_columns(snapshot: Path | Snapshot) -> ItemColumns:
    """items.parquet of ``snapshot`` as columns."""
    snap = _open(snapshot)
    return item_columns(_read(snap, "items", ITEM_TABLE_COLUMNS), str(snap.file("items")))


# -- recent purchases ---------------------------------------------------------------------------


def _member_rows(member_ids: pl.Series, buyers: pl.Series) -> npt.NDArray[np.int64]:
    """Row of each ``buyers`` id in ``member_ids`` (-1: not a member). Looks up each run of
    equal ids once (the lines come grouped by member)."""
    runs = buyers.rle().struct.unnest()
    values, lengths = runs.get_column("value"), runs.get_column("len").to_numpy()
    if member_ids.is_empty():
        rows = np.full(values.len(), -1, dtype=np.int64)
    elif member_ids.is_sorted():
        found = member_ids.search_sorted(values).to_numpy().astype(np.int64)
        inside = found < member_ids.len()
        clipped = np.where(inside, found, 0)
        known = inside & (member_ids.gather(clipped) == values).fill_null(False).to_numpy()
        rows = np.where(known, found, -1)
    else:
        index = pl.DataFrame({"value": member_ids}).with_row_index("row")
        rows = (
            pl.DataFrame({"value": values})
            .join(index, on="value", how="left", maintain_order="left")
            .get_column("row")
            .fill_null(-1)
            .to_numpy()
            .astype(np.int64)
        )
    return np.repeat(rows, lengths)


def recent_purchase_table(
    member_ids: pl.Series, recent: pl.DataFrame
) -> tuple[pl.DataFrame, pl.Series]:
    """Recent purchase lines coded for "bought the seed": the table (``member_row`` UInt32: row
    in the member table ``member_ids``; ``item`` UInt32: code into the returned item ids,
    sorted; ``ts``), one row per (item, member) holding the member's newest purchase
    (quantity > 0) of that item, sorted by item then member row. Lines of members not in
    ``member_ids`` are left out (they are in no audience)."""
    lines = (
        recent.select(RECENT_SOURCE_COLUMNS)
        .filter(pl.col(Col.QUANTITY) > 0)
        .drop_nulls([Col.MEMBER_ID, Col.ITEM_ID, Col.TS])
    )
    rows = _member_rows(member_ids.cast(pl.String), lines.get_column(Col.MEMBER_ID))
    known = rows >= 0
    if not known.all():
        lines, rows = lines.filter(pl.Series(known)), rows[known]
    rows = rows.astype(np.uint32)  # (a member table has fewer than 2**32 rows)
    items = lines.get_column(Col.ITEM_ID).unique().sort()
    codes = lines.get_column(Col.ITEM_ID).cast(pl.Enum(items.to_list())).to_physical().to_numpy()
    ts = lines.get_column(Col.TS).cast(pl.Datetime("us")).to_numpy().view(np.int64)
    order = np.argsort(rows, kind="stable") if np.any(rows[1:] < rows[:-1]) else None
    if order is not None:
        rows, codes, ts = rows[order], codes[order], ts[order]
    order = np.argsort(codes, kind="stable")  # by item, then member row (stable)
    rows, codes, ts = rows[order], codes[order], ts[order]
    # one row per (item, member): the first line of each run, holding the run's newest time
    changed = (codes[1:] != codes[:-1]) | (rows[1:] != rows[:-1])
    starts = np.flatnonzero(np.concatenate(([rows.size > 0], changed)))
    newest = np.maximum.reduceat(ts, starts) if starts.size else ts[:0]
    table = pl.DataFrame(
        {
            MEMBER_ROW: pl.Series(rows[starts], dtype=pl.UInt32),
            ITEM_CODE: pl.Series(codes[starts], dtype=pl.UInt32),
            Col.TS: pl.Series(newest, dtype=pl.Int64).cast(pl.Datetime("us")),
        }
    )
    return table, items.rename(Col.ITEM_ID)


@dataclass(frozen=True, slots=True)
class RecentPurchases:
    """The coded recent purchase lines, by item: who bought an item, and when last."""

    #: item id -> code (position in indptr)
    codes: dict[str, int]
    #: lines of item code c: indptr[c] .. indptr[c + 1]
    indptr: npt.NDArray[np.int64]
    member_rows: npt.NDArray[np.uint32]
    #: microseconds since the epoch (naive local time, as the data)
    ts: npt.NDArray[np.int64]

    @classmethod
    def from_table(cls, table: pl.DataFrame, items: pl.Series) -> RecentPurchases:
        """From :func:`recent_purchase_table`'s result (DataError when it is not one)."""
        codes = table.get_column(ITEM_CODE).to_numpy().astype(np.int64)
        n_items = items.len()
        if codes.size and (codes.min() < 0 or codes.max() >= n_items or np.any(np.diff(codes) < 0)):
            raise DataError("the recent purchase table is not sorted by valid item codes")
        indptr = np.zeros(n_items + 1, dtype=np.int64)
        np.cumsum(np.bincount(codes, minlength=n_items), out=indptr[1:])
        return cls(
            codes={str(item): i for i, item in enumerate(items.to_list())},
            indptr=indptr,
            member_rows=table.get_column(MEMBER_ROW).to_numpy().astype(np.uint32),
            ts=table.get_column(Col.TS).cast(pl.Datetime("us")).to_numpy().view(np.int64),
        )

    def __len__(self) -> int:
        return int(self.member_rows.shape[0])

    def buyer_rows(self, item_ids: Sequence[str], since: datetime) -> npt.NDArray[np.int64]:
        """Member rows (sorted, unique) with a purchase (quantity > 0) of any of ``item_ids``
        at ``ts >= since``."""
        limit = np.datetime64(since.replace(tzinfo=None), "us").astype(np.int64)
        parts = []
        for item in dict.fromkeys(str(i) for i in item_ids):
            code = self.codes.get(item)
            if code is None:
                continue
            lo, hi = int(self.indptr[code]), int(self.indptr[code + 1])
            parts.append(self.member_rows[lo:hi][self.ts[lo:hi] >= limit])
        if not parts:
            return np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(parts)).astype(np.int64)


def read_recent_purchases(snapshot: Path | Snapshot, member_ids: pl.Series) -> RecentPurchases:
    """recent_purchases.parquet of ``snapshot``, coded against the member table ``member_ids``."""
    snap = _open(snapshot)
    lines = _read(snap, "recent_purchases", RECENT_SOURCE_COLUMNS)
    return RecentPurchases.from_table(*recent_purchase_table(member_ids, lines))


def recent_buyers(
    snapshot: Path | Snapshot, item_ids: Sequence[str], since: datetime
) -> npt.NDArray[np.str_]:
    """Member ids (sorted, unique) with a purchase row (quantity > 0) of any of ``item_ids``
    at ``ts >= since``.

    Read from recent_purchases.parquet, which keeps only the last
    :data:`~feature_store.offline.RECENT_PURCHASES_PER_MEMBER` purchase rows of each member
    before the snapshot's ``as_of``: a purchase older than a member's last 50 lines is not seen.
    Only members of members.parquet are answered (the others are in no audience).
    """
    snap = _open(snapshot)
    ids = _read(snap, "members", [Col.MEMBER_ID]).get_column(Col.MEMBER_ID)
    rows = read_recent_purchases(snap, ids).buyer_rows(item_ids, since)
    return np.sort(_strings(ids.gather(rows))) if rows.size else np.empty(0, dtype="<U1")


@dataclass(frozen=True, slots=True)
class AudienceColumns:
    """What audiences read of a snapshot: its members, items and recent purchase lines."""

    members: MemberColumns
    items: ItemColumns
    recent: RecentPurchases

    @property
    def as_of(self) -> date:
        return self.members.as_of


def read_audience_columns(snapshot: Path | Snapshot) -> AudienceColumns:
    """The :class:`AudienceColumns` of a snapshot folder."""
    snap = _open(snapshot)
    frame = _read(snap, "members", MEMBER_TABLE_COLUMNS)
    members = member_columns(frame, snap.tiers, snap.as_of, str(snap.file("members")))
    return AudienceColumns(
        members=members,
        items=read_item_columns(snap),
        recent=read_recent_purchases(snap, frame.get_column(Col.MEMBER_ID)),
    )


__all__ = [
    "ITEM_TABLE_COLUMNS",
    "LIFECYCLE_STAGES",
    "MEMBER_TABLE_COLUMNS",
    "RECENT_PURCHASES_PER_MEMBER",
    "RECENT_SOURCE_COLUMNS",
    "AudienceColumns",
    "ItemColumns",
    "MemberColumns",
    "RecentPurchases",
    "item_columns",
    "member_columns",
    "read_audience_columns",
    "read_item_columns",
    "read_member_columns",
    "read_recent_purchases",
    "recent_buyers",
    "recent_purchase_table",
]
