"""Business rules on ranked candidates (engine.ranking), on hand-made catalogues."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidInputError
from engine.ranking.catalog import ItemCatalog
from engine.ranking.lists import (
    Promotion,
    RankedList,
    Rules,
    apply_rules,
    category_cap,
    rank_many,
    rank_with_fallbacks,
)
from engine.ranking.sources import SOURCE_PROMOTED

TIERS = ("regular", "silver", "gold")


def catalog() -> ItemCatalog:
    # items:      0    1    2    3    4    5    6    7
    # category:   a    a    a    b    b    c    -    a
    # min_tier:   0    0    2    0    1    0    0    0
    # active:     T    T    T    T    T    F    T    T
    return ItemCatalog(
        tiers=TIERS,
        category_codes=[0, 0, 0, 1, 1, 2, -1, 0],
        categories=["a", "b", "c"],
        min_tier=[0, 0, 2, 0, 1, 0, 0, 0],
        active=[True, True, True, True, True, False, True, True],
        popularity=[0.1, 0.2, 0.9, 0.3, 0.8, 1.0, 0.05, 0.4],
        tier_popularity=np.asarray(
            [
                [0.1, 0.1, 0.1],
                [0.2, 0.2, 0.2],
                [0.9, 0.9, 9.0],
                [0.3, 0.3, 0.3],
                [0.8, 0.8, 0.8],
                [1.0, 1.0, 1.0],
                [0.05, 0.05, 0.05],
                [0.4, 0.4, 0.4],
            ],
            dtype=np.float32,
        ),
    )


def candidates(*items: int) -> RankedList:
    return RankedList.of(items, np.linspace(1.0, 0.5, len(items)), source=0)


def test_tier_and_availability() -> None:
    cat = catalog()
    ranked = apply_rules(cat, Rules(k=8, tier=0), [candidates(5, 2, 4, 0, 1, 3, 6, 7)])
    assert ranked.items.tolist() == [0, 1, 3, 6, 7]  # 5 inactive, 2 gold, 4 silver
    silver = apply_rules(cat, Rules(k=8, tier=1), [candidates(5, 2, 4, 0)])
    assert silver.items.tolist() == [4, 0]
    gold = apply_rules(cat, Rules(k=8, tier=2), [candidates(5, 2, 4, 0)])
    assert gold.items.tolist() == [2, 4, 0]


def test_exclusions_dedup_category_and_padding() -> None:
    cat = catalog()
    lists = [RankedList(np.asarray([-1, 0, 1, 0, 3]), np.ones(5, np.float32), np.zeros(5, np.int8))]
    ranked = apply_rules(cat, Rules(k=5, exclude=np.asarray([1])), lists)
    assert ranked.items.tolist() == [0, 3]
    only_b = apply_rules(cat, Rules(k=5, tier=1, category=1), [candidates(0, 3, 4, 1)])
    assert only_b.items.tolist() == [3, 4]


def test_diversity_cap_keeps_order_and_leaves_uncategorised_items_alone() -> None:
    cat = catalog()
    ranked = apply_rules(cat, Rules(k=6, max_per_category=1), [candidates(0, 1, 7, 3, 6, 4)])
    assert ranked.items.tolist() == [0, 3, 6]
    two = apply_rules(cat, Rules(k=3, tier=1, max_per_category=2), [candidates(0, 1, 7, 3, 4)])
    assert two.items.tolist() == [0, 1, 3]


def test_fallback_chain_shares_the_exclusion_set_and_keeps_sources() -> None:
    cat = catalog()
    tier_items, tier_scores = cat.popular_in_tier(0)
    overall, overall_scores = cat.popular_overall()
    ranked = rank_with_fallbacks(
        cat,
        Rules(k=4, exclude=np.asarray([7])),
        candidates(1),
        [(tier_items, tier_scores, 4), (overall, overall_scores, 3)],
    )
    # candidate 1, then popular in tier 0 among eligible: 4? no (silver); 7 excluded; 3, 0, 6
    assert ranked.items.tolist() == [1, 3, 0, 6]
    assert ranked.sources.tolist() == [0, 4, 4, 4]
    assert ranked.scores[1] == pytest.approx(0.3)
    gold_items, _ = cat.popular_in_tier(2)
    assert gold_items.tolist()[:2] == [2, 4]  # tier popularity 9.0 first for gold


def test_popular_in_category() -> None:
    items, scores = catalog().popular_in_category(0)
    assert items.tolist() == [2, 7, 1, 0]
    assert scores.tolist() == pytest.approx([0.9, 0.4, 0.2, 0.1])


def test_category_cap() -> None:
    assert category_cap(10, 0.5) == 5
    assert category_cap(3, 0.5) == 2
    assert category_cap(1, 0.5) is None
    assert category_cap(10, 1.0) is None
    with pytest.raises(InvalidInputError):
        category_cap(10, 0.0)


def test_bad_catalogues_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="min_tier ranks"):
        ItemCatalog(
            tiers=TIERS,
            category_codes=[0],
            categories=["a"],
            min_tier=[3],
            active=[True],
            popularity=[1.0],
        )
    with pytest.raises(InvalidInputError, match="popularity has shape"):
        ItemCatalog(
            tiers=TIERS,
            category_codes=[0],
            categories=["a"],
            min_tier=[0],
            active=[True],
            popularity=[1.0, 2.0],
        )
    with pytest.raises(InvalidInputError, match="k must be at least 1"):
        Rules(k=0)


@pytest.mark.parametrize("seed", range(12))
def test_rank_many_equals_one_by_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items, n_categories = 60, 5
    cat = ItemCatalog(
        tiers=TIERS,
        category_codes=rng.integers(-1, n_categories, n_items),
        categories=[f"c{i}" for i in range(n_categories)],
        min_tier=rng.integers(0, 3, n_items),
        active=rng.random(n_items) > 0.1,
        popularity=rng.random(n_items),
        tier_popularity=rng.random((n_items, 3)),
    )
    rules, candidates, fallbacks = [], [], []
    for _ in range(9):
        k = int(rng.integers(1, 25))
        size = int(rng.integers(0, 40))
        items = rng.integers(-1, n_items, size)
        candidates.append(RankedList.of(items, np.sort(rng.random(size))[::-1], 0))
        category = None if rng.random() < 0.7 else int(rng.integers(0, n_categories + 1))
        tier = int(rng.integers(0, 3))
        rules.append(
            Rules(
                k=k,
                tier=tier,
                category=category if category is None or category < n_categories else None,
                exclude=rng.integers(0, n_items, int(rng.integers(0, 6))),
                max_per_category=None if rng.random() < 0.3 else int(rng.integers(1, 4)),
            )
        )
        tier_items, tier_scores = cat.popular_in_tier(tier)
        overall, overall_scores = cat.popular_overall()
        fallbacks.append([(tier_items, tier_scores, 4), (overall, overall_scores, 3)])
    together = rank_many(cat, rules, candidates, fallbacks)
    for i in range(len(rules)):
        alone = rank_with_fallbacks(cat, rules[i], candidates[i], fallbacks[i])
        assert together[i].items.tolist() == alone.items.tolist()
        assert together[i].sources.tolist() == alone.sources.tolist()
        assert together[i].scores.tolist() == pytest.approx(alone.scores.tolist())


def test_promotion_takes_its_share_of_the_slots_in_ranked_order() -> None:
    cat = catalog()
    promo = Promotion(np.asarray([6, 7]), share=0.5)  # ceil(0.5 * 4) = 2 slots
    ranked = apply_rules(cat, Rules(k=4, tier=1, promotion=promo), [candidates(0, 1, 3, 4, 7, 6)])
    assert ranked.items.tolist() == [0, 1, 7, 6]  # 3 and 4 give way to the promoted items
    assert ranked.sources.tolist() == [0, 0, SOURCE_PROMOTED, SOURCE_PROMOTED]
    # a promoted item ranked high keeps its place; one slot is enough for share 0.25
    early = apply_rules(
        cat,
        Rules(k=4, tier=1, promotion=Promotion(np.asarray([7, 6]), 0.25)),
        [candidates(7, 0, 1, 6, 3)],
    )
    assert early.items.tolist() == [7, 0, 1, 3]


def test_promotion_obeys_the_other_rules_and_fills_when_short() -> None:
    cat = catalog()
    # 5 is inactive and 2 is gold-only: never shown to a regular member, promoted or not
    promo = Promotion(np.asarray([5, 2, 6]), share=1.0)
    ranked = apply_rules(cat, Rules(k=3, promotion=promo), [candidates(0, 1, 3, 6)])
    assert ranked.items.tolist() == [0, 1, 6]  # one promoted item passes; others fill
    # the diversity cap counts the shown items only
    capped = apply_rules(
        cat,
        Rules(k=3, tier=1, max_per_category=1, promotion=Promotion(np.asarray([7]), 0.3)),
        [candidates(0, 1, 3, 4, 7)],
    )
    assert capped.items.tolist() == [0, 3]  # 7's category a already has its one item


def test_promotion_rows_in_a_batch_equal_one_at_a_time() -> None:
    cat = catalog()
    rules = [
        Rules(k=3, tier=1),
        Rules(k=3, tier=1, promotion=Promotion(np.asarray([6]), 0.4)),
        Rules(k=2, exclude=np.asarray([0])),
    ]
    lists = [candidates(0, 1, 3, 4, 6), candidates(0, 1, 3, 4), candidates(0, 1, 3)]
    fills = [[(np.asarray([6, 7]), np.asarray([0.2, 0.1], np.float32), 3)]] * 3
    batch = rank_many(cat, rules, lists, fills)
    one = [rank_with_fallbacks(cat, r, c, f) for r, c, f in zip(rules, lists, fills, strict=True)]
    assert [b.items.tolist() for b in batch] == [o.items.tolist() for o in one]
    assert batch[1].items.tolist() == [0, 1, 6]
    assert batch[2].items.tolist() == [1, 3]


def test_a_promotion_share_outside_its_range_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="promotion share"):
        Promotion(np.asarray([1]), share=0.0)
