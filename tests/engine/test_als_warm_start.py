"""ALS started from a previous fit's factors (engine.models.als.ALSWarmStart, the warm refit).

* newcomers start exactly where a cold fit starts them (implicit's seeded init), so a start that
  knows nobody is the cold fit, bit for bit;
* known members and items start at their previous factors, placed by the new matrix's rows;
* from a previous fit on part of the checkerboard (some members and items missing, rows in
  another order), two sweeps on the whole board recommend every member's own group;
* a start that does not fit the matrix or the model is refused, naming what is wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from engine.errors import InvalidInputError
from engine.models import Recommender, TrainData
from engine.models.als import ALSModel, ALSParams, ALSWarmStart
from tests.engine.test_models_contract import ITEMS_PER_GROUP, make_checkerboard

PARAMS = ALSParams(factors=8, iterations=10, regularization=0.1, random_state=3)


def _fit(data: TrainData, warm: ALSWarmStart | None = None) -> ALSModel:
    model = ALSModel(PARAMS)
    model.fit(data, warm=warm)
    return model


def _start(n_members: int, n_items: int, **changes: object) -> ALSWarmStart:
    fields: dict[str, object] = {
        "member_vectors": np.ones((4, PARAMS.factors), dtype=np.float32),
        "item_vectors": np.ones((3, PARAMS.factors), dtype=np.float32),
        "member_rows": np.full(n_members, -1),
        "item_rows": np.full(n_items, -1),
        "iterations": PARAMS.iterations,
    }
    fields.update(changes)
    return ALSWarmStart(**fields)  # type: ignore[arg-type]


def test_a_start_that_knows_nobody_is_the_cold_fit() -> None:
    board = make_checkerboard()
    cold = _fit(board.data).export()
    warm = _fit(board.data, _start(board.n_members, board.n_items)).export()
    np.testing.assert_array_equal(warm.member_vectors, cold.member_vectors)
    np.testing.assert_array_equal(warm.item_vectors, cold.item_vectors)
    assert "warm_start" not in cold.params
    assert warm.params["warm_start"] is True
    assert (warm.params["warm_start_members"], warm.params["warm_start_items"]) == (0, 0)


def test_known_rows_start_at_their_previous_factors_newcomers_at_the_seeded_draw() -> None:
    previous_members = np.arange(4 * 8, dtype=np.float32).reshape(4, 8)
    previous_items = -np.arange(3 * 8, dtype=np.float32).reshape(3, 8)
    start = _start(
        5,
        4,
        member_vectors=previous_members,
        item_vectors=previous_items,
        member_rows=np.array([2, -1, 0, -1, 3]),
        item_rows=np.array([-1, 1, 2, -1]),
    )
    members, items = start.initial_factors(5, 4, 8, random_state=3)
    rng = np.random.default_rng(3)  # what implicit draws for a cold fit: members, then items
    cold_members = rng.random((5, 8), dtype=np.float32) * 0.01
    cold_items = rng.random((4, 8), dtype=np.float32) * 0.01
    np.testing.assert_array_equal(members[[0, 2, 4]], previous_members[[2, 0, 3]])
    np.testing.assert_array_equal(members[[1, 3]], cold_members[[1, 3]])
    np.testing.assert_array_equal(items[[1, 2]], previous_items[[1, 2]])
    np.testing.assert_array_equal(items[[0, 3]], cold_items[[0, 3]])
    assert members.dtype == items.dtype == np.float32


def test_two_sweeps_from_a_fit_on_part_of_the_board_learn_the_whole_board() -> None:
    board = make_checkerboard()
    n_members, n_items = board.n_members, board.n_items
    # the previous fit knew every member but the last of each group and every item but one
    # per group, in reversed order
    known_members = np.flatnonzero(np.arange(n_members) % (n_members // 4) != n_members // 4 - 1)
    known_items = np.flatnonzero(np.arange(n_items) % ITEMS_PER_GROUP != 0)
    old_members, old_items = known_members[::-1], known_items[::-1]
    matrix = board.data.confidence[old_members][:, old_items]
    previous = _fit(TrainData(confidence=sp.csr_matrix(matrix, dtype=np.float32))).export()
    member_rows = np.full(n_members, -1)
    member_rows[old_members] = np.arange(old_members.size)
    item_rows = np.full(n_items, -1)
    item_rows[old_items] = np.arange(old_items.size)
    assert previous.member_vectors is not None
    assert previous.item_vectors is not None
    start = ALSWarmStart(
        previous.member_vectors, previous.item_vectors, member_rows, item_rows, iterations=2
    )
    model = _fit(board.data, start)
    assert isinstance(model, Recommender)
    exported = model.export()
    assert exported.params["iterations"] == 2
    assert exported.params["warm_start_members"] == old_members.size
    assert exported.params["warm_start_items"] == old_items.size
    scores = exported.score(np.arange(n_members), board.data.confidence)
    top = np.argsort(-scores, axis=1)[:, :ITEMS_PER_GROUP]
    own = board.item_group[top] == board.member_group[:, None]
    assert own.mean() >= 0.95
    assert (board.item_group[top[:, 0]] == board.member_group).all()


@pytest.mark.parametrize(
    ("changes", "fit_to", "message"),
    [
        ({"iterations": 0}, None, "warm start iterations=0"),
        ({"member_rows": np.array([0, 4, -1])}, None, "member_rows point outside the 4"),
        ({"item_rows": np.array([-2, 0, 0, 0])}, None, "item_rows point outside the 3"),
        ({"item_rows": np.array([0.5, 1.0, 0, 0])}, None, "item_rows must be 1-D integers"),
        ({"member_vectors": np.ones(8, dtype=np.float32)}, None, "member_vectors must be 2-D"),
        ({}, (3, 5, 8), "4 item rows of 8 factors do not fit a matrix with 5 items"),
        ({}, (3, 4, 16), "3 member rows of 8 factors do not fit .* 16 factors"),
    ],
)
def test_a_start_that_does_not_fit_is_refused(
    changes: dict[str, object], fit_to: tuple[int, int, int] | None, message: str
) -> None:
    if fit_to is None:
        with pytest.raises(InvalidInputError, match=message):
            _start(3, 4, **changes)
        return
    start = _start(3, 4, **changes)
    with pytest.raises(InvalidInputError, match=message):
        start.initial_factors(*fit_to, random_state=0)
