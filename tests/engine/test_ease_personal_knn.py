"""EASE, personal kNN and their shared serving form, against answers known in advance.

EASE is checked against an independent dense numpy solve of Steck's closed form; personal kNN
against a brute-force numpy reference and on planted groups; the factor form against the
Eckart-Young optimum computed by numpy's SVD.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import engine.models.factor_form as factor_form_module
from engine.errors import InvalidInputError
from engine.models import TrainData, create_model
from engine.models.ease import ease_weights
from engine.models.factor_form import (
    EXACT_MAX_ITEMS,
    ProductScores,
    factor_form,
    resolve_dims,
)
from engine.models.personal_knn import member_neighbours


def random_confidence(n_members: int, n_items: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_members, n_items)) < density
    values = np.where(mask, rng.uniform(0.5, 4.0, (n_members, n_items)), 0.0)
    return sp.csr_matrix(values.astype(np.float32))


def ease_reference(confidence: sp.csr_matrix, regularization: float) -> np.ndarray:
    x = confidence.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + regularization * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return np.asarray(b, dtype=np.float64)


def two_groups(members_per_group: int = 12, items_per_group: int = 8, seed: int = 0):
    """Group g buys only items of group g: each member 4 of their group's items, no ties."""
    rng = np.random.default_rng(seed)
    n_members, n_items = 2 * members_per_group, 2 * items_per_group
    group = np.repeat([0, 1], members_per_group)
    picks = np.argsort(rng.random((n_members, items_per_group)), axis=1)[:, :4]
    items = group[:, None] * items_per_group + picks
    confidence = sp.csr_matrix(
        (
            rng.uniform(1.0, 3.0, items.size).astype(np.float32),
            (np.repeat(np.arange(n_members), 4), items.ravel()),
        ),
        shape=(n_members, n_items),
    )
    return confidence, group, np.repeat([0, 1], items_per_group)


# --- EASE -------------------------------------------------------------------------------------


@pytest.mark.parametrize("regularization", [0.5, 20.0])
def test_ease_weights_match_a_dense_numpy_solve_and_have_a_zero_diagonal(regularization):
    confidence = random_confidence(40, 15, 0.3, seed=1)

    weights = ease_weights(confidence, regularization)

    np.testing.assert_array_equal(np.diag(weights), 0.0)
    np.testing.assert_allclose(weights, ease_reference(confidence, regularization), atol=1e-10)


def test_ease_weights_in_float32_stay_close_to_the_float64_solve():
    confidence = random_confidence(40, 15, 0.3, seed=2)

    weights = ease_weights(confidence, 20.0, dtype=np.float32)

    assert weights.dtype == np.float32
    np.testing.assert_array_equal(np.diag(weights), 0.0)
    np.testing.assert_allclose(weights, ease_reference(confidence, 20.0), atol=1e-5)


def test_ease_exact_vectors_reproduce_x_times_b():
    confidence = random_confidence(30, 12, 0.35, seed=3)
    model = create_model("ease", regularization=5.0, dims=0)
    model.fit(TrainData(confidence=confidence))
    artifacts = model.export()
    rows = np.arange(30)

    expected = confidence.toarray().astype(np.float64) @ ease_reference(confidence, 5.0)

    np.testing.assert_array_equal(artifacts.item_vectors, np.eye(12, dtype=np.float32))
    np.testing.assert_allclose(artifacts.score(rows, confidence), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(model.score(rows, confidence), artifacts.score(rows, confidence))
    assert artifacts.params["exact"] is True
    assert artifacts.params["served_dims"] == 12
    assert artifacts.params["solve_dtype"] == "float64"
    assert artifacts.exclude_history


def test_ease_refuses_a_catalogue_above_max_items_naming_the_parameter():
    model = create_model("ease", max_items=10)

    with pytest.raises(InvalidInputError, match=r"12 items, above max_items=10.*choose another"):
        model.fit(TrainData(confidence=random_confidence(5, 12, 0.5, seed=4)))


def test_ease_refuses_a_solve_that_does_not_fit_in_memory(monkeypatch):
    monkeypatch.setattr(factor_form_module, "available_memory_bytes", lambda: 1024)
    model = create_model("ease")

    with pytest.raises(InvalidInputError, match=r"even in float32.*lower max_items \(now 20000\)"):
        model.fit(TrainData(confidence=random_confidence(5, 12, 0.5, seed=4)))


def test_ease_falls_back_to_a_float32_solve_when_float64_does_not_fit(monkeypatch):
    confidence = random_confidence(30, 400, 0.05, seed=5)
    from engine.models.ease import ease_memory_bytes

    budget = (ease_memory_bytes(400, np.float32) + ease_memory_bytes(400, np.float64)) // 2
    monkeypatch.setattr(factor_form_module, "available_memory_bytes", lambda: int(budget / 0.8))
    model = create_model("ease", regularization=5.0, dims=16)
    model.fit(TrainData(confidence=confidence))

    assert model.export().params["solve_dtype"] == "float32"


# --- personal kNN ------------------------------------------------------------------------------


def personal_knn_reference(confidence: sp.csr_matrix, k: int, alpha: float) -> np.ndarray:
    """Brute force: L1 rows, cosine between rows, mean of the k most similar other members."""
    x = confidence.toarray().astype(np.float64)
    personal = x / x.sum(axis=1, keepdims=True)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    neighbours = np.argsort(-cosine, axis=1, kind="stable")[:, :k]
    mixed = alpha * personal + (1 - alpha) * personal[neighbours].mean(axis=1)
    return np.asarray(mixed, dtype=np.float64)


def test_personal_knn_exact_scores_match_a_brute_force_reference():
    confidence = random_confidence(25, 10, 0.5, seed=6)
    assert (np.diff(confidence.indptr) > 0).all()
    model = create_model("personal_knn", neighbours=4, alpha=0.6, dims=0)
    model.fit(TrainData(confidence=confidence))
    rows = np.arange(25)

    expected = personal_knn_reference(confidence, k=4, alpha=0.6)

    np.testing.assert_allclose(model.score(rows, confidence), expected, rtol=1e-5, atol=1e-6)
    assert not model.export().exclude_history


def test_personal_knn_neighbours_come_from_the_members_own_group():
    confidence, group, _ = two_groups()
    neighbours = member_neighbours(sp.csr_matrix(confidence, dtype=np.float64), 5)
    rows = np.repeat(np.arange(neighbours.shape[0]), np.diff(neighbours.indptr))

    np.testing.assert_array_equal(np.diff(neighbours.indptr), 5)
    np.testing.assert_array_equal(group[neighbours.indices], group[rows])
    assert (neighbours.indices != rows).all()


@pytest.mark.parametrize("params", [{"dims": 0}, {"dims": 0, "search_dims": 4}, {"dims": 6}])
def test_personal_knn_ranks_unseen_in_group_items_above_the_other_group(params):
    confidence, group, item_group = two_groups()
    model = create_model("personal_knn", neighbours=5, **params)
    model.fit(TrainData(confidence=confidence))
    rows = np.arange(confidence.shape[0])

    scores = model.score(rows, confidence).astype(np.float64)
    held = confidence.toarray() > 0
    own = item_group[None, :] == group[:, None]
    best_unseen_own = np.where(own & ~held, scores, -np.inf).max(axis=1)
    best_other = np.where(~own, scores, -np.inf).max(axis=1)

    assert (best_unseen_own > best_other).all()


def test_personal_knn_with_alpha_one_is_the_members_own_normalised_frequency():
    confidence = random_confidence(20, 9, 0.4, seed=7)
    model = create_model("personal_knn", alpha=1.0, dims=0)
    model.fit(TrainData(confidence=confidence))
    rows = np.arange(20)
    x = confidence.toarray().astype(np.float64)
    sums = x.sum(axis=1, keepdims=True)

    scores = model.score(rows, confidence)

    expected = np.divide(x, sums, out=np.zeros_like(x), where=sums > 0)
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(
        np.argsort(-scores, axis=1, kind="stable")[:, :3],
        np.argsort(-x, axis=1, kind="stable")[:, :3],
    )
    assert model.export().params["neighbours_used"] == 0


def test_personal_knn_caps_neighbours_at_the_other_members():
    confidence = random_confidence(6, 5, 0.6, seed=8)
    model = create_model("personal_knn")  # 300 neighbours by default
    model.fit(TrainData(confidence=confidence))

    assert model.export().params["neighbours_used"] == 5


def test_personal_knn_embedding_search_equals_the_exact_search_at_full_rank():
    confidence = random_confidence(30, 10, 0.4, seed=9)
    exact = member_neighbours(sp.csr_matrix(confidence, dtype=np.float64), 4)
    embedded = member_neighbours(sp.csr_matrix(confidence, dtype=np.float64), 4, search_dims=10)

    assert (exact != embedded).nnz == 0


def test_scores_reflect_the_training_history_not_the_history_argument():
    confidence = random_confidence(10, 6, 0.5, seed=10)
    for kind in ("ease", "personal_knn"):
        model = create_model(kind, dims=0)
        model.fit(TrainData(confidence=confidence))
        rows = np.arange(10)

        np.testing.assert_array_equal(
            model.score(rows, sp.csr_matrix((10, 6), dtype=np.float32)),
            model.score(rows, confidence),
        )


# --- the shared serving form --------------------------------------------------------------------


def product_of_rank(n_members: int, n_items: int, rank: int, seed: int) -> ProductScores:
    rng = np.random.default_rng(seed)
    decay = 0.7 ** np.arange(rank)  # distinct singular values, a well-defined top subspace
    left = rng.standard_normal((n_members, rank)) * decay
    return ProductScores(sp.csr_matrix(left), rng.standard_normal((rank, n_items)))


@pytest.mark.parametrize("dims", [3, 8])
def test_truncated_form_error_is_measurable_and_within_reach_of_the_optimum(dims):
    scores = product_of_rank(60, 40, rank=12, seed=11)
    dense = scores.rows(0, 60)
    singular = np.linalg.svd(dense, compute_uv=False)
    optimum = np.sqrt((singular[dims:] ** 2).sum()) / np.linalg.norm(dense)

    form = factor_form(scores, dims, kind="test")
    served = form.member_vectors.astype(np.float64) @ form.item_vectors.T
    error = np.linalg.norm(dense - served) / np.linalg.norm(dense)

    assert not form.exact
    assert form.item_vectors.shape == (40, dims)
    np.testing.assert_allclose(form.item_vectors.T @ form.item_vectors, np.eye(dims), atol=1e-5)
    assert error > 0.01  # rank 12 cannot be served in fewer dims ...
    assert error <= 1.02 * optimum + 1e-6  # ... but it is (nearly) the best rank-dims fit


@pytest.mark.parametrize("dims", [0, 40, 100])
def test_exact_form_reproduces_the_scores(dims):
    scores = product_of_rank(60, 40, rank=12, seed=12)

    form = factor_form(scores, dims, kind="test")

    assert form.exact
    np.testing.assert_array_equal(form.item_vectors, np.eye(40, dtype=np.float32))
    np.testing.assert_allclose(
        form.member_vectors @ form.item_vectors.T, scores.rows(0, 60), rtol=1e-6, atol=1e-6
    )


def test_form_at_full_rank_is_exact_up_to_rounding():
    scores = product_of_rank(60, 40, rank=12, seed=13)

    form = factor_form(scores, 12, kind="test")

    assert not form.exact
    np.testing.assert_allclose(
        form.member_vectors @ form.item_vectors.T, scores.rows(0, 60), atol=1e-4
    )


def test_truncated_models_keep_exact_serving_parity():
    confidence = random_confidence(40, 30, 0.2, seed=14)
    rows = np.array([3, 0, 39, 3])
    for kind in ("ease", "personal_knn"):
        model = create_model(kind, dims=5)
        model.fit(TrainData(confidence=confidence))

        np.testing.assert_array_equal(
            model.score(rows, confidence[rows]), model.export().score(rows, confidence[rows])
        )
        assert model.export().params["served_dims"] == 5


def test_exact_form_refuses_to_outgrow_memory_naming_dims(monkeypatch):
    # the exact form of 10 members x 6 items holds (60 + 36) float32 = 384 bytes
    monkeypatch.setattr(factor_form_module, "available_memory_bytes", lambda: 256)
    model = create_model("personal_knn", dims=0)

    with pytest.raises(InvalidInputError, match=r"set dims to a positive number below 6"):
        model.fit(TrainData(confidence=random_confidence(10, 6, 0.5, seed=15)))


def test_default_dims_are_exact_for_small_matrices_only():
    assert resolve_dims(None, 100_000, 2_000, 256) == 0
    assert resolve_dims(None, 100, EXACT_MAX_ITEMS + 1, 256) == 256
    assert resolve_dims(None, 200_000, 2_000, 256) == 256  # 4e8 cells, over 1 GiB
    assert resolve_dims(64, 10, 10, 256) == 64
