"""Inner-product vector search over dense ids, with filters for business rules.

:func:`build_index` picks the FAISS index by size and need (:class:`IndexConfig`):

* ``exact`` -- ``IndexFlatIP``: exact top-k, about 0.7 ms per query over 100k item vectors of
  64 dims on one core. The default up to ``exact_max`` vectors, and the right choice whenever
  ``k`` is large (campaign audiences) or recall must be 1.
* ``hnsw`` -- ``IndexHNSWFlat`` with ``METRIC_INNER_PRODUCT``: approximate and much faster on
  large collections. Its recall on raw inner products depends on the vectors (0.98 on 1M ALS
  member vectors but 0.85-0.88 on 100k ALS item vectors at efSearch 64, ARCHITECTURE.md §6):
  measure it against exact search on your own vectors (``benchmarks/bench_index.py``) before
  relying on it.

IVF is deliberately not offered: on raw inner products of recommendation vectors its recall
was 0.16-0.60 (ARCHITECTURE.md §6).

:class:`VectorIndex` wraps either one so that searches take and return numpy arrays of dense
ids (rows of the vectors; map them with :class:`engine.ids.IdMap`) and float32 scores, with
``-1`` / ``-inf`` padding when fewer than ``k`` results exist. An :class:`IdFilter` (allowed
ids minus blocked ids, built once and reused) restricts a search through a FAISS
``IDSelectorBitmap``; when it allows only a few ids the search scores exactly those vectors
instead, which is both exact and faster. :meth:`VectorIndex.search_with_exclusions` handles
per-query exclusions (e.g. what each member already bought) by over-fetching and filtering.

FAISS runs OpenMP threads; on a small shared machine several pools oversubscribe the cores, so
the thread count is set explicitly (:func:`set_threads`, default 1 through :class:`IndexConfig`).
Indexes are saved and loaded through the model bundle (``engine.bundle``); wrap a loaded
``faiss.Index`` with :meth:`VectorIndex.from_faiss`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from engine.errors import InvalidInputError

IndexKind = Literal["exact", "hnsw"]
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

# faiss ships partial type stubs: the Python wrappers used below (IDSelectorBitmap over a numpy
# bitmap, SearchParameters* keyword construction) are not described there.
_faiss_wrappers: Any = faiss

#: A filter allowing at most this many ids is served by scoring exactly those vectors with
#: numpy instead of asking FAISS to skip the others (exact, and fast at this size).
SMALL_FILTER_MAX = 4096


def set_threads(threads: int) -> None:
    """Set FAISS's OpenMP thread count for this process (1 on a shared 2-core machine)."""
    if threads < 1:
        raise InvalidInputError(f"threads must be at least 1, got {threads}")
    faiss.omp_set_num_threads(threads)


@dataclass(frozen=True, slots=True)
class IndexConfig:
    """How to build an index. ``kind="auto"`` is exact up to ``exact_max`` vectors, else HNSW."""

    kind: Literal["auto", "exact", "hnsw"] = "auto"
    exact_max: int = 200_000
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    threads: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "exact", "hnsw"):
            raise InvalidInputError(f"index kind must be auto, exact or hnsw, got {self.kind!r}")
        for name in ("exact_max", "hnsw_m", "ef_construction", "ef_search", "threads"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"IndexConfig.{name} must be positive")

    def resolve(self, n_vectors: int) -> IndexKind:
        if self.kind == "auto":
            return "exact" if n_vectors <= self.exact_max else "hnsw"
        return self.kind


@dataclass(frozen=True, slots=True)
class SearchResult:
    """``ids[i, j]``: dense id of the j-th best match of query i (``-1`` = none, score -inf)."""

    ids: IntArray
    scores: FloatArray


class IdFilter:
    """The dense ids a search may return: built once (e.g. per tier at load time), reused.

    >>> only_active = IdFilter.block([3, 7], size=10)  # everything but ids 3 and 7
    >>> eligible = only_active & IdFilter.allow(range(5), size=10)
    >>> eligible.count
    4
    """

    __slots__ = ("_bitmap", "_ids", "_mask", "_selector")

    def __init__(self, mask: npt.ArrayLike) -> None:
        array = np.asarray(mask)
        if array.ndim != 1 or array.dtype != np.bool_:
            raise InvalidInputError("IdFilter mask must be a 1-D boolean array over all ids")
        self._mask = array.copy()
        self._mask.flags.writeable = False
        self._bitmap = np.packbits(self._mask, bitorder="little")
        self._selector: faiss.IDSelector = _faiss_wrappers.IDSelectorBitmap(self._bitmap)
        self._ids = np.flatnonzero(self._mask).astype(np.int64)

    @staticmethod
    def _ids_mask(ids: npt.ArrayLike, size: int, what: str) -> npt.NDArray[np.bool_]:
        array = np.asarray(ids)
        if array.size and array.dtype.kind not in "iu":
            raise InvalidInputError(f"IdFilter.{what}: ids must be integers, got {array.dtype}")
        array = array.astype(np.int64).ravel()
        if array.size and (array.min() < 0 or array.max() >= size):
            bad = array[(array < 0) | (array >= size)][0]
            raise InvalidInputError(f"IdFilter.{what}: id {int(bad)} is outside 0..{size - 1}")
        mask = np.zeros(size, dtype=bool)
        mask[array] = True
        return mask

    @classmethod
    def allow(cls, ids: npt.ArrayLike, size: int) -> IdFilter:
        """Only ``ids`` (dense, ``0 <= id < size``) may be returned."""
        return cls(cls._ids_mask(ids, size, "allow"))

    @classmethod
    def block(cls, ids: npt.ArrayLike, size: int) -> IdFilter:
        """Everything but ``ids`` may be returned."""
        return cls(~cls._ids_mask(ids, size, "block"))

    def __and__(self, other: IdFilter) -> IdFilter:
        if self.size != other.size:
            raise InvalidInputError(f"cannot combine filters over {self.size} and {other.size} ids")
        return IdFilter(self._mask & other._mask)

    @property
    def size(self) -> int:
        """The number of ids the filter covers (must equal the index size)."""
        return int(self._mask.shape[0])

    @property
    def count(self) -> int:
        """How many ids the filter allows."""
        return int(self._ids.shape[0])

    @property
    def allowed_ids(self) -> IntArray:
        return self._ids

    @property
    def selector(self) -> faiss.IDSelector:
        return self._selector


def build_index(vectors: npt.ArrayLike, config: IndexConfig | None = None) -> VectorIndex:
    """Build an inner-product index over ``vectors`` (n x d, float32); row i gets dense id i."""
    config = config or IndexConfig()
    data = _as_matrix(vectors, None, "vectors")
    n, d = data.shape
    if n == 0:
        raise InvalidInputError("cannot build an index over zero vectors")
    set_threads(config.threads)
    kind = config.resolve(n)
    index: faiss.Index
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
    index.add(data)
    return VectorIndex(index, ef_search=config.ef_search, threads=config.threads)


def _as_matrix(values: npt.ArrayLike, dim: int | None, what: str) -> FloatArray:
    array = np.asarray(values)
    if array.ndim == 1 and what == "queries":
        array = array[None, :]
    if array.ndim != 2:
        raise InvalidInputError(f"{what} must be a 2-D (n x dim) array, got shape {array.shape}")
    if array.dtype.kind not in "fiu":
        raise InvalidInputError(f"{what} must be numeric, got {array.dtype}")
    if dim is not None and array.shape[1] != dim:
        raise InvalidInputError(f"{what} have dimension {array.shape[1]}, the index has {dim}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{what} hold NaN or infinite values")
    return array


class VectorIndex:
    """A FAISS inner-product index over dense ids ``0..size-1`` (exact or HNSW)."""

    __slots__ = ("_ef_search", "_index", "_kind", "_vectors")

    def __init__(
        self, index: faiss.Index, *, ef_search: int | None = None, threads: int = 1
    ) -> None:
        if int(index.metric_type) != faiss.METRIC_INNER_PRODUCT:
            raise InvalidInputError("only inner-product indexes are supported")
        storage: faiss.Index
        if isinstance(index, faiss.IndexHNSWFlat):
            self._kind: IndexKind = "hnsw"
            storage = faiss.downcast_index(index.storage)
            self._ef_search = int(ef_search or index.hnsw.efSearch)
        elif isinstance(index, faiss.IndexFlat):
            self._kind = "exact"
            storage = index
            self._ef_search = 0
        else:
            raise InvalidInputError(
                f"unsupported FAISS index type {type(index).__name__}; use IndexFlatIP or "
                "IndexHNSWFlat (build_index makes them)"
            )
        if self._ef_search < 0:
            raise InvalidInputError(f"ef_search must be positive, got {ef_search}")
        set_threads(threads)
        self._index = index
        n, d = int(index.ntotal), int(index.d)
        # A zero-copy view of the stored vectors; valid as long as the index lives (it does).
        if not isinstance(storage, faiss.IndexFlat):
            raise InvalidInputError(f"HNSW storage is {type(storage).__name__}, not flat vectors")
        vectors = faiss.rev_swig_ptr(storage.get_xb(), n * d) if n else np.zeros(0, np.float32)
        self._vectors: FloatArray = np.asarray(vectors).reshape(n, d)
        self._vectors.flags.writeable = False

    @classmethod
    def from_faiss(
        cls, index: faiss.Index, *, ef_search: int | None = None, threads: int = 1
    ) -> VectorIndex:
        """Wrap an index read from a bundle (``Bundle.indexes[name]``)."""
        return cls(index, ef_search=ef_search, threads=threads)

    @property
    def kind(self) -> IndexKind:
        return self._kind

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def ef_search(self) -> int:
        """HNSW search breadth (0 for exact indexes)."""
        return self._ef_search

    @property
    def faiss_index(self) -> faiss.Index:
        """The underlying index, e.g. to store it in a bundle."""
        return self._index

    @property
    def vectors(self) -> FloatArray:
        """The indexed vectors (read-only view), e.g. to query by an item's own vector."""
        return self._vectors

    def search(
        self, queries: npt.ArrayLike, k: int, *, where: IdFilter | None = None
    ) -> SearchResult:
        """Top-``k`` ids by inner product for each query (a 1-D query counts as one row)."""
        q = _as_matrix(queries, self.dim, "queries")
        if k < 1:
            raise InvalidInputError(f"k must be at least 1, got {k}")
        if where is not None and where.size != self.size:
            raise InvalidInputError(f"filter covers {where.size} ids, the index holds {self.size}")
        if where is not None and where.count <= SMALL_FILTER_MAX:
            return self._score_subset(q, k, where.allowed_ids)
        params = self._params(where.selector if where is not None else None)
        scores, ids = self._index.search(q, k, params=params)
        return _padded(ids, scores)

    def search_with_exclusions(
        self,
        queries: npt.ArrayLike,
        k: int,
        exclude: Sequence[npt.ArrayLike] | Any,
        *,
        where: IdFilter | None = None,
    ) -> SearchResult:
        """Like :meth:`search`, but query ``i`` never returns the ids in ``exclude[i]``.

        ``exclude`` is a sequence of id arrays (one per query) or a sparse matrix with one row
        per query (e.g. rows of the member x item purchase matrix); ids outside the index are
        ignored. The search over-fetches ``k`` plus the longest exclusion list, so an exact
        index always fills ``k`` results when enough ids remain; HNSW may return fewer.
        """
        q = _as_matrix(queries, self.dim, "queries")
        keys = _exclusion_keys(exclude, q.shape[0], self.size)
        longest = int(np.bincount(keys // self.size, minlength=1).max()) if keys.size else 0
        fetch = min(k + longest, self.size) if self.size else k
        found = self.search(q, max(fetch, k), where=where)
        rows = np.arange(q.shape[0], dtype=np.int64)[:, None]
        candidate_keys = rows * self.size + found.ids
        excluded = np.zeros(found.ids.shape, dtype=bool)
        if keys.size:
            pos = np.minimum(np.searchsorted(keys, candidate_keys), keys.size - 1)
            excluded = keys[pos] == candidate_keys
        keep = (found.ids >= 0) & ~excluded
        # Move kept results to the front of each row, preserving their order.
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        kept = np.take_along_axis(keep, order, axis=1)
        ids = np.where(kept, np.take_along_axis(found.ids, order, axis=1), -1)
        scores = np.where(kept, np.take_along_axis(found.scores, order, axis=1), -np.inf)
        return _padded_to(ids, scores.astype(np.float32), k)

    def _params(self, selector: faiss.IDSelector | None) -> faiss.SearchParameters | None:
        params: faiss.SearchParameters
        if self._kind == "hnsw":
            params = _faiss_wrappers.SearchParametersHNSW(efSearch=self._ef_search)
        elif selector is None:
            return None
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector  # the wrapper keeps the selector alive with the params
        return params

    def _score_subset(self, q: FloatArray, k: int, allowed: IntArray) -> SearchResult:
        """Exact top-k among a few allowed ids, scored with one matrix product."""
        n_queries = q.shape[0]
        take = min(k, allowed.size)
        if take == 0:
            return _padded_to(
                np.empty((n_queries, 0), np.int64), np.empty((n_queries, 0), np.float32), k
            )
        scores = q @ self._vectors[allowed].T
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        ids = allowed[np.take_along_axis(top, order, axis=1)]
        return _padded_to(ids, np.take_along_axis(top_scores, order, axis=1), k)


def _padded(ids: npt.NDArray[Any], scores: npt.NDArray[Any]) -> SearchResult:
    ids = ids.astype(np.int64, copy=False)
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    return SearchResult(ids=ids, scores=scores)


def _padded_to(ids: npt.NDArray[Any], scores: npt.NDArray[Any], k: int) -> SearchResult:
    n, have = ids.shape
    if have < k:
        ids = np.hstack([ids, np.full((n, k - have), -1, dtype=np.int64)])
        scores = np.hstack([scores, np.full((n, k - have), -np.inf, dtype=np.float32)])
    return _padded(ids, scores)


def _exclusion_keys(exclude: Any, n_queries: int, size: int) -> IntArray:
    """Sorted unique keys ``row * size + id`` of the excluded (query, id) pairs."""
    if sp.issparse(exclude):
        csr = sp.csr_array(exclude)
        if csr.shape[0] != n_queries:
            raise InvalidInputError(
                f"exclude has {csr.shape[0]} rows, there are {n_queries} queries"
            )
        rows = np.repeat(np.arange(n_queries, dtype=np.int64), np.diff(csr.indptr))
        ids = csr.indices.astype(np.int64)
    elif isinstance(exclude, Sequence) and not isinstance(exclude, str | bytes):
        if len(exclude) != n_queries:
            raise InvalidInputError(
                f"exclude has {len(exclude)} entries, there are {n_queries} queries"
            )
        parts = [np.asarray(part, dtype=np.int64).ravel() for part in exclude]
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=n_queries)
        rows = np.repeat(np.arange(n_queries, dtype=np.int64), lengths)
        ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    else:
        raise InvalidInputError(
            "exclude must be a sequence of id arrays (one per query) or a sparse matrix, "
            f"got {type(exclude).__name__}"
        )
    inside = (ids >= 0) & (ids < size)
    return np.unique(rows[inside] * size + ids[inside])
