"""A served model: a bundle turned into everything a request needs, precomputed once.

:class:`ServingModel` ranks with the retail blend of the bundle (:class:`engine.blend.Blender`,
the code path evaluation and batch export use), then applies the business rules
(:mod:`engine.ranking`). It does no I/O: routes fetch the member's profile and fold-in overlay
from the online store and pass them in.

Which ranking a member gets:

* **model**: a member of the bundle without recent events: their bundle row, through the blend.
* **fold_in**: a member with purchases reported since the snapshot (``POST /v1/events``): the
  vector re-estimated by ALS fold-in (:mod:`engine.foldin`) and the history extended by those
  purchases, through the same blend.
* **features**: a member with a profile but no vector, when the bundle has member feature
  embeddings (LightFM): a vector from their tier, tags, segment and lifecycle.
* **popular_in_tier** / **popular**: otherwise, the fallback lists (flagged ``fallback``).

Every ranking then goes through the same rules and fallback fill.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from engine.blend import Blender, BlendWeights
from engine.bundle import Bundle, read_bundle
from engine.errors import BundleError, InvalidInputError
from engine.foldin import FoldIn
from engine.index import IndexConfig, VectorIndex, build_index
from engine.ranking.catalog import catalog_of_bundle
from engine.ranking.kernel import Ranker, Request
from engine.ranking.lanes import read_precomputed
from engine.ranking.lists import RankedList
from engine.ranking.query import ListQuery, request_rules
from engine.ranking.reasons import ANCHORS, Explained, explain, explain_many
from feature_store.online.profile import MemberProfile
from serving import model_foldin
from serving.model_foldin import FeatureEmbedding
from serving.model_source import ResolvedModel
from serving.model_types import (
    SERVING_SOURCES,
    Ask,
    FloatArray,
    IntArray,
    ModelInfo,
    Overlay,
    PurchasedPolicy,
    Recommended,
    bundle_id,
)
from serving.settings import Settings

log = logging.getLogger("recsys.serving")
_NO_ITEMS = np.zeros(0, np.int64)
_NO_WEIGHTS = np.zeros(0, np.float32)


def _params(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    for candidate in (manifest.get("params"), (manifest.get("model") or {}).get("params")):
        if isinstance(candidate, Mapping):
            return candidate
    return {}


def _number(params: Mapping[str, Any], name: str, default: float) -> float:
    value = params.get(name, default)
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


class ServingModel:
    """Everything one bundle needs at request time (see the module docstring)."""

    def __init__(
        self, resolved: ResolvedModel, bundle: Bundle, settings: Settings, tiers: Sequence[str]
    ) -> None:
        self.resolved = resolved
        self.bundle = bundle
        self.settings = settings
        arrays = bundle.arrays
        if "member_vectors" not in arrays or "item_vectors" not in arrays:
            raise BundleError(f"{bundle.path}: the bundle holds no member/item vectors to serve")
        blend = bundle.manifest.get("blend")
        if not isinstance(blend, Mapping):
            raise BundleError(
                f"{bundle.path}: manifest key 'blend' is missing; serve a bundle written by "
                "`recsys train`"
            )
        missing = [name for name in ("trending",) if name not in arrays]
        missing += [f"sparse {name}" for name in ("buy_again",) if name not in bundle.sparse]
        if missing:
            raise BundleError(
                f"{bundle.path}: not a blend bundle, it lacks {', '.join(missing)}; serve a bundle "
                "written by `recsys train`"
            )
        self.item_vectors: FloatArray = np.ascontiguousarray(
            arrays["item_vectors"], dtype=np.float32
        )
        self.index: VectorIndex = self._item_index(bundle, settings)
        try:
            self.weights = BlendWeights.from_dict(blend)
            self.blender = Blender(
                arrays["member_vectors"],
                self.item_vectors,
                bundle.sparse["buy_again"],
                arrays["trending"],
                self.weights,
                index=self.index,
            )
        except InvalidInputError as exc:
            raise BundleError(f"{bundle.path}: {exc}") from exc
        self.member_ids = bundle.member_ids
        self.item_ids = bundle.item_ids
        self.trending = np.asarray(arrays["trending"], dtype=np.float32)
        self.catalog, catalogue_source = catalog_of_bundle(bundle, tiers, self.trending)
        self.ranker = Ranker(
            self.blender,
            self.catalog,
            share=settings.max_per_category_share,
            precomputed=read_precomputed(bundle),
        )
        params = _params(bundle.manifest)
        self.fold = FoldIn(
            self.item_vectors,
            regularization=_number(params, "regularization", 0.01),
            alpha=_number(params, "alpha", 1.0),
        )
        self._features = FeatureEmbedding.from_bundle(bundle)
        self._categories = np.asarray([*self.catalog.categories, ""], dtype=object)
        self.info = ModelInfo(
            label=resolved.label,
            uri=resolved.uri,
            bundle_id=bundle_id(bundle.path),
            path=str(bundle.path),
            kind=bundle.kind,
            created_at=bundle.created_at,
            loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
            registry_version=resolved.registry_version,
            run_id=resolved.run_id,
            n_members=len(bundle.member_ids),
            n_items=len(bundle.item_ids),
            dim=int(self.item_vectors.shape[1]),
            index=self.index.kind,
            catalogue=catalogue_source,
            cold_start="features" if self._features is not None else "popular_in_tier",
        )

    @classmethod
    def load(
        cls, resolved: ResolvedModel, settings: Settings, tiers: Sequence[str]
    ) -> ServingModel:
        """Read and prepare the bundle; BundleError / EngineError when it cannot be served."""
        bundle = read_bundle(resolved.path, mmap=True)
        return cls(resolved, bundle, settings, tiers)

    @property
    def id(self) -> str:
        return self.info.bundle_id

    # -- index -------------------------------------------------------------------------------

    @staticmethod
    def _item_index(bundle: Bundle, settings: Settings) -> VectorIndex:
        """The retrieval index per RECSYS_INDEX: ``auto`` takes the bundle's ``items`` index, or
        builds an exact one up to ``exact_max_items`` items and HNSW above."""
        stored = bundle.indexes.get("items")
        n = len(bundle.item_ids)
        wanted = settings.index
        if wanted == "auto":
            if stored is not None:
                return VectorIndex.from_faiss(stored, ef_search=settings.hnsw_ef_search)
            wanted = "exact" if n <= settings.exact_max_items else "hnsw"
        if stored is not None:
            index = VectorIndex.from_faiss(stored, ef_search=settings.hnsw_ef_search)
            if index.kind == wanted:
                return index
        log.info("building a %s item index over %d items", wanted, n)
        config = IndexConfig(kind=wanted, ef_search=settings.hnsw_ef_search)
        return build_index(
            np.ascontiguousarray(bundle.arrays["item_vectors"], dtype=np.float32), config
        )

    # -- recommendations ---------------------------------------------------------------------

    def recommend(
        self,
        member_id: str,
        profile: MemberProfile | None,
        overlay: Overlay | None,
        *,
        k: int,
        category: str | None = None,
        policy: PurchasedPolicy = PurchasedPolicy.EXCLUDE_RECENT,
        query: ListQuery | None = None,
    ) -> Recommended:
        """Top ``k`` items for a member (module docstring: model, fold_in, features, popular)."""
        ask = Ask(member_id, profile, overlay, k, category, policy, query)
        return self.recommend_many([ask])[0]

    def recommend_many(self, asks: Sequence[Ask]) -> list[Recommended]:
        """:meth:`recommend` for many requests at once, through the ranking kernel
        (:class:`engine.ranking.kernel.Ranker`): one vectorized call for the whole batch."""
        requests = [self.request(ask) for ask in asks]
        ranked = self.ranker.rank(requests)
        explained = explain_many(
            self.item_vectors,
            [done.ranked for done in ranked],
            [self.ranker.recent_purchases(request, ANCHORS) for request in requests],
        )
        return [
            self._external(
                done.ranked, done.basis, fallback=done.fallback, tier=request.tier, explained=why
            )
            for done, request, why in zip(ranked, requests, explained, strict=True)
        ]

    def request(self, ask: Ask) -> Request:
        """The kernel's request for an ask: the member's row, tier and vector (fold-in after
        recent purchases, or features for a member the bundle does not know)."""
        row = self.member_ids.get(ask.member_id)
        overlay = ask.overlay
        vector, basis = None, "model"
        if overlay is not None:
            vector, basis = overlay.vector, "fold_in"
        elif row < 0 and ask.profile is not None and self._features is not None:
            vector, basis = self._features.vector(ask.profile), "features"
        rules = None if ask.query is None else request_rules(ask.query, self.item_ids, self.catalog)
        return Request(
            k=ask.k,
            row=row,
            tier=self.catalog.tier_rank(ask.profile.tier if ask.profile else None),
            tier_known=ask.profile is not None,
            category=self.ranker.category_code(ask.category),
            purchased=ask.policy,
            vector=vector,
            basis=basis,
            recent_items=overlay.items if overlay is not None else _NO_ITEMS,
            recent_weights=overlay.weights if overlay is not None else _NO_WEIGHTS,
            extra=rules,
        )

    def similar(
        self, item_id: str, *, k: int, tier: str | None, category: str | None
    ) -> Recommended | None:
        """Items like ``item_id`` by cosine among its nearest inner-product neighbours, under the
        same availability and tier rules; None when the item is not in the model."""
        seed = self.item_ids.get(item_id)
        if seed < 0:
            return None
        rank = self.catalog.tier_rank(tier)
        ranked = self.ranker.similar(
            seed, k=k, tier=rank, category=self.ranker.category_code(category)
        )
        explained = explain(self.item_vectors, ranked, _NO_ITEMS, seed=seed)
        return self._external(ranked, "similar", fallback=False, tier=rank, explained=explained)

    # -- fold-in -----------------------------------------------------------------------------

    def overlay_from_lines(
        self, member_id: str, item_ids: Sequence[str], quantities: Sequence[int]
    ) -> Overlay:
        """The overlay after the purchase lines reported since the snapshot.

        A line weighs ``sign(quantity) * log1p(|quantity|)`` (the default interaction weight),
        so a return cancels its purchase; lines of items outside the model are ignored.
        """
        return model_foldin.overlay_from_lines(self, member_id, item_ids, quantities)

    def overlay_for(self, member_id: str, items: IntArray, weights: FloatArray) -> Overlay:
        """The overlay after purchases of ``items`` (dense ids, net confidences) since the snapshot.

        A member of the bundle keeps their trained vector plus the change fold-in attributes to
        the new purchases (``fold(history + new) - fold(history)``); a member the bundle does not
        know gets the fold-in of the new purchases alone.
        """
        return model_foldin.overlay_for(self, member_id, items, weights)

    # -- helpers -----------------------------------------------------------------------------

    def _history_row(self, row: int) -> tuple[IntArray, FloatArray]:
        history = self.blender.history
        start, stop = int(history.indptr[row]), int(history.indptr[row + 1])
        return (
            history.indices[start:stop].astype(np.int64),
            np.asarray(history.data[start:stop], dtype=np.float32),
        )

    def _external(
        self, ranked: RankedList, basis: str, *, fallback: bool, tier: int, explained: Explained
    ) -> Recommended:
        codes = self.catalog.category_codes[ranked.items]
        anchors = explained.anchors
        n = ranked.items.size
        # one id lookup for the items and their anchors
        external = self.item_ids.ids_at(np.concatenate([ranked.items, np.maximum(anchors, 0)]))
        item_ids, anchor_ids = external[:n].tolist(), external[n:].tolist()
        return Recommended(
            item_ids=item_ids,
            scores=[float(s) if math.isfinite(s) else 0.0 for s in ranked.scores.tolist()],
            sources=[SERVING_SOURCES[s] for s in ranked.sources.tolist()],
            categories=[c or None for c in self._categories[codes].tolist()],
            basis=basis,
            fallback=fallback,
            tier=self.catalog.tiers[tier],
            reasons=list(explained.reasons),
            anchors=[
                a if i >= 0 else None for a, i in zip(anchor_ids, anchors.tolist(), strict=True)
            ],
        )


__all__ = [
    "SERVING_SOURCES",
    "Ask",
    "ModelInfo",
    "Overlay",
    "PurchasedPolicy",
    "Recommended",
    "ServingModel",
    "bundle_id",
]
