"""Exact building blocks of :func:`engine.blend_precompute.precompute` (every member's list).

Scoring every member against every item is what made the precompute slow: 1M members x 100k
items x 64 dims is 1.3e13 flops before any ranking. Two exact shortcuts avoid most of it:

* :class:`NormOrderedItems` finds each member's ``k`` best items by inner product without
  scoring most items. Items are sorted by vector norm (recommendation vectors have very skewed
  norms: popular items are long) and scanned in blocks; ``q . x <= |q| |x|``, so once a block's
  largest norm times ``|q|`` cannot beat the member's current ``(k+1)``-th best score, neither
  can any later block. Scores are those of one large BLAS product, as the FAISS flat index
  computes them for large batches (FAISS's last bits vary with its batch size; these do not).
* :func:`capped_top` ranks dense candidate rows (best score first, ties: lower item first)
  under a per-category cap, sorting only the head of each row when the head decides it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import faiss
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: A computed float32 dot product of ``d`` terms exceeds ``|q| |x|`` by less than
#: ``d * 2**-24`` of it (and so do the computed norms): the bound allows twice ``d * eps``.
_EPS = float(np.finfo(np.float32).eps)


@contextmanager
def faiss_threads(threads: int) -> Iterator[None]:
    """FAISS's OpenMP thread count for the calling thread, restored on exit (each worker of a
    thread pool has its own setting; an unset one uses every core and oversubscribes)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


#: Rows a matrix product is padded to: OpenBLAS picks other kernels for small products, whose
#: last-bit rounding differs; padded, every batch size gets the floats of a large product.
_MIN_PRODUCT_ROWS = 32


def product(a: FloatArray, b: FloatArray, buffer: FloatArray | None = None) -> FloatArray:
    """``a @ b.T`` (float32), in ``buffer`` when it is large enough, with the rounding of a
    large product whatever the number of rows of ``a``."""
    n, m = int(a.shape[0]), int(b.shape[0])
    if 1 <= n < _MIN_PRODUCT_ROWS:
        padded = np.zeros((_MIN_PRODUCT_ROWS, a.shape[1]), dtype=np.float32)
        padded[:n] = a
        return (padded @ b.T)[:n]
    if buffer is None or buffer.size < n * m:
        out: FloatArray = a @ b.T
        return out
    out = buffer[: n * m].reshape(n, m)
    np.matmul(a, b.T, out=out)
    return out


class NormOrderedItems:
    """Item vectors sorted by norm, for exact top-k inner-product search that skips the items
    whose norm cannot reach a query's current ``(k+1)``-th best score.

    Args:
        vectors: ``n x d`` float32 item vectors (row ``i`` is item ``i``).
        first: items (the longest) scored for every query to start from.
        block: items per later block, scored for the queries the norm bound cannot rule out.
    """

    def __init__(self, vectors: FloatArray, *, first: int = 1024, block: int = 1024) -> None:
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
        self._order: IntArray = np.argsort(-norms, kind="stable").astype(np.int64)
        self._sorted: FloatArray = np.ascontiguousarray(vectors[self._order], dtype=np.float32)
        n = int(vectors.shape[0])
        bounds = [0, min(n, max(first, 1))]
        while bounds[-1] < n:
            bounds.append(min(n, bounds[-1] + max(block, 1)))
        self._bounds = np.asarray(bounds, dtype=np.int64)
        self._block = max(block, 1)
        self._slack = 1.0 + 2.0 * int(vectors.shape[1]) * _EPS
        #: norms in sorted order (non-increasing)
        self._norms = norms[self._order]
        self._scratch = threading.local()

    @property
    def size(self) -> int:
        return int(self._sorted.shape[0])

    def search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IntArray, FloatArray]:
        """``(scores, ids, rest)``: each query's ``k`` best items (unordered; ties at the
        ``k``-th score broken arbitrarily) and their scores, and ``rest``, the ``(k+1)``-th
        best score: no other item scores above it (``-inf`` when no other item exists)."""
        n_q, n = int(queries.shape[0]), self.size
        if k >= n:  # every item
            scores = product(queries, self._sorted)
            rest = np.full(n_q, -np.inf, dtype=np.float32)
            return scores, np.broadcast_to(self._order, scores.shape).copy(), rest
        take = k + 1
        first = max(int(self._bounds[1]), take)
        limit = np.linalg.norm(queries, axis=1).astype(np.float64) * self._slack
        head_scores = np.zeros((n_q, take), dtype=np.float32)  # a zero query scores 0 everywhere
        head_ids = np.broadcast_to(self._order[:take], (n_q, take)).copy()
        moving = np.flatnonzero(limit > 0)
        buffer = self._buffer(moving.size * max(first, self._block))
        if moving.size:  # the best of the longest items
            scored = product(queries[moving], self._sorted[:first], buffer)
            best = np.argpartition(scored, first - take, axis=1)[:, first - take :]
            head_scores[moving] = np.take_along_axis(scored, best, axis=1)
            head_ids[moving] = self._order[best]
        threshold = head_scores.min(axis=1)  # the take-th best so far
        block = int(np.searchsorted(self._bounds, first, side="right")) - 1
        lo = first
        active = moving[limit[moving] * self._norm_at(lo) > threshold[moving]]
        while active.size and lo < n:
            hi = min(n, int(self._bounds[block + 1]))
            scored = product(queries[active], self._sorted[lo:hi], buffer)
            hit = scored.max(axis=1) > threshold[active]
            if hit.any():
                rows = active[hit]
                hits = scored[hit]
                row, col = np.nonzero(hits > threshold[rows, None])
                head_scores[rows], head_ids[rows] = _merge_hits(
                    head_scores[rows], head_ids[rows], row, self._order[lo + col], hits[row, col]
                )
                threshold[rows] = head_scores[rows].min(axis=1)
            block, lo = block + 1, hi
            active = active[limit[active] * self._norm_at(lo) > threshold[active]]
        last = np.argmin(head_scores, axis=1)[:, None]  # move the (k+1)-th to the end
        rest = np.take_along_axis(head_scores, last, axis=1)[:, 0].copy()
        np.put_along_axis(head_scores, last, head_scores[:, k : k + 1], axis=1)
        np.put_along_axis(head_ids, last, head_ids[:, k : k + 1], axis=1)
        return head_scores[:, :k], head_ids[:, :k], rest

    def _buffer(self, size: int) -> FloatArray:
        """This thread's scratch space for block products (kept: allocating 10+ MB afresh
        for every batch costs page faults)."""
        buffer: FloatArray | None = getattr(self._scratch, "buffer", None)
        if buffer is None or buffer.size < size:
            buffer = np.empty(size, dtype=np.float32)
            self._scratch.buffer = buffer
        return buffer

    def _norm_at(self, position: int) -> float:
        """The largest norm from sorted position ``position`` on (0 past the end)."""
        return float(self._norms[position]) if position < self.size else 0.0


def _merge_hits(
    scores: FloatArray, ids: IntArray, rows: IntArray, hit_ids: IntArray, hit_scores: FloatArray
) -> tuple[FloatArray, IntArray]:
    """The best ``scores.shape[1]`` (unordered) of each row's entries plus its hits (``rows``:
    the row of each hit, ascending)."""
    n_rows, take = scores.shape
    counts = np.bincount(rows, minlength=n_rows)
    cols = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    extra = int(counts.max(initial=0))
    all_scores = np.full((n_rows, take + extra), -np.inf, dtype=np.float32)
    all_ids = np.full((n_rows, take + extra), -1, dtype=np.int64)
    all_scores[:, :take], all_ids[:, :take] = scores, ids
    all_scores[rows, take + cols], all_ids[rows, take + cols] = hit_scores, hit_ids
    best = np.argpartition(-all_scores, take - 1, axis=1)[:, :take]
    return np.take_along_axis(all_scores, best, axis=1), np.take_along_axis(all_ids, best, axis=1)


def capped_top(
    items: IntArray,
    scores: FloatArray,
    width: int,
    codes: IntArray | None,
    per_category: int | None,
    *,
    depth: int | None = None,
) -> tuple[IntArray, IntArray]:
    """Each row's first ``width`` candidates in blend order (score descending, ties: lower item
    first) keeping at most ``per_category`` of any category (``codes[item]``; ``-1``: never
    capped): ``(positions, counts)``, the column of each chosen entry (``-1`` padded) and how
    many. Entries scored ``-inf`` are not candidates; a row holds distinct items.

    Only the best ``depth`` entries of a row are sorted first (default: enough for the usual
    row); rows that head cannot decide (it ends before ``width`` items are kept, or its last
    kept item ties with an entry left out) are sorted whole.
    """
    n_rows, n_cols = scores.shape
    cap = None if codes is None or per_category is None else (codes, per_category)
    if depth is None:
        depth = width + width // 2 + 1 if cap is not None else width + 1
    positions = np.full((n_rows, width), -1, dtype=np.int64)
    counts = np.zeros(n_rows, dtype=np.int64)
    todo = np.arange(n_rows)
    while todo.size:
        depth = min(n_cols, max(depth, 1))
        part_scores, part_items = (
            (scores, items) if todo.size == n_rows else (scores[todo], items[todo])
        )
        if depth < n_cols:
            head = np.argpartition(part_scores, n_cols - depth, axis=1)[:, n_cols - depth :]
        else:
            head = np.broadcast_to(np.arange(n_cols), (todo.size, n_cols))
        head_scores = np.take_along_axis(part_scores, head, axis=1)
        head_items = np.take_along_axis(part_items, head, axis=1)
        order = np.argsort(_order_keys(head_scores, head_items), axis=1)
        head = np.take_along_axis(head, order, axis=1)
        head_scores = np.take_along_axis(head_scores, order, axis=1)
        kept = head_scores > -np.inf
        if cap is not None:
            ordered = np.take_along_axis(head_items, order, axis=1)
            item_codes = np.where(kept, cap[0][np.where(kept, ordered, 0)], -1)
            kept &= (_rank_in_row(item_codes, kept) < cap[1]) | (item_codes < 0)
        position = np.cumsum(kept, axis=1) - 1
        chosen = kept & (position < width)
        found = chosen.sum(axis=1)
        decided = np.ones(todo.size, dtype=np.bool_)
        if depth < n_cols:  # what the head left out scores at most its last entry
            last = np.where(chosen, head_scores, np.inf).min(axis=1)
            floor = head_scores[:, -1]
            decided = (floor == -np.inf) | ((found == width) & (last > floor))
        row, col = np.nonzero(chosen & decided[:, None])
        positions[todo[row], position[row, col]] = head[row, col]
        counts[todo[decided]] = found[decided]
        todo, depth = todo[~decided], n_cols
    return positions, counts


def _order_keys(scores: FloatArray, items: IntArray) -> IntArray:
    """int64 keys sorting entries by score descending, then item ascending (as
    ``np.lexsort((items, -scores))`` does, in one argsort; ``-0.0`` counts as ``0.0``)."""
    bits = (scores + np.float32(0.0)).view(np.int32)  # + 0.0 turns -0.0 into 0.0
    ascending = np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits)  # int order = float order
    high = np.invert(ascending).astype(np.int64) * (1 << 32)  # descending scores
    return high | np.where(items >= 0, items, 0x7FFFFFFF).astype(np.int64)


def _rank_in_row(codes: IntArray, valid: BoolArray) -> IntArray:
    """For each entry, how many earlier valid entries of its row share its code."""
    n_rows, n_cols = codes.shape
    keys = np.where(valid, codes + 1, int(codes.max(initial=0)) + 2)
    small = np.int16 if keys.max(initial=0) < np.iinfo(np.int16).max else np.int64
    keys = keys.astype(small)
    order = np.argsort(keys, axis=1, kind="stable")
    ordered = np.take_along_axis(keys, order, axis=1)
    column = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    starts = np.ones((n_rows, n_cols), dtype=np.bool_)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group_start = np.maximum.accumulate(np.where(starts, column, 0), axis=1)
    within = np.empty((n_rows, n_cols), dtype=np.int64)
    np.put_along_axis(within, order, column - group_start, axis=1)
    return within


__all__ = ["NormOrderedItems", "capped_top", "faiss_threads", "product"]
