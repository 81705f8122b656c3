"""Where each ranked item came from: one code per item, one name per code, as every response,
export and report names them.

Codes 0-3 are the blend's own (:data:`engine.blend_math.SOURCES`: the term that contributed most
to the item's score); the kernel adds the fallback lists, similar items and promotions.
"""

from __future__ import annotations

from engine.blend_math import SOURCES

SOURCE_MODEL, SOURCE_BUY_AGAIN, SOURCE_TRENDING, SOURCE_POPULAR = range(4)
SOURCE_POPULAR_IN_TIER, SOURCE_POPULAR_IN_CATEGORY, SOURCE_SIMILAR, SOURCE_PROMOTED = range(4, 8)

#: The name of each source code, as responses and exports report it.
SOURCE_NAMES: tuple[str, ...] = (
    *SOURCES,
    "popular_in_tier",
    "popular_in_category",
    "similar",
    "promoted",
)

__all__ = [
    "SOURCE_BUY_AGAIN",
    "SOURCE_MODEL",
    "SOURCE_NAMES",
    "SOURCE_POPULAR",
    "SOURCE_POPULAR_IN_CATEGORY",
    "SOURCE_POPULAR_IN_TIER",
    "SOURCE_PROMOTED",
    "SOURCE_SIMILAR",
    "SOURCE_TRENDING",
]
