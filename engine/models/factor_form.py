"""The serving form of score-matrix models: vectors whose inner products are the scores.

Serving, bundles, FAISS retrieval, audiences and fold-in understand one model shape,
``score(u, i) = member_vectors[u] . item_vectors[i]``. Models whose natural output is a member x
item score matrix ``S`` (EASE's ``X B``, personal kNN's mixture of histories) are put in that
shape by :func:`factor_form`::

    item_vectors   = V          (n_items x d, orthonormal columns)
    member_vectors = S V        (n_members x d)
    served scores  = S V V^T

* **Exact** (``dims`` 0 or ``>= n_items``): ``V`` is the identity, ``d = n_items`` and the member
  vectors are the score rows themselves, so serving reproduces ``S`` up to float32 rounding. It
  costs ``4 * n_members * n_items`` bytes of member vectors (1.6 GB for 100k members x 4k items)
  plus an ``n_items x n_items`` identity, and an inner-product index of dimension ``n_items``.
* **Truncated** (``0 < dims < n_items``): ``V`` holds the top ``dims`` right singular vectors of
  ``S`` (the eigenvectors of ``S^T S`` with the largest eigenvalues), so ``S V V^T`` is the best
  rank-``dims`` approximation of ``S`` in the Frobenius norm (Eckart-Young), up to the accuracy of
  the randomized solver: a subspace iteration (Halko, Martinsson & Tropp 2011, algorithm 4.4)
  with ``power_iterations`` passes and a fixed seed, so fits are reproducible. ``S`` is only
  touched through products ``S M`` and ``S^T M`` with thin dense matrices; it is never
  materialised. Rankings drift from the exact model where the discarded singular directions
  matter (see each model's docstring for measured figures).

Either way the member vectors are computed from ``S`` itself (``S V``), so a model that scores
through its own exported vectors has serving parity by construction.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from engine.errors import InvalidInputError
from engine.models.base import FloatArray, IndexArray, ModelArtifacts, not_fitted

Float64Array = NDArray[np.float64]

#: Dense score rows produced per chunk when the exact form is written (bytes of float64).
_CHUNK_BYTES = 64 * 2**20
#: Subspace iterations of the randomized SVD: on Online Retail scores 2 came within 1% of the
#: optimal (Eckart-Young) error with the same NDCG@10 as 4, at about 60% of the cost.
POWER_ITERATIONS = 2
#: Share of the available memory a fit may plan to use.
MEMORY_SHARE = 0.8
#: ``dims=None`` serves the exact form up to this many items (the dimension of the item index:
#: an exact inner-product search then costs ``n_items^2`` flops per member)...
EXACT_MAX_ITEMS = 4096
#: ... and this many score cells (``n_members x n_items`` float32 member vectors: 1 GiB).
EXACT_MAX_CELLS = 2**28


def resolve_dims(dims: int | None, n_members: int, n_items: int, truncated: int) -> int:
    """The ``dims`` to serve: as given, or for None 0 (exact) when the exact form is small
    (:data:`EXACT_MAX_ITEMS`, :data:`EXACT_MAX_CELLS`), else ``truncated``."""
    if dims is not None:
        return dims
    if n_items <= EXACT_MAX_ITEMS and n_members * n_items <= EXACT_MAX_CELLS:
        return 0
    return truncated


@dataclass(frozen=True, slots=True)
class ProductScores:
    """A score matrix ``S = left @ right`` known through products, never formed whole.

    Products run in the factors' dtype (float32 factors halve the memory traffic of sparse
    products, which are memory-bound); results come back as float64.

    Attributes:
        left: ``n_members x m`` scipy sparse (CSR) matrix or dense array.
        right: ``m x n_items`` scipy sparse (CSR) matrix or dense array.
    """

    left: Any
    right: Any

    def __post_init__(self) -> None:
        if self.left.ndim != 2 or self.right.ndim != 2 or self.left.shape[1] != self.right.shape[0]:
            raise InvalidInputError(
                f"score matrix factors of shapes {self.left.shape} and {self.right.shape} "
                "cannot be multiplied"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.left.shape[0]), int(self.right.shape[1])

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.result_type(self.left.dtype, self.right.dtype)

    def matmat(self, matrix: Float64Array) -> Float64Array:
        """``S @ matrix`` for a dense ``n_items x k`` matrix."""
        inner = _dense_as(self.right @ matrix.astype(self.dtype, copy=False), self.dtype)
        return _dense(self.left @ inner)

    def rmatmat(self, matrix: Float64Array) -> Float64Array:
        """``S.T @ matrix`` for a dense ``n_members x k`` matrix."""
        inner = _dense_as(self.left.T @ matrix.astype(self.dtype, copy=False), self.dtype)
        return _dense(self.right.T @ inner)

    def rows(self, start: int, stop: int) -> Float64Array:
        """``S[start:stop]`` as a dense float64 array."""
        return _dense(self.left[start:stop] @ self.right)


@dataclass(frozen=True, slots=True)
class FactorForm:
    """Member and item vectors of a score matrix (see the module docstring).

    Attributes:
        member_vectors: ``n_members x d`` float32, ``S V``.
        item_vectors: ``n_items x d`` float32, ``V`` (orthonormal columns).
        exact: True when ``V`` is the identity (served scores are ``S`` itself).
    """

    member_vectors: FloatArray
    item_vectors: FloatArray
    exact: bool

    @property
    def dims(self) -> int:
        return int(self.item_vectors.shape[1])


def factor_form(
    scores: ProductScores,
    dims: int,
    *,
    kind: str,
    power_iterations: int = POWER_ITERATIONS,
    oversample: int = 16,
    seed: int = 0,
) -> FactorForm:
    """Vectors reproducing ``scores`` exactly (``dims`` 0 or ``>= n_items``) or its best
    rank-``dims`` approximation.

    Raises :class:`~engine.errors.InvalidInputError` when the exact form, or the randomized
    SVD's working matrices, would not fit in memory (naming ``dims`` and what to set it to).
    """
    n_items = scores.shape[1]
    if dims < 0:
        raise InvalidInputError(f"model {kind!r}: dims={dims} must be >= 0 (0: exact)")
    if dims == 0 or dims >= n_items:
        return _exact(scores, kind)
    width = min(dims + oversample, n_items)
    check_memory(
        8 * 4 * width * sum(scores.shape),
        f"model {kind!r}: the randomized SVD for dims={dims} holds a few {width}-column float64 "
        f"matrices of {scores.shape[0]} members and {n_items} items",
        "lower dims",
    )
    basis = top_right_singular_vectors(
        scores, dims, power_iterations=power_iterations, oversample=oversample, seed=seed
    )
    return FactorForm(
        member_vectors=np.ascontiguousarray(scores.matmat(basis), dtype=np.float32),
        item_vectors=np.ascontiguousarray(basis, dtype=np.float32),
        exact=False,
    )


def top_right_singular_vectors(
    scores: ProductScores,
    dims: int,
    *,
    power_iterations: int = POWER_ITERATIONS,
    oversample: int = 16,
    seed: int = 0,
) -> Float64Array:
    """``n_items x d`` orthonormal approximate top right singular vectors of ``S``.

    Randomized subspace iteration: ``Q = orth(S Omega)``, then ``power_iterations`` times
    ``Q = orth(S orth(S^T Q))``; the SVD of the small ``S^T Q`` gives the basis. ``d`` is
    ``dims``, or ``n_members`` when there are fewer members (the rank of ``S`` is no higher).
    Column signs are fixed (largest entry positive) so the result does not depend on LAPACK's
    sign choices.
    """
    n_members, n_items = scores.shape
    width = min(dims + oversample, n_items)
    rng = np.random.default_rng(seed)
    sketch = _orthonormal(scores.matmat(rng.standard_normal((n_items, width))))
    for _ in range(power_iterations):
        sketch = _orthonormal(scores.matmat(_orthonormal(scores.rmatmat(sketch))))
    projected = scores.rmatmat(sketch)  # n_items x width: (Q^T S)^T
    left, _, _ = np.linalg.svd(projected, full_matrices=False)
    basis: Float64Array = left[:, : min(dims, left.shape[1], n_members)]
    peaks = np.abs(basis).argmax(axis=0)
    signs = np.sign(basis[peaks, np.arange(basis.shape[1])])
    basis *= np.where(signs == 0, 1.0, signs)
    return basis


def _exact(scores: ProductScores, kind: str) -> FactorForm:
    n_members, n_items = scores.shape
    need = 4 * (n_members * n_items + n_items * n_items)
    check_memory(
        need,
        f"model {kind!r}: the exact serving form (dims=0 or dims >= n_items) holds every score, "
        f"{n_members} members x {n_items} items plus an identity of {n_items} x {n_items} as "
        "float32",
        f"set dims to a positive number below {n_items} (e.g. 256) for truncated vectors",
    )
    members = np.empty((n_members, n_items), dtype=np.float32)
    step = max(1, _CHUNK_BYTES // (8 * max(n_items, 1)))
    for start in range(0, n_members, step):
        stop = min(n_members, start + step)
        members[start:stop] = scores.rows(start, stop)
    return FactorForm(
        member_vectors=members, item_vectors=np.eye(n_items, dtype=np.float32), exact=True
    )


def available_memory_bytes() -> int | None:
    """Memory this process can still allocate: the smaller of the system's available memory
    (``MemAvailable``) and the cgroup limit's headroom; None when neither can be read."""
    limits: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as limit_file:
            limit = limit_file.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as current_file:
            current = int(current_file.read().strip())
        if limit != "max":
            limits.append(max(0, int(limit) - current))
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None


def fits_in_memory(need_bytes: int) -> bool:
    """Whether ``need_bytes`` fit in :data:`MEMORY_SHARE` of the available memory (True when the
    available memory is unknown)."""
    available = available_memory_bytes()
    return available is None or need_bytes <= MEMORY_SHARE * available


def check_memory(need_bytes: int, what: str, remedy: str) -> None:
    """Raise :class:`~engine.errors.InvalidInputError` (``what``, sizes, ``remedy``) unless
    ``need_bytes`` fit in memory (:func:`fits_in_memory`)."""
    if not fits_in_memory(need_bytes):
        available = available_memory_bytes() or 0
        raise InvalidInputError(
            f"{what}: that needs about {gib(need_bytes)} GiB but only {gib(available)} GiB of "
            f"memory is available; {remedy}"
        )


def gib(size: float) -> str:
    """Bytes as GiB with one decimal (``'3.2'``)."""
    return f"{size / 2**30:.1f}"


def _orthonormal(matrix: Float64Array) -> Float64Array:
    q, _ = np.linalg.qr(matrix, mode="reduced")
    return np.asarray(q, dtype=np.float64)


def _dense(matrix: Any) -> Float64Array:
    return _dense_as(matrix, np.dtype(np.float64))


def _dense_as(matrix: Any, dtype: np.dtype[Any]) -> NDArray[Any]:
    if sp.issparse(matrix):
        matrix = matrix.toarray()
    return np.asarray(matrix, dtype=dtype)


class ServedAsFactors:
    """What models served through their factor form share: once fitted they hold the exported
    artifacts, and ``score`` is the score of those served vectors (so parity with the export
    holds by construction). Subclasses set ``kind`` and fill ``_artifacts`` in ``fit``."""

    kind: str
    _artifacts: ModelArtifacts | None = None

    def score(self, member_rows: IndexArray, history: sp.csr_matrix) -> FloatArray:
        """Scores of the served vectors (``history`` is only checked; see the module doc)."""
        if self._artifacts is None:
            raise not_fitted(self.kind)
        return self._artifacts.score(member_rows, history)

    def export(self) -> ModelArtifacts:
        """The served vectors (shared with the model, not copied: they can be large)."""
        if self._artifacts is None:
            raise not_fitted(self.kind)
        return self._artifacts


__all__ = [
    "EXACT_MAX_CELLS",
    "EXACT_MAX_ITEMS",
    "FactorForm",
    "ProductScores",
    "ServedAsFactors",
    "available_memory_bytes",
    "check_memory",
    "factor_form",
    "fits_in_memory",
    "resolve_dims",
    "top_right_singular_vectors",
]
