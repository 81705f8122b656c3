"""Hybrid matrix factorisation with member and item features through LightFM (WARP loss).

Each member is represented by its identity feature plus the columns of
``TrainData.member_features`` (tier, tags, ...); items likewise. LightFM learns one embedding and
one bias per feature; a representation is the (row-normalised) feature row times the embeddings.
Because the non-identity features have embeddings of their own, a member or item known only by
its features gets a vector too (cold start): :meth:`LightFMModel.member_vectors_from_features`.

Export folds the biases: member vector ``[e_u, 1, b_u]``, item vector ``[e_i, b_i, 1]``, so the
inner product is LightFM's score ``e_u . e_i + b_u + b_i``. For cold start the export carries the
feature embeddings as ``[E, 0, b]`` (members) / ``[E, b, 0]`` (items) plus a constant offset
holding the 1, so serving computes ``normalize(x) @ feature_vectors + offset`` without LightFM.
LightFM is imported inside :meth:`LightFMModel.fit` only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from engine.errors import InvalidInputError
from engine.models.base import (
    FloatArray,
    IndexArray,
    ModelArtifacts,
    TrainData,
    check_history,
    check_rows,
    normalize_rows,
    not_fitted,
    require_choice,
    require_float,
    require_int,
    require_seed,
)

LOSSES = ("warp", "bpr", "logistic")
WEIGHTINGS = ("confidence", "binary")


@dataclass(frozen=True, slots=True)
class LightFMParams:
    """Hyperparameters of :class:`LightFMModel`.

    Attributes:
        components: embedding dimensions (the exported vectors have two more: the biases).
        loss: ``warp`` (optimises the top of the list), ``bpr`` or ``logistic``.
        learning_rate: adagrad step.
        item_alpha, user_alpha: L2 penalties on item / member feature embeddings.
        max_sampled: WARP negatives tried per positive.
        epochs: passes over the interactions.
        weighting: ``confidence`` weighs each interaction by its confidence divided by the mean
            confidence (so tier/tag/recency weights matter, at unit average step); ``binary``
            weighs all the same.
        identity_features: add one identity feature per member and per item (recommended; without
            it members and items are only their features).
        normalize_feature_rows: scale each feature row to sum 1 (LightFM's advice when mixing
            identity and shared features).
        random_state: seed (reproducible with ``num_threads=1``).
        num_threads: OpenMP threads for fitting.
    """

    components: int = 32
    loss: str = "warp"
    learning_rate: float = 0.05
    item_alpha: float = 0.0
    user_alpha: float = 0.0
    max_sampled: int = 10
    epochs: int = 20
    weighting: str = "confidence"
    identity_features: bool = True
    normalize_feature_rows: bool = True
    random_state: int | None = 0
    num_threads: int = 1

    def __post_init__(self) -> None:
        kind = "lightfm"
        require_int(kind, "components", self.components, low=1)
        require_choice(kind, "loss", self.loss, LOSSES)
        require_float(kind, "learning_rate", self.learning_rate, low=0.0, strict=True)
        require_float(kind, "item_alpha", self.item_alpha, low=0.0)
        require_float(kind, "user_alpha", self.user_alpha, low=0.0)
        require_int(kind, "max_sampled", self.max_sampled, low=1)
        require_int(kind, "epochs", self.epochs, low=1)
        require_choice(kind, "weighting", self.weighting, WEIGHTINGS)
        require_seed(kind, self.random_state)
        require_int(kind, "num_threads", self.num_threads, low=1)


@dataclass(frozen=True, slots=True)
class _Side:
    """The feature matrix of one side as fed to LightFM, and how many identity columns lead it."""

    features: sp.csr_matrix
    n_identity: int
    n_extra: int  # columns of TrainData.*_features (0: none given)


class LightFMModel:
    """LightFM hybrid model; exports folded vectors and feature embeddings for cold start."""

    kind = "lightfm"

    def __init__(self, params: LightFMParams | None = None) -> None:
        self.params = params or LightFMParams()
        self._model: Any = None
        self._members: _Side | None = None
        self._items: _Side | None = None

    def fit(self, data: TrainData) -> None:
        from lightfm import LightFM

        p = self.params
        members = self._side(data.n_members, data.member_features)
        items = self._side(data.n_items, data.item_features)
        interactions = data.confidence.tocoo()
        weights = None
        if p.weighting == "confidence" and interactions.nnz:
            scaled = (interactions.data / interactions.data.mean()).astype(np.float32)
            weights = sp.coo_matrix(
                (scaled, (interactions.row, interactions.col)), shape=interactions.shape
            )
        binary = sp.coo_matrix(
            (np.ones(interactions.nnz, dtype=np.float32), (interactions.row, interactions.col)),
            shape=interactions.shape,
        )
        model = LightFM(
            no_components=p.components,
            loss=p.loss,
            learning_rate=p.learning_rate,
            item_alpha=p.item_alpha,
            user_alpha=p.user_alpha,
            max_sampled=p.max_sampled,
            random_state=np.random.RandomState(p.random_state),
        )
        model.fit(
            binary,
            user_features=members.features,
            item_features=items.features,
            sample_weight=weights,
            epochs=p.epochs,
            num_threads=p.num_threads,
        )
        self._model, self._members, self._items = model, members, items

    def score(self, member_rows: IndexArray, history: sp.csr_matrix) -> FloatArray:
        model, members, items = self._fitted()
        rows = check_rows(member_rows, members.features.shape[0], self.kind)
        check_history(history, rows.shape[0], items.features.shape[0], self.kind)
        member_bias, member_emb = model.get_user_representations(members.features[rows])
        item_bias, item_emb = model.get_item_representations(items.features)
        scores: FloatArray = np.asarray(
            member_emb @ item_emb.T + member_bias[:, None] + item_bias[None, :], dtype=np.float32
        )
        return scores

    def member_vectors_from_features(self, features: sp.csr_matrix) -> FloatArray:
        """Folded vectors of members known only by feature rows (columns of member_features)."""
        model, members, _ = self._fitted()
        rows = self._cold_rows(features, members, "member")
        bias, emb = model.get_user_representations(rows)
        return _fold_member(emb, bias)

    def item_vectors_from_features(self, features: sp.csr_matrix) -> FloatArray:
        """Folded vectors of items known only by feature rows (columns of item_features)."""
        model, _, items = self._fitted()
        rows = self._cold_rows(features, items, "item")
        bias, emb = model.get_item_representations(rows)
        return _fold_item(emb, bias)

    def export(self) -> ModelArtifacts:
        model, members, items = self._fitted()
        member_bias, member_emb = model.get_user_representations(members.features)
        item_bias, item_emb = model.get_item_representations(items.features)
        p = self.params
        member_fv = member_off = item_fv = item_off = None
        d = p.components
        if members.n_extra:
            start = members.n_identity
            member_fv = _fold_member(
                model.user_embeddings[start:], model.user_biases[start:], constant=0.0
            )
            member_off = np.zeros(d + 2, dtype=np.float32)
            member_off[d] = 1.0
        if items.n_extra:
            start = items.n_identity
            item_fv = _fold_item(
                model.item_embeddings[start:], model.item_biases[start:], constant=0.0
            )
            item_off = np.zeros(d + 2, dtype=np.float32)
            item_off[d + 1] = 1.0
        return ModelArtifacts(
            kind=self.kind,
            params={
                **asdict(p),
                "n_member_features": members.n_extra,
                "n_item_features": items.n_extra,
            },
            member_vectors=_fold_member(member_emb, member_bias),
            item_vectors=_fold_item(item_emb, item_bias),
            member_feature_vectors=member_fv,
            member_feature_offset=member_off,
            item_feature_vectors=item_fv,
            item_feature_offset=item_off,
            normalize_feature_rows=p.normalize_feature_rows,
        )

    def _fitted(self) -> tuple[Any, _Side, _Side]:
        if self._model is None or self._members is None or self._items is None:
            raise not_fitted(self.kind)
        return self._model, self._members, self._items

    def _side(self, n: int, extra: sp.csr_matrix | None) -> _Side:
        blocks: list[sp.csr_matrix] = []
        n_identity = n if (self.params.identity_features or extra is None) else 0
        if n_identity:
            blocks.append(sp.identity(n, dtype=np.float32, format="csr"))
        if extra is not None:
            blocks.append(sp.csr_matrix(extra, dtype=np.float32))
        features = sp.csr_matrix(sp.hstack(blocks, format="csr"), dtype=np.float32)
        if self.params.normalize_feature_rows:
            features = normalize_rows(features)
        n_extra = 0 if extra is None else int(extra.shape[1])
        return _Side(features=features, n_identity=n_identity, n_extra=n_extra)

    def _cold_rows(self, features: sp.csr_matrix, side: _Side, what: str) -> sp.csr_matrix:
        if side.n_extra == 0:
            raise InvalidInputError(
                f"lightfm: no {what} features were given at training, so {what}s cannot be "
                f"placed from features; train with TrainData.{what}_features"
            )
        if not (sp.issparse(features) and features.format == "csr") or (
            features.shape[1] != side.n_extra
        ):
            raise InvalidInputError(
                f"lightfm: {what} feature rows must be a csr_matrix with {side.n_extra} columns "
                f"(the training {what}_features columns), got {type(features).__name__} "
                f"of shape {getattr(features, 'shape', None)}"
            )
        rows = sp.csr_matrix(features, dtype=np.float32)
        if self.params.normalize_feature_rows:
            rows = normalize_rows(rows)
        padding = sp.csr_matrix((rows.shape[0], side.n_identity), dtype=np.float32)
        padded: sp.csr_matrix = sp.csr_matrix(sp.hstack([padding, rows], format="csr"))
        return padded


def _fold_member(
    embeddings: NDArray[np.floating], biases: NDArray[np.floating], *, constant: float = 1.0
) -> FloatArray:
    """``[e, constant, b]`` per row: the member side of a bias-folded inner product."""
    n = embeddings.shape[0]
    folded = np.empty((n, embeddings.shape[1] + 2), dtype=np.float32)
    folded[:, :-2] = embeddings
    folded[:, -2] = constant
    folded[:, -1] = biases
    return folded


def _fold_item(
    embeddings: NDArray[np.floating], biases: NDArray[np.floating], *, constant: float = 1.0
) -> FloatArray:
    """``[e, b, constant]`` per row: the item side of a bias-folded inner product."""
    n = embeddings.shape[0]
    folded = np.empty((n, embeddings.shape[1] + 2), dtype=np.float32)
    folded[:, :-2] = embeddings
    folded[:, -2] = biases
    folded[:, -1] = constant
    return folded
