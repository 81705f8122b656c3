"""The retail blend: embedding score + buy-again + trending, ranked over a candidate set.

Repeat purchases dominate retail baskets, so the final ranker mixes what the embedding model
predicts with what the member already buys and what is selling now. For member ``u`` and a
candidate item ``i``::

    score(u, i) = w_embedding * max(0, s(u, i)) / max_j s(u, j)      # embedding, max-normalised
                + w_buy_again * h(u, i) / max_j h(u, j)               # buy again, row-normalised
                + w_trending  * t(i)                                  # trending prior in [0, 1]

* ``s(u, i) = member_vectors[u] . item_vectors[i]``; the divisor is the member's best embedding
  score (the top candidate of the item index). A member whose best score is <= 0 gets 0.
* ``h`` is the member's buy-again history (members x items CSR, e.g. purchase lines weighted by
  recency); ``t`` is a per-item trending array already scaled to [0, 1] (the trainer stores
  ``log1p(recent distinct buyers) / max``).
* Candidates are the member's ``candidates`` best items by embedding score (searched in a FAISS
  index, :mod:`engine.index`), every item in the member's history, and the ``trending_candidates``
  items with the highest positive trending value. Other items are not ranked.
* ``exclude_purchased`` ranks only items outside the member's history ("new", discovery).

Each recommended item carries a *source*: the term with the largest weighted contribution
(``model``, ``buy_again`` or ``trending``; ties in that order), or ``popular`` for members the
model does not know (ranked by the trending array alone).

:class:`Blender` does the arithmetic on dense member rows; evaluation (training), serving and
batch export all rank through it. :class:`BundleRecommender` builds one from a model bundle
(:mod:`engine.bundle`) and maps external ids, needing neither implicit nor LightFM. Everything is
vectorized over a batch of members: no Python loop over members or items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from engine.bundle import Bundle, read_bundle
from engine.errors import BundleError, InvalidInputError
from engine.ids import IdMap, IdsLike
from engine.index import IndexConfig, VectorIndex, build_index
from engine.ranking import rank_within

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


@dataclass(frozen=True, slots=True)
class PrecomputedCandidates:
    """Each member's top ``width`` items by the blend without exclusions (``-1`` padded), as
    stored in a bundle (arrays :data:`PRECOMPUTED_ARRAYS`): serving applies the business rules
    to these lists and searches only for members whose lists fall short or who changed since."""

    items: npt.NDArray[np.int32]
    scores: FloatArray
    sources: SourceArray
    #: at most this many items of one category per list (None: the plain top ``width``)
    per_category: int | None = None

    @property
    def width(self) -> int:
        return int(self.items.shape[1])

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        names = PRECOMPUTED_ARRAYS
        return {names[0]: self.items, names[1]: self.scores, names[2]: self.sources}


#: Bundle array names of :class:`PrecomputedCandidates` (items, scores, sources).
PRECOMPUTED_ARRAYS: tuple[str, str, str] = (
    "candidates_items",
    "candidates_scores",
    "candidates_sources",
)


class Blender:
    """Ranks items for dense member rows with the retail blend (see the module docstring).

    Args:
        member_vectors: ``n_members x d`` float32.
        item_vectors: ``n_items x d`` float32.
        history: ``n_members x n_items`` CSR buy-again weights (non-negative); its non-zero
            cells are the member's purchased items.
        trending: ``n_items`` trending prior in [0, 1].
        weights: the blend weights.
        index: an inner-product index over ``item_vectors`` for the embedding candidates; built
            (exact) when not given.
    """

    def __init__(
        self,
        member_vectors: npt.ArrayLike,
        item_vectors: npt.ArrayLike,
        history: Any,
        trending: npt.ArrayLike,
        weights: BlendWeights,
        *,
        index: VectorIndex | None = None,
    ) -> None:
        members = _matrix("member_vectors", member_vectors)
        items = _matrix("item_vectors", item_vectors)
        if members.shape[1] != items.shape[1]:
            raise InvalidInputError(
                f"blend: member vectors have {members.shape[1]} dimensions, item vectors "
                f"{items.shape[1]}"
            )
        n_members, n_items = members.shape[0], items.shape[0]
        self._history = _history(history, n_members, n_items)
        self._trending = _trending(trending, n_items)
        self.weights = weights
        self._members = members
        self._items = items
        if index is not None and (index.size != n_items or index.dim != items.shape[1]):
            raise InvalidInputError(
                f"blend: the item index holds {index.size} vectors of dimension {index.dim}; "
                f"expected {n_items} of dimension {items.shape[1]}"
            )
        if index is None and n_items and weights.embedding > 0 and weights.candidates > 0:
            index = build_index(items, IndexConfig(kind="exact"))
        self._index = index
        row_max = self._history.max(axis=1)
        self._history_max = np.asarray(row_max.toarray(), dtype=np.float32).ravel()
        positive = np.flatnonzero(self._trending > 0)
        order = positive[np.argsort(-self._trending[positive], kind="stable")]
        self._trending_top = order[: weights.trending_candidates].astype(np.int64)
        self._popular_order = np.argsort(-self._trending, kind="stable").astype(np.int64)

    @property
    def n_members(self) -> int:
        return int(self._members.shape[0])

    @property
    def n_items(self) -> int:
        return int(self._items.shape[0])

    @property
    def history(self) -> sp.csr_matrix:
        """The buy-again history (members x items CSR, canonical)."""
        return self._history

    def rank(
        self, member_rows: npt.ArrayLike, k: int, *, exclude_purchased: bool = False
    ) -> Ranking:
        """The top ``k`` blended items of each member row (``0 <= row < n_members``)."""
        return self._rank(member_rows, k, (exclude_purchased,))[0]

    def rank_both(self, member_rows: npt.ArrayLike, k: int) -> tuple[Ranking, Ranking]:
        """(all, new): :meth:`rank` without and with ``exclude_purchased``, from one scoring
        of the candidates (what evaluation needs, at the cost of one search)."""
        both = self._rank(member_rows, k, (False, True))
        return both[0], both[1]

    def _rank(
        self, member_rows: npt.ArrayLike, k: int, variants: tuple[bool, ...]
    ) -> list[Ranking]:
        rows = _rows(member_rows, self.n_members)
        _check_k(k)
        parts: list[list[Ranking]] = [[] for _ in variants]
        start = 0
        indptr = self._history.indptr  # history lengths of the requested rows only
        lengths = (indptr[rows + 1] - indptr[rows]).astype(np.int64)
        fixed = self._fixed_width()
        while start < rows.size:
            stop = _batch_stop(lengths, start, fixed)
            candidates, scores, sources, bought = self._score_batch(rows[start:stop])
            for part, exclude in zip(parts, variants, strict=True):
                blocked = (candidates < 0) | bought if exclude else candidates < 0
                part.append(_top_k(candidates, scores, sources, k, blocked))
            start = stop
        return [_concat(part, k) for part in parts]

    def precompute(
        self,
        width: int,
        *,
        categories: npt.ArrayLike | None = None,
        per_category: int | None = None,
        chunk: int = 4_096,
        threads: int = 1,
        progress: Callable[[int], None] | None = None,
    ) -> PrecomputedCandidates:
        """Every member's blended items, best first, for serving to read instead of searching
        (:class:`PrecomputedCandidates`): the first ``width`` of the member's whole candidate
        set in blend order, keeping at most ``per_category`` items of any one category
        (``categories``: a code per item, ``-1`` for none, never capped). Without the cap a
        list is the plain top ``width``; with it a list reaches further down the ranking, so
        the serving diversity cap rarely exhausts it. Computed ``chunk`` members at a time, on
        ``threads`` threads (FAISS and the large numpy steps release the GIL); ``progress`` is
        told how many members are done."""
        _check_k(width)
        codes = None
        if per_category is not None:
            if per_category < 1 or categories is None:
                raise InvalidInputError(
                    "precompute: per_category must be at least 1 and needs the item categories"
                )
            codes = np.asarray(categories, dtype=np.int64)
            if codes.shape != (self.n_items,):
                raise InvalidInputError(
                    f"precompute: categories has shape {codes.shape}; expected ({self.n_items},)"
                )
        n = self.n_members
        items = np.full((n, width), -1, dtype=np.int32)
        scores = np.zeros((n, width), dtype=np.float32)
        sources = np.full((n, width), -1, dtype=np.int8)
        indptr = self._history.indptr
        code_groups = 0 if codes is None else int(codes.max(initial=0)) + 2

        def fill(start: int) -> int:
            stop = min(n, start + chunk)
            rows = np.arange(start, stop, dtype=np.int64)
            depth = width
            if codes is not None:  # the whole candidate set, then the cap
                longest = int((indptr[start + 1 : stop + 1] - indptr[start:stop]).max())
                depth = max(width, min(self.n_items, self._fixed_width() + longest))
            ranking = self.rank(rows, depth)
            ranked, taken = ranking.items, ranking.items >= 0
            if codes is not None and per_category is not None:
                flat = np.flatnonzero(taken.ravel())
                item_codes = codes[ranked.ravel()[flat]]
                groups = (flat // depth) * code_groups + item_codes + 1
                capped = (rank_within(groups) >= per_category) & (item_codes >= 0)
                taken.ravel()[flat[capped]] = False
            flat = np.flatnonzero(taken.ravel())
            row_of, position = flat // depth, rank_within(flat // depth)
            keep = position < width
            flat, row_of, position = flat[keep], row_of[keep], position[keep]
            items[start + row_of, position] = ranked.ravel()[flat]  # disjoint rows per chunk
            scores[start + row_of, position] = ranking.scores.ravel()[flat]
            sources[start + row_of, position] = ranking.sources.ravel()[flat]
            return stop

        starts = range(0, n, chunk)
        done: Iterator[int]
        if threads <= 1:
            done = map(fill, starts)
        else:
            pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="precompute")
            done = pool.map(fill, starts)
        try:
            for stop in done:
                if progress is not None:
                    progress(stop)
        finally:
            if threads > 1:
                pool.shutdown(wait=True)
        return PrecomputedCandidates(
            items=items, scores=scores, sources=sources, per_category=per_category
        )

    def popular(self, n: int, k: int) -> Ranking:
        """The fallback ranking for ``n`` members the model does not know: by trending alone."""
        _check_k(k)
        take = min(k, self.n_items)
        items = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        sources = np.full((n, k), -1, dtype=np.int8)
        top = self._popular_order[:take]
        items[:, :take] = top
        scores[:, :take] = self._trending[top]
        sources[:, :take] = SOURCE_POPULAR
        return Ranking(items=items, scores=scores, sources=sources)

    # -- one batch ---------------------------------------------------------------------------

    def _fixed_width(self) -> int:
        searched = self._searched_candidates()
        return searched + int(self._trending_top.size)

    def _searched_candidates(self) -> int:
        if self._index is None or self.weights.embedding <= 0:
            return 0
        return min(self.weights.candidates, self.n_items)

    def _score_batch(
        self, rows: IntArray
    ) -> tuple[IntArray, FloatArray, SourceArray, npt.NDArray[np.bool_]]:
        """Candidates (-1 padded), their blended scores and sources, and which are bought."""
        w = self.weights
        n_rows = rows.shape[0]
        queries = self._members[rows]
        history = self._history[rows]
        # candidate blocks (item ids, -1 padded) with their raw embedding scores
        ids: list[IntArray] = []
        raw: list[FloatArray] = []
        top_score = np.zeros(n_rows, dtype=np.float32)  # divisor of the max-normalisation
        searched = self._searched_candidates()
        if searched and self._index is not None:
            found = self._index.search(queries, searched)
            ids.append(found.ids)
            raw.append(np.where(found.ids >= 0, found.scores, 0.0).astype(np.float32))
            top_score = np.where(found.ids[:, 0] >= 0, found.scores[:, 0], 0.0).astype(np.float32)
        elif w.embedding > 0 and self.n_items:
            # no candidate search: the best score still normalises (one product per member)
            top_score = (queries @ self._items.T).max(axis=1).astype(np.float32)
        if self._trending_top.size:
            ids.append(np.broadcast_to(self._trending_top, (n_rows, self._trending_top.size)))
            raw.append(queries @ self._items[self._trending_top].T)
        bought, bought_raw = _padded_rows(history), None
        if w.embedding > 0:
            bought_raw = _history_scores(queries, self._items, history, bought.shape[1])
        ids.append(bought)
        raw.append(bought_raw if bought_raw is not None else np.zeros(bought.shape, np.float32))
        candidates, embedding_raw = _unique_per_row(np.hstack(ids), np.hstack(raw))

        valid = candidates >= 0
        item = np.where(valid, candidates, 0)
        embedding: FloatArray = np.zeros(candidates.shape, dtype=np.float32)
        if w.embedding > 0:
            divisor = np.where(top_score > 0, top_score, np.inf)[:, None]
            embedding = (np.maximum(embedding_raw, 0.0) / divisor).astype(np.float32)
        bought_value = _lookup(history, np.arange(n_rows)[:, None], item)
        row_max = self._history_max[rows][:, None]
        buy_again = bought_value / np.where(row_max > 0, row_max, np.inf)
        contributions = np.stack(
            [w.embedding * embedding, w.buy_again * buy_again, w.trending * self._trending[item]]
        ).astype(np.float32)
        scores: FloatArray = contributions.sum(axis=0)
        sources: SourceArray = np.argmax(contributions, axis=0).astype(np.int8)
        return candidates, scores, sources, bought_value > 0


class BundleRecommender:
    """Recommendations for external member ids from a model bundle alone.

    The bundle holds ``member_vectors`` and ``item_vectors`` (arrays), the buy-again history
    (sparse ``buy_again``), the trending prior (array ``trending``), the blend weights (manifest
    key ``blend``) and optionally the FAISS item index (``items``). Unknown members get the
    popular fallback.
    """

    def __init__(self, blender: Blender, member_ids: IdMap, item_ids: IdMap) -> None:
        if len(member_ids) != blender.n_members or len(item_ids) != blender.n_items:
            raise InvalidInputError(
                f"BundleRecommender: id maps hold {len(member_ids)} members and {len(item_ids)} "
                f"items, the blender {blender.n_members} and {blender.n_items}"
            )
        self.blender = blender
        self.member_ids = member_ids
        self.item_ids = item_ids

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> BundleRecommender:
        """Build from a loaded bundle; raise :class:`BundleError` naming what is missing."""
        arrays = bundle.arrays
        missing = [
            name for name in ("member_vectors", "item_vectors", TRENDING) if name not in arrays
        ]
        if BUY_AGAIN not in bundle.sparse:
            missing.append(f"sparse {BUY_AGAIN}")
        blend = bundle.manifest.get(MANIFEST_KEY)
        if not isinstance(blend, Mapping):
            missing.append(f"manifest key {MANIFEST_KEY!r}")
            blend = {}
        if missing:
            raise BundleError(
                f"{bundle.path}: not a blend bundle, it lacks {', '.join(missing)}; "
                "write it with the training pipeline (recsys train)"
            )
        try:
            weights = BlendWeights.from_dict(blend)
            index = bundle.indexes.get(ITEM_INDEX)
            blender = Blender(
                arrays["member_vectors"],
                arrays["item_vectors"],
                bundle.sparse[BUY_AGAIN],
                arrays[TRENDING],
                weights,
                index=VectorIndex.from_faiss(index) if index is not None else None,
            )
        except InvalidInputError as exc:
            raise BundleError(f"{bundle.path}: {exc}") from exc
        return cls(blender, bundle.member_ids, bundle.item_ids)

    @classmethod
    def from_path(cls, path: Path | str, *, mmap: bool = False) -> BundleRecommender:
        """Read the bundle at ``path`` and build from it."""
        return cls.from_bundle(read_bundle(Path(path), mmap=mmap))

    def recommend(
        self, member_ids: IdsLike, k: int = 10, *, exclude_purchased: bool = False
    ) -> Recommendations:
        """Top ``k`` items for each member id (unknown members: the popular fallback)."""
        _check_k(k)
        lookup = self.member_ids.lookup(member_ids)
        known = lookup >= 0
        ranking = _empty(lookup.shape[0], k)
        if known.any():
            ranked = self.blender.rank(lookup[known], k, exclude_purchased=exclude_purchased)
            _assign(ranking, known, ranked)
        if (~known).any():
            _assign(ranking, ~known, self.blender.popular(int((~known).sum()), k))
        filled = ranking.items >= 0
        items = np.where(filled, self.item_ids.ids_at(np.where(filled, ranking.items, 0)), "")
        source_names = np.asarray(SOURCES)[np.where(filled, ranking.sources, 0)]
        return Recommendations(
            member_ids=np.asarray(member_ids).astype(np.str_),
            item_ids=items,
            scores=np.where(filled, ranking.scores, np.nan).astype(np.float32),
            sources=np.where(filled, source_names, ""),
            known=known,
        )


@dataclass(frozen=True, slots=True)
class Recommendations:
    """Recommendations for a list of members, one row per member (rank = column + 1).

    Empty slots (fewer than ``k`` candidates) hold item id ``""``, score NaN and source ``""``.
    ``known`` tells which members the model knew (the others got the popular fallback).
    """

    member_ids: npt.NDArray[np.str_]
    item_ids: npt.NDArray[np.str_]
    scores: FloatArray
    sources: npt.NDArray[np.str_]
    known: npt.NDArray[np.bool_]

    def long_format(self) -> dict[str, npt.NDArray[Any]]:
        """Columns member_id, rank, item_id, score, source: one entry per filled slot."""
        filled = self.item_ids != ""
        row, col = np.nonzero(filled)
        return {
            "member_id": self.member_ids[row],
            "rank": (col + 1).astype(np.int64),
            "item_id": self.item_ids[row, col],
            "score": self.scores[row, col],
            "source": self.sources[row, col],
        }


# -- helpers ---------------------------------------------------------------------------------


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
    "PRECOMPUTED_ARRAYS",
    "SOURCES",
    "BlendWeights",
    "Blender",
    "BundleRecommender",
    "PrecomputedCandidates",
    "Ranking",
    "Recommendations",
]
