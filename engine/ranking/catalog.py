"""The item catalogue the business rules read: each item's category, lowest tier allowed to see
it, availability and popularity, as arrays (:class:`ItemCatalog`), with the per-tier eligible
masks and fallback orders precomputed so a request does array lookups only.

Built from attribute arrays (:func:`catalog_from_attributes`: what training evaluates with) or
from a model bundle (:func:`catalog_of_bundle`: what serving, ``recsys recommend`` and the
pyfunc serve with). The bundle's attributes are taken from, in this order:

1. the bundle itself: arrays ``item_category`` (text), ``item_min_tier`` (tier names) and
   ``item_active`` (bool), one entry per item in the bundle's item order (each optional);
2. the feature snapshot the model was trained with, when the manifest names it
   (``"feature_snapshot": "/path"`` or ``{"path": "/path"}``): its ``items.parquet``
   (docs/feature_snapshot.md);
3. nothing: every item active, visible to every tier, without category (``source = "none"``:
   tier and category rules then have no effect).

Popularity for the fallbacks is the blend's trending prior; ``item_tier_popularity``
(``n_items x n_tiers``) in the bundle, when present, ranks "popular in tier".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.bundle import Bundle
from engine.errors import BundleError, InvalidInputError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

#: Category code of items without a category.
NO_CATEGORY = -1


class ItemCatalog:
    """Item attributes as arrays, and the per-tier masks and fallback orders built from them.

    Args:
        tiers: the tier ladder, lowest first.
        category_codes: per item, an index into ``categories`` (``-1``: none).
        categories: category names.
        min_tier: per item, the rank of the lowest tier allowed to see it.
        active: per item, whether it may be recommended at all.
        popularity: per item, a non-negative popularity (e.g. the blend's trending prior).
        tier_popularity: optional ``n_items x n_tiers`` popularity within each tier.
    """

    def __init__(
        self,
        *,
        tiers: Sequence[str],
        category_codes: npt.ArrayLike,
        categories: Sequence[str],
        min_tier: npt.ArrayLike,
        active: npt.ArrayLike,
        popularity: npt.ArrayLike,
        tier_popularity: npt.ArrayLike | None = None,
    ) -> None:
        self.tiers = tuple(tiers)
        self.categories = tuple(categories)
        if not self.tiers:
            raise InvalidInputError("ItemCatalog: the tier ladder is empty")
        codes = np.asarray(category_codes, dtype=np.int32)
        n = codes.shape[0]
        if codes.ndim != 1:
            raise InvalidInputError("ItemCatalog: category_codes must be 1-D")
        if n and (codes.min() < NO_CATEGORY or codes.max() >= len(self.categories)):
            raise InvalidInputError(
                f"ItemCatalog: category codes must lie in -1..{len(self.categories) - 1}"
            )
        tiers_of = np.asarray(min_tier, dtype=np.int16)
        available = np.asarray(active, dtype=bool)
        pop = np.asarray(popularity, dtype=np.float32)
        for name, array in (("min_tier", tiers_of), ("active", available), ("popularity", pop)):
            if array.shape != (n,):
                raise InvalidInputError(
                    f"ItemCatalog: {name} has shape {array.shape}; expected ({n},), one per item"
                )
        if n and (tiers_of.min() < 0 or tiers_of.max() >= len(self.tiers)):
            raise InvalidInputError(
                f"ItemCatalog: min_tier ranks must lie in 0..{len(self.tiers) - 1}"
            )
        if not np.isfinite(pop).all():
            raise InvalidInputError("ItemCatalog: popularity holds NaN or infinite values")
        self.category_codes = codes
        self.min_tier = tiers_of
        self.active = available
        self.popularity = pop
        if tier_popularity is None:
            per_tier = np.repeat(pop[:, None], len(self.tiers), axis=1)
            self.has_tier_popularity = False
        else:
            per_tier = np.asarray(tier_popularity, dtype=np.float32)
            if per_tier.shape != (n, len(self.tiers)):
                raise InvalidInputError(
                    f"ItemCatalog: tier_popularity has shape {per_tier.shape}; expected "
                    f"({n}, {len(self.tiers)})"
                )
            self.has_tier_popularity = True
        tier_ranks = np.arange(len(self.tiers), dtype=np.int16)
        #: eligible[t, i]: item i may be shown to a member of tier t
        self.eligible: BoolArray = available[None, :] & (tiers_of[None, :] <= tier_ranks[:, None])
        self._tier_orders = tuple(
            _order(per_tier[:, t], self.eligible[t]) for t in range(len(self.tiers))
        )
        self._tier_scores = tuple(
            np.ascontiguousarray(per_tier[order, t]) for t, order in enumerate(self._tier_orders)
        )
        self._popular = _order(pop, available)
        self._popular_scores = np.ascontiguousarray(pop[self._popular])
        self._category_index = {name: code for code, name in enumerate(self.categories)}

    @property
    def n_items(self) -> int:
        return int(self.category_codes.shape[0])

    def tier_rank(self, tier: str | None) -> int:
        """Rank of ``tier``; unknown or missing tiers get the lowest (the safest: shows least)."""
        if tier is None:
            return 0
        try:
            return self.tiers.index(tier)
        except ValueError:
            return 0

    def category_code(self, name: str) -> int | None:
        """Code of a category name, None when no item has it."""
        return self._category_index.get(name)

    @cached_property
    def _by_category(self) -> tuple[IntArray, IntArray]:
        """Active items sorted by (category, popularity desc), and each category's start."""
        codes = np.where(self.active, self.category_codes, NO_CATEGORY)
        keep = np.flatnonzero(codes >= 0)
        order = keep[np.lexsort((-self.popularity[keep], codes[keep]))]
        starts = np.searchsorted(codes[order], np.arange(len(self.categories) + 1))
        return order.astype(np.int64), starts.astype(np.int64)

    def popular_in_tier(self, tier: int) -> tuple[IntArray, FloatArray]:
        """Items eligible for ``tier``, most popular within the tier first, and that popularity."""
        return self._tier_orders[tier], self._tier_scores[tier]

    def popular_overall(self) -> tuple[IntArray, FloatArray]:
        """Active items, most popular first, and their popularity."""
        return self._popular, self._popular_scores

    def popular_in_category(self, category: int) -> tuple[IntArray, FloatArray]:
        """Active items of ``category``, most popular first, and their popularity."""
        order, starts = self._by_category
        items = order[starts[category] : starts[category + 1]]
        return items, self.popularity[items]


def _order(values: npt.NDArray[np.float32], mask: BoolArray) -> IntArray:
    ids = np.flatnonzero(mask)
    return ids[np.argsort(-values[ids], kind="stable")].astype(np.int64)


def catalog_from_attributes(
    tiers: Sequence[str],
    *,
    category: npt.NDArray[np.str_] | None,
    min_tier: npt.NDArray[np.str_] | None,
    active: npt.NDArray[np.bool_] | None,
    popularity: npt.ArrayLike,
    tier_popularity: npt.ArrayLike | None = None,
) -> ItemCatalog:
    """The catalogue of items with these attributes (None: unknown: no category, every tier,
    active). An item ``min_tier`` outside ``tiers`` raises :class:`InvalidInputError`."""
    n = int(np.asarray(popularity).shape[0])
    if category is not None:
        names, codes = np.unique(category, return_inverse=True)
        categories = [str(c) for c in names]
        codes = np.where((names == "")[codes], NO_CATEGORY, codes)
    else:
        categories, codes = [], np.full(n, NO_CATEGORY)
    ranks = np.zeros(n, dtype=np.int16) if min_tier is None else tier_ranks(min_tier, tiers)
    return ItemCatalog(
        tiers=tiers,
        category_codes=codes,
        categories=categories,
        min_tier=ranks,
        active=np.ones(n, dtype=bool) if active is None else active,
        popularity=popularity,
        tier_popularity=tier_popularity,
    )


def tier_ranks(values: npt.NDArray[np.str_], tiers: Sequence[str]) -> npt.NDArray[np.int16]:
    """Ladder rank of each tier name (``""``: every tier, rank 0)."""
    ladder = np.asarray(list(tiers))
    order = np.argsort(ladder)
    pos = np.minimum(np.searchsorted(ladder[order], values), len(ladder) - 1)
    found = ladder[order][pos] == values
    empty = values == ""
    bad = ~found & ~empty
    if bad.any():
        raise InvalidInputError(
            f"item min_tier {str(values[bad][0])!r} is not a tier of the feature policy "
            f"({', '.join(tiers)})"
        )
    return np.where(empty, 0, order[pos]).astype(np.int16)


CATEGORY, MIN_TIER, ACTIVE, TIER_POPULARITY = (
    "item_category",
    "item_min_tier",
    "item_active",
    "item_tier_popularity",
)


@dataclass(frozen=True, slots=True)
class ItemAttributes:
    """Raw per-item attributes in the bundle's item order (None: not known)."""

    category: npt.NDArray[np.str_] | None
    min_tier: npt.NDArray[np.str_] | None
    active: npt.NDArray[np.bool_] | None
    source: str


def catalog_of_bundle(
    bundle: Bundle, tiers: Sequence[str], popularity: npt.ArrayLike
) -> tuple[ItemCatalog, str]:
    """The :class:`ItemCatalog` of ``bundle`` and where its attributes came from (built by
    :func:`catalog_from_attributes`, as evaluation builds it)."""
    attributes = (
        _from_bundle(bundle) or _from_snapshot(bundle) or ItemAttributes(None, None, None, "none")
    )
    try:
        catalogue = catalog_from_attributes(
            tiers,
            category=attributes.category,
            min_tier=attributes.min_tier,
            active=attributes.active,
            popularity=popularity,
            tier_popularity=bundle.arrays.get(TIER_POPULARITY),
        )
    except InvalidInputError as exc:
        raise BundleError(
            f"{bundle.path}: {exc}; serve with the policy the model was trained with "
            "(RECSYS_POLICY_FILE)"
        ) from exc
    return catalogue, attributes.source


def _from_bundle(bundle: Bundle) -> ItemAttributes | None:
    arrays = bundle.arrays
    if not any(name in arrays for name in (CATEGORY, MIN_TIER, ACTIVE)):
        return None
    n = len(bundle.item_ids)

    def text(name: str) -> npt.NDArray[np.str_] | None:
        value = arrays.get(name)
        if value is None:
            return None
        if value.shape != (n,) or value.dtype.kind != "U":
            raise BundleError(
                f"{bundle.path}: array {name!r} must hold one text value per item ({n}), got "
                f"shape {value.shape} and dtype {value.dtype}"
            )
        return np.asarray(value)

    active = arrays.get(ACTIVE)
    if active is not None and (active.shape != (n,) or active.dtype != np.bool_):
        raise BundleError(f"{bundle.path}: array {ACTIVE!r} must hold one bool per item ({n})")
    return ItemAttributes(
        text(CATEGORY), text(MIN_TIER), None if active is None else np.asarray(active), "bundle"
    )


def _snapshot_folder(manifest: Mapping[str, Any]) -> Path | None:
    entry = manifest.get("feature_snapshot")
    if isinstance(entry, Mapping):
        entry = entry.get("path")
    return Path(entry) if isinstance(entry, str) and entry else None


def _from_snapshot(bundle: Bundle) -> ItemAttributes | None:
    folder = _snapshot_folder(bundle.manifest)
    if folder is None or not (folder / "items.parquet").is_file():
        return None
    import polars as pl  # only for this source

    path = folder / "items.parquet"
    try:
        frame = pl.read_parquet(path, columns=["item_id", "category", "min_tier", "active"])
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise BundleError(f"{path}: cannot read the item attributes ({exc})") from exc
    n = len(bundle.item_ids)
    positions = bundle.item_ids.lookup(frame["item_id"].to_numpy().astype(np.str_))
    known = positions >= 0
    category = np.full(n, "", dtype=object)
    min_tier = np.full(n, "", dtype=object)
    active = np.zeros(n, dtype=bool)  # items of the model missing from the snapshot: not shown
    category[positions[known]] = frame["category"].fill_null("").to_numpy()[known]
    min_tier[positions[known]] = frame["min_tier"].fill_null("").to_numpy()[known]
    active[positions[known]] = frame["active"].fill_null(True).to_numpy()[known]
    return ItemAttributes(
        category.astype(np.str_), min_tier.astype(np.str_), active, f"snapshot {folder}"
    )


__all__ = [
    "NO_CATEGORY",
    "ItemAttributes",
    "ItemCatalog",
    "catalog_from_attributes",
    "catalog_of_bundle",
    "tier_ranks",
]
