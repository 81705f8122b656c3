"""The item catalogue: categories, prices, power-law popularity, latent vectors, exclusives, tags."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feature_store.synthetic.config import TITLE_ADJECTIVES, SynthConfig

#: item tags, in the order they appear in items.tags
ITEM_TAGS: tuple[str, ...] = ("bestseller", "premium", "private-label", "organic")


@dataclass(frozen=True, slots=True)
class Catalog:
    #: category index (into cfg.categories) per item
    category: npt.NDArray[np.int32]
    price: npt.NDArray[np.float64]
    #: planted popularity weight per item (sums to 1)
    popularity: npt.NDArray[np.float64]
    #: 0 = most popular
    popularity_rank: npt.NDArray[np.int64]
    #: latent item vectors, shape (items, latent_dim)
    vectors: npt.NDArray[np.float32]
    #: eligibility level needed to buy the item: 0 = everyone, i = cfg.exclusive_tiers[i - 1]
    min_level: npt.NDArray[np.int8]
    active: npt.NDArray[np.bool_]
    #: one boolean column per ITEM_TAGS entry, shape (items, len(ITEM_TAGS))
    tags: npt.NDArray[np.bool_]
    #: title parts: index into TITLE_ADJECTIVES and into the flattened category nouns
    title_adjective: npt.NDArray[np.int64]
    title_noun: npt.NDArray[np.int64]

    @property
    def size(self) -> int:
        return int(self.category.size)


def allocate(total: int, shares: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Split ``total`` into integer parts proportional to ``shares`` (largest remainders)."""
    exact = total * shares / shares.sum()
    parts: npt.NDArray[np.int64] = np.floor(exact).astype(np.int64)
    remainder = total - int(parts.sum())
    if remainder:
        order = np.argsort(-(exact - parts), kind="stable")
        parts[order[:remainder]] += 1
    return parts


def build_catalog(cfg: SynthConfig, rng: np.random.Generator) -> Catalog:
    n = cfg.items
    cats = cfg.categories
    counts = allocate(n, np.array([c.item_share for c in cats], dtype=np.float64))
    category = rng.permutation(np.repeat(np.arange(len(cats), dtype=np.int32), counts))

    log_median = np.log([c.price_median for c in cats])[category]
    sigma = np.array([c.price_sigma for c in cats])[category]
    raw_price = np.exp(log_median + sigma * rng.standard_normal(n))
    # Shelf prices: whole units minus a cent above 2, plain cents below.
    price = np.where(raw_price >= 2, np.round(raw_price) - 0.01, np.round(raw_price, 2))
    price = np.maximum(price, 0.29)

    popularity_rank = rng.permutation(n).astype(np.int64)
    popularity = np.power(popularity_rank + 1.0, -cfg.popularity_exponent, dtype=np.float64)
    popularity /= popularity.sum()

    vectors = rng.standard_normal((n, cfg.latent_dim)).astype(np.float32)

    min_level = np.zeros(n, dtype=np.int8)
    shares = dict(cfg.exclusive_items)
    order = rng.permutation(n)
    taken = 0
    for level, tier in enumerate(cfg.exclusive_tiers, start=1):
        k = min(round(shares[tier] * n), n - 1 - taken)  # keep >= 1 item for everyone
        min_level[order[taken : taken + k]] = level
        taken += k

    active = rng.random(n) >= cfg.inactive_item_share

    price_rank = _rank_within(category, -price)
    in_category = counts[category]
    food = np.array([c.food for c in cats])[category]
    tags = np.column_stack(
        [
            popularity_rank < max(1, round(cfg.bestseller_share * n)),
            price_rank < np.maximum(1, np.round(cfg.premium_share * in_category)),
            rng.random(n) < cfg.private_label_share,
            food & (rng.random(n) < cfg.organic_share),
        ]
    )

    noun_counts = np.array([len(c.nouns) for c in cats], dtype=np.int64)
    noun_offsets = np.concatenate(([0], np.cumsum(noun_counts)[:-1]))
    title_noun = noun_offsets[category] + np.floor(rng.random(n) * noun_counts[category]).astype(
        np.int64
    )
    title_adjective = rng.integers(0, len(TITLE_ADJECTIVES), size=n, dtype=np.int64)

    return Catalog(
        category=category,
        price=price,
        popularity=popularity,
        popularity_rank=popularity_rank,
        vectors=vectors,
        min_level=min_level,
        active=active,
        tags=tags,
        title_adjective=title_adjective,
        title_noun=title_noun,
    )


def _rank_within(
    group: npt.NDArray[np.int32], key: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """0-based rank of each entry by ``key`` (ascending) within its group."""
    order = np.lexsort((key, group))
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, group.size]))
    rank = np.empty(group.size, dtype=np.int64)
    rank[order] = np.arange(group.size) - run_start
    return rank
