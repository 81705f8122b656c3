"""Item features: popularity over 7/30/90 days, buyers, repeat-purchase rate and price band.

All from purchase rows with ``ts < as_of``; "bought" means a row with quantity > 0.

- ``pop_Nd``: units bought with ``as_of - N days < ts < as_of``.
- ``buyers``: distinct members who bought the item; ``repeat_rate``: share of them who bought it
  in two or more distinct orders (0 without buyers).
- ``price_band``: with ``k`` band names, ``rank`` the 1-based price rank inside the category
  (equal prices share the lowest rank) and ``n`` the items of the category,
  band ``floor(k * (rank - 1) / n)``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from feature_store.policy import ItemPolicy, TierPolicy
from feature_store.schema import Col
from feature_store.transforms import Feat, collect

#: Popularity windows in days and their columns.
POPULARITY_WINDOWS: tuple[tuple[int, str], ...] = (
    (7, Feat.POP_7D),
    (30, Feat.POP_30D),
    (90, Feat.POP_90D),
)

_CODES = (pl.UInt8(), pl.UInt16(), pl.UInt32())
_SHIFT = 1 << 32

#: Column of purchases identifying an order (any dtype); the offline builder may pass a code.
ORDER_KEY = Col.ORDER_ID


def price_band(price: pl.Expr, category: pl.Expr, bands: tuple[str, ...]) -> pl.Expr:
    rank = price.rank("min").over(category).cast(pl.Int64)
    index = (len(bands) * (rank - 1)) // pl.len().over(category)
    return index.replace_strict(list(range(len(bands))), list(bands), return_dtype=pl.String)


def item_features(
    items: pl.DataFrame,
    purchases: pl.DataFrame,
    policy: ItemPolicy,
    tiers: TierPolicy,
    as_of: datetime,
    *,
    order_key: str = ORDER_KEY,
) -> pl.DataFrame:
    """One row per item of ``items`` (item_id, category, price and optional tags, min_tier,
    active) with the features of docs/feature_snapshot.md, sorted by item_id."""
    key = Col.ITEM_ID
    bought = purchases.lazy().filter((pl.col(Col.TS) < as_of) & (pl.col(Col.QUANTITY) > 0))
    qty = pl.col(Col.QUANTITY)
    popularity = collect(
        bought.group_by(key).agg(
            qty.filter(pl.col(Col.TS) > as_of - timedelta(days=days)).sum().alias(name)
            for days, name in POPULARITY_WINDOWS
        )
    )
    # two or more distinct orders <=> the smallest and largest order differ (cheaper than
    # counting distinct orders)
    repeat = (pl.col(order_key).min() != pl.col(order_key).max()).alias("__repeat")
    pairs = purchases.schema[key] in _CODES and purchases.schema[Col.MEMBER_ID] in _CODES
    if pairs:  # integer codes: one UInt64 key per (item, member) pair groups faster
        pair = pl.col(key).cast(pl.UInt64) * _SHIFT + pl.col(Col.MEMBER_ID).cast(pl.UInt64)
        per_pair = (
            bought.group_by(pair.alias("__pair"))
            .agg(repeat)
            .select((pl.col("__pair") // _SHIFT).cast(purchases.schema[key]).alias(key), "__repeat")
        )
    else:
        per_pair = bought.group_by(key, Col.MEMBER_ID).agg(repeat)
    per_buyer = collect(
        per_pair.group_by(key).agg(
            pl.len().cast(pl.Int64).alias(Feat.BUYERS),
            pl.col("__repeat").mean().alias(Feat.REPEAT_RATE),
        )
    )
    optional = {
        Col.TAGS: pl.lit([], dtype=pl.List(pl.String)),
        Col.MIN_TIER: pl.lit(tiers.base),
        Col.ACTIVE: pl.lit(True),
    }
    filled = [
        pl.col(name).fill_null(default) if name in items.columns else default.alias(name)
        for name, default in optional.items()
    ]
    return (
        items.select(key, Col.CATEGORY, Col.PRICE, *filled)
        .with_columns(
            price_band(pl.col(Col.PRICE), pl.col(Col.CATEGORY), policy.price_bands).alias(
                Feat.PRICE_BAND
            )
        )
        .join(popularity, on=key, how="left")
        .join(per_buyer, on=key, how="left")
        .with_columns(
            pl.col(Feat.POP_7D, Feat.POP_30D, Feat.POP_90D, Feat.BUYERS)
            .fill_null(0)
            .cast(pl.Int64),
            pl.col(Feat.REPEAT_RATE).fill_null(0.0),
        )
        .select(
            key,
            Col.CATEGORY,
            Col.PRICE,
            Feat.PRICE_BAND,
            Col.TAGS,
            Col.MIN_TIER,
            Col.ACTIVE,
            Feat.POP_7D,
            Feat.POP_30D,
            Feat.POP_90D,
            Feat.BUYERS,
            Feat.REPEAT_RATE,
        )
        .sort(key)
    )


__all__ = ["POPULARITY_WINDOWS", "item_features", "price_band"]
