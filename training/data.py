"""From a dataset and its feature snapshot to the arrays training and evaluation use.

A :class:`Split` (training/windows.py places them) holds two instants: training sees purchases
strictly before ``cutoff``; the test window is ``[cutoff, test_end)``. :func:`prepare` then

* maps ids to dense indexes: members of the snapshot (joined before the cutoff) in its order,
  items of the dataset sorted by id;
* builds the training purchase lines (``ts < cutoff``) with, per line, the member's **tier at
  purchase time** (looked up in the snapshot's tier history) and a **tag multiplier** (member
  tags matching the item's tags or category, see :class:`~training.config.TagWeights`);
* builds the buy-again history, the trending prior and the test relevance (items bought in the
  test window by members with a purchase history before the cutoff).

Everything is vectorized with polars joins and numpy searches; there is no loop over lines or
members. Tag matching packs each member's and each item's match keys into 64-bit masks, so one
AND per line decides whether a line matches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from engine.ids import IdMap
from engine.interactions import (
    InteractionWeights,
    PurchaseLines,
    QuantityTransform,
    bm25_weight,
    build_confidence,
)
from feature_store.dataset import Dataset
from feature_store.errors import DataError
from feature_store.offline import FeatureTables, Snapshot
from feature_store.schema import Col
from feature_store.transforms import Feat
from training.config import BlendConfig, TagWeights, WeightsConfig

Progress = Callable[[str], None]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

_M: Final[str] = "__member"
_I: Final[str] = "__item"
_T: Final[str] = "__tier"


@dataclass(frozen=True, slots=True)
class Split:
    """Training uses ``ts < cutoff``; the test window is ``cutoff <= ts < test_end``."""

    cutoff: datetime
    test_end: datetime

    @property
    def cutoff_date(self) -> str:
        return self.cutoff.date().isoformat()

    @property
    def test_last_day(self) -> str:
        """The last (inclusive) day of the test window."""
        return (self.test_end - timedelta(microseconds=1)).date().isoformat()


@dataclass(frozen=True, slots=True)
class SnapshotFrames:
    """The snapshot tables training reads (from a snapshot folder or built in memory)."""

    members: pl.DataFrame
    items: pl.DataFrame
    tier_history: pl.DataFrame
    tiers: tuple[str, ...]

    @classmethod
    def from_tables(cls, tables: FeatureTables, tiers: tuple[str, ...]) -> SnapshotFrames:
        return cls(tables.members, tables.items, tables.tier_history, tiers)

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> SnapshotFrames:
        return cls(
            snapshot.read("members"),
            snapshot.read("items"),
            snapshot.read("tier_history"),
            snapshot.tiers,
        )


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """Per member (dense order): what evaluation breaks results down by."""

    tier: IntArray  # ladder index at the cutoff, -1 unknown
    lifecycle: npt.NDArray[np.str_]
    n_orders: IntArray


@dataclass(frozen=True, slots=True)
class PreparedData:
    """Everything a training run needs, as dense arrays."""

    split: Split
    tiers: tuple[str, ...]
    member_ids: IdMap
    item_ids: IdMap
    #: training purchase lines with tier at purchase time and tag multipliers
    lines: PurchaseLines
    #: lines whose item matched a member tag
    tag_matched_lines: int
    members: MemberFacts
    #: buy-again history: lines weighted by recency (returns subtract), members x items
    history: sp.csr_matrix
    #: trending prior per item in [0, 1]
    trending: FloatArray
    #: test purchases (member row, item column), one entry per distinct pair
    test_member: IntArray
    test_item: IntArray

    @property
    def n_members(self) -> int:
        return len(self.member_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def confidence(self, weights: WeightsConfig) -> sp.csr_matrix:
        """The weighted confidence matrix (engine.interactions), BM25 on top when enabled."""
        lines = self.lines
        if not weights.tier:
            lines = dataclasses.replace(lines, tier=None)
        if not weights.tags.active:
            lines = dataclasses.replace(lines, multiplier=None)
        matrix = build_confidence(
            lines,
            self.n_members,
            self.n_items,
            weights.interaction_weights(self.tiers),
            reference_time=_epoch_seconds(self.split.cutoff),
        )
        if weights.bm25.enabled:
            matrix = bm25_weight(matrix, weights.bm25.k1, weights.bm25.b)
        return matrix

    def binary(self) -> sp.csr_matrix:
        """1 per (member, item) the member holds on net (the "plain" baseline input)."""
        matrix = self.history.copy()
        matrix.data = np.ones_like(matrix.data)
        return matrix


def prepare(
    dataset: Dataset,
    snapshot: SnapshotFrames,
    split: Split,
    weights: WeightsConfig,
    blend: BlendConfig,
    progress: Progress | None = None,
) -> PreparedData:
    """Dense ids, weighted training lines, buy-again history, trending prior, test relevance."""
    step = progress or (lambda _: None)
    members = snapshot.members.sort(Col.MEMBER_ID)
    items = dataset.items.select(Col.ITEM_ID, Col.CATEGORY, Col.TAGS).sort(Col.ITEM_ID)
    if members.height == 0:
        raise DataError(
            f"no member joined before the cutoff {split.cutoff_date}: nothing to train on; "
            "choose a later cutoff"
        )
    member_ids = IdMap(members.get_column(Col.MEMBER_ID).to_numpy())
    item_ids = IdMap(items.get_column(Col.ITEM_ID).to_numpy())
    member_codes = members.select(Col.MEMBER_ID).with_row_index(_M)

    step("mapping purchases to dense ids")
    # An Enum over the ids in map order: its physical code is the dense index. Unlike a join
    # this keeps the purchases' row order, so sums (and the trained model) are reproducible.
    member_enum = pl.Enum(members.get_column(Col.MEMBER_ID))
    item_enum = pl.Enum(items.get_column(Col.ITEM_ID))
    coded = (
        dataset.purchases.lazy()
        .filter(pl.col(Col.TS) < split.test_end)
        .select(
            pl.col(Col.MEMBER_ID).cast(member_enum, strict=False).to_physical().alias(_M),
            pl.col(Col.ITEM_ID).cast(item_enum, strict=False).to_physical().alias(_I),
            pl.col(Col.TS).dt.epoch("s").alias(Col.TS),
            Col.QUANTITY,
            Col.AMOUNT,
        )
        .drop_nulls([_M, _I])  # members who joined after the cutoff, unknown items
        .with_columns(pl.col(_M).cast(pl.Int64), pl.col(_I).cast(pl.Int64))
        .collect()
    )
    cut = _epoch_seconds(split.cutoff)
    is_train = coded.get_column(Col.TS).to_numpy() < cut
    train = coded.filter(pl.Series(is_train))
    test = coded.filter(pl.Series(~is_train) & (pl.col(Col.QUANTITY) > 0))
    del coded

    member = train.get_column(_M).to_numpy()
    item = train.get_column(_I).to_numpy()
    ts = train.get_column(Col.TS).to_numpy()
    quantity = train.get_column(Col.QUANTITY).to_numpy()

    step("tier at purchase time")
    current_tier = _tier_codes(members.get_column(Col.TIER), snapshot.tiers)
    line_tier = _tier_at_purchase(
        snapshot.tier_history, member_codes, snapshot.tiers, member, ts, current_tier
    )

    step("tag matches")
    multiplier = _tag_multipliers(members, items, weights.tags, member, item)
    matched = 0 if multiplier is None else int(np.count_nonzero(multiplier != 1.0))

    lines = PurchaseLines(
        member=member,
        item=item,
        quantity=quantity,
        amount=train.get_column(Col.AMOUNT).to_numpy(),
        ts=ts,
        tier=line_tier,
        multiplier=multiplier,
    )
    n_members, n_items = len(member_ids), len(item_ids)

    step("buy-again history and trending")
    history = build_confidence(
        dataclasses.replace(lines, tier=None, multiplier=None),  # one unit per line, decayed
        n_members,
        n_items,
        InteractionWeights(
            quantity=QuantityTransform.NONE,
            half_life_days=blend.buy_again_half_life_days or None,
        ),
        reference_time=cut,
    )
    trending = _trending(member, item, ts, quantity, cut, blend.trending_days, n_items)

    step("test relevance")
    pairs = np.unique(
        test.get_column(_M).to_numpy() * np.int64(n_items) + test.get_column(_I).to_numpy()
    )
    facts = MemberFacts(
        tier=current_tier,
        lifecycle=members.get_column(Feat.LIFECYCLE).fill_null("unknown").to_numpy().astype(str),
        n_orders=members.get_column(Feat.N_ORDERS).fill_null(0).to_numpy().astype(np.int64),
    )
    return PreparedData(
        split=split,
        tiers=snapshot.tiers,
        member_ids=member_ids,
        item_ids=item_ids,
        lines=lines,
        tag_matched_lines=matched,
        members=facts,
        history=history,
        trending=trending,
        test_member=(pairs // n_items).astype(np.int64),
        test_item=(pairs % n_items).astype(np.int64),
    )


def hybrid_features(
    snapshot: SnapshotFrames, data: PreparedData
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Member features (tier, tags, RFM segment, lifecycle) and item features (category, tags,
    price band) as one-hot CSR matrices in the id maps' row order (for the hybrid model)."""
    members = pl.DataFrame({Col.MEMBER_ID: data.member_ids.ids}).join(
        snapshot.members, on=Col.MEMBER_ID, how="left", maintain_order="left"
    )
    member_rows = members.select(
        pl.concat_list(
            pl.concat_str(pl.lit("tier="), pl.col(Col.TIER)),
            pl.concat_str(pl.lit("rfm="), pl.col(Feat.RFM_SEGMENT)),
            pl.concat_str(pl.lit("lifecycle="), pl.col(Feat.LIFECYCLE)),
        )
        .list.concat(pl.col(Col.TAGS).fill_null([]).list.eval(pl.lit("tag=") + pl.element()))
        .alias("feature")
    )
    items = pl.DataFrame({Col.ITEM_ID: data.item_ids.ids}).join(
        snapshot.items, on=Col.ITEM_ID, how="left", maintain_order="left"
    )
    item_rows = items.select(
        pl.concat_list(
            pl.concat_str(pl.lit("category="), pl.col(Col.CATEGORY)),
            pl.concat_str(pl.lit("price_band="), pl.col(Feat.PRICE_BAND)),
        )
        .list.concat(pl.col(Col.TAGS).fill_null([]).list.eval(pl.lit("tag=") + pl.element()))
        .alias("feature")
    )
    return _one_hot(member_rows), _one_hot(item_rows)


def _one_hot(rows: pl.DataFrame) -> sp.csr_matrix:
    """A CSR matrix with a 1 per (row, distinct feature string) of the ``feature`` lists."""
    long = (
        rows.with_row_index("row")
        .explode("feature")
        .drop_nulls("feature")
        .unique(["row", "feature"])
    )
    vocabulary = long.select("feature").unique().sort("feature").with_row_index("column")
    coded = long.join(vocabulary, on="feature")
    matrix = sp.csr_matrix(
        (
            np.ones(coded.height, dtype=np.float32),
            (coded.get_column("row").to_numpy(), coded.get_column("column").to_numpy()),
        ),
        shape=(rows.height, max(vocabulary.height, 1)),
    )
    matrix.sum_duplicates()
    return matrix


# -- pieces ----------------------------------------------------------------------------------


def _epoch_seconds(instant: datetime) -> int:
    return int((instant - datetime(1970, 1, 1)).total_seconds())


def _tier_codes(tiers: pl.Series, ladder: tuple[str, ...]) -> IntArray:
    """Ladder index of each tier name; -1 for a missing or unknown name."""
    table = pl.DataFrame({"name": list(ladder), _T: np.arange(len(ladder), dtype=np.int64)})
    codes = (
        pl.DataFrame({"name": tiers})
        .join(table, on="name", how="left", maintain_order="left")
        .get_column(_T)
        .fill_null(-1)
    )
    return codes.to_numpy().astype(np.int64)


def _tier_at_purchase(
    history: pl.DataFrame,
    member_codes: pl.DataFrame,
    ladder: tuple[str, ...],
    member: IntArray,
    ts: IntArray,
    current: IntArray,
) -> IntArray:
    """The tier each line's member held when buying: the last tier-history row of the member
    with ``valid_from <= ts``. Members without history rows (or lines before the first row)
    get the member's tier at the cutoff.

    History rows are sorted by member, then time, so a member's rows are one contiguous run; a
    line's row is the last of its member's run that started at or before the line, found in one
    vectorized pass per history depth (a few), each over the lines of members that deep."""
    coded = history.join(member_codes, on=Col.MEMBER_ID, how="inner").sort(_M, "valid_from")
    if coded.height == 0 or member.size == 0:
        return current[member] if member.size else np.zeros(0, dtype=np.int64)
    rows = coded.get_column(_M).to_numpy().astype(np.int64)
    valid_from = coded.get_column("valid_from").dt.epoch("s").to_numpy().astype(np.int64)
    tier = _tier_codes(coded.get_column(Col.TIER), ladder)
    count = np.bincount(rows, minlength=current.shape[0])
    first = np.concatenate(([0], np.cumsum(count)[:-1]))
    line_first = first[member]
    row = line_first.copy()
    started = (count[member] > 0) & (valid_from[np.minimum(line_first, rows.size - 1)] <= ts)
    deeper = np.flatnonzero(count[member] > 1)  # lines of members who changed tier
    for offset in range(1, int(count.max())):  # a loop over history depth, not over lines
        deeper = deeper[count[member[deeper]] > offset]
        candidate = line_first[deeper] + offset
        later = valid_from[candidate] <= ts[deeper]
        row[deeper[later]] = candidate[later]  # rows are in time order: the last one wins
    row = np.minimum(row, rows.size - 1)
    found = started & (tier[row] >= 0)
    result: IntArray = np.where(found, tier[row], current[member])
    return result


def _match_keys(
    members: pl.DataFrame, items: pl.DataFrame, tags: TagWeights
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(member code, key, multiplier) and (item code, key) rows of the keys both sides share.

    Item keys: ``tag:<t>`` for each item tag and ``cat:<category>``. A member tag ``t`` gives
    ``tag:t``, ``cat:t`` and, with a category prefix, ``cat:<t without the prefix>``. The
    keys of each distinct tag are worked out once, then joined to the members holding it.
    """
    indexed = items.select(pl.int_range(pl.len(), dtype=pl.Int64).alias(_I), Col.CATEGORY, Col.TAGS)
    item_keys = pl.concat(
        [
            indexed.select(_I, pl.concat_str(pl.lit("cat:"), pl.col(Col.CATEGORY)).alias("key")),
            indexed.select(_I, Col.TAGS)
            .explode(Col.TAGS)
            .drop_nulls(Col.TAGS)
            .select(_I, pl.concat_str(pl.lit("tag:"), pl.col(Col.TAGS)).alias("key")),
        ]
    ).unique()
    member_tags = (
        members.select(pl.int_range(pl.len(), dtype=pl.Int64).alias(_M), Col.TAGS)
        .explode(Col.TAGS)
        .drop_nulls(Col.TAGS)
        .rename({Col.TAGS: "tag"})
    )
    forms = [
        pl.concat_str(pl.lit("tag:"), pl.col("tag")),
        pl.concat_str(pl.lit("cat:"), pl.col("tag")),
    ]
    if tags.category_prefix:
        prefix = tags.category_prefix
        forms.append(
            pl.when(pl.col("tag").str.starts_with(prefix)).then(
                pl.concat_str(pl.lit("cat:"), pl.col("tag").str.strip_prefix(prefix))
            )
        )
    multipliers = pl.DataFrame(
        {"tag": list(tags.multipliers), "m": list(tags.multipliers.values())},
        schema={"tag": pl.String, "m": pl.Float64},
    )
    tag_keys = (
        member_tags.select("tag")
        .unique()
        .join(multipliers, on="tag", how="left")
        .with_columns(pl.col("m").fill_null(tags.boost), pl.concat_list(forms).alias("key"))
        .explode("key")
        .drop_nulls("key")
        .join(item_keys.select("key").unique(), on="key", how="semi")
    )
    member_keys = member_tags.join(tag_keys, on="tag").select(_M, "key", "m")
    return member_keys, item_keys.join(tag_keys.select("key").unique(), on="key", how="semi")


def _tag_multipliers(
    members: pl.DataFrame,
    items: pl.DataFrame,
    tags: TagWeights,
    member: IntArray,
    item: IntArray,
) -> npt.NDArray[np.float64] | None:
    """Per line: the largest multiplier among the member's tags matching the item (1 when
    none matches); None when no line can match or no tag weight is active."""
    if not tags.active or member.size == 0:
        return None
    member_keys, item_keys = _match_keys(members, items, tags)
    if member_keys.height == 0:
        return None
    key_index = item_keys.select("key").unique().sort("key").with_row_index("bit")
    words = (key_index.height + 63) // 64
    item_mask = _masks(item_keys.join(key_index, on="key"), _I, items.height, words)[item]
    coded = member_keys.join(key_index, on="key")
    best = np.zeros(member.size, dtype=np.float64)
    matched = np.zeros(member.size, dtype=bool)
    # one pass per distinct multiplier, smallest first: a later (larger) match overrides
    for value in coded.get_column("m").unique().sort().to_list():
        member_mask = _masks(coded.filter(pl.col("m") == value), _M, members.height, words)
        hit = np.any(member_mask[member] & item_mask, axis=1)
        best[hit] = value
        matched |= hit
    factor: npt.NDArray[np.float64] = np.where(matched, best, 1.0)
    return factor


def _masks(rows: pl.DataFrame, code: str, n: int, words: int) -> npt.NDArray[np.uint64]:
    """An ``n x words`` bit mask: bit ``b`` of row ``r`` set for each (r, b) in ``rows``."""
    masks = np.zeros((n, words), dtype=np.uint64)
    r = rows.get_column(code).to_numpy().astype(np.int64)
    bit = rows.get_column("bit").to_numpy().astype(np.int64)
    np.bitwise_or.at(
        masks, (r, bit // 64), np.left_shift(np.uint64(1), (bit % 64).astype(np.uint64))
    )
    return masks


def _trending(
    member: IntArray,
    item: IntArray,
    ts: IntArray,
    quantity: npt.NDArray[np.int64],
    cut: int,
    days: int,
    n_items: int,
) -> FloatArray:
    """``log1p(distinct buyers in the last `days` days before the cutoff) / max``."""
    recent = (ts >= cut - days * 86_400) & (quantity > 0)
    pairs = np.unique(member[recent] * np.int64(n_items) + item[recent])
    buyers = np.bincount(pairs % n_items, minlength=n_items).astype(np.float64)
    scaled = np.log1p(buyers)
    top = scaled.max() if scaled.size else 0.0
    result: FloatArray = (scaled / top if top > 0 else scaled).astype(np.float32)
    return result


__all__ = [
    "MemberFacts",
    "PreparedData",
    "SnapshotFrames",
    "Split",
    "hybrid_features",
    "prepare",
]
