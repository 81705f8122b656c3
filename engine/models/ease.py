"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): closed-form item x item.

With ``X`` the confidence matrix (members x items)::

    G = X^T X + lambda I,   P = G^-1,   B = I - P diag(1 / diag(P))   (so diag(B) = 0)
    scores = X B

``B`` is the minimiser of ``||X - X B||^2 + lambda ||B||^2`` subject to a zero diagonal: each item
is predicted from the *other* items of the member's history. The solve is dense: ``G`` is
built in item blocks from sparse products, then Cholesky-factored and inverted in place (LAPACK
``potrf`` / ``potri``), so the fit holds one ``n_items x n_items`` matrix (float64 when it fits in
memory, else float32) and costs about ``n_items^3`` flops (a few seconds for 4k items, about a
minute for 10k on one core). Catalogues above ``max_items`` are refused before anything large is
allocated, and so is a solve that would not fit in the available memory.

Serving form (:mod:`engine.models.factor_form`): ``dims = 0`` (or ``>= n_items``) exports the
score rows ``X B`` as member vectors against identity item vectors (exact); ``0 < dims <
n_items`` exports the best rank-``dims`` approximation ``X B V V^T``. :meth:`EASEModel.score`
scores through the exported vectors, so serving parity is exact either way, and the scores
reflect the training history: ``history`` is validated but not used. Purchases made since
need a refit (:mod:`engine.foldin` re-estimates members as if the item vectors were ALS
factors, which does not reproduce ``X B``).

Measured on Online Retail (validation window: training lines before 2011-10-10, relevance the
items bought 2011-10-10 to 2011-11-08; 3,752 members x 3,556 items, one unit per purchase line;
NDCG@10 "all" over 1,101 members / "new" over 1,022, as in docs/evaluation.md): exact
0.2710 / 0.0827; dims 512: 0.2796 / 0.0818; 256: 0.2928 / 0.0818; 128: 0.2880 / 0.0809; 64:
0.2685 / 0.0779 (ALS 64 factors: 0.2495 / 0.0870). Truncation costs little on new items and
*raises* "all": the rank-``dims`` projection no longer keeps B's zero diagonal, so members' own
items score (repeat purchases). The default (``dims=None``) serves the model as specified
(exact) while the exact form is small, and 256 dims above that (here 256 dims left 10%
relative error in the scores). On
recency-decayed confidences (smaller values) a smaller lambda did better (50: 0.2413 / 0.0945).
A synthetic 100k members x 10k items fit (dims 256) took 49 s and 2.3 GB on one core.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.linalg import lapack

from engine.errors import InvalidInputError
from engine.models.base import (
    ModelArtifacts,
    TrainData,
    require_float,
    require_int,
)
from engine.models.factor_form import (
    ProductScores,
    ServedAsFactors,
    factor_form,
    fits_in_memory,
    gib,
    resolve_dims,
)

#: Served dimension when ``dims`` is None and the exact form is too large (measured below).
TRUNCATED_DIMS = 256
#: Float64 cells per block of the Gram matrix built from sparse products.
_GRAM_BLOCK_CELLS = 2**24


@dataclass(frozen=True, slots=True)
class EASEParams:
    """Hyperparameters of :class:`EASEModel`.

    Attributes:
        regularization: ``lambda``, added to the diagonal of ``X^T X`` (in the units of the
            squared confidences; Steck uses 200-1000 on 0/1 data).
        max_items: largest catalogue for the dense ``n_items x n_items`` solve (20,000 items
            hold 3.2 GB per float64 matrix); larger catalogues are refused at fit.
        dims: dimension of the exported vectors (:mod:`engine.models.factor_form`): 0 or
            ``>= n_items`` is exact (member vectors are the score rows), otherwise the best
            rank-``dims`` approximation of the scores. None: exact when the exact form is
            small (:func:`~engine.models.factor_form.resolve_dims`), else
            :data:`TRUNCATED_DIMS`.
    """

    regularization: float = 500.0
    max_items: int = 20_000
    dims: int | None = None

    def __post_init__(self) -> None:
        require_float("ease", "regularization", self.regularization, low=0.0, strict=True)
        require_int("ease", "max_items", self.max_items, low=1)
        if self.dims is not None:
            require_int("ease", "dims", self.dims, low=0)


class EASEModel(ServedAsFactors):
    """EASE item x item regression, served as member and item vectors."""

    kind = "ease"

    def __init__(self, params: EASEParams | None = None) -> None:
        self.params = params or EASEParams()
        self._artifacts: ModelArtifacts | None = None

    def fit(self, data: TrainData) -> None:
        p = self.params
        dtype = solve_dtype(data.n_items, p.max_items)
        weights = ease_weights(data.confidence, p.regularization, dtype=dtype)
        left = sp.csr_matrix(data.confidence, dtype=dtype)
        dims = resolve_dims(p.dims, data.n_members, data.n_items, TRUNCATED_DIMS)
        form = factor_form(ProductScores(left, weights), dims, kind=self.kind)
        del weights
        self._artifacts = ModelArtifacts(
            kind=self.kind,
            params={
                **asdict(p),
                "solve_dtype": np.dtype(dtype).name,
                "served_dims": form.dims,
                "exact": form.exact,
            },
            member_vectors=form.member_vectors,
            item_vectors=form.item_vectors,
        )


def solve_dtype(n_items: int, max_items: int) -> type[np.floating]:
    """float64 when its ``n_items x n_items`` solve fits in memory, else float32.

    Raises :class:`~engine.errors.InvalidInputError`, naming ``max_items``, for a catalogue above
    ``max_items`` or one whose solve does not fit even in float32.
    """
    need64 = ease_memory_bytes(n_items, np.float64)
    if n_items > max_items:
        raise InvalidInputError(
            f"model 'ease': the catalogue has {n_items} items, above max_items={max_items}; "
            f"EASE solves a dense {n_items} x {n_items} system (about {gib(need64)} GiB in "
            "float64). Raise max_items if the machine has that memory, train on fewer items, or "
            "choose another kind (als, item_knn)"
        )
    if fits_in_memory(need64):
        return np.float64
    need32 = ease_memory_bytes(n_items, np.float32)
    if fits_in_memory(need32):
        return np.float32
    raise InvalidInputError(
        f"model 'ease': the dense {n_items} x {n_items} solve needs about {gib(need32)} GiB even "
        f"in float32, more than the memory available; lower max_items (now {max_items}) below "
        "the catalogue size to refuse such catalogues early, train on fewer items, or choose "
        "another kind (als, item_knn)"
    )


def ease_memory_bytes(n_items: int, dtype: type[np.floating]) -> int:
    """Planned peak of the solve: one ``n_items^2`` matrix, 10% slack, and the temporaries of
    one Gram block (float64 values, int32 indexes and a dense copy)."""
    itemsize = np.dtype(dtype).itemsize
    block = min(_GRAM_BLOCK_CELLS, n_items * n_items)
    return int(1.1 * n_items * n_items * itemsize) + 3 * 8 * block


def ease_weights(
    confidence: sp.csr_matrix, regularization: float, *, dtype: type[np.floating] = np.float64
) -> NDArray[np.floating]:
    """EASE's ``B`` (``n_items x n_items``, zero diagonal) for the confidence matrix.

    Allocates one dense ``n_items x n_items`` matrix of ``dtype`` (Fortran order), which is
    returned; call :func:`solve_dtype` first to check that it fits.
    """
    matrix = _gram(confidence, dtype)
    matrix[np.diag_indices_from(matrix)] += regularization
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (matrix,))
    factor, info = potrf(matrix, lower=0, clean=0, overwrite_a=1)
    if info == 0:
        matrix, info = potri(factor, lower=0, overwrite_c=1)
    if info != 0:
        raise InvalidInputError(
            f"model 'ease': the Cholesky solve failed (LAPACK info {info}); the confidences "
            "are probably not finite or regularization is too small for float32, raise it"
        )
    _mirror_upper(matrix)  # P = G^-1, held in the upper triangle by potri
    diagonal = matrix.diagonal().copy()
    matrix /= -diagonal[None, :]  # B = I - P diag(1 / diag P), off the diagonal
    matrix[np.diag_indices_from(matrix)] = 0.0
    weights: NDArray[np.floating] = matrix
    return weights


def _gram(confidence: sp.csr_matrix, dtype: type[np.floating]) -> NDArray[np.floating]:
    """Dense ``X^T X`` (Fortran order), built one block of item columns at a time."""
    n_items = int(confidence.shape[1])
    gram = np.zeros((n_items, n_items), dtype=dtype, order="F")
    by_item = sp.csr_matrix(confidence.T, dtype=np.float64)
    columns = sp.csc_matrix(confidence, dtype=np.float64)
    step = max(1, _GRAM_BLOCK_CELLS // max(n_items, 1))
    for start in range(0, n_items, step):
        stop = min(n_items, start + step)
        gram[:, start:stop] = (by_item @ columns[:, start:stop]).toarray()
    return gram


def _mirror_upper(matrix: NDArray[np.floating]) -> None:
    """Copy the upper triangle onto the lower one, in place, a block of rows at a time."""
    n = matrix.shape[0]
    step = max(1, _GRAM_BLOCK_CELLS // max(n, 1))
    for start in range(0, n, step):
        stop = min(n, start + step)
        block = matrix[start:stop, start:stop]
        block[...] = np.triu(block) + np.triu(block, 1).T
        matrix[stop:, start:stop] = matrix[start:stop, stop:].T
