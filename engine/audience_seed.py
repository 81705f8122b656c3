"""Audience seeds: what an audience is for, turned into one vector in the model's space.

Item seeds (items, categories, item tags) expand to item rows of the model; their vector is the
mean of the explicit items' mean vector, the categories' and the tags' popularity-weighted mean
vectors. A lookalike seed (members) is the mean of the seed members' normalized vectors
(docs/audiences.md, "Scoring"). Seed ids the model does not know are warnings, a seed nothing of
which is known is a :class:`~engine.audience_definition.DefinitionError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from engine.audience_definition import DefinitionError, Seed, quote
from engine.ids import IdMap

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ItemSide:
    """The model's items (bundle order) and the attributes item seeds expand through."""

    ids: IdMap
    vectors: npt.NDArray[np.float32]
    #: category per item, "" for none
    categories: npt.NDArray[np.str_]
    #: bool (n_items, len(tag_names)), or None when items carry no tags
    tags: sp.csr_array | None
    tag_names: tuple[str, ...]
    #: weights items of a category / tag seed (e.g. distinct buyers); None = uniform
    popularity: npt.NDArray[np.floating[Any]] | npt.NDArray[np.integer[Any]] | None


@dataclass(frozen=True, slots=True)
class ResolvedSeed:
    """A seed resolved against the model: its vector, and what it expanded to."""

    vector: FloatArray
    item_rows: IntArray
    member_rows: IntArray  # model rows of the lookalike seed members (kept out of the audience)
    summary: dict[str, int]
    warnings: list[str]


class SeedResolver:
    """A model's member and item vectors, and the item attributes seeds expand through."""

    def __init__(
        self,
        member_vectors: npt.NDArray[np.float32],
        member_ids: IdMap,
        items: ItemSide,
        item_vectors: npt.NDArray[np.float32],
    ) -> None:
        """``member_vectors`` and ``item_vectors``: float32, rows in ``member_ids`` /
        ``items.ids`` order (checked by the caller)."""
        self._vectors = member_vectors
        self._member_ids = member_ids
        self._items = items
        self._item_vectors = item_vectors
        self._category_set = set(np.unique(items.categories).tolist()) - {""}
        self._item_tag_index = {name: i for i, name in enumerate(items.tag_names)}

    def seed_items(self, seed: Seed) -> IntArray:
        """Dense item rows (sorted, unique) the seed expands to: its items, the items of its
        categories and the items with any of its tags. Empty for a lookalike seed."""
        explicit, by_category, by_tag = self._seed_item_parts(seed)
        return np.unique(np.concatenate([explicit, by_category, by_tag]))

    def _seed_item_parts(self, seed: Seed) -> tuple[IntArray, IntArray, IntArray]:
        items = self._items
        explicit = items.ids.lookup(np.array(seed.items, dtype=np.str_)) if seed.items else None
        explicit_rows = (
            np.unique(explicit[explicit >= 0]) if explicit is not None else np.empty(0, np.int64)
        )
        by_category = (
            np.flatnonzero(np.isin(items.categories, np.array(seed.categories, dtype=np.str_)))
            if seed.categories
            else np.empty(0, np.int64)
        )
        columns = [self._item_tag_index[t] for t in seed.item_tags if t in self._item_tag_index]
        if columns and items.tags is not None:
            tagged = sp.csr_array(items.tags)[:, columns].sum(axis=1)
            by_tag = np.flatnonzero(np.asarray(tagged).ravel() > 0)
        else:
            by_tag = np.empty(0, np.int64)
        return explicit_rows, by_category.astype(np.int64), by_tag.astype(np.int64)

    def _weighted_mean(self, rows: IntArray) -> FloatArray:
        vectors = self._item_vectors[rows]
        weights = None
        if self._items.popularity is not None:
            weights = np.clip(np.asarray(self._items.popularity, dtype=np.float64)[rows], 0, None)
            if not weights.sum() > 0:
                weights = None
        mean = np.average(vectors.astype(np.float64), axis=0, weights=weights)
        return np.asarray(mean, dtype=np.float32)

    def resolve(self, seed: Seed) -> ResolvedSeed:
        """The seed's vector and what it expanded to (see :class:`ResolvedSeed`), with warnings
        for the seed ids the model does not know."""
        warnings: list[str] = []
        d = self._vectors.shape[1]
        if seed.is_lookalike:
            rows = self._member_ids.lookup(np.array(seed.members, dtype=np.str_))
            unknown = [m for m, r in zip(seed.members, rows.tolist(), strict=True) if r < 0]
            found = np.unique(rows[rows >= 0])
            vectors = self._vectors[found].astype(np.float64)
            norms = np.linalg.norm(vectors, axis=1)
            usable = norms > 0
            if not usable.any():
                raise DefinitionError(
                    "seed",
                    f"none of the {len(seed.members)} seed members has a vector in the model",
                )
            if unknown:
                warnings.append(
                    f"seed.members: {len(unknown)} of {len(seed.members)} have no vector in the "
                    f"model and were ignored: {quote(unknown)}"
                )
            if not usable.all():
                warnings.append(
                    f"seed.members: {int((~usable).sum())} have an all-zero vector (no "
                    "interactions the model learned from) and do not shape the seed"
                )
            vector = (vectors[usable] / norms[usable, None]).mean(axis=0).astype(np.float32)
            summary = {"items": 0, "categories": 0, "tags": 0, "members": int(usable.sum())}
            summary["item_rows"] = 0
            # every seed member the model knows stays out of the audience, zero vector or not
            return ResolvedSeed(vector, np.empty(0, np.int64), found, summary, warnings)

        explicit, by_category, by_tag = self._seed_item_parts(seed)
        parts: list[FloatArray] = []
        if seed.items:
            known = self._items.ids.lookup(np.array(seed.items, dtype=np.str_))
            unknown = [i for i, r in zip(seed.items, known.tolist(), strict=True) if r < 0]
            if unknown:
                warnings.append(
                    f"seed.items: {len(unknown)} of {len(seed.items)} are not in the model and "
                    f"were ignored: {quote(unknown)}"
                )
            if explicit.size:
                parts.append(self._item_vectors[explicit].astype(np.float64).mean(axis=0))
        categories = [c for c in seed.categories if c in self._category_set]
        if seed.categories:
            missing = [c for c in seed.categories if c not in self._category_set]
            if missing:
                warnings.append(
                    f"seed.categories: no item of the model is in {quote(missing)}; ignored"
                )
            if by_category.size:
                parts.append(self._weighted_mean(by_category))
        tags = [t for t in seed.item_tags if t in self._item_tag_index]
        if seed.item_tags:
            missing = [t for t in seed.item_tags if t not in self._item_tag_index]
            if missing:
                warnings.append(f"seed.item_tags: no item has tag(s) {quote(missing)}; ignored")
            if by_tag.size:
                parts.append(self._weighted_mean(by_tag))
        if not parts:
            raise DefinitionError(
                "seed", "none of the seed items, categories or item tags is in the model"
            )
        vector = np.mean(np.stack(parts), axis=0).astype(np.float32)
        item_rows = np.unique(np.concatenate([explicit, by_category, by_tag]))
        summary = {
            "items": int(explicit.size),
            "categories": len(categories),
            "tags": len(tags) if by_tag.size else 0,
            "members": 0,
            "item_rows": int(item_rows.size),
        }
        if d and not np.any(vector):
            warnings.append("seed: the seed vector is zero; every member scores 0")
        return ResolvedSeed(vector, item_rows, np.empty(0, np.int64), summary, warnings)


__all__ = ["ItemSide", "ResolvedSeed", "SeedResolver"]
