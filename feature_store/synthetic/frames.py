"""Turn the generated arrays into canonical tables and ground-truth tables (polars).

Ids are built once per entity, vectorized (``M000001``, ``I000001``, ``O00000001``) and
gathered by index for the purchase rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import polars as pl

from feature_store.dataset import Dataset
from feature_store.schema import ITEMS, MEMBERS, PURCHASES, Col, conform
from feature_store.synthetic.catalog import ITEM_TAGS, Catalog
from feature_store.synthetic.config import TITLE_ADJECTIVES, SynthConfig
from feature_store.synthetic.population import STATUSES, Population
from feature_store.synthetic.purchases import Purchases
from feature_store.synthetic.taste import Taste

#: planted top categories and top items listed per member / cluster in the ground truth
TOP_CATEGORIES = 3
TOP_ITEMS = 50
#: share of a member's net spend still unspent as points: uniform in this range
_UNSPENT = (0.05, 1.0)


def ids(prefix: str, count: int, min_width: int = 6) -> pl.Series:
    """``prefix`` + 1-based zero-padded numbers: ids("M", 3) -> M000001, M000002, M000003."""
    width = max(min_width, len(str(count)))
    return (
        pl.select(pl.lit(prefix) + pl.int_range(1, count + 1).cast(pl.String).str.zfill(width))
        .to_series()
        .rename("id")
    )


def _gather(values: Sequence[str | None], index: npt.NDArray[np.integer]) -> pl.Series:
    return pl.Series(values, dtype=pl.String).gather(pl.Series(index, dtype=pl.Int64))


def _tag_lists(names: Sequence[str], flags: npt.NDArray[np.bool_]) -> pl.Series:
    """A List(String) column: row r holds names[j] for every flags[r, j], in column order."""
    rows, cols = np.nonzero(flags)
    lists = (
        pl.DataFrame({"row": rows, "tag": _gather(names, cols)})
        .group_by("row", maintain_order=True)
        .agg("tag")
    )
    every = pl.DataFrame({"row": np.arange(flags.shape[0], dtype=rows.dtype)})
    return (
        every.join(lists, on="row", how="left", maintain_order="left")
        .get_column("tag")
        .fill_null(pl.lit([], dtype=pl.List(pl.String)))
    )


def _datetime(seconds: npt.NDArray[np.int64]) -> pl.Series:
    return pl.Series((seconds * 1_000_000).view("datetime64[us]"))


def dataset_frames(
    cfg: SynthConfig,
    catalog: Catalog,
    people: Population,
    purchases: Purchases,
    member_ids: pl.Series,
    item_ids: pl.Series,
    rng: np.random.Generator,
) -> Dataset:
    cats = cfg.categories
    nouns = [noun for c in cats for noun in c.nouns]
    items = pl.DataFrame(
        {
            Col.ITEM_ID: item_ids,
            Col.CATEGORY: _gather([c.name for c in cats], catalog.category),
            Col.PRICE: catalog.price,
            Col.TITLE: _gather(TITLE_ADJECTIVES, catalog.title_adjective)
            + " "
            + _gather(nouns, catalog.title_noun),
            Col.TAGS: _tag_lists(ITEM_TAGS, catalog.tags),
            Col.MIN_TIER: _gather([None, *cfg.exclusive_tiers], catalog.min_level),
            Col.ACTIVE: catalog.active,
        }
    )

    net_spend = np.bincount(purchases.member, weights=purchases.amount, minlength=people.size)
    unspent = rng.uniform(*_UNSPENT, size=people.size)
    points = np.floor(np.maximum(net_spend, 0) * cfg.points_per_unit * unspent).astype(np.int64)
    tag_names = [f"loves-{c.name}" for c in cats] + [t for t, _, _ in cfg.crm_tags]
    members = pl.DataFrame(
        {
            Col.MEMBER_ID: member_ids,
            Col.JOINED_AT: _datetime(people.joined_at),
            Col.TIER: _gather(cfg.tiers, people.tier),
            Col.TAGS: _tag_lists(tag_names, np.hstack((people.loves, people.crm))),
            Col.BIRTH_DATE: pl.Series(people.birth_date),
            Col.POINTS_BALANCE: points,
            Col.REGION: _gather([r for r, _ in cfg.regions], people.region),
        }
    )

    order_ids = ids("O", purchases.orders, min_width=8)
    rows = pl.DataFrame(
        {
            Col.ORDER_ID: order_ids.gather(pl.Series(purchases.order)),
            Col.MEMBER_ID: member_ids.gather(pl.Series(purchases.member)),
            Col.ITEM_ID: item_ids.gather(pl.Series(purchases.item)),
            Col.TS: _datetime(purchases.ts),
            Col.QUANTITY: purchases.quantity,
            Col.AMOUNT: purchases.amount,
        }
    )
    return Dataset(
        members=conform(members, MEMBERS),
        items=conform(items, ITEMS),
        purchases=conform(rows, PURCHASES),
    )


def truth_frames(
    cfg: SynthConfig,
    catalog: Catalog,
    taste: Taste,
    people: Population,
    purchases: Purchases,
    member_ids: pl.Series,
    item_ids: pl.Series,
) -> dict[str, pl.DataFrame]:
    """Ground truth: what was planted, per member, item, cluster and staple."""
    cat_names = [c.name for c in cfg.categories]
    start = np.datetime64(cfg.end_date, "D") - np.timedelta64(cfg.span_days - 1, "D")
    w = people.primary_weight[:, None]
    preference = (
        w * taste.vectors[people.primary] + (1 - w) * taste.vectors[people.secondary]
    ).astype(np.float32)
    top_cats = np.argsort(-people.category_share, axis=1, kind="stable")[:, :TOP_CATEGORIES]
    members = pl.DataFrame(
        {
            Col.MEMBER_ID: member_ids,
            "status": _gather(STATUSES, people.status),
            Col.TIER: _gather(cfg.tiers, people.tier),
            "primary_cluster": people.primary.astype(np.int32),
            "secondary_cluster": people.secondary.astype(np.int32),
            "primary_weight": people.primary_weight,
            "preference": pl.Series(preference),
            "category_shares": pl.Series(people.category_share),
            "top_categories": _gather(cat_names, top_cats.ravel()).reshape(
                (people.size, TOP_CATEGORIES)
            ),
            "activity_rate": people.rate,
            "planned_share": people.planned,
            "sale_lines": purchases.lines_per_member,
            "first_active": pl.Series(start + people.first_day.astype("timedelta64[D]")),
            "last_active": pl.Series(start + people.last_day.astype("timedelta64[D]")),
        }
    )
    items = pl.DataFrame(
        {
            Col.ITEM_ID: item_ids,
            Col.CATEGORY: _gather(cat_names, catalog.category),
            "popularity": catalog.popularity,
            "popularity_rank": catalog.popularity_rank + 1,
            "min_level": catalog.min_level.astype(np.int32),
            "vector": pl.Series(catalog.vectors),
            "cluster_log_affinity": pl.Series(np.ascontiguousarray(taste.log_affinity.T)),
        }
    )
    if cfg.tier_taste > 0:  # only then, so that default outputs keep their bytes
        items = items.with_columns(tier_bonus=pl.Series(taste.bonus.astype(np.int32)))
    top_items = np.argsort(-taste.log_affinity, axis=1, kind="stable")[
        :, : min(TOP_ITEMS, catalog.size)
    ]
    clusters = pl.DataFrame(
        {
            "cluster": np.arange(taste.clusters, dtype=np.int32),
            "prevalence": taste.prevalence,
            "vector": pl.Series(taste.vectors),
            "category_shares": pl.Series(taste.category_share),
            "top_items": item_ids.gather(pl.Series(top_items.ravel())).reshape(top_items.shape),
        }
    )
    staples = pl.DataFrame(
        {
            Col.MEMBER_ID: member_ids.gather(pl.Series(purchases.staples.member)),
            "slot": purchases.staples.slot.astype(np.int32),
            Col.ITEM_ID: item_ids.gather(pl.Series(purchases.staples.item)),
            "planned_share": purchases.staples.share,
        }
    )
    return {"members": members, "items": items, "clusters": clusters, "staples": staples}
