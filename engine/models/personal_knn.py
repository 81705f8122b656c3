"""Personal kNN: a member's own item frequencies mixed with those of similar members.

In the style of TIFU-KNN (Hu, He, Li, Jin & Zheng 2020, "Modeling Personalized Item Frequency
Information for Next-basket Recommendation"), with ``x_u`` the member's row of the confidence
matrix::

    p_u      = x_u / sum(x_u)                                  (L1: a distribution over items)
    N(u)     = the ``neighbours`` members v != u of largest cosine(x_u, x_v) > 0
    score(u) = alpha p_u + (1 - alpha) mean_{v in N(u)} p_v

TIFU-KNN builds ``p_u`` from time-decayed basket vectors; here the training pipeline's recency
decay (``InteractionWeights.half_life_days``) is already in the confidences, so ``p_u`` is the
normalised confidence row. L1 makes both terms distributions over the catalogue, so ``alpha`` is
the share of the member's own history in the mix whatever their number of purchases. The paper
finds its nearest neighbours by Euclidean distance between unnormalised vectors; this model uses
cosine, which does not favour light buyers as neighbours. Defaults are the paper's for TaFeng
and ValuedShopper (k = 300, alpha = 0.7); the number of neighbours is capped at
``n_members - 1``. A member whose items nobody else bought has no neighbour and scores
``alpha p_u``; one with fewer than k neighbours of positive similarity averages over those.

Neighbours come from ``implicit``'s exact sparse all-pairs kNN (C++, no Python loop over
members) up to :data:`EXACT_SEARCH_MAX_MEMBERS` members. Its cost grows with the number of member
pairs sharing an item, nearly ``n_members^2`` in retail, where everyone buys the best-sellers (220 s
for 100k members). Above that, neighbours are searched exactly by FAISS in a
``search_dims``-dimensional SVD embedding of the rows. The scores ``S = (alpha I + (1 - alpha) W)
P`` (``W``: the neighbour means, ``P``: the L1 rows) are never formed whole: the serving form
(:mod:`engine.models.factor_form`) only needs products with thin matrices, run in float32. Recommendations are repeat purchases first (that is the model), so
the export has ``exclude_history = False``, like buy-again. :meth:`PersonalKNNModel.score`
scores through the exported vectors (serving parity by construction); ``history`` is validated
but not used: the scores reflect the training history, and purchases made since need a refit.

Measured on Online Retail (validation window and members as in :mod:`engine.models.ease`;
NDCG@10 "all" / "new"): exact 0.3131 / 0.0740; dims 512: 0.3084 / 0.0586; 256: 0.2914 /
0.0669; 128: 0.2663 / 0.0723; 64: 0.2305 / 0.0688 (ALS 64 factors: 0.2495 / 0.0870). The
scores are high-rank (``alpha p_u`` is as sparse as the history: 256 dims leave 52% relative
error, against 10% for EASE), so the default (``dims=None``) is exact whenever the exact form is
small and 256 above, where 512 gains 0.017 "all" for a third more fit time. Neighbours found in
a 64-dim embedding scored 0.3126 / 0.0772 (exact search: 0.3131 / 0.0740). A synthetic 100k
members x 10k items fit with the defaults (embedding search, 256 dims) took 120 s on one core
(160 s at 512 dims), peak 3.4 GB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

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
    resolve_dims,
    top_right_singular_vectors,
)

#: Neighbours are searched exactly (``search_dims = 0``) up to this many members by default.
EXACT_SEARCH_MAX_MEMBERS = 20_000
#: Embedding dimension of the neighbour search above :data:`EXACT_SEARCH_MAX_MEMBERS`.
SEARCH_DIMS = 64
#: Served dimension when ``dims`` is None and the exact form is too large (measured below).
TRUNCATED_DIMS = 256


@dataclass(frozen=True, slots=True)
class PersonalKNNParams:
    """Hyperparameters of :class:`PersonalKNNModel`.

    Attributes:
        neighbours: ``k``, similar members averaged per member (at most ``n_members - 1`` are
            used).
        alpha: weight of the member's own frequencies (1: buy-again on normalised
            confidences; 0: neighbours only).
        dims: dimension of the exported vectors (:mod:`engine.models.factor_form`): 0 or
            ``>= n_items`` is exact (member vectors are the score rows), otherwise the best
            rank-``dims`` approximation of the scores.
        search_dims: how neighbours are found. 0: exact cosine between the sparse rows
            (implicit's all-pairs kNN; its cost grows with ``n_members^2`` times the share of
            member pairs with an item in common, 220 s for 100k members on one core). ``> 0``:
            cosine between the members' projections on the top ``search_dims`` right singular
            vectors of the L2-normalised rows, searched exactly by FAISS (about
            ``2 n_members^2 search_dims`` flops: 25 s for 100k members at 64 on one core). None:
            0 up to :data:`EXACT_SEARCH_MAX_MEMBERS` members, else :data:`SEARCH_DIMS`.
        num_threads: OpenMP threads of the neighbour search (0: leave implicit / FAISS at their
            defaults, all cores). The result does not depend on it.
    """

    neighbours: int = 300
    alpha: float = 0.7
    dims: int | None = None
    search_dims: int | None = None
    num_threads: int = 1

    def __post_init__(self) -> None:
        require_int("personal_knn", "neighbours", self.neighbours, low=1)
        require_float("personal_knn", "alpha", self.alpha, low=0.0)
        if self.alpha > 1.0:
            raise InvalidInputError(
                f"model 'personal_knn': parameter alpha={self.alpha!r} must be at most 1"
            )
        for name in ("dims", "search_dims"):
            value = getattr(self, name)
            if value is not None:
                require_int("personal_knn", name, value, low=0)
        require_int("personal_knn", "num_threads", self.num_threads, low=0)


class PersonalKNNModel(ServedAsFactors):
    """Own plus neighbours' normalised frequencies, served as member and item vectors."""

    kind = "personal_knn"

    def __init__(self, params: PersonalKNNParams | None = None) -> None:
        self.params = params or PersonalKNNParams()
        self._artifacts: ModelArtifacts | None = None

    def fit(self, data: TrainData) -> None:
        p = self.params
        n_members, n_items = data.n_members, data.n_items
        k = min(p.neighbours, n_members - 1) if p.alpha < 1.0 else 0
        if p.search_dims is not None:
            search_dims = p.search_dims
        else:
            search_dims = 0 if n_members <= EXACT_SEARCH_MAX_MEMBERS else SEARCH_DIMS
        neighbours = member_neighbours(
            data.confidence, k, search_dims=search_dims, num_threads=p.num_threads
        )
        scores = ProductScores(
            sp.csr_matrix(mixing_matrix(neighbours, p.alpha), dtype=np.float32),
            sp.csr_matrix(l1_rows(data.confidence), dtype=np.float32),
        )
        dims = resolve_dims(p.dims, n_members, n_items, TRUNCATED_DIMS)
        form = factor_form(scores, dims, kind=self.kind)
        self._artifacts = ModelArtifacts(
            kind=self.kind,
            params={
                **asdict(p),
                "neighbours_used": k,
                "search_dims_used": search_dims,
                "served_dims": form.dims,
                "exact": form.exact,
            },
            member_vectors=form.member_vectors,
            item_vectors=form.item_vectors,
            exclude_history=False,
        )


def l1_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Each row scaled to sum 1 (empty rows stay empty), float64 CSR."""
    return _scale_rows(matrix, np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel())


def l2_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Each row scaled to unit Euclidean norm (empty rows stay empty), float64 CSR."""
    squares = np.asarray(matrix.multiply(matrix).sum(axis=1), dtype=np.float64).ravel()
    return _scale_rows(matrix, np.sqrt(squares))


def member_neighbours(
    confidence: sp.csr_matrix, k: int, *, search_dims: int = 0, num_threads: int = 1
) -> sp.csr_matrix:
    """``n_members x n_members`` CSR: row u holds the cosine similarities of u's ``k`` nearest
    other members (similarity > 0; ties broken by the lower member index).

    ``search_dims`` 0 (or ``>= n_items``): exact cosine between the rows, by implicit's sparse
    all-pairs kNN. Otherwise cosine between the rows projected on their top ``search_dims``
    right singular vectors, by FAISS's exact inner-product kNN. Both are asked for ``k + 1``
    neighbours because each member is its own nearest.
    """
    n_members, n_items = (int(size) for size in confidence.shape)
    if k <= 0 or n_members < 2 or confidence.nnz == 0:
        return sp.csr_matrix((n_members, n_members), dtype=np.float64)
    unit = l2_rows(sp.csr_matrix(confidence, dtype=np.float64))
    wanted = min(k + 1, n_members)
    if search_dims == 0 or search_dims >= n_items:
        from implicit.nearest_neighbours import all_pairs_knn

        found = all_pairs_knn(
            sp.csr_matrix(unit.T), K=wanted, num_threads=num_threads, show_progress=False
        ).tocoo()
        rows, cols, sims = found.row, found.col, found.data
    else:
        basis = top_right_singular_vectors(
            ProductScores(unit, sp.identity(n_items, dtype=np.float64, format="csr")),
            search_dims,
        )
        embedded = l2_dense(np.asarray(unit @ basis, dtype=np.float32))
        sims, cols = _faiss_knn(embedded, wanted, num_threads)
        rows = np.repeat(np.arange(n_members), wanted)
        sims, cols = sims.ravel(), cols.ravel()
    return _top_k(
        np.asarray(rows, dtype=np.int64),
        np.asarray(cols, dtype=np.int64),
        np.asarray(sims, dtype=np.float64),
        k,
        n_members,
    )


def mixing_matrix(neighbours: sp.csr_matrix, alpha: float) -> sp.csr_matrix:
    """``alpha I + (1 - alpha) W`` with ``W`` the row-wise mean over each member's neighbours
    (members without neighbours keep ``alpha`` on the diagonal only)."""
    n_members = int(neighbours.shape[0])
    counts = np.diff(neighbours.indptr)
    weight = np.divide(
        1.0 - alpha, counts, out=np.zeros(n_members, dtype=np.float64), where=counts > 0
    )
    mean = sp.csr_matrix(
        (np.repeat(weight, counts), neighbours.indices, neighbours.indptr),
        shape=(n_members, n_members),
    )
    result: sp.csr_matrix = sp.csr_matrix(
        mean + alpha * sp.identity(n_members, dtype=np.float64, format="csr")
    )
    return result


def l2_dense(matrix: NDArray[np.float32]) -> NDArray[np.float32]:
    """Rows of a dense float32 matrix scaled to unit norm (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    result: NDArray[np.float32] = np.ascontiguousarray(
        np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0), dtype=np.float32
    )
    return result


def _scale_rows(matrix: sp.csr_matrix, norms: NDArray[np.float64]) -> sp.csr_matrix:
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    result: sp.csr_matrix = sp.csr_matrix(sp.diags(scale) @ matrix, dtype=np.float64)
    return result


def _faiss_knn(
    vectors: NDArray[np.float32], k: int, num_threads: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Exact inner-product kNN of every row among all rows, with FAISS at ``num_threads``
    threads (restored afterwards; 0 leaves FAISS's setting)."""
    import faiss

    before = faiss.omp_get_max_threads()
    if num_threads > 0:
        faiss.omp_set_num_threads(num_threads)
    try:
        sims, ids = faiss.knn(vectors, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    finally:
        faiss.omp_set_num_threads(before)
    return np.asarray(sims, dtype=np.float32), np.asarray(ids, dtype=np.int64)


def _top_k(
    rows: NDArray[np.int64],
    cols: NDArray[np.int64],
    sims: NDArray[np.float64],
    k: int,
    n_members: int,
) -> sp.csr_matrix:
    """The ``k`` largest positive similarities per row, self pairs and padding dropped."""
    keep = (rows != cols) & (cols >= 0) & (sims > 0)
    rows, cols, sims = rows[keep], cols[keep], sims[keep]
    order = np.lexsort((cols, -sims, rows))
    rows, cols, sims = rows[order], cols[order], sims[order]
    top = np.arange(rows.size) - np.searchsorted(rows, rows, side="left") < k
    result: sp.csr_matrix = sp.csr_matrix(
        (sims[top], (rows[top], cols[top])), shape=(n_members, n_members)
    )
    return result
