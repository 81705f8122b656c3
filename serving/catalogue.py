"""Item attributes the business rules need (category, min_tier, active), aligned to a bundle.

Taken from, in this order:

1. the bundle itself: arrays ``item_category`` (text), ``item_min_tier`` (tier names) and
   ``item_active`` (bool), one entry per item in the bundle's item order (each optional);
2. the feature snapshot the model was trained with, when the manifest names it
   (``"feature_snapshot": "/path"`` or ``{"path": "/path"}``): its ``items.parquet``
   (docs/feature_snapshot.md);
3. nothing: every item active, visible to every tier, without category. The service says so
   at start (``catalogue_source = "none"``), since tier and category rules then have no effect.

Popularity for the fallbacks is the blend's trending prior; ``item_tier_popularity``
(``n_items x n_tiers``) in the bundle, when present, ranks "popular in tier".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.bundle import Bundle
from engine.errors import BundleError, InvalidInputError
from engine.ranking import ItemCatalog
from engine.served import catalog_from_attributes

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


def build_catalogue(
    bundle: Bundle, tiers: Sequence[str], popularity: npt.ArrayLike
) -> tuple[ItemCatalog, str]:
    """The :class:`ItemCatalog` of ``bundle`` and where its attributes came from (built by
    :func:`engine.served.catalog_from_attributes`, as evaluation builds it)."""
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


__all__ = ["build_catalogue"]
