"""The one small model interface, its training input, and what a trained model exports.

Every model kind (:mod:`engine.models`) follows :class:`Recommender`::

    model = create_model("als", factors=64)
    model.fit(TrainData(confidence=matrix))
    scores = model.score(member_rows, history)   # library path, dense float32
    artifacts = model.export()                   # numpy/scipy only: what a bundle stores
    artifacts.score(member_rows, history)        # serving path: equals model.score

:class:`ModelArtifacts` is the contract between training and serving: scores are always
``member_vectors @ item_vectors.T`` (biases are folded into the vectors) plus
``history @ item_similarity``, so serving and FAISS need neither implicit nor LightFM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from engine.errors import EngineError, InvalidInputError

#: JSON-able hyperparameter values recorded with a trained model.
ParamValue = str | int | float | bool | None
Params = Mapping[str, ParamValue]

FloatArray = NDArray[np.float32]
IndexArray = NDArray[np.integer]


class NotFittedError(EngineError):
    """A model was asked to score or export before :meth:`Recommender.fit` ran."""


@dataclass(frozen=True, slots=True)
class TrainData:
    """What a model learns from. Rows are members, columns items, in the id maps' order.

    Attributes:
        confidence: ``n_members x n_items`` float32 CSR confidences
            (:func:`engine.interactions.build_confidence`).
        member_features: optional ``n_members x n_member_features`` CSR matrix (tier, tags, ...),
            used by the hybrid model; its columns define the cold-start feature space.
        item_features: optional ``n_items x n_item_features`` CSR matrix (category, tags, ...).
        member_tiers: optional tier index per member (lowest tier 0), ``-1`` when unknown.
        n_tiers: number of tiers on the ladder (needed with ``member_tiers``).
    """

    confidence: sp.csr_matrix
    member_features: sp.csr_matrix | None = None
    item_features: sp.csr_matrix | None = None
    member_tiers: IndexArray | None = None
    n_tiers: int = 0

    def __post_init__(self) -> None:
        matrix = as_csr(self.confidence, "TrainData.confidence")
        object.__setattr__(self, "confidence", matrix)
        if matrix.dtype != np.float32:
            raise InvalidInputError(
                f"TrainData.confidence has dtype {matrix.dtype}; expected float32"
            )
        if matrix.nnz and float(matrix.data.min()) < 0.0:
            raise InvalidInputError(
                "TrainData.confidence holds negative values; clip them to 0 "
                "(engine.interactions.build_confidence does)"
            )
        n_members, n_items = matrix.shape
        for name, features, rows in (
            ("member_features", self.member_features, n_members),
            ("item_features", self.item_features, n_items),
        ):
            if features is None:
                continue
            features = as_csr(features, f"TrainData.{name}")
            object.__setattr__(self, name, features)
            if features.shape[0] != rows:
                raise InvalidInputError(
                    f"TrainData.{name} has {features.shape[0]} rows; expected {rows}, "
                    "one per row of the confidence matrix"
                )
        if self.member_tiers is not None:
            tiers = np.asarray(self.member_tiers)
            if tiers.shape != (n_members,) or not np.issubdtype(tiers.dtype, np.integer):
                raise InvalidInputError(
                    f"TrainData.member_tiers has shape {tiers.shape} and dtype {tiers.dtype}; "
                    f"expected ({n_members},) integers, one tier index per member"
                )
            bad = np.flatnonzero((tiers < -1) | (tiers >= self.n_tiers))
            if bad.size:
                row = int(bad[0])
                raise InvalidInputError(
                    f"TrainData.member_tiers[{row}] is {int(tiers[row])}, outside "
                    f"[-1, n_tiers={self.n_tiers}); set n_tiers to the ladder's length"
                )

    @property
    def n_members(self) -> int:
        return int(self.confidence.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.confidence.shape[1])


_ARRAY_NAMES: tuple[str, ...] = (
    "member_vectors",
    "item_vectors",
    "member_feature_vectors",
    "member_feature_offset",
    "item_feature_vectors",
    "item_feature_offset",
)


@dataclass(frozen=True, slots=True)
class ModelArtifacts:
    """Everything serving needs to score, as plain float32 arrays and CSR matrices.

    ``score(rows, history) = member_vectors[rows] @ item_vectors.T + history @ item_similarity``
    (either term may be absent). Biases are folded into the vectors (an extra constant-1
    dimension on the other side), so an inner-product index over ``item_vectors`` ranks exactly.

    Attributes:
        kind: model kind (the :func:`engine.models.create_model` name).
        params: JSON-able hyperparameters and facts about the fit.
        member_vectors: ``n_members x d`` float32, or None.
        item_vectors: ``n_items x d`` float32, or None (present with ``member_vectors``).
        item_similarity: ``n_items x n_items`` float32 CSR (item-kNN, buy-again), or None.
        member_feature_vectors / member_feature_offset: cold start, ``n_member_features x d`` and
            ``d``: a member described only by a feature row ``x`` (same columns as
            ``TrainData.member_features``) gets ``normalize(x) @ member_feature_vectors + offset``.
        item_feature_vectors / item_feature_offset: the same for items.
        normalize_feature_rows: whether feature rows are scaled to sum 1 first (L1).
        exclude_history: whether callers should drop items the member already has (False for
            buy-again, whose recommendations *are* the history).
    """

    kind: str
    params: Params
    member_vectors: FloatArray | None = None
    item_vectors: FloatArray | None = None
    item_similarity: sp.csr_matrix | None = None
    member_feature_vectors: FloatArray | None = None
    member_feature_offset: FloatArray | None = None
    item_feature_vectors: FloatArray | None = None
    item_feature_offset: FloatArray | None = None
    normalize_feature_rows: bool = False
    exclude_history: bool = True

    def __post_init__(self) -> None:
        for name in _ARRAY_NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            if not (
                isinstance(value, np.ndarray)
                and value.dtype == np.float32
                and value.flags.c_contiguous
            ):
                raise InvalidInputError(
                    f"ModelArtifacts({self.kind}).{name} must be a C-contiguous float32 numpy "
                    f"array, got {type(value).__name__} of dtype {getattr(value, 'dtype', None)}"
                )
        if (self.member_vectors is None) != (self.item_vectors is None):
            raise InvalidInputError(
                f"ModelArtifacts({self.kind}): member_vectors and item_vectors come together"
            )
        if self.member_vectors is None and self.item_similarity is None:
            raise InvalidInputError(
                f"ModelArtifacts({self.kind}) holds neither vectors nor an item_similarity matrix"
            )
        if self.member_vectors is not None and self.item_vectors is not None:
            if self.member_vectors.ndim != 2 or self.item_vectors.ndim != 2:
                raise InvalidInputError(f"ModelArtifacts({self.kind}): vectors must be 2-D")
            if self.member_vectors.shape[1] != self.item_vectors.shape[1]:
                raise InvalidInputError(
                    f"ModelArtifacts({self.kind}): member vectors have "
                    f"{self.member_vectors.shape[1]} dimensions, item vectors "
                    f"{self.item_vectors.shape[1]}"
                )
        if self.item_similarity is not None:
            similarity = as_csr(
                self.item_similarity, f"ModelArtifacts({self.kind}).item_similarity"
            )
            object.__setattr__(self, "item_similarity", similarity)
            if similarity.dtype != np.float32:
                raise InvalidInputError(
                    f"ModelArtifacts({self.kind}).item_similarity must be float32, "
                    f"got {similarity.dtype}"
                )
            rows, cols = self.item_similarity.shape
            if rows != cols or (self.item_vectors is not None and rows != self.n_items):
                raise InvalidInputError(
                    f"ModelArtifacts({self.kind}).item_similarity has shape {self.item_similarity.shape}; "
                    "expected n_items x n_items"
                )
        for side in ("member", "item"):
            vectors = getattr(self, f"{side}_feature_vectors")
            offset = getattr(self, f"{side}_feature_offset")
            if (vectors is None) != (offset is None):
                raise InvalidInputError(
                    f"ModelArtifacts({self.kind}): {side}_feature_vectors and "
                    f"{side}_feature_offset come together"
                )
            if vectors is not None and (
                self.item_vectors is None
                or vectors.ndim != 2
                or vectors.shape[1] != self.item_vectors.shape[1]
                or offset.shape != (vectors.shape[1],)
            ):
                raise InvalidInputError(
                    f"ModelArtifacts({self.kind}): {side} feature vectors must be 2-D with the "
                    "model's dimension, and their offset 1-D of that dimension"
                )

    @property
    def n_items(self) -> int:
        if self.item_vectors is not None:
            return int(self.item_vectors.shape[0])
        return int(self.item_similarity.shape[0]) if self.item_similarity is not None else 0

    @property
    def n_members(self) -> int | None:
        """Members with a trained vector (None: the model scores from history only)."""
        return None if self.member_vectors is None else int(self.member_vectors.shape[0])

    def arrays(self) -> dict[str, FloatArray]:
        """The dense float32 arrays by name (what a bundle stores), absent ones left out."""
        return {
            name: getattr(self, name) for name in _ARRAY_NAMES if getattr(self, name) is not None
        }

    def matrices(self) -> dict[str, sp.csr_matrix]:
        """The sparse matrices by name (what a bundle stores), absent ones left out."""
        return {} if self.item_similarity is None else {"item_similarity": self.item_similarity}

    def manifest_fields(self) -> dict[str, Any]:
        """The JSON-able facts that, with :meth:`arrays` and :meth:`matrices`, rebuild these
        artifacts (:meth:`from_parts`); a bundle manifest stores them."""
        return {
            "kind": self.kind,
            "params": dict(self.params),
            "normalize_feature_rows": self.normalize_feature_rows,
            "exclude_history": self.exclude_history,
        }

    @classmethod
    def from_parts(
        cls,
        fields: Mapping[str, Any],
        arrays: Mapping[str, NDArray[Any]],
        matrices: Mapping[str, Any],
    ) -> ModelArtifacts:
        """Rebuild artifacts from :meth:`manifest_fields`, :meth:`arrays` and :meth:`matrices`.

        ``arrays`` and ``matrices`` may hold other entries (a bundle's extra arrays); only the
        names of :meth:`arrays` / :meth:`matrices` are taken. Sparse matrices may be
        ``csr_array`` (as a bundle loads them).
        """
        kind, params = fields.get("kind"), fields.get("params")
        flags = (fields.get("normalize_feature_rows"), fields.get("exclude_history"))
        if not (
            isinstance(kind, str)
            and isinstance(params, Mapping)
            and all(isinstance(flag, bool) for flag in flags)
        ):
            raise InvalidInputError(
                "ModelArtifacts.from_parts: fields need 'kind' (text), 'params' (a mapping), "
                "'normalize_feature_rows' and 'exclude_history' (true/false); got "
                f"{sorted(fields)}"
            )
        return cls(
            kind=kind,
            params=dict(params),
            member_vectors=arrays.get("member_vectors"),
            item_vectors=arrays.get("item_vectors"),
            item_similarity=matrices.get("item_similarity"),
            member_feature_vectors=arrays.get("member_feature_vectors"),
            member_feature_offset=arrays.get("member_feature_offset"),
            item_feature_vectors=arrays.get("item_feature_vectors"),
            item_feature_offset=arrays.get("item_feature_offset"),
            normalize_feature_rows=bool(flags[0]),
            exclude_history=bool(flags[1]),
        )

    def score(self, member_rows: IndexArray, history: sp.csr_matrix) -> FloatArray:
        """Dense float32 scores, one row per entry of ``member_rows`` (serving arithmetic).

        ``history`` holds the same members' confidences (``len(member_rows) x n_items``); it is
        used only by history-based terms. Callers mask history items (``exclude_history``) and
        apply business filters.
        """
        rows = check_rows(member_rows, self.n_members, self.kind)
        check_history(history, rows.shape[0], self.n_items, self.kind)
        scores = np.zeros((rows.shape[0], self.n_items), dtype=np.float32)
        if self.member_vectors is not None and self.item_vectors is not None:
            scores += self.member_vectors[rows] @ self.item_vectors.T
        if self.item_similarity is not None:
            scores += (history.astype(np.float32) @ self.item_similarity).toarray()
        return scores

    def member_vectors_from_features(self, features: sp.csr_matrix) -> FloatArray:
        """Vectors for members described only by feature rows (cold start)."""
        return _from_features(
            features,
            self.member_feature_vectors,
            self.member_feature_offset,
            self.normalize_feature_rows,
            f"{self.kind} member",
        )

    def item_vectors_from_features(self, features: sp.csr_matrix) -> FloatArray:
        """Vectors for items described only by feature rows (cold start)."""
        return _from_features(
            features,
            self.item_feature_vectors,
            self.item_feature_offset,
            self.normalize_feature_rows,
            f"{self.kind} item",
        )


@runtime_checkable
class Recommender(Protocol):
    """One model: learn from :class:`TrainData`, score members, export plain arrays."""

    kind: str

    def fit(self, data: TrainData) -> None:
        """Learn from the data (replacing anything learned before)."""
        ...

    def score(self, member_rows: IndexArray, history: sp.csr_matrix) -> FloatArray:
        """Dense float32 scores of every item for the given training members.

        ``history`` is ``len(member_rows) x n_items`` (those members' confidences, rows aligned
        with ``member_rows``). Computed through the model library where it has a scoring path.
        """
        ...

    def export(self) -> ModelArtifacts:
        """The trained model as numpy/scipy arrays; ``export().score`` equals :meth:`score`."""
        ...


@runtime_checkable
class ColdStartRecommender(Recommender, Protocol):
    """A model that can place members and items known only by their features."""

    def member_vectors_from_features(self, features: sp.csr_matrix) -> FloatArray: ...

    def item_vectors_from_features(self, features: sp.csr_matrix) -> FloatArray: ...


def as_csr(matrix: Any, what: str) -> sp.csr_matrix:
    """``matrix`` as a ``csr_matrix`` (a ``csr_array`` is wrapped without copying its data).

    implicit needs ``csr_matrix`` exactly; bundles load ``csr_array``. Other formats are refused
    rather than converted silently (a COO/CSC input usually means a caller forgot a step).
    """
    if not (sp.issparse(matrix) and matrix.format == "csr"):
        raise InvalidInputError(
            f"{what} is a {type(matrix).__name__}; expected a scipy.sparse CSR matrix "
            "(csr_matrix or csr_array)"
        )
    if sp.isspmatrix_csr(matrix):
        return matrix
    return sp.csr_matrix(
        (matrix.data, matrix.indices, matrix.indptr), shape=matrix.shape, copy=False
    )


def check_rows(member_rows: IndexArray, n_members: int | None, kind: str) -> NDArray[np.int64]:
    """Validate member row indexes against the trained member count (None: any row)."""
    rows = np.asarray(member_rows)
    if rows.ndim != 1 or not (np.issubdtype(rows.dtype, np.integer) or rows.size == 0):
        raise InvalidInputError(
            f"{kind}.score: member_rows must be a 1-D integer array, got shape {rows.shape} "
            f"and dtype {rows.dtype}"
        )
    checked: NDArray[np.int64] = rows.astype(np.int64, copy=False)
    if n_members is not None and checked.size:
        bad = np.flatnonzero((checked < 0) | (checked >= n_members))
        if bad.size:
            raise InvalidInputError(
                f"{kind}.score: member row {int(checked[bad[0]])} is outside the {n_members} "
                "trained members; score unknown members from their features or a fallback"
            )
    return checked


def check_history(history: sp.csr_matrix, n_rows: int, n_items: int, kind: str) -> None:
    """Validate that ``history`` is a CSR matrix aligned with the scored rows."""
    if not (sp.issparse(history) and history.format == "csr"):
        raise InvalidInputError(
            f"{kind}.score: history is a {type(history).__name__}; expected a CSR matrix"
        )
    if history.shape != (n_rows, n_items):
        raise InvalidInputError(
            f"{kind}.score: history has shape {history.shape}; expected ({n_rows}, {n_items}), "
            "one row per scored member and one column per trained item"
        )


def normalize_rows(features: sp.csr_matrix) -> sp.csr_matrix:
    """Scale each row to sum 1 (rows that sum to 0 stay 0), as float32 CSR."""
    matrix = sp.csr_matrix(features, dtype=np.float32)
    sums = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums != 0)
    result: sp.csr_matrix = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ matrix)
    return result


def _from_features(
    features: sp.csr_matrix,
    vectors: FloatArray | None,
    offset: FloatArray | None,
    normalize: bool,
    what: str,
) -> FloatArray:
    if vectors is None or offset is None:
        raise InvalidInputError(
            f"{what} vectors from features: this model has no feature embeddings; "
            "use the hybrid (lightfm) model for cold start or a popularity fallback"
        )
    if not (sp.issparse(features) and features.format == "csr") or (
        features.shape[1] != vectors.shape[0]
    ):
        raise InvalidInputError(
            f"{what} vectors from features: expected a csr_matrix with {vectors.shape[0]} "
            f"columns (the training feature columns), got {type(features).__name__} "
            f"of shape {getattr(features, 'shape', None)}"
        )
    rows = normalize_rows(features) if normalize else sp.csr_matrix(features, dtype=np.float32)
    result: FloatArray = np.ascontiguousarray(
        np.asarray(rows @ vectors, dtype=np.float32) + offset, dtype=np.float32
    )
    return result


def require_int(kind: str, name: str, value: object, *, low: int) -> None:
    """Raise unless ``value`` is an int (not a bool) ``>= low``; names the model and parameter."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(
            f"model {kind!r}: parameter {name}={value!r} must be an integer >= {low}"
        )


def require_float(kind: str, name: str, value: object, *, low: float, strict: bool = False) -> None:
    """Raise unless ``value`` is a finite number ``>= low`` (``> low`` when ``strict``)."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and np.isfinite(value)
        and (value > low if strict else value >= low)
    )
    if not ok:
        relation = ">" if strict else ">="
        raise InvalidInputError(
            f"model {kind!r}: parameter {name}={value!r} must be a finite number {relation} {low}"
        )


def require_choice(kind: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise InvalidInputError(
            f"model {kind!r}: parameter {name}={value!r} must be one of {', '.join(choices)}"
        )


def require_seed(kind: str, value: object) -> None:
    """Raise unless ``value`` is None or a non-negative int seed."""
    if value is not None:
        require_int(kind, "random_state", value, low=0)


def not_fitted(kind: str) -> NotFittedError:
    """The error to raise when a model is used before :meth:`Recommender.fit`."""
    return NotFittedError(f"model {kind!r} is not trained yet; call fit() first")
