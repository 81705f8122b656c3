"""Fold-in and cold-start vectors of a served model (:class:`serving.model.ServingModel`):
the overlay a member's purchases since the snapshot make (:mod:`engine.foldin`), and vectors
from member features for members the bundle does not know (LightFM bundles).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.bundle import Bundle
from engine.errors import BundleError
from feature_store.online.profile import MemberProfile
from serving.model_types import FloatArray, IntArray, Overlay, ServedModel


def overlay_from_lines(
    model: ServedModel, member_id: str, item_ids: Sequence[str], quantities: Sequence[int]
) -> Overlay:
    """The overlay after the purchase lines reported since the snapshot.

    A line weighs ``sign(quantity) * log1p(|quantity|)`` (the default interaction weight),
    so a return cancels its purchase; lines of items outside the model are ignored.
    """
    dense = model.item_ids.lookup(np.asarray(list(item_ids), dtype=np.str_))
    q = np.asarray(list(quantities), dtype=np.float64)
    weights = np.sign(q) * np.log1p(np.abs(q))
    known = dense >= 0
    items, inverse = np.unique(dense[known], return_inverse=True)
    net = np.bincount(inverse, weights=weights[known], minlength=items.size)
    return overlay_for(model, member_id, items.astype(np.int64), net.astype(np.float32))


def overlay_for(
    model: ServedModel, member_id: str, items: IntArray, weights: FloatArray
) -> Overlay:
    """The overlay after purchases of ``items`` (dense ids, net confidences) since the snapshot.

    A member of the bundle keeps their trained vector plus the change fold-in attributes to
    the new purchases (``fold(history + new) - fold(history)``); a member the bundle does not
    know gets the fold-in of the new purchases alone.
    """
    positive = weights > 0
    items, weights = items[positive], weights[positive].astype(np.float32)
    row = model.member_ids.get(member_id)
    if row < 0:
        vector = model.fold.vector(items, weights)
    else:
        base_items, base_weights = model._history_row(row)
        before = model.fold.vector(base_items, base_weights)
        after = model.fold.vector(np.r_[base_items, items], np.r_[base_weights, weights])
        trained = np.asarray(model.bundle.arrays["member_vectors"][row], dtype=np.float32)
        vector = (trained + (after - before)).astype(np.float32)
    return Overlay(vector=vector, items=items.astype(np.int64), weights=weights)


class FeatureEmbedding:
    """Cold-start vectors from member features (LightFM): ``mean(feature vectors) + offset``.

    The bundle holds arrays ``member_feature_vectors`` (features x d) and
    ``member_feature_offset`` (d), and the manifest ``member_feature_names``: one name per
    feature row, ``tier=<tier>``, ``tag=<tag>``, ``segment=<rfm segment>`` or
    ``lifecycle=<stage>``. A profile's matching features are averaged (rows scaled to sum 1).
    """

    def __init__(self, names: Sequence[str], vectors: FloatArray, offset: FloatArray) -> None:
        self._index = {name: i for i, name in enumerate(names)}
        self._vectors = vectors
        self._offset = offset

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> FeatureEmbedding | None:
        names = bundle.manifest.get("member_feature_names")
        vectors = bundle.arrays.get("member_feature_vectors")
        offset = bundle.arrays.get("member_feature_offset")
        if names is None or vectors is None or offset is None:
            return None
        if (
            not isinstance(names, list)
            or len(names) != vectors.shape[0]
            or offset.shape != (vectors.shape[1],)
        ):
            raise BundleError(
                f"{bundle.path}: member_feature_names must list one name per row of "
                "member_feature_vectors, and member_feature_offset match their dimension"
            )
        return cls(
            [str(n) for n in names], np.asarray(vectors, np.float32), np.asarray(offset, np.float32)
        )

    def vector(self, profile: MemberProfile) -> FloatArray:
        wanted = [
            f"tier={profile.tier}",
            *(f"tag={t}" for t in profile.tags),
            f"segment={profile.rfm_segment}",
            f"lifecycle={profile.lifecycle}",
        ]
        rows = [self._index[name] for name in wanted if name in self._index]
        if not rows:
            return self._offset.copy()
        result: FloatArray = (self._vectors[rows].mean(axis=0) + self._offset).astype(np.float32)
        return result


__all__ = ["FeatureEmbedding", "overlay_for", "overlay_from_lines"]
