"""Writing a model bundle (engine.bundle describes the folder): validated first, then written
into a temporary sibling folder, synced and renamed into place, so a reader never sees half a
bundle.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import scipy.sparse as sp

from engine.bundle_layout import (
    FORMAT_VERSION,
    ITEM_IDS,
    MANIFEST,
    MEMBER_IDS,
    SPARSE_COMPONENTS,
    Array,
    check_consistency,
)
from engine.errors import BundleError, IdMapError, InvalidInputError
from engine.ids import IdMap, IdsLike

#: Manifest keys owned by write_bundle; the caller's manifest must not set them.
_RESERVED = ("format_version", "contents")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def write_bundle(
    path: Path,
    *,
    manifest: Mapping[str, Any],
    arrays: Mapping[str, Array],
    member_ids: IdMap | IdsLike,
    item_ids: IdMap | IdsLike,
    sparse: Mapping[str, Any] | None = None,
    indexes: Mapping[str, faiss.Index] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bundle folder at ``path`` atomically and return ``path``.

    ``manifest`` holds JSON-able fields from the trainer and must include ``kind``; it may
    include ``created_at`` (ISO 8601), otherwise the current UTC time is used. ``sparse`` maps
    names to scipy sparse matrices (stored as CSR components). Everything is validated before
    anything is written. An existing bundle at ``path`` is replaced only with ``overwrite``.
    """
    path = Path(path)
    sparse = dict(sparse or {})
    indexes = dict(indexes or {})
    members = member_ids if isinstance(member_ids, IdMap) else _id_map(member_ids, "member_ids")
    items = item_ids if isinstance(item_ids, IdMap) else _id_map(item_ids, "item_ids")
    dense = {name: _dense_for_writing(name, array) for name, array in arrays.items()}
    csr = {name: _csr_for_writing(name, matrix) for name, matrix in sparse.items()}
    for name in indexes:
        _check_name(name, "index")
    check_consistency(
        where="write_bundle",
        arrays={name: (a.dtype, a.shape) for name, a in dense.items()},
        sparse_shapes={name: m.shape for name, m in csr.items()},
        index_shapes={name: (int(ix.ntotal), int(ix.d)) for name, ix in indexes.items()},
        n_members=len(members),
        n_items=len(items),
    )
    header = _manifest_header(manifest)
    if path.exists() and not overwrite:
        raise BundleError(f"{path}: already exists; choose a new path or pass overwrite=True")
    if path.exists() and not (path / MANIFEST).is_file():
        raise BundleError(f"{path}: exists and is not a bundle; refusing to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        staging.chmod(0o755)  # mkdtemp makes it private; a bundle is read by other processes
    except OSError as exc:
        raise BundleError(f"{path}: cannot create the bundle folder ({exc})") from exc
    try:
        contents = _write_contents(staging, dense, csr, members, items, indexes)
        text = json.dumps({**header, "contents": contents}, indent=2, allow_nan=False)
        (staging / MANIFEST).write_text(text + "\n", encoding="utf-8")
        _fsync(staging / MANIFEST)
        _fsync(staging)
        _move_into_place(staging, path, overwrite)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BundleError(f"{path}: cannot write bundle ({exc})") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _id_map(ids: IdsLike, what: str) -> IdMap:
    try:
        return IdMap(ids)
    except (InvalidInputError, IdMapError) as exc:
        raise BundleError(f"write_bundle: {what}: {exc}") from exc


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BundleError(
            f"write_bundle: {what} name {name!r} is not allowed; use letters, digits, '_', '.', '-'"
        )


def _dense_for_writing(name: str, array: Array) -> Array:
    _check_name(name, "array")
    if not isinstance(array, np.ndarray):
        raise BundleError(f"write_bundle: array {name!r} must be a numpy array, got {type(array)}")
    if array.dtype.hasobject:
        raise BundleError(
            f"write_bundle: array {name!r} has dtype {array.dtype}; object arrays would need "
            "pickle, store numbers or fixed-width strings"
        )
    return np.ascontiguousarray(array)


def _csr_for_writing(name: str, matrix: Any) -> sp.csr_array:
    _check_name(name, "sparse matrix")
    if not sp.issparse(matrix):
        raise BundleError(
            f"write_bundle: sparse {name!r} must be a scipy sparse matrix, got {type(matrix)}"
        )
    csr = sp.csr_array(matrix)
    if csr.dtype.hasobject:
        raise BundleError(f"write_bundle: sparse {name!r} has dtype {csr.dtype}")
    if not csr.has_sorted_indices:
        csr = csr.copy()  # do not reorder the caller's matrix in place
        csr.sort_indices()
    return csr


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(
        f"a value of type {type(value).__name__} cannot be stored in the manifest; use "
        "str/int/float/bool/None, lists and dicts (arrays belong in `arrays`)"
    )


def _manifest_header(manifest: Mapping[str, Any]) -> dict[str, Any]:
    reserved = [key for key in _RESERVED if key in manifest]
    if reserved:
        raise BundleError(f"write_bundle: manifest must not set {reserved}; write_bundle sets them")
    kind = manifest.get("kind")
    if not isinstance(kind, str) or not kind:
        raise BundleError("write_bundle: manifest needs a non-empty string 'kind' (model kind)")
    created_at = manifest.get("created_at", datetime.now(UTC).isoformat(timespec="seconds"))
    header = {"format_version": FORMAT_VERSION, **manifest, "created_at": created_at}
    try:
        # Round-trip now so that numpy scalars become plain numbers and bad values fail early.
        checked: dict[str, Any] = json.loads(
            json.dumps(header, allow_nan=False, default=_json_default)
        )
    except (TypeError, ValueError) as exc:
        raise BundleError(
            f"write_bundle: manifest is not JSON-serializable ({exc}); NaN/inf are not allowed"
        ) from exc
    return checked


def _save_npy(folder: Path, relative: str, array: Array) -> dict[str, Any]:
    target = folder / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    return {
        "file": relative,
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "bytes": target.stat().st_size,
    }


def _write_contents(
    folder: Path,
    dense: dict[str, Array],
    csr: dict[str, sp.csr_array],
    members: IdMap,
    items: IdMap,
    indexes: dict[str, faiss.Index],
) -> dict[str, Any]:
    contents: dict[str, Any] = {
        "member_ids": _save_npy(folder, MEMBER_IDS, members.ids),
        "item_ids": _save_npy(folder, ITEM_IDS, items.ids),
        "arrays": {name: _save_npy(folder, f"arrays/{name}.npy", a) for name, a in dense.items()},
        "sparse": {},
        "indexes": {},
    }
    for name, matrix in csr.items():
        components = {
            part: _save_npy(folder, f"sparse/{name}/{part}.npy", getattr(matrix, part))
            for part in SPARSE_COMPONENTS
        }
        contents["sparse"][name] = {"shape": list(matrix.shape), "components": components}
    for name, index in indexes.items():
        relative = f"indexes/{name}.faiss"
        (folder / "indexes").mkdir(exist_ok=True)
        try:
            faiss.write_index(index, str(folder / relative))
        except RuntimeError as exc:
            raise BundleError(f"write_bundle: cannot write index {name!r} ({exc})") from exc
        _fsync(folder / relative)
        contents["indexes"][name] = {
            "file": relative,
            "type": type(index).__name__,
            "ntotal": int(index.ntotal),
            "d": int(index.d),
            "metric": int(index.metric_type),
            "bytes": (folder / relative).stat().st_size,
        }
    return contents


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_into_place(staging: Path, path: Path, overwrite: bool) -> None:
    if overwrite and path.exists():
        retired = path.with_name(f".{path.name}.old-{uuid.uuid4().hex}")
        path.rename(retired)
        try:
            staging.rename(path)
        except OSError:
            retired.rename(path)  # put the previous bundle back before reporting the failure
            raise
        shutil.rmtree(retired)
    else:
        staging.rename(path)
    _fsync(path.parent)


__all__ = ["write_bundle"]
