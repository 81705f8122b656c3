"""One contract for every model kind, on a planted "checkerboard" with a known answer.

Members of group g buy only items of group g (and tier g carries the same groups), so every
personalised model must recommend group-g items to group-g members; one bought item per member is
held out of training, and the collaborative models must rank it near the top. Every model's
exported arrays must reproduce its scores exactly (serving parity), fits must be reproducible with
a seed, and the hybrid model must place feature-only (cold-start) members and items in their group.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp

from engine.errors import InvalidInputError
from engine.models import (
    MODEL_KINDS,
    ColdStartRecommender,
    ModelArtifacts,
    NotFittedError,
    Recommender,
    TrainData,
    create_model,
)

GROUPS = 4
MEMBERS_PER_GROUP = 15
ITEMS_PER_GROUP = 8
BOUGHT_PER_MEMBER = 5  # in training, plus one held out

#: Small, fast settings that still learn the checkerboard.
PARAMS: dict[str, dict[str, object]] = {
    "als": {"factors": 8, "iterations": 10, "regularization": 0.1},
    "bpr": {"factors": 8, "iterations": 60, "learning_rate": 0.05},
    "lightfm": {"components": 8, "epochs": 30},
    "item_knn": {"neighbours": 20},
    "popularity": {},
    "popular_in_tier": {},
    "buy_again": {},
    "ease": {"regularization": 10.0, "dims": 0},
    "personal_knn": {"neighbours": 10, "dims": 8},  # truncated: 8 of 32 items
}
PERSONALISED = (
    "als",
    "bpr",
    "lightfm",
    "item_knn",
    "popular_in_tier",
    "buy_again",
    "ease",
    "personal_knn",
)
COLLABORATIVE = ("als", "bpr", "lightfm", "item_knn", "ease", "personal_knn")
SEEDED = ("als", "bpr", "lightfm")
#: Kinds without a seed: two fits of the same data must give the very same arrays.
DETERMINISTIC = tuple(kind for kind in MODEL_KINDS if kind not in SEEDED)
#: Kinds whose recommendations include what the member already bought.
REPEAT_KINDS = ("buy_again", "personal_knn")
#: Kinds served from member vectors: they refuse members they were not trained on.
MEMBER_VECTOR_KINDS = (
    "als",
    "bpr",
    "lightfm",
    "popularity",
    "popular_in_tier",
    "ease",
    "personal_knn",
)


@dataclass(frozen=True)
class Checkerboard:
    data: TrainData
    member_group: np.ndarray
    item_group: np.ndarray
    held_out: np.ndarray  # one item per member, bought but not in training

    @property
    def n_members(self) -> int:
        return self.data.n_members

    @property
    def n_items(self) -> int:
        return self.data.n_items


def make_checkerboard(seed: int = 0) -> Checkerboard:
    rng = np.random.default_rng(seed)
    n_members, n_items = GROUPS * MEMBERS_PER_GROUP, GROUPS * ITEMS_PER_GROUP
    member_group = np.repeat(np.arange(GROUPS), MEMBERS_PER_GROUP)
    item_group = np.repeat(np.arange(GROUPS), ITEMS_PER_GROUP)
    # each member picks BOUGHT_PER_MEMBER + 1 distinct items of its own group
    offsets = np.argsort(rng.random((n_members, ITEMS_PER_GROUP)), axis=1)[
        :, : BOUGHT_PER_MEMBER + 1
    ]
    picked = member_group[:, None] * ITEMS_PER_GROUP + offsets
    held_out, bought = picked[:, 0], picked[:, 1:]
    confidence = sp.csr_matrix(
        (
            rng.uniform(1.0, 3.0, bought.size).astype(np.float32),
            (np.repeat(np.arange(n_members), BOUGHT_PER_MEMBER), bought.ravel()),
        ),
        shape=(n_members, n_items),
    )
    one_hot_members = sp.csr_matrix(np.eye(GROUPS, dtype=np.float32)[member_group])
    one_hot_items = sp.csr_matrix(np.eye(GROUPS, dtype=np.float32)[item_group])
    data = TrainData(
        confidence=confidence,
        member_features=one_hot_members,
        item_features=one_hot_items,
        member_tiers=member_group.copy(),
        n_tiers=GROUPS,
    )
    return Checkerboard(data, member_group, item_group, held_out)


@pytest.fixture(scope="module")
def board() -> Checkerboard:
    return make_checkerboard()


@pytest.fixture(scope="module")
def fitted(board: Checkerboard) -> dict[str, Recommender]:
    models = {}
    for kind in MODEL_KINDS:
        model = create_model(kind, **PARAMS[kind])  # type: ignore[arg-type]
        model.fit(board.data)
        models[kind] = model
    return models


def ranked(scores: np.ndarray, history: sp.csr_matrix, exclude_history: bool) -> np.ndarray:
    """Items by descending score; history items last when the model says to exclude them."""
    scores = scores.astype(np.float64).copy()
    if exclude_history:
        scores[history.toarray() > 0] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")


def test_factory_offers_every_kind():
    assert set(MODEL_KINDS) == set(PARAMS)


def test_importing_the_models_package_loads_no_model_library():
    code = (
        "import sys, engine.models, engine.models.base\n"
        "loaded = [m for m in ('implicit', 'lightfm') if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_export_shapes_and_dtypes(kind, fitted, board):
    artifacts = fitted[kind].export()

    assert artifacts.kind == kind
    assert artifacts.n_items == board.n_items
    for name, array in artifacts.arrays().items():
        assert array.dtype == np.float32, name
        assert array.flags.c_contiguous, name
        assert np.isfinite(array).all(), name
    if artifacts.member_vectors is not None:
        assert artifacts.item_vectors is not None
        assert artifacts.member_vectors.shape[0] == board.n_members
        assert artifacts.item_vectors.shape[0] == board.n_items
        assert artifacts.member_vectors.shape[1] == artifacts.item_vectors.shape[1]
    if artifacts.item_similarity is not None:
        assert isinstance(artifacts.item_similarity, sp.csr_matrix)
        assert artifacts.item_similarity.dtype == np.float32
        assert artifacts.item_similarity.shape == (board.n_items, board.n_items)
    assert artifacts.member_vectors is not None or artifacts.item_similarity is not None
    assert artifacts.exclude_history == (kind not in REPEAT_KINDS)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_export_scores_equal_model_scores(kind, fitted, board):
    rows = np.array([7, 0, 59, 31, 7, 16])  # out of order, with a repeat
    history = board.data.confidence[rows]

    from_model = fitted[kind].score(rows, history)
    from_export = fitted[kind].export().score(rows, history)

    assert from_model.dtype == np.float32
    assert from_model.shape == (rows.size, board.n_items)
    np.testing.assert_allclose(from_export, from_model, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_export_survives_a_round_trip_through_named_arrays(kind, fitted, board):
    artifacts = fitted[kind].export()
    # a bundle hands sparse matrices back as csr_array
    # JSON for the manifest; a bundle hands sparse matrices back as csr_array
    fields = json.loads(json.dumps(artifacts.manifest_fields()))
    loaded = ModelArtifacts.from_parts(
        fields,
        {name: array.copy() for name, array in artifacts.arrays().items()},
        {name: sp.csr_array(m) for name, m in artifacts.matrices().items()},
    )
    rows = np.arange(board.n_members)

    np.testing.assert_array_equal(
        loaded.score(rows, board.data.confidence), artifacts.score(rows, board.data.confidence)
    )
    assert loaded.manifest_fields() == artifacts.manifest_fields()


@pytest.mark.parametrize("kind", PERSONALISED)
def test_recommendations_recover_the_planted_groups(kind, fitted, board):
    rows = np.arange(board.n_members)
    model = fitted[kind]
    top = ranked(
        model.score(rows, board.data.confidence),
        board.data.confidence,
        model.export().exclude_history,
    )[:, :3]

    precision = (board.item_group[top] == board.member_group[:, None]).mean()

    # chance is 1/4; after excluding history only ~3 of 27 unseen items are in the group
    assert precision >= 0.9, f"{kind}: precision@3 {precision:.2f}"


@pytest.mark.parametrize("kind", COLLABORATIVE)
def test_held_out_purchases_rank_near_the_top(kind, fitted, board):
    rows = np.arange(board.n_members)
    top = ranked(fitted[kind].score(rows, board.data.confidence), board.data.confidence, True)[
        :, :5
    ]

    hit_rate = (top == board.held_out[:, None]).any(axis=1).mean()

    # chance: 5 of the 27 unseen items, about 0.19
    assert hit_rate >= 0.8, f"{kind}: hit@5 {hit_rate:.2f}"


def test_popularity_scores_are_hand_computed_shares():
    confidence = sp.csr_matrix(np.array([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=np.float32))
    data = TrainData(confidence=confidence)
    by_confidence = create_model("popularity")
    by_members = create_model("popularity", measure="members")
    by_confidence.fit(data)
    by_members.fit(data)

    rows = np.array([1, 0])
    history = confidence[rows]

    np.testing.assert_allclose(by_confidence.score(rows, history), [[0.75, 0, 0.25]] * 2)
    np.testing.assert_allclose(by_members.score(rows, history), [[2 / 3, 0, 1 / 3]] * 2)
    np.testing.assert_allclose(by_members.export().score(rows, history), [[2 / 3, 0, 1 / 3]] * 2)


def test_popular_in_tier_scores_are_hand_computed():
    # tier 0: members 0, 1; tier 1: member 2; member 3 has no known tier
    confidence = sp.csr_matrix(
        np.array(
            [[3.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 2.0], [0.0, 0.0, 4.0]], dtype=np.float32
        )
    )
    data = TrainData(confidence=confidence, member_tiers=np.array([0, 0, 1, -1]), n_tiers=2)
    model = create_model("popular_in_tier", global_weight=0.5)
    model.fit(data)

    global_share = np.array([4, 2, 6]) / 12
    expected = np.array(
        [
            [1.0, 0.0, 0.0] + 0.5 * global_share,  # tier 0 share + 0.5 x global share
            [1.0, 0.0, 0.0] + 0.5 * global_share,
            [0.0, 0.5, 0.5] + 0.5 * global_share,  # tier 1
            global_share,  # unknown tier: global popularity
        ]
    )
    rows = np.arange(4)
    np.testing.assert_allclose(model.score(rows, confidence), expected, rtol=1e-6)
    np.testing.assert_allclose(model.export().score(rows, confidence), expected, rtol=1e-6)
    assert model.export().params["n_tiers"] == 2


def test_popular_in_tier_needs_tiers():
    model = create_model("popular_in_tier")
    with pytest.raises(InvalidInputError, match="member_tiers"):
        model.fit(TrainData(confidence=sp.csr_matrix((2, 2), dtype=np.float32)))


def test_buy_again_ranks_the_members_own_history_by_confidence():
    # recency-weighted history: item 2 bought recently (1.0), item 0 long ago (0.25)
    history = sp.csr_matrix(np.array([[0.25, 0.0, 1.0, 0.0]], dtype=np.float32))
    model = create_model("buy_again")
    model.fit(TrainData(confidence=history))

    scores = model.export().score(np.array([0]), history)

    np.testing.assert_array_equal(scores, [[0.25, 0.0, 1.0, 0.0]])
    assert list(np.argsort(-scores[0], kind="stable")[:2]) == [2, 0]


@pytest.mark.parametrize("kind", SEEDED)
def test_same_seed_same_model(kind, board):
    first = create_model(kind, **PARAMS[kind], random_state=3)  # type: ignore[arg-type]
    second = create_model(kind, **PARAMS[kind], random_state=3)  # type: ignore[arg-type]
    first.fit(board.data)
    second.fit(board.data)

    a, b = first.export().arrays(), second.export().arrays()

    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=f"{kind}: {name}")


@pytest.mark.parametrize("kind", DETERMINISTIC)
def test_unseeded_kinds_fit_the_same_model_twice(kind, board):
    first = create_model(kind, **PARAMS[kind])  # type: ignore[arg-type]
    second = create_model(kind, **PARAMS[kind])  # type: ignore[arg-type]
    first.fit(board.data)
    second.fit(board.data)

    a, b = first.export(), second.export()

    assert a.arrays().keys() == b.arrays().keys()
    for name in a.arrays():
        np.testing.assert_array_equal(a.arrays()[name], b.arrays()[name], err_msg=f"{kind}: {name}")
    for name in a.matrices():
        assert (a.matrices()[name] != b.matrices()[name]).nnz == 0, f"{kind}: {name}"
    assert a.manifest_fields() == b.manifest_fields()


@pytest.mark.parametrize("kind", SEEDED)
def test_different_seeds_differ(kind, board):
    first = create_model(kind, **PARAMS[kind], random_state=1)  # type: ignore[arg-type]
    second = create_model(kind, **PARAMS[kind], random_state=2)  # type: ignore[arg-type]
    first.fit(board.data)
    second.fit(board.data)

    a, b = first.export().item_vectors, second.export().item_vectors
    assert a is not None
    assert b is not None
    assert not np.array_equal(a, b)


def test_lightfm_cold_start_members_land_in_their_group(fitted, board):
    model = fitted["lightfm"]
    assert isinstance(model, ColdStartRecommender)
    artifacts = model.export()
    # new members known only by their group feature (e.g. their tier), one per group
    features = sp.csr_matrix(np.eye(GROUPS, dtype=np.float32))

    vectors = artifacts.member_vectors_from_features(features)
    assert artifacts.item_vectors is not None
    top = np.argsort(-(vectors @ artifacts.item_vectors.T), axis=1)[:, : ITEMS_PER_GROUP // 2]

    np.testing.assert_array_equal(board.item_group[top], np.arange(GROUPS)[:, None].repeat(4, 1))
    np.testing.assert_allclose(
        vectors, model.member_vectors_from_features(features), rtol=1e-5, atol=1e-6
    )


def test_lightfm_cold_start_items_reach_their_group(fitted, board):
    model = fitted["lightfm"]
    assert isinstance(model, ColdStartRecommender)
    artifacts = model.export()
    features = sp.csr_matrix(np.eye(GROUPS, dtype=np.float32))  # one new item per group

    vectors = artifacts.item_vectors_from_features(features)
    assert artifacts.member_vectors is not None
    scores = artifacts.member_vectors @ vectors.T  # members x new items

    # each new item is scored highest by the members of its group
    mean_by_group = np.stack([scores[board.member_group == g].mean(axis=0) for g in range(GROUPS)])
    np.testing.assert_array_equal(mean_by_group.argmax(axis=0), np.arange(GROUPS))
    np.testing.assert_allclose(
        vectors, model.item_vectors_from_features(features), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("kind", ["als", "item_knn", "popularity", "ease", "personal_knn"])
def test_models_without_features_refuse_cold_start(kind, fitted):
    with pytest.raises(InvalidInputError, match="no feature embeddings"):
        fitted[kind].export().member_vectors_from_features(sp.csr_matrix((1, GROUPS)))


def test_lightfm_cold_start_refuses_rows_of_the_wrong_width(fitted):
    model = fitted["lightfm"]
    assert isinstance(model, ColdStartRecommender)
    with pytest.raises(InvalidInputError, match=f"{GROUPS} columns"):
        model.member_vectors_from_features(sp.csr_matrix((1, GROUPS + 1), dtype=np.float32))
    with pytest.raises(InvalidInputError, match=f"{GROUPS} columns"):
        model.export().item_vectors_from_features(sp.csr_matrix((1, 2), dtype=np.float32))


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_using_a_model_before_fit_is_an_error(kind, board):
    model = create_model(kind)
    with pytest.raises(NotFittedError, match=f"'{kind}' is not trained yet"):
        model.export()
    with pytest.raises(NotFittedError):
        model.score(np.array([0]), board.data.confidence[:1])


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_score_refuses_history_not_aligned_with_the_rows(kind, fitted, board):
    with pytest.raises(InvalidInputError, match="history has shape"):
        fitted[kind].score(np.array([0, 1]), board.data.confidence[:1])


@pytest.mark.parametrize("kind", MEMBER_VECTOR_KINDS)
def test_score_refuses_members_outside_training(kind, fitted, board):
    rows = np.array([0, board.n_members])
    with pytest.raises(InvalidInputError, match=f"member row {board.n_members} is outside"):
        fitted[kind].score(rows, board.data.confidence[:2])
    with pytest.raises(InvalidInputError, match=f"member row {board.n_members} is outside"):
        fitted[kind].export().score(rows, board.data.confidence[:2])


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("svd", {}, "unknown model kind 'svd'; choose one of als, bpr"),
        ("als", {"factor": 8}, "unknown parameter.s. factor; valid: factors"),
        ("als", {"factors": 0}, "factors=0 must be an integer >= 1"),
        ("bpr", {"learning_rate": float("nan")}, "learning_rate=nan"),
        ("lightfm", {"loss": "hinge"}, "loss='hinge' must be one of warp"),
        ("item_knn", {"similarity": "jaccard"}, "similarity='jaccard'"),
        ("item_knn", {"b": 1.5}, "b=1.5 must be at most 1"),
        ("popularity", {"measure": "revenue"}, "measure='revenue'"),
        ("buy_again", {"half_life_days": 7}, "unknown parameter.s. half_life_days; valid: .none."),
        ("als", {"random_state": -1}, "random_state=-1"),
        ("als", {"iterations": True}, "iterations=True"),
        ("ease", {"regularization": 0.0}, "regularization=0.0 must be a finite number > 0"),
        ("ease", {"max_items": 0}, "max_items=0 must be an integer >= 1"),
        ("ease", {"dims": -1}, "dims=-1 must be an integer >= 0"),
        ("personal_knn", {"alpha": 1.5}, "alpha=1.5 must be at most 1"),
        ("personal_knn", {"neighbours": 0}, "neighbours=0 must be an integer >= 1"),
        ("personal_knn", {"search_dims": 2.5}, "search_dims=2.5 must be an integer"),
        ("personal_knn", {"k": 10}, "unknown parameter.s. k; valid: neighbours, alpha"),
    ],
)
def test_factory_refuses_bad_configuration(kind, params, message):
    with pytest.raises(InvalidInputError, match=message):
        create_model(kind, **params)


def test_train_data_refuses_inconsistent_inputs():
    good = sp.csr_matrix(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(InvalidInputError, match=r"expected a scipy\.sparse CSR matrix"):
        TrainData(confidence=good.tocoo())
    with pytest.raises(InvalidInputError, match="dtype float64"):
        TrainData(confidence=good.astype(np.float64))
    with pytest.raises(InvalidInputError, match="negative values"):
        TrainData(confidence=-good)
    with pytest.raises(InvalidInputError, match="member_features has 3 rows; expected 2"):
        TrainData(confidence=good, member_features=sp.csr_matrix((3, 1), dtype=np.float32))
    with pytest.raises(InvalidInputError, match=r"member_tiers\[1\] is 5"):
        TrainData(confidence=good, member_tiers=np.array([0, 5]), n_tiers=5)


def test_train_data_accepts_csr_arrays_as_implicit_ready_matrices():
    data = TrainData(confidence=sp.csr_array(np.ones((2, 3), dtype=np.float32)))

    assert isinstance(data.confidence, sp.csr_matrix)


def test_artifacts_refuse_inconsistent_parts():
    ones = np.ones((3, 2), dtype=np.float32)
    with pytest.raises(InvalidInputError, match="member_vectors must be a C-contiguous float32"):
        ModelArtifacts(
            kind="x", params={}, member_vectors=ones.astype(np.float64), item_vectors=ones
        )
    with pytest.raises(InvalidInputError, match="member vectors have 3 dimensions, item vectors 2"):
        ModelArtifacts(
            kind="x", params={}, member_vectors=np.ones((2, 3), np.float32), item_vectors=ones
        )
    with pytest.raises(InvalidInputError, match="come together"):
        ModelArtifacts(kind="x", params={}, member_vectors=ones)
    with pytest.raises(InvalidInputError, match="neither vectors nor an item_similarity"):
        ModelArtifacts(kind="x", params={})
    with pytest.raises(InvalidInputError, match="item_similarity has shape"):
        ModelArtifacts(
            kind="x",
            params={},
            member_vectors=ones,
            item_vectors=ones,
            item_similarity=sp.csr_matrix((2, 2), dtype=np.float32),
        )
    with pytest.raises(InvalidInputError, match="fields need 'kind'"):
        ModelArtifacts.from_parts({"kind": "als"}, {}, {})
