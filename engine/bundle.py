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

This module reads bundles (:func:`read_bundle`, :func:`read_manifest`); :func:`write_bundle`
lives in engine.bundle_write and the format rules both sides check in engine.bundle_layout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import faiss
import numpy as np
import scipy.sparse as sp

from engine.bundle_layout import (
    FORMAT_VERSION,
    MANIFEST,
    SPARSE_COMPONENTS,
    Array,
    check_consistency,
)
from engine.bundle_write import write_bundle
from engine.errors import BundleError, IdMapError
from engine.ids import IdMap


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
    check_consistency(
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
        for part in SPARSE_COMPONENTS:
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


__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "Bundle",
    "read_bundle",
    "read_manifest",
    "write_bundle",
]
