"""The reason behind each served item (engine.ranking.reasons), on hand-made vectors."""

from __future__ import annotations

import numpy as np

from engine.ranking.lists import RankedList
from engine.ranking.reasons import explain, explain_many
from engine.ranking.sources import (
    SOURCE_BUY_AGAIN,
    SOURCE_MODEL,
    SOURCE_POPULAR,
    SOURCE_POPULAR_IN_TIER,
    SOURCE_PROMOTED,
    SOURCE_SIMILAR,
    SOURCE_TRENDING,
)

# items 0-1 point along x, 2-3 along y, 4 along z
VECTORS = np.asarray(
    [[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 0.9, 0], [0, 0, 1]], dtype=np.float32
)


def ranked(items: list[int], sources: list[int]) -> RankedList:
    return RankedList(
        np.asarray(items, dtype=np.int64),
        np.ones(len(items), np.float32),
        np.asarray(sources, dtype=np.int8),
    )


def test_embedding_items_are_anchored_on_the_most_similar_purchase() -> None:
    out = explain(VECTORS, ranked([1, 3, 4], [SOURCE_MODEL] * 3), np.asarray([0, 2]))
    assert out.reasons == ("because_you_bought",) * 3
    assert out.anchors.tolist()[:2] == [0, 2]  # 1 is like 0, 3 like 2
    assert out.anchors[2] in (0, 2)  # 4 is like neither: still one of the purchases


def test_each_source_has_its_reason() -> None:
    sources = [
        SOURCE_BUY_AGAIN,
        SOURCE_TRENDING,
        SOURCE_POPULAR,
        SOURCE_POPULAR_IN_TIER,
        SOURCE_PROMOTED,
    ]
    out = explain(VECTORS, ranked([0, 1, 2, 3, 4], sources), np.asarray([0]))
    assert out.reasons == (
        "buy_again",
        "trending",
        "trending",
        "popular_in_your_tier",
        "promoted",
    )
    assert (out.anchors == -1).all()


def test_without_purchases_embedding_items_come_from_similar_members() -> None:
    out = explain(VECTORS, ranked([2, 3], [SOURCE_MODEL] * 2), np.zeros(0, np.int64))
    assert out.reasons == ("similar_members", "similar_members")
    assert (out.anchors == -1).all()


def test_similar_items_are_anchored_on_the_seed() -> None:
    out = explain(VECTORS, ranked([1], [SOURCE_SIMILAR]), np.zeros(0, np.int64), seed=0)
    assert (out.reasons, out.anchors.tolist()) == (("similar_item",), [0])


def test_a_batch_is_explained_as_each_list_alone() -> None:
    lists = [
        ranked([1, 3, 4], [SOURCE_MODEL] * 3),
        ranked([2, 0], [SOURCE_MODEL, SOURCE_BUY_AGAIN]),
        ranked([], []),
        ranked([4, 2], [SOURCE_PROMOTED, SOURCE_MODEL]),
    ]
    recents = [np.asarray([0, 2]), np.zeros(0, np.int64), np.asarray([1]), np.asarray([3, 4])]
    batch = explain_many(VECTORS, lists, recents)
    for got, lst, recent in zip(batch, lists, recents, strict=True):
        alone = explain(VECTORS, lst, recent)
        assert got.reasons == alone.reasons
        assert got.anchors.tolist() == alone.anchors.tolist()


def test_the_api_documents_exactly_the_engine_reasons() -> None:
    from typing import get_args

    from engine.ranking.reasons import REASONS
    from serving.schemas import Reason

    assert set(get_args(Reason)) == set(REASONS)
