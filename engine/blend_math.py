"""Shared pieces of the retail blend (:mod:`engine.blend`): the weights, the ranking type,
the source codes, the bundle names and the vectorized helpers that :mod:`engine.blend`,
:mod:`engine.blend_precompute` and :mod:`engine.bundle_recommender` use (kept here so that none
of them imports another in a cycle).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from engine.errors import InvalidInputError

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
SourceArray = npt.NDArray[np.int8]

#: Source codes of :attr:`Ranking.sources` (``-1`` pads empty slots).
SOURCES: tuple[str, ...] = ("model", "buy_again", "trending", "popular")
SOURCE_MODEL, SOURCE_BUY_AGAIN, SOURCE_TRENDING, SOURCE_POPULAR = range(4)

#: Names a bundle written for a :class:`BundleRecommender` uses.
BUY_AGAIN = "buy_again"
TRENDING = "trending"
ITEM_INDEX = "items"
MANIFEST_KEY = "blend"

#: Candidate pairs whose embedding scores are computed in one vectorized step (bounds memory).
_PAIRS_PER_CHUNK = 262_144
#: Members ranked per batch; a batch is shrunk when its members have long histories.
_BATCH = 2048
_MAX_CELLS = 1_500_000


@dataclass(frozen=True, slots=True)
class BlendWeights:
    """Weights of the three terms and the size of the candidate set.

    Attributes:
        embedding: weight of the max-normalised embedding score.
        buy_again: weight of the row-normalised buy-again history.
        trending: weight of the trending prior.
        candidates: best items by embedding score taken as candidates (0: none).
        trending_candidates: top trending items taken as candidates (0: none).
    """

    embedding: float = 1.0
    buy_again: float = 0.75
    trending: float = 0.4
    candidates: int = 200
    trending_candidates: int = 100

    def __post_init__(self) -> None:
        for name in ("embedding", "buy_again", "trending"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not np.isfinite(value)
                or value < 0
            ):
                raise InvalidInputError(
                    f"blend weight {name} is {value!r}; it must be a finite number >= 0"
                )
        for name in ("candidates", "trending_candidates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInputError(f"blend {name} is {value!r}; it must be an integer >= 0")

    def as_dict(self) -> dict[str, float | int]:
        """JSON-able form (what a bundle manifest stores under ``"blend"``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BlendWeights:
        """Inverse of :meth:`as_dict`; raises :class:`InvalidInputError` naming unknown keys."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInputError(
                f"blend weights: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
            )
        return cls(**dict(values))


@dataclass(frozen=True, slots=True)
class Ranking:
    """Top-k per member, best first. Empty slots hold item ``-1``, score ``-inf``, source ``-1``.

    ``items`` are dense item indexes, ``sources`` codes into :data:`SOURCES`.
    """

    items: IntArray
    scores: FloatArray
    sources: SourceArray

    def __len__(self) -> int:
        return int(self.items.shape[0])


# -- helpers ---------------------------------------------------------------------------------------


def _matrix(name: str, values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values)
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise InvalidInputError(
            f"blend: {name} must be a 2-D numeric array, got shape {array.shape} and dtype "
            f"{array.dtype}"
        )
    result: FloatArray = np.ascontiguousarray(array, dtype=np.float32)
    return result


def _history(history: Any, n_members: int, n_items: int) -> sp.csr_matrix:
    if not (sp.issparse(history) and history.format == "csr"):
        raise InvalidInputError(
            f"blend: history must be a CSR matrix (members x items), got {type(history).__name__}"
        )
    if history.shape != (n_members, n_items):
        raise InvalidInputError(
            f"blend: history has shape {history.shape}; expected ({n_members}, {n_items})"
        )
    csr = sp.csr_matrix(
        (np.asarray(history.data, dtype=np.float32), history.indices, history.indptr),
        shape=history.shape,
    )
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    if csr.nnz and float(csr.data.min()) < 0:
        raise InvalidInputError("blend: history holds negative weights; clip them to 0 first")
    return csr


def _trending(values: npt.ArrayLike, n_items: int) -> FloatArray:
    array = np.asarray(values, dtype=np.float32)
    if array.shape != (n_items,):
        raise InvalidInputError(
            f"blend: trending has shape {array.shape}; expected ({n_items},), one per item"
        )
    if not np.isfinite(array).all() or (array.size and float(array.min()) < 0):
        raise InvalidInputError("blend: trending must hold finite values >= 0")
    return array


def _rows(member_rows: npt.ArrayLike, n_members: int) -> IntArray:
    rows = np.asarray(member_rows)
    if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
        raise InvalidInputError(
            f"blend: member rows must be a 1-D integer array, got shape {rows.shape} and "
            f"dtype {rows.dtype}"
        )
    result = rows.astype(np.int64, copy=False)
    if result.size and (result.min() < 0 or result.max() >= n_members):
        bad = result[(result < 0) | (result >= n_members)][0]
        raise InvalidInputError(f"blend: member row {int(bad)} is outside 0..{n_members - 1}")
    return result


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")


def _batch_stop(lengths: IntArray, start: int, fixed: int) -> int:
    """End of the batch starting at ``start``: at most _BATCH members and about _MAX_CELLS
    candidate cells (members with long histories make wide candidate rows)."""
    stop = min(start + _BATCH, lengths.size)
    widest = np.maximum.accumulate(lengths[start:stop]) + fixed
    cells = widest * np.arange(1, stop - start + 1)
    fits = np.flatnonzero(cells <= _MAX_CELLS)
    return start + (int(fits[-1]) + 1 if fits.size else 1)


def _padded_rows(csr: sp.csr_matrix) -> IntArray:
    """The column indexes of each CSR row, left-aligned in a ``-1``-padded 2-D array."""
    lengths = np.diff(csr.indptr)
    width = int(lengths.max()) if lengths.size else 0
    out = np.full((csr.shape[0], width), -1, dtype=np.int64)
    if csr.nnz:
        rows = np.repeat(np.arange(csr.shape[0]), lengths)
        cols = np.arange(csr.nnz) - np.repeat(csr.indptr[:-1], lengths)
        out[rows, cols] = csr.indices
    return out


def _unique_per_row(
    candidates: npt.NDArray[Any], values: FloatArray
) -> tuple[IntArray, FloatArray]:
    """Sort each row by item (carrying ``values``) and blank out repeats with -1."""
    order = np.argsort(candidates, axis=1, kind="stable")
    ordered = np.take_along_axis(candidates.astype(np.int64), order, axis=1)
    carried = np.take_along_axis(values, order, axis=1)
    if ordered.shape[1] > 1:
        repeat = ordered[:, 1:] == ordered[:, :-1]
        ordered[:, 1:][repeat] = -1
    return ordered, carried


def _history_scores(
    queries: FloatArray, items: FloatArray, history: sp.csr_matrix, width: int
) -> FloatArray:
    """Embedding scores of each member's history items, laid out like :func:`_padded_rows`."""
    lengths = np.diff(history.indptr)
    rows = np.repeat(np.arange(history.shape[0]), lengths)
    cols = np.arange(history.nnz) - np.repeat(history.indptr[:-1], lengths)
    out = np.zeros((history.shape[0], width), dtype=np.float32)
    for start in range(0, history.nnz, _PAIRS_PER_CHUNK):
        stop = start + _PAIRS_PER_CHUNK
        out[rows[start:stop], cols[start:stop]] = np.einsum(
            "pd,pd->p", queries[rows[start:stop]], items[history.indices[start:stop]]
        )
    return out


def _lookup(csr: sp.csr_matrix, rows: npt.NDArray[Any], cols: npt.NDArray[Any]) -> FloatArray:
    """``csr[rows, cols]`` elementwise (broadcast), 0 where absent, by binary search over the
    sorted keys ``row * n_cols + col`` of the stored entries."""
    wanted = np.asarray(rows, dtype=np.int64) * csr.shape[1] + cols
    values = np.zeros(wanted.shape, dtype=np.float32)
    if csr.nnz == 0 or wanted.size == 0:
        return values
    lengths = np.diff(csr.indptr)
    keys = np.repeat(np.arange(csr.shape[0], dtype=np.int64), lengths) * csr.shape[1]
    keys += csr.indices
    pos = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
    found = keys[pos] == wanted
    values[found] = csr.data[pos[found]]
    return values


def _top_k(
    candidates: IntArray,
    scores: FloatArray,
    sources: SourceArray,
    k: int,
    blocked: npt.NDArray[np.bool_],
) -> Ranking:
    """The ``k`` best scored candidates per row that are not ``blocked``, best first (ties:
    lower item index first)."""
    scores = np.where(blocked, np.float32(-np.inf), scores)
    n_rows, width = candidates.shape
    take = min(k, width)
    if take == 0:
        return _empty(n_rows, k)
    if width > take:
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
    else:
        part = np.broadcast_to(np.arange(width), (n_rows, width))
    top_scores = np.take_along_axis(scores, part, axis=1)
    top_items = np.take_along_axis(candidates, part, axis=1)
    order = np.lexsort((top_items, -top_scores), axis=1)
    items = np.take_along_axis(top_items, order, axis=1)
    best = np.take_along_axis(top_scores, order, axis=1)
    src = np.take_along_axis(np.take_along_axis(sources, part, axis=1), order, axis=1)
    empty = ~np.isfinite(best)
    items = np.where(empty, -1, items)
    best = np.where(empty, -np.inf, best).astype(np.float32)
    src = np.where(empty, -1, src).astype(np.int8)
    if take < k:
        pad = k - take
        items = np.hstack([items, np.full((n_rows, pad), -1, dtype=np.int64)])
        best = np.hstack([best, np.full((n_rows, pad), -np.inf, dtype=np.float32)])
        src = np.hstack([src, np.full((n_rows, pad), -1, dtype=np.int8)])
    return Ranking(items=items.astype(np.int64), scores=best, sources=src)


def _concat(parts: list[Ranking], k: int) -> Ranking:
    if not parts:
        return _empty(0, k)
    return Ranking(
        items=np.concatenate([p.items for p in parts]),
        scores=np.concatenate([p.scores for p in parts]),
        sources=np.concatenate([p.sources for p in parts]),
    )


def _empty(n: int, k: int) -> Ranking:
    return Ranking(
        items=np.full((n, k), -1, dtype=np.int64),
        scores=np.full((n, k), -np.inf, dtype=np.float32),
        sources=np.full((n, k), -1, dtype=np.int8),
    )


def _assign(target: Ranking, mask: npt.NDArray[np.bool_], part: Ranking) -> None:
    target.items[mask] = part.items
    target.scores[mask] = part.scores
    target.sources[mask] = part.sources


__all__ = [
    "BUY_AGAIN",
    "ITEM_INDEX",
    "MANIFEST_KEY",
    "SOURCES",
    "SOURCE_BUY_AGAIN",
    "SOURCE_MODEL",
    "SOURCE_POPULAR",
    "SOURCE_TRENDING",
    "TRENDING",
    "BlendWeights",
    "FloatArray",
    "IntArray",
    "Ranking",
    "SourceArray",
]
