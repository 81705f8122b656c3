"""Point-in-time feature snapshots on disk (the offline store).

:func:`build_features` computes every member and item feature as of a date from a validated
:class:`~feature_store.dataset.Dataset`, using only purchases strictly before ``as_of`` 00:00.
:func:`build_snapshot` loads a dataset folder, builds the features and writes the snapshot
folder described in docs/feature_snapshot.md (written and read back by feature_store.snapshot,
whose names this module re-exports: :func:`open_snapshot`, :class:`Snapshot`, ...).

Member and item ids are replaced by dense integer codes while computing (joins and group-bys on
integers are several times faster than on strings at 20M purchases) and restored on output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Final

import polars as pl

from feature_store.dataset import Dataset, LoadOptions, load_dataset, table_path
from feature_store.errors import DataError
from feature_store.policy import FeaturePolicy, load_policy
from feature_store.schema import ITEMS, MEMBERS, PURCHASES, Col
from feature_store.snapshot import (
    FILES,
    FORMAT_VERSION,
    MANIFEST,
    FeatureTables,
    Snapshot,
    TierAgreement,
    check_target,
    open_snapshot,
    snapshot_manifest,
    source_fingerprint,
    write_snapshot,
)
from feature_store.transforms import Feat, collect, orders_from_purchases
from feature_store.transforms.items import item_features
from feature_store.transforms.lifecycle import lifecycle, restage
from feature_store.transforms.rfm import return_rate, rfm
from feature_store.transforms.tags import (
    apply_tags,
    category_shares,
    category_spend,
    rule_categories,
    top_categories,
)
from feature_store.transforms.tiers import tier_history
from feature_store.value.snapshot_columns import VALUE_COLUMNS, fill_members, member_value

Progress = Callable[[str], None]

#: Purchase rows kept per member in recent_purchases.parquet.
RECENT_PURCHASES_PER_MEMBER: Final[int] = 50

#: Column order of members.parquet (docs/feature_snapshot.md).
MEMBER_COLUMNS: Final[tuple[str, ...]] = (
    Col.MEMBER_ID,
    Col.JOINED_AT,
    Col.TIER,
    Feat.TIER_SOURCE,
    Feat.POLICY_TIER,
    Feat.TIER_SINCE,
    Feat.SPEND_WINDOW,
    Feat.ORDERS_WINDOW,
    Feat.GROWTH_POINTS,
    Feat.RECENCY_DAYS,
    Feat.FREQUENCY,
    Feat.MONETARY,
    Feat.R_SCORE,
    Feat.F_SCORE,
    Feat.M_SCORE,
    Feat.RFM_SEGMENT,
    Feat.LIFECYCLE,
    Feat.DAYS_SINCE_LAST_PURCHASE,
    Feat.AVG_INTERPURCHASE_DAYS,
    Feat.FIRST_PURCHASE_AT,
    Feat.LAST_PURCHASE_AT,
    Feat.N_ORDERS,
    Feat.TOTAL_SPEND,
    Feat.RETURN_RATE,
    Feat.DAYS_SINCE_JOINED,
    Col.TAGS,
    Feat.TOP_CATEGORIES,
    Col.REGION,
    Col.POINTS_BALANCE,
    Feat.BIRTH_MONTH,
    *VALUE_COLUMNS,
)
RECENT_PURCHASE_COLUMNS: Final[tuple[str, ...]] = (
    Col.MEMBER_ID,
    Col.ORDER_ID,
    Col.ITEM_ID,
    Col.TS,
    Col.QUANTITY,
    Col.AMOUNT,
)

_ROW = "__row"  # position of a purchase row in the dataset
_HASH = "__hash"
_POSITION = "__position"
_MEMBER_HASH = "__member_hash"
_ORDER_SEED = 0x5EED
_ID_SEEDS = (0x5EED, 0xC0FFEE, 0xFACADE, 0xBADC0DE)


def cutoff(as_of: date) -> datetime:
    """The instant features are computed at: ``as_of`` 00:00 (excluded)."""
    return datetime(as_of.year, as_of.month, as_of.day)


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def build_features(
    dataset: Dataset, policy: FeaturePolicy, as_of: date, progress: Progress | None = None
) -> FeatureTables:
    """All features as of ``as_of`` 00:00 from purchases strictly before it (pure, in memory)."""
    step = progress or (lambda _: None)
    cut = cutoff(as_of)
    step("preparing purchases")
    data = _encode(dataset, cut)

    step("orders")
    orders = collect(orders_from_purchases(data.purchases))

    step("tiers")
    tiers = tier_history(data.members, orders, policy.tiers, cut)

    step("rfm and lifecycle")
    rfm_result = rfm(data.members, orders, policy.rfm, cut)
    stages = lifecycle(data.members, orders, policy.lifecycle, cut)
    del orders

    step("member value")
    value = member_value(data.purchases, policy.value, as_of)
    stages = restage(
        fill_members(stages.join(value.frame, on=Col.MEMBER_ID, how="left")),
        policy.lifecycle,
        Feat.P_ALIVE,
    )
    returns = return_rate(data.purchases, policy.rfm.window_days, cut)

    step("categories and tags")
    spend = category_spend(data.purchases, policy.rfm.window_days, cut)
    members = _member_frame(
        data.members, tiers.current, rfm_result.features, stages, returns, spend, policy, cut
    )
    agreement = _agreement(members)
    members = _decoded(
        apply_tags(members, policy.tags, policy.tiers).select(MEMBER_COLUMNS),
        Col.MEMBER_ID,
        data.member_ids,
    )

    step("items")
    items = _decoded(
        item_features(data.items, data.purchases, policy.items, policy.tiers, cut),
        Col.ITEM_ID,
        data.item_ids,
    )

    step("recent purchases")
    recent = _recent_purchases(data, dataset.purchases)
    return FeatureTables(
        as_of=as_of,
        members=members,
        items=items,
        tier_history=_decoded(tiers.history, Col.MEMBER_ID, data.member_ids, Feat.VALID_FROM),
        recent_purchases=recent,
        rfm_score_bounds=rfm_result.bounds,
        value_model=value.manifest(),
        tier_agreement=agreement,
        purchases_used=data.purchases.height,
    )


@dataclass(frozen=True, slots=True)
class _Encoded:
    """The dataset as the transforms see it. Member and item ids are replaced by dense codes
    (UInt32: the position of the id in sorted order), order ids by a 64-bit hash: joins and
    group-bys on integers are several times faster than on strings, and a single UInt64 key
    can hold an (item, member) pair exactly."""

    #: members who joined before the cut-off, all columns, member_id coded, sorted by code
    members: pl.DataFrame
    #: items, item_id coded, category as an Enum, sorted by code
    items: pl.DataFrame
    #: __row (position in dataset.purchases), member_id, item_id, order_id (hashed), ts,
    #: quantity, amount, category; in file order
    purchases: pl.DataFrame
    #: code -> original id (the sorted ids), for decoding outputs
    member_ids: pl.Series
    item_ids: pl.Series


def _id_seed(ids: pl.Series, what: str) -> int:
    """A hash seed under which all ``ids`` (unique strings) get distinct 64-bit hashes.

    Purchases are matched to members and items by these hashes (a join on integers is several
    times faster than on strings). With a million ids a collision has odds of about 3e-8 per
    seed; trying a few seeds makes hashed ids exactly as good as the strings.
    """
    for seed in _ID_SEEDS:
        if ids.hash(seed).n_unique() == ids.len():
            return seed
    raise DataError(f"{what}: could not hash the {ids.len():,} ids without collisions")


def _coded(frame: pl.DataFrame, key: str, seed: int) -> pl.DataFrame:
    """``frame`` sorted by ``key``, with the id's hash in _HASH and its code in ``key``."""
    return (
        frame.sort(key)
        .with_columns(pl.col(key).hash(seed).alias(_HASH))
        .with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias(key))
    )


def _encode(dataset: Dataset, cut: datetime) -> _Encoded:
    member_seed = _id_seed(dataset.members.get_column(Col.MEMBER_ID), "members.member_id")
    item_seed = _id_seed(dataset.items.get_column(Col.ITEM_ID), "items.item_id")
    category_enum = pl.Enum(dataset.items.get_column(Col.CATEGORY).unique().sort())
    joined = dataset.members.filter(pl.col(Col.JOINED_AT) < cut)
    members = _coded(joined, Col.MEMBER_ID, member_seed)
    items = _coded(dataset.items, Col.ITEM_ID, item_seed).with_columns(
        pl.col(Col.CATEGORY).cast(category_enum)
    )
    # An order is (member, hashed order_id): two orders of one member would have to collide
    # (odds ~ orders_per_member^2 / 2^64) to be merged.
    purchases = (
        dataset.purchases.lazy()
        .with_row_index(_ROW)
        .select(  # hash first: filtering integers is cheaper than filtering strings
            _ROW,
            pl.col(Col.MEMBER_ID).hash(member_seed).alias(_MEMBER_HASH),
            pl.col(Col.ITEM_ID).hash(item_seed).alias(_HASH),
            pl.col(Col.ORDER_ID).hash(_ORDER_SEED),
            Col.TS,
            Col.QUANTITY,
            Col.AMOUNT,
        )
        .filter(pl.col(Col.TS) < cut)
        .join(  # also drops purchases of members who joined on or after the cut-off
            members.lazy().select(pl.col(_HASH).alias(_MEMBER_HASH), Col.MEMBER_ID),
            on=_MEMBER_HASH,
            how="inner",
            maintain_order="left",
        )
        .join(
            items.lazy().select(_HASH, Col.ITEM_ID, Col.CATEGORY),
            on=_HASH,
            how="inner",
            maintain_order="left",
        )
        .drop(_MEMBER_HASH, _HASH)
        .collect()
    )
    return _Encoded(
        members=members.drop(_HASH),
        items=items.drop(_HASH),
        purchases=purchases,
        member_ids=joined.get_column(Col.MEMBER_ID).sort(),
        item_ids=dataset.items.get_column(Col.ITEM_ID).sort(),
    )


def _decoded(frame: pl.DataFrame, key: str, ids: pl.Series, *order: str) -> pl.DataFrame:
    """Codes in ``frame[key]`` back to ids, categories to strings; sorted by ``key`` (that is,
    by code: codes follow the ids' order) then ``order``, stably."""
    ordered = frame.sort(key, *order, maintain_order=True)
    return ordered.with_columns(
        ids.gather(ordered.get_column(key)).alias(key),
        *(pl.col(c).cast(pl.String) for c in (Col.CATEGORY,) if c in frame.columns),
    )


def _member_frame(
    members: pl.DataFrame,
    tier_now: pl.DataFrame,
    rfm_features: pl.DataFrame,
    stages: pl.DataFrame,
    returns: pl.DataFrame,
    spend: pl.DataFrame,
    policy: FeaturePolicy,
    cut: datetime,
) -> pl.DataFrame:
    """One row per member with every feature the tag rules may test."""
    key = Col.MEMBER_ID
    categories = rule_categories(policy.tags)
    crm_tier = pl.col(Col.TIER)
    frame = (
        members.select(
            key,
            Col.JOINED_AT,
            crm_tier,
            pl.col(Col.TAGS).alias(Feat.CRM_TAGS),
            Col.REGION,
            Col.POINTS_BALANCE,
            pl.col(Col.BIRTH_DATE).dt.month().cast(pl.Int8).alias(Feat.BIRTH_MONTH),
        )
        .join(tier_now, on=key, how="left")
        .join(rfm_features, on=key, how="left")
        .join(stages, on=key, how="left")
        .join(returns, on=key, how="left")
        .join(_category_names(top_categories(spend)), on=key, how="left")
    )
    if categories:
        shares = category_shares(
            spend.with_columns(pl.col(Col.CATEGORY).cast(pl.String)), categories
        )
        frame = frame.join(shares, on=key, how="left").with_columns(
            pl.col(shares.columns[1:]).fill_null(0.0)
        )
    from_crm = crm_tier.is_not_null()
    return frame.with_columns(
        pl.when(from_crm).then(pl.lit("crm")).otherwise(pl.lit("policy")).alias(Feat.TIER_SOURCE),
        pl.coalesce(crm_tier, pl.col(Feat.POLICY_TIER)).alias(Col.TIER),
        pl.when(~from_crm | (crm_tier == pl.col(Feat.POLICY_TIER)))
        .then(pl.col(Feat.TIER_SINCE))
        .alias(Feat.TIER_SINCE),
        pl.col(Feat.RETURN_RATE).fill_null(0.0),
        pl.col(Feat.TOP_CATEGORIES).fill_null(pl.lit([], dtype=pl.List(pl.String))),
        (pl.col(Feat.BIRTH_MONTH) == cut.month).alias(Feat.BIRTHDAY_THIS_MONTH),
    )


def _category_names(top: pl.DataFrame) -> pl.DataFrame:
    return top.with_columns(pl.col(Feat.TOP_CATEGORIES).cast(pl.List(pl.String)))


def _agreement(frame: pl.DataFrame) -> TierAgreement:
    crm = frame.filter(pl.col(Feat.TIER_SOURCE) == "crm")
    agreeing = crm.filter(pl.col(Col.TIER) == pl.col(Feat.POLICY_TIER)).height
    return TierAgreement(crm_members=crm.height, agreeing=agreeing)


def _recent_purchases(data: _Encoded, original: pl.DataFrame) -> pl.DataFrame:
    """The last RECENT_PURCHASES_PER_MEMBER rows per member: ts descending, ties in file order.

    The positions of the kept rows are ranked per member on the encoded frame (its rows are in
    file order and the sort within a member is stable), then every column is gathered once:
    numbers from the encoded frame, ids from the small sorted id lists, and only order_id from
    the original strings.
    """
    key = Col.MEMBER_ID
    kept = (
        data.purchases.select(key, Col.TS)
        .with_row_index(_POSITION)
        .group_by(key)
        .agg(
            pl.col(_POSITION)
            .sort_by(Col.TS, descending=True, maintain_order=True)
            .head(RECENT_PURCHASES_PER_MEMBER)
        )
        .sort(key)
        .explode(_POSITION)
    )
    position = kept.get_column(_POSITION)
    rows = pl.DataFrame(
        data.purchases.get_column(c).gather(position)
        for c in (Col.ITEM_ID, _ROW, Col.TS, Col.QUANTITY, Col.AMOUNT)
    )
    return rows.select(
        data.member_ids.gather(kept.get_column(key)).alias(key),
        original.get_column(Col.ORDER_ID).gather(rows.get_column(_ROW)).alias(Col.ORDER_ID),
        data.item_ids.gather(rows.get_column(Col.ITEM_ID)).alias(Col.ITEM_ID),
        Col.TS,
        Col.QUANTITY,
        Col.AMOUNT,
    )


# --------------------------------------------------------------------------------------------
# Building a snapshot folder
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuildResult:
    snapshot: Snapshot
    row_counts: dict[str, int]
    #: dataset rows rejected by validation (not used)
    rejected_rows: int
    purchases_used: int
    tier_agreement: TierAgreement


def build_snapshot(
    data_dir: Path,
    as_of: date,
    out: Path,
    policy_path: Path | None = None,
    *,
    rejects_dir: Path | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Load ``data_dir``, build the features as of ``as_of`` and write the snapshot to ``out``."""
    step = progress or (lambda _: None)
    policy = load_policy(policy_path)
    check_target(out)
    step("loading dataset")
    loaded = load_dataset(data_dir, LoadOptions(tiers=policy.tiers.names), rejects_dir)
    specs = (MEMBERS, ITEMS, PURCHASES)
    files = [table_path(data_dir, spec) for spec in specs]
    tables = build_features(loaded.dataset, policy, as_of, step)
    step("writing snapshot")
    source: dict[str, object] = {
        "data_dir": str(data_dir.resolve()),
        "files": {spec.name: f.name for spec, f in zip(specs, files, strict=True)},
    }
    manifest = snapshot_manifest(
        tables,
        policy,
        fingerprint=source_fingerprint(files),
        source=source,
        rejected_rows=loaded.report.rejected_count,
    )
    write_snapshot(tables, manifest, out)
    return BuildResult(
        snapshot=Snapshot(path=out, manifest=manifest),
        row_counts=tables.row_counts,
        rejected_rows=loaded.report.rejected_count,
        purchases_used=tables.purchases_used,
        tier_agreement=tables.tier_agreement,
    )


__all__ = [
    "FILES",
    "FORMAT_VERSION",
    "MANIFEST",
    "MEMBER_COLUMNS",
    "RECENT_PURCHASES_PER_MEMBER",
    "BuildResult",
    "FeatureTables",
    "Snapshot",
    "TierAgreement",
    "build_features",
    "build_snapshot",
    "cutoff",
    "open_snapshot",
    "snapshot_manifest",
    "source_fingerprint",
    "write_snapshot",
]
