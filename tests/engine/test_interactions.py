"""engine.interactions: every weight checked against a hand-computed matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from engine.errors import InvalidInputError
from engine.interactions import (
    InteractionWeights,
    PurchaseLines,
    QuantityTransform,
    build_confidence,
)

DAY = 86_400
T0 = 1_700_000_000  # an epoch second used as "now"


def lines(member, item, quantity, **extra) -> PurchaseLines:
    return PurchaseLines(
        member=np.asarray(member, dtype=np.int64),
        item=np.asarray(item, dtype=np.int64),
        quantity=np.asarray(quantity, dtype=np.int64),
        **extra,
    )


def dense(matrix: sp.csr_matrix) -> np.ndarray:
    return np.asarray(matrix.toarray(), dtype=np.float64)


def test_default_weights_log1p_of_quantity_summed_per_cell():
    purchases = lines(member=[0, 0, 1], item=[0, 0, 2], quantity=[1, 2, 3])

    matrix = build_confidence(purchases, 2, 3, InteractionWeights())

    expected = np.zeros((2, 3))
    expected[0, 0] = math.log1p(1) + math.log1p(2)
    expected[1, 2] = math.log1p(3)
    np.testing.assert_allclose(dense(matrix), expected, rtol=1e-6)
    assert isinstance(matrix, sp.csr_matrix)
    assert matrix.dtype == np.float32
    assert matrix.indices.dtype == np.int32
    assert matrix.has_canonical_format
    assert matrix.nnz == 2


@pytest.mark.parametrize(
    ("transform", "expected_cell"),
    [
        (QuantityTransform.NONE, 2.0),  # two lines, one each
        (QuantityTransform.LINEAR, 5.0),  # 2 + 3 units
        (QuantityTransform.LOG1P, math.log1p(2) + math.log1p(3)),
    ],
)
def test_quantity_transforms(transform, expected_cell):
    purchases = lines(member=[0, 0], item=[1, 1], quantity=[2, 3])

    matrix = build_confidence(purchases, 1, 2, InteractionWeights(quantity=transform))

    np.testing.assert_allclose(dense(matrix), [[0.0, expected_cell]], rtol=1e-6)


def test_quantity_transform_given_as_text_is_accepted():
    # a TOML config gives plain text
    text: object = "linear"
    assert InteractionWeights(quantity=text).quantity is QuantityTransform.LINEAR  # type: ignore[arg-type]


def test_return_cancels_the_purchase_and_the_entry_disappears():
    # member 0 buys 2 of item 1 and returns them; member 1's purchase of item 1 stays.
    purchases = lines(member=[0, 0, 1], item=[1, 1, 1], quantity=[2, -2, 1])

    matrix = build_confidence(purchases, 2, 3, InteractionWeights())

    np.testing.assert_allclose(
        dense(matrix), [[0.0, 0.0, 0.0], [0.0, math.log1p(1), 0.0]], rtol=1e-6
    )
    assert matrix.nnz == 1  # the cancelled cell is not stored as an explicit zero


def test_partial_return_subtracts_its_units():
    purchases = lines(member=[0, 0], item=[0, 0], quantity=[3, -1])

    matrix = build_confidence(
        purchases, 1, 1, InteractionWeights(quantity=QuantityTransform.LINEAR)
    )

    np.testing.assert_allclose(dense(matrix), [[2.0]])


def test_returns_exceeding_purchases_clip_to_zero_and_vanish():
    # returning more than was bought (e.g. bought before the data window) never goes negative
    purchases = lines(member=[0, 0, 0], item=[0, 0, 1], quantity=[1, -3, 1])

    matrix = build_confidence(
        purchases, 1, 2, InteractionWeights(quantity=QuantityTransform.LINEAR)
    )

    np.testing.assert_allclose(dense(matrix), [[0.0, 1.0]])
    assert matrix.nnz == 1
    assert (matrix.data > 0).all()


def test_recency_half_life_halves_the_weight_per_half_life():
    # one line now, one 30 days ago, one 60 days ago, each its own item; half-life 30 days
    ts = np.array([T0, T0 - 30 * DAY, T0 - 60 * DAY], dtype=np.int64)
    purchases = lines(member=[0, 0, 0], item=[0, 1, 2], quantity=[1, 1, 1], ts=ts)
    weights = InteractionWeights(quantity=QuantityTransform.NONE, half_life_days=30.0)

    matrix = build_confidence(purchases, 1, 3, weights, reference_time=T0)

    np.testing.assert_allclose(dense(matrix), [[1.0, 0.5, 0.25]], rtol=1e-6)


def test_recency_reference_defaults_to_latest_line_and_accepts_datetime64():
    ts = np.array(["2024-03-31T12:00:00", "2024-03-01T12:00:00"], dtype="datetime64[us]")
    purchases = lines(member=[0, 1], item=[0, 0], quantity=[1, 1], ts=ts)
    weights = InteractionWeights(quantity=QuantityTransform.NONE, half_life_days=15.0)

    matrix = build_confidence(purchases, 2, 1, weights)  # reference = 2024-03-31T12:00

    np.testing.assert_allclose(dense(matrix), [[1.0], [0.25]], rtol=1e-6)  # 30 days = 2 half-lives


def test_recency_explicit_datetime_reference_and_future_lines_count_as_now():
    ts = np.array(["2024-01-11", "2024-01-21"], dtype="datetime64[s]")
    purchases = lines(member=[0, 0], item=[0, 1], quantity=[1, 1], ts=ts)
    weights = InteractionWeights(quantity=QuantityTransform.NONE, half_life_days=10.0)

    matrix = build_confidence(
        purchases, 1, 2, weights, reference_time=np.datetime64("2024-01-21", "s")
    )
    later = build_confidence(
        purchases, 1, 2, weights, reference_time=np.datetime64("2024-01-16", "s")
    )

    np.testing.assert_allclose(dense(matrix), [[0.5, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(dense(later), [[2**-0.5, 1.0]], rtol=1e-6)  # future line: age 0


def test_return_cancels_a_purchase_at_the_same_time_under_recency():
    ts = np.array([T0 - 10 * DAY, T0 - 10 * DAY], dtype=np.int64)
    purchases = lines(member=[0, 0], item=[0, 0], quantity=[1, -1], ts=ts)
    weights = InteractionWeights(half_life_days=7.0)

    matrix = build_confidence(purchases, 1, 1, weights, reference_time=T0)

    assert matrix.nnz == 0


def test_tier_multiplier_applies_per_line():
    # tiers: line 0 regular (0), line 1 gold (2), line 2 unknown (-1) -> x1.0, x2.0, x1.0
    purchases = lines(
        member=[0, 1, 2], item=[0, 0, 0], quantity=[1, 1, 1], tier=np.array([0, 2, -1])
    )
    weights = InteractionWeights(quantity=QuantityTransform.NONE, tier_multipliers=(1.0, 1.5, 2.0))

    matrix = build_confidence(purchases, 3, 1, weights)

    np.testing.assert_allclose(dense(matrix), [[1.0], [2.0], [1.0]])


def test_tag_boost_multiplies_matching_lines_only():
    purchases = lines(
        member=[0, 0], item=[0, 1], quantity=[1, 1], tag_match=np.array([True, False])
    )
    weights = InteractionWeights(quantity=QuantityTransform.NONE, tag_boost=3.0)

    matrix = build_confidence(purchases, 1, 2, weights)

    np.testing.assert_allclose(dense(matrix), [[3.0, 1.0]])


def test_amount_weight_adds_log_of_money():
    purchases = lines(member=[0, 0], item=[0, 1], quantity=[1, -1], amount=np.array([9.0, -9.0]))
    weights = InteractionWeights(quantity=QuantityTransform.NONE, amount_weight=0.5)

    matrix = build_confidence(purchases, 1, 2, weights)

    # item 0: 1 + 0.5 * log1p(9); item 1 is a return only: clipped away
    np.testing.assert_allclose(dense(matrix), [[1 + 0.5 * math.log1p(9.0), 0.0]], rtol=1e-6)


def test_all_weights_multiply_on_one_line():
    purchases = lines(
        member=[0],
        item=[0],
        quantity=[3],
        amount=np.array([99.0]),
        ts=np.array([T0 - 20 * DAY]),
        tier=np.array([1]),
        tag_match=np.array([True]),
    )
    weights = InteractionWeights(
        quantity=QuantityTransform.LINEAR,
        amount_weight=0.1,
        half_life_days=10.0,
        tier_multipliers=(1.0, 1.2),
        tag_boost=1.5,
    )

    matrix = build_confidence(purchases, 1, 1, weights, reference_time=T0)

    expected = (3 + 0.1 * math.log1p(99.0)) * 0.25 * 1.2 * 1.5
    np.testing.assert_allclose(dense(matrix), [[expected]], rtol=1e-6)


def test_line_order_does_not_matter():
    rng = np.random.default_rng(7)
    n = 500
    member, item = rng.integers(0, 20, n), rng.integers(0, 30, n)
    quantity = rng.choice([-1, 1, 2, 3], n)
    ts = T0 - rng.integers(0, 90 * DAY, n)
    weights = InteractionWeights(half_life_days=30.0)
    order = rng.permutation(n)

    a = build_confidence(lines(member, item, quantity, ts=ts), 20, 30, weights, reference_time=T0)
    b = build_confidence(
        lines(member[order], item[order], quantity[order], ts=ts[order]),
        20,
        30,
        weights,
        reference_time=T0,
    )

    np.testing.assert_allclose(dense(a), dense(b), rtol=1e-5)
    assert a.nnz == b.nnz


def test_no_lines_gives_an_empty_matrix_of_the_requested_shape():
    matrix = build_confidence(lines([], [], []), 4, 5, InteractionWeights())

    assert matrix.shape == (4, 5)
    assert matrix.nnz == 0


@pytest.mark.parametrize(
    ("purchases", "weights", "message"),
    [
        (
            lines([0, 5], [0, 0], [1, 1]),
            InteractionWeights(),
            "array 'member' line 1 holds index 5",
        ),
        (
            lines([0, 0], [0, -1], [1, 1]),
            InteractionWeights(),
            "array 'item' line 1 holds index -1",
        ),
        (lines([0, 0], [0], [1, 1]), InteractionWeights(), "array 'item' has shape (1,)"),
        (
            PurchaseLines(member=np.array([0]), item=np.array([0]), quantity=np.array([np.nan])),
            InteractionWeights(),
            "array 'quantity' line 0",
        ),
        (
            lines([0], [0], [1]),
            InteractionWeights(half_life_days=5.0),
            "half_life_days needs the purchase times",
        ),
        (
            lines([0], [0], [1]),
            InteractionWeights(amount_weight=1.0),
            "amount_weight > 0 needs the purchase amounts",
        ),
        (
            lines([0, 0], [0, 0], [1, 1], tier=np.array([0, 3])),
            InteractionWeights(tier_multipliers=(1.0, 2.0)),
            "array 'tier' line 1 holds 3",
        ),
        (
            lines([0], [0], [1], ts=np.array([1.5])),
            InteractionWeights(half_life_days=5.0),
            "array 'ts' has dtype float64",
        ),
    ],
)
def test_inconsistent_lines_are_refused_with_the_array_and_line(purchases, weights, message):
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_confidence(purchases, 2, 2, weights)


def test_optional_arrays_without_their_weight_are_unused():
    purchases = lines([0], [0], [2], tier=np.array([7]), tag_match=np.array([True]))

    matrix = build_confidence(
        purchases, 1, 1, InteractionWeights(quantity=QuantityTransform.LINEAR)
    )

    np.testing.assert_allclose(dense(matrix), [[2.0]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantity": "sqrt"}, "quantity transform 'sqrt' is unknown"),
        ({"half_life_days": 0.0}, "half_life_days is 0.0"),
        ({"amount_weight": -1.0}, "amount_weight is -1.0"),
        ({"tier_multipliers": (1.0, float("nan"))}, r"tier_multipliers\[1\]"),
        ({"tag_boost": float("inf")}, "tag_boost is inf"),
    ],
)
def test_invalid_weights_are_refused(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        InteractionWeights(**kwargs)
