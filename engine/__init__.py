"""The pure core of the engine: id maps, metrics, model bundles and vector search.

numpy, scipy and faiss only; it never imports feature_store, training or serving. Names are
imported lazily, so ``import engine.ids`` does not load FAISS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.bundle import Bundle, read_bundle, write_bundle
    from engine.errors import BundleError, EngineError, UnknownIdError
    from engine.ids import IdMap
    from engine.index import IdFilter, IndexConfig, VectorIndex, build_index
    from engine.metrics import ranking_metrics

_EXPORTS = {
    "Bundle": "engine.bundle",
    "read_bundle": "engine.bundle",
    "write_bundle": "engine.bundle",
    "BundleError": "engine.errors",
    "EngineError": "engine.errors",
    "UnknownIdError": "engine.errors",
    "IdMap": "engine.ids",
    "IdFilter": "engine.index",
    "IndexConfig": "engine.index",
    "VectorIndex": "engine.index",
    "build_index": "engine.index",
    "ranking_metrics": "engine.metrics",
}

__all__ = [
    "Bundle",
    "BundleError",
    "EngineError",
    "IdFilter",
    "IdMap",
    "IndexConfig",
    "UnknownIdError",
    "VectorIndex",
    "build_index",
    "ranking_metrics",
    "read_bundle",
    "write_bundle",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return list(__all__)
