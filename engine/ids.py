"""External string ids <-> dense integer indexes (rows of vector and interaction matrices).

An :class:`IdMap` is built once from the ids in their dense order (position ``i`` holds the id of
row ``i``). Lookups of many ids are vectorized: each id is hashed to 64 bits (FNV-1a over its
code points, computed column-wise by numpy), found by binary search among the sorted hashes of
the map, and confirmed by comparing the strings, so a hash collision can never return a wrong
index. Building the map re-hashes with another seed in the (astronomically rare) case two
distinct ids of the map collide.

On disk a map is a plain ``.npy`` of fixed-width unicode (loaded with ``allow_pickle=False``).
Loading re-validates it by building the map; for 1M ids that takes 0.15-0.3 s, 1.6-2.4x faster
than from a one-id-per-line text file (``benchmarks/bench_index.py``), and unlike text it is
sound for ids holding newlines. A lookup of 1M ids takes about 0.5 s; one id through
:meth:`IdMap.get` about 10 us.
For tens of millions of rows (e.g. purchases) join against :attr:`IdMap.ids` in a data-frame
library instead of calling :meth:`IdMap.lookup` per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import DuplicateIdError, IdMapError, InvalidInputError, UnknownIdError

#: Unknown ids shown in an error message (the count is always given in full).
_SHOWN = 5
#: Hash seeds tried before giving up on a collision-free hash of the map's ids.
_SEEDS = 8
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME_INT = 0x100000001B3
_FNV_PRIME = np.uint64(_FNV_PRIME_INT)
_MASK64 = (1 << 64) - 1

IdArray = npt.NDArray[np.str_]
IndexArray = npt.NDArray[np.int64]
IdsLike = Sequence[str] | npt.NDArray[Any]


def _as_id_array(ids: IdsLike, what: str) -> IdArray:
    """Ids as a 1-D unicode array; reject numbers, bytes, None and nested sequences."""
    if isinstance(ids, str):
        raise InvalidInputError(
            f"{what}: expected a sequence of ids, got the single string {ids!r}"
        )
    array = np.asarray(ids)
    if array.ndim != 1:
        raise InvalidInputError(f"{what}: expected a 1-D sequence of ids, got shape {array.shape}")
    if array.dtype.kind == "U":
        return array
    if array.size == 0:
        return array.astype(np.str_)
    if array.dtype.kind == "O":
        missing = np.flatnonzero(np.equal(array, np.array(None, dtype=object)))
        if missing.size:
            raise InvalidInputError(
                f"{what}: id at position {int(missing[0])} is None ({missing.size} missing in all); "
                "drop or fill missing ids first"
            )
        return array.astype(np.str_)
    if array.dtype.kind == "T":  # numpy.dtypes.StringDType: fixed width needs the longest id
        return array.astype(f"U{max(1, int(np.strings.str_len(array).max()))}")
    raise InvalidInputError(
        f"{what}: ids must be strings, got dtype {array.dtype}; "
        "convert them with .astype(str) (bytes: decode them) first"
    )


def _hash(ids: IdArray, seed: int) -> npt.NDArray[np.uint64]:
    """64-bit FNV-1a of each id's code points (zero padding included), vectorized by column."""
    width = ids.dtype.itemsize // 4
    codes = np.ascontiguousarray(ids).view(np.uint32).reshape(ids.shape[0], width)
    start = (_FNV_OFFSET ^ (seed * 0x9E3779B97F4A7C15)) & _MASK64
    hashed = np.full(ids.shape[0], start, dtype=np.uint64)
    for column in range(width):  # a loop over characters, not over ids
        hashed ^= codes[:, column]
        hashed *= _FNV_PRIME
    return hashed


class IdMap:
    """A bijection between external string ids and dense indexes ``0..len-1``.

    >>> m = IdMap(["b", "a", "c"])
    >>> m.lookup(["a", "zz"]).tolist()
    [1, -1]
    """

    __slots__ = ("_ids", "_keys", "_order", "_seed")

    def __init__(self, ids: IdsLike) -> None:
        array = _as_id_array(ids, "IdMap")
        empty = np.flatnonzero(np.strings.str_len(array) == 0)
        if empty.size:
            raise InvalidInputError(
                f"IdMap: id at position {int(empty[0])} is an empty string "
                f"({empty.size} empty in all); ids must be non-empty"
            )
        if array.flags.writeable or not array.flags.c_contiguous:
            array = np.array(array, order="C")  # a private copy we can make read-only
        for seed in range(_SEEDS):
            keys = _hash(array, seed)
            order = np.argsort(keys, kind="stable").astype(np.int64)
            sorted_keys = keys[order]
            equal = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
            if equal.size == 0:
                break
            first, second = order[equal], order[equal + 1]
            duplicate = np.flatnonzero(array[first] == array[second])
            if duplicate.size:
                i, j = sorted((int(first[duplicate[0]]), int(second[duplicate[0]])))
                raise DuplicateIdError(
                    f"IdMap: duplicate id {str(array[i])!r} at positions {i} and {j}; "
                    "ids must be unique, deduplicate the table first"
                )
        else:
            raise IdMapError(f"IdMap: could not hash {array.size} ids without collisions")
        for part in (array, sorted_keys, order):
            part.flags.writeable = False
        self._ids = array
        self._keys = sorted_keys
        self._order = order
        self._seed = seed

    # -- queries ---------------------------------------------------------------------------

    @property
    def ids(self) -> IdArray:
        """The ids in dense order (read-only): ``ids[i]`` is the id of index ``i``."""
        return self._ids

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def __contains__(self, external_id: object) -> bool:
        return isinstance(external_id, str) and self.get(external_id) >= 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdMap):
            return NotImplemented
        return len(self) == len(other) and bool(np.array_equal(self._ids, other._ids))

    __hash__ = None  # type: ignore[assignment]  # defines __eq__ over contents: not hashable

    def __repr__(self) -> str:
        head = ", ".join(repr(str(x)) for x in self._ids[:3])
        more = ", ..." if len(self) > 3 else ""
        return f"IdMap([{head}{more}], n={len(self)})"

    def lookup(self, ids: IdsLike) -> IndexArray:
        """Dense indexes of ``ids``; ``-1`` where an id is unknown. Vectorized."""
        query = _as_id_array(ids, "IdMap.lookup")
        result = np.full(query.shape[0], -1, dtype=np.int64)
        if len(self) == 0 or query.size == 0:
            return result
        fits = np.ones(query.shape[0], dtype=bool)
        if query.dtype.itemsize > self._ids.dtype.itemsize:
            # Longer than every id of the map: cannot match (and must not be truncated to one).
            fits = np.strings.str_len(query) <= self._ids.dtype.itemsize // 4
        query = query.astype(self._ids.dtype, copy=False)
        keys = _hash(query, self._seed)
        pos = np.searchsorted(self._keys, keys)
        np.minimum(pos, len(self) - 1, out=pos)
        candidate = self._order[pos]
        found = fits & (self._keys[pos] == keys) & (self._ids[candidate] == query)
        result[found] = candidate[found]
        return result

    def indices(self, ids: IdsLike) -> IndexArray:
        """Dense indexes of ``ids``; raise :class:`UnknownIdError` naming unknown ones."""
        result = self.lookup(ids)
        unknown = np.flatnonzero(result < 0)
        if unknown.size:
            query = _as_id_array(ids, "IdMap.indices")
            shown = tuple(str(x) for x in query[unknown[:_SHOWN]])
            raise UnknownIdError(
                f"{unknown.size} unknown id(s), e.g. {', '.join(map(repr, shown))}; "
                f"the map holds {len(self)} ids",
                missing=shown,
                count=int(unknown.size),
            )
        return result

    def get(self, external_id: str) -> int:
        """Dense index of one id, or ``-1`` if it is unknown (a fast path for serving)."""
        if not isinstance(external_id, str):
            raise InvalidInputError(f"IdMap.get: expected a string id, got {external_id!r}")
        width = self._ids.dtype.itemsize // 4
        if not external_id or len(external_id) > width or len(self) == 0:
            return -1
        hashed = (_FNV_OFFSET ^ (self._seed * 0x9E3779B97F4A7C15)) & _MASK64
        for char in external_id:
            hashed = ((hashed ^ ord(char)) * _FNV_PRIME_INT) & _MASK64
        for _ in range(width - len(external_id)):  # the zero padding of fixed-width unicode
            hashed = (hashed * _FNV_PRIME_INT) & _MASK64
        pos = int(np.searchsorted(self._keys, np.uint64(hashed)))
        if pos < len(self) and int(self._keys[pos]) == hashed:
            candidate = int(self._order[pos])
            if self._ids[candidate] == external_id:
                return candidate
        return -1

    def index_of(self, external_id: str) -> int:
        """Dense index of one id; raise :class:`UnknownIdError` if it is unknown."""
        index = self.get(external_id)
        if index < 0:
            raise UnknownIdError(
                f"unknown id {external_id!r}; the map holds {len(self)} ids",
                missing=(external_id,),
                count=1,
            )
        return index

    def ids_at(self, indexes: npt.ArrayLike) -> IdArray:
        """External ids of dense ``indexes`` (any shape); raise if one is out of range.

        ``-1`` padding (as returned by searches) is not an index: mask it out first.
        """
        array = np.asarray(indexes)
        if array.size == 0:
            return self._ids[np.zeros(array.shape, dtype=np.intp)]
        if array.dtype.kind not in "iu":
            raise InvalidInputError(f"IdMap.ids_at: indexes must be integers, got {array.dtype}")
        bad = np.flatnonzero((array < 0) | (array >= len(self)))
        if bad.size:
            raise InvalidInputError(
                f"IdMap.ids_at: index {int(array.flat[bad[0]])} is out of range "
                f"0..{len(self) - 1} ({bad.size} bad in all)"
            )
        return self._ids[array.astype(np.intp, copy=False)]

    # -- persistence -----------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        """Write the ids to ``path`` as ``.npy`` (fixed-width unicode, no pickle)."""
        with open(path, "wb") as handle:
            np.save(handle, self._ids, allow_pickle=False)
        return path

    @classmethod
    def load(cls, path: Path, *, mmap: bool = False) -> IdMap:
        """Read a map written by :meth:`save`; raise :class:`IdMapError` naming the file.

        With ``mmap`` the ids stay memory-mapped (read-only); the hash index is built in memory.
        """
        try:
            ids = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except FileNotFoundError:
            raise IdMapError(f"{path}: id map file not found") from None
        except (OSError, ValueError, EOFError) as exc:
            raise IdMapError(f"{path}: cannot read id map ({exc}); the file is corrupt") from exc
        if not isinstance(ids, np.ndarray) or ids.ndim != 1 or ids.dtype.kind != "U":
            raise IdMapError(
                f"{path}: an id map is a 1-D unicode array, found {getattr(ids, 'dtype', ids)!r}"
            )
        try:
            return cls(ids)
        except (InvalidInputError, IdMapError) as exc:
            raise IdMapError(f"{path}: {exc}") from exc
