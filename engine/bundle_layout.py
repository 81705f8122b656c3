"""The bundle's format: file names, the format version and the rules that vectors, biases,
similarity matrices and indexes must follow to agree with the id maps.

Shared by writing (engine.bundle_write) and reading (engine.bundle); the folder layout itself is
described in engine.bundle.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from engine.errors import BundleError

#: Version of the folder layout and manifest. Bump it on any incompatible change.
FORMAT_VERSION: Final[int] = 1
MANIFEST: Final[str] = "manifest.json"
MEMBER_IDS: Final[str] = "member_ids.npy"
ITEM_IDS: Final[str] = "item_ids.npy"
#: The files of a CSR matrix under ``sparse/<name>/``.
SPARSE_COMPONENTS: Final[tuple[str, ...]] = ("data", "indices", "indptr")
#: Arrays whose first axis is indexed by members / items, and which must be float32.
_ROWS_OF: Final[dict[str, str]] = {
    "member_vectors": "members",
    "member_bias": "members",
    "item_vectors": "items",
    "item_bias": "items",
}
_NDIM_OF: Final[dict[str, int]] = {
    "member_vectors": 2,
    "item_vectors": 2,
    "member_bias": 1,
    "item_bias": 1,
}

Array = npt.NDArray[Any]


def check_consistency(
    *,
    where: str,
    arrays: dict[str, tuple[np.dtype[Any], tuple[int, ...]]],
    sparse_shapes: dict[str, tuple[int, int]],
    index_shapes: dict[str, tuple[int, int]],
    n_members: int,
    n_items: int,
) -> None:
    """Raise :class:`BundleError` (prefixed with ``where``) unless the named arrays, sparse
    matrices and indexes agree with the id maps and with each other (see engine.bundle)."""
    rows = {"members": n_members, "items": n_items}
    for name, axis in _ROWS_OF.items():
        if name not in arrays:
            continue
        dtype, shape = arrays[name]
        if dtype != np.float32:
            raise BundleError(f"{where}: {name} must be float32, got {dtype}; cast with .astype")
        if len(shape) != _NDIM_OF[name] or shape[0] != rows[axis]:
            raise BundleError(
                f"{where}: {name} has shape {shape}, expected {_NDIM_OF[name]}-D with "
                f"{rows[axis]} rows (one per id in {axis[:-1]}_ids)"
            )
    dims = {
        name: arrays[name][1][1] for name in ("member_vectors", "item_vectors") if name in arrays
    }
    if len(set(dims.values())) > 1:
        raise BundleError(f"{where}: member and item vectors differ in dimension: {dims}")
    if "item_similarity" in sparse_shapes and sparse_shapes["item_similarity"] != (
        n_items,
        n_items,
    ):
        raise BundleError(
            f"{where}: item_similarity has shape {sparse_shapes['item_similarity']}, "
            f"expected ({n_items}, {n_items})"
        )
    for name, axis in (("items", "items"), ("members", "members")):
        if name not in index_shapes:
            continue
        ntotal, d = index_shapes[name]
        if ntotal != rows[axis]:
            raise BundleError(
                f"{where}: index {name!r} holds {ntotal} vectors, expected {rows[axis]}"
            )
        vectors = f"{axis[:-1]}_vectors"
        if vectors in dims and d != dims[vectors]:
            raise BundleError(
                f"{where}: index {name!r} has dimension {d}, {vectors} has {dims[vectors]}"
            )


__all__ = [
    "FORMAT_VERSION",
    "ITEM_IDS",
    "MANIFEST",
    "MEMBER_IDS",
    "SPARSE_COMPONENTS",
    "Array",
    "check_consistency",
]
