"""The self-describing model bundle: what training writes and serving reads.

A bundle is a folder::

    manifest.json                 format version, model kind, created_at, the trainer's fields
                                  (data fingerprint, feature snapshot, metrics, params, ...) and
                                  "contents": every file below with its dtype, shape and size
    member_ids.npy, item_ids.npy  id maps (fixed-width unicode, see engine.ids)
    arrays/<name>.npy             dense arrays: member_vectors, item_vectors, member_bias,
                                  item_bias and any extra named arrays
    sparse/<name>/{data,indices,indptr}.npy
                                  CSR matrices (e.g. item_similarity), shape in the manifest
    indexes/<name>.faiss          FAISS indexes (faiss.write_index)

Everything loads without pickle (``np.load(..., allow_pickle=False)``). Arrays are one ``.npy``
each rather than one ``.npz`` because only ``.npy`` files can be memory-mapped: with
``read_bundle(path, mmap=True)`` several serving workers share one copy of the vectors in the
page cache. A bundle is written into a temporary sibling folder and renamed into place, so a
reader never sees half a bundle. Reading validates the format version, that every declared file
exists with its declared size, dtype and shape, and that vectors, biases, similarity matrices
and indexes agree with the id maps; any problem raises :class:`BundleError` naming the file.

Arrays with these names must agree with the id maps (rows) and be float32:
``member_vectors`` (members x dim), ``item_vectors`` (items x dim), ``member_bias`` (members),
``item_bias`` (items). A sparse ``item_similarity`` must be items x items; indexes named
``items`` / ``members`` must hold one vector per item / member.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from engine.errors import BundleError, IdMapError, InvalidInputError
from engine.ids import IdMap, IdsLike

#: Version of the folder layout and manifest. Bump it on any incompatible change.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MEMBER_IDS = "member_ids.npy"
ITEM_IDS = "item_ids.npy"
#: Manifest keys owned by write_bundle; the caller's manifest must not set them.
_RESERVED = ("format_version", "contents")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
#: Arrays whose first axis is indexed by members / items, and which must be float32.
_ROWS_OF = {
    "member_vectors": "members",
    "member_bias": "members",
    "item_vectors": "items",
    "item_bias": "items",
}
_NDIM_OF = {"member_vectors": 2, "item_vectors": 2, "member_bias": 1, "item_bias": 1}
_SPARSE_COMPONENTS = ("data", "indices", "indptr")

Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class Bundle:
    """A loaded bundle. Arrays are read-only (memory-mapped when read with ``mmap=True``)."""

    path: Path
    manifest: Mapping[str, Any]
    arrays: Mapping[str, Array]
    sparse: Mapping[str, sp.csr_array]
    member_ids: IdMap
    item_ids: IdMap
    indexes: Mapping[str, faiss.Index]

    @property
    def kind(self) -> str:
        """The model kind the trainer declared (e.g. ``"als"``)."""
        return str(self.manifest["kind"])

    @property
    def format_version(self) -> int:
        return int(self.manifest["format_version"])

    @property
    def created_at(self) -> str:
        return str(self.manifest["created_at"])


# -- writing ---------------------------------------------------------------------------------


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
    _check_consistency(
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
            for part in _SPARSE_COMPONENTS
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


# -- reading ---------------------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the bundle at ``path`` (validated header, no arrays loaded)."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: no bundle folder here")
    file = path / MANIFEST
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{file}: manifest missing; this folder is not a bundle") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{file}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{file}: the manifest must be a JSON object")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{file}: 'format_version' is missing or not an integer")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{file}: format_version {version} is newer than this engine supports "
            f"({FORMAT_VERSION}); upgrade the engine"
        )
    if version < FORMAT_VERSION:
        raise BundleError(
            f"{file}: format_version {version} is no longer supported ({FORMAT_VERSION} is); "
            "retrain to write a current bundle"
        )
    for key, kind in (("kind", str), ("created_at", str), ("contents", dict)):
        if not isinstance(manifest.get(key), kind):
            raise BundleError(f"{file}: {key!r} is missing or not a {kind.__name__}")
    return manifest


def read_bundle(path: Path, *, mmap: bool = False) -> Bundle:
    """Load and validate the bundle at ``path``; raise :class:`BundleError` naming the problem.

    With ``mmap`` dense arrays and sparse components are memory-mapped read-only instead of
    read into memory (id maps and FAISS indexes are always read into memory).
    """
    path = Path(path)
    manifest = read_manifest(path)
    contents = manifest["contents"]
    reader = _Reader(path, mmap)
    member_ids = reader.ids(_entry(contents, "member_ids", path))
    item_ids = reader.ids(_entry(contents, "item_ids", path))
    arrays = {
        name: reader.npy(entry, f"array {name!r}")
        for name, entry in _section(contents, "arrays", path).items()
    }
    sparse = {
        name: reader.csr(name, entry) for name, entry in _section(contents, "sparse", path).items()
    }
    indexes = {
        name: reader.index(name, entry)
        for name, entry in _section(contents, "indexes", path).items()
    }
    _check_consistency(
        where=str(path),
        arrays={name: (a.dtype, a.shape) for name, a in arrays.items()},
        sparse_shapes={name: m.shape for name, m in sparse.items()},
        index_shapes={name: (int(ix.ntotal), int(ix.d)) for name, ix in indexes.items()},
        n_members=len(member_ids),
        n_items=len(item_ids),
    )
    return Bundle(
        path=path,
        manifest=MappingProxyType(manifest),
        arrays=MappingProxyType(arrays),
        sparse=MappingProxyType(sparse),
        member_ids=member_ids,
        item_ids=item_ids,
        indexes=MappingProxyType(indexes),
    )


def _section(contents: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    section = contents.get(key, {})
    if not isinstance(section, dict):
        raise BundleError(f"{path / MANIFEST}: contents.{key} must be an object")
    return section


def _entry(contents: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    entry = contents.get(key)
    if not isinstance(entry, dict):
        raise BundleError(f"{path / MANIFEST}: contents.{key} is missing")
    return entry


class _Reader:
    """Reads the files the manifest declares, checking each against its declaration."""

    def __init__(self, root: Path, mmap: bool) -> None:
        self.root = root
        self.mmap = mmap

    def file(self, entry: dict[str, Any], what: str) -> Path:
        relative = entry.get("file")
        if not isinstance(relative, str) or not relative:
            raise BundleError(f"{self.root / MANIFEST}: {what} has no 'file'")
        file = (self.root / relative).resolve()
        if not file.is_relative_to(self.root.resolve()):
            raise BundleError(f"{self.root / MANIFEST}: {what} points outside the bundle")
        if not file.is_file():
            raise BundleError(f"{self.root / relative}: {what} is missing from the bundle")
        size = file.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            raise BundleError(
                f"{self.root / relative}: {what} has {size} bytes, the manifest says "
                f"{entry['bytes']}; the file is truncated or was replaced"
            )
        return file

    def npy(self, entry: dict[str, Any], what: str) -> Array:
        file = self.file(entry, what)
        try:
            array = np.load(file, allow_pickle=False, mmap_mode="r" if self.mmap else None)
        except (OSError, ValueError, EOFError) as exc:
            raise BundleError(f"{file}: cannot read {what} ({exc})") from exc
        if not isinstance(array, np.ndarray):
            raise BundleError(f"{file}: {what} is not a single .npy array")
        if array.dtype.str != entry.get("dtype") or list(array.shape) != entry.get("shape"):
            raise BundleError(
                f"{file}: {what} is {array.dtype.str} {list(array.shape)}, the manifest says "
                f"{entry.get('dtype')} {entry.get('shape')}"
            )
        array.flags.writeable = False
        return array

    def ids(self, entry: dict[str, Any]) -> IdMap:
        file = self.file(entry, "id map")
        try:
            return IdMap.load(file, mmap=self.mmap)
        except IdMapError as exc:
            raise BundleError(str(exc)) from exc

    def csr(self, name: str, entry: dict[str, Any]) -> sp.csr_array:
        what = f"sparse {name!r}"
        shape = entry.get("shape")
        components = entry.get("components")
        if not (isinstance(shape, list) and len(shape) == 2 and isinstance(components, dict)):
            raise BundleError(f"{self.root / MANIFEST}: {what} needs a 2-D 'shape' and components")
        parts = {}
        for part in _SPARSE_COMPONENTS:
            if not isinstance(components.get(part), dict):
                raise BundleError(f"{self.root / MANIFEST}: {what} lacks its {part!r} component")
            parts[part] = self.npy(components[part], f"{what} {part}")
        data, indices, indptr = parts["data"], parts["indices"], parts["indptr"]
        n_rows, n_cols = int(shape[0]), int(shape[1])
        where = self.root / "sparse" / name
        if indptr.ndim != 1 or indptr.shape[0] != n_rows + 1 or indices.shape != data.shape:
            raise BundleError(f"{where}: component lengths do not fit shape {shape}")
        if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
            raise BundleError(f"{where}: indices and indptr must be integers")
        if indptr[0] != 0 or indptr[-1] != data.shape[0] or np.any(np.diff(indptr) < 0):
            raise BundleError(f"{where}: indptr is not a valid CSR row pointer")
        if indices.size and (indices.min() < 0 or indices.max() >= n_cols):
            raise BundleError(f"{where}: column indices fall outside 0..{n_cols - 1}")
        return sp.csr_array((data, indices, indptr), shape=(n_rows, n_cols), copy=False)

    def index(self, name: str, entry: dict[str, Any]) -> faiss.Index:
        what = f"index {name!r}"
        file = self.file(entry, what)
        try:
            index = faiss.read_index(str(file))
        except RuntimeError as exc:
            raise BundleError(f"{file}: cannot read {what} ({exc})") from exc
        declared = (entry.get("ntotal"), entry.get("d"), entry.get("metric"))
        found = (int(index.ntotal), int(index.d), int(index.metric_type))
        if declared != found:
            raise BundleError(
                f"{file}: {what} holds (ntotal, d, metric) {found}, the manifest says {declared}"
            )
        return index


# -- consistency (shared by writing and reading) ---------------------------------------------


def _check_consistency(
    *,
    where: str,
    arrays: dict[str, tuple[np.dtype[Any], tuple[int, ...]]],
    sparse_shapes: dict[str, tuple[int, int]],
    index_shapes: dict[str, tuple[int, int]],
    n_members: int,
    n_items: int,
) -> None:
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
