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
from engine.bundle_recommender import BundleRecommender
from engine.errors import BundleError, InvalidInputError
from engine.foldin import FoldIn
from engine.index import IdFilter, IndexConfig, VectorIndex, build_index
from engine.ranking import (
    Fallback,
    RankedList,
    Rules,
    category_cap,
    rank_many,
    rank_with_fallbacks,
)
from engine.served import fallbacks
from feature_store.online.profile import MemberProfile
from serving import model_foldin, model_lanes
from serving.catalogue import build_catalogue
from serving.model_foldin import FeatureEmbedding
from serving.model_lanes import read_precomputed
from serving.model_source import ResolvedModel
from serving.model_types import (
    SERVING_SOURCES,
    SOURCE_POPULAR_IN_CATEGORY,
    SOURCE_SIMILAR,
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
            self.recommender = BundleRecommender(self.blender, bundle.member_ids, bundle.item_ids)
        except InvalidInputError as exc:
            raise BundleError(f"{bundle.path}: {exc}") from exc
        self.member_ids = bundle.member_ids
        self.item_ids = bundle.item_ids
        self.trending = np.asarray(arrays["trending"], dtype=np.float32)
        self.catalog, catalogue_source = build_catalogue(bundle, tiers, self.trending)
        self._tier_filters = tuple(
            None if bool(mask.all()) else IdFilter(mask) for mask in self.catalog.eligible
        )
        norms = np.linalg.norm(self.item_vectors, axis=1)
        self._item_norms = np.where(norms > 0, norms, 1.0).astype(np.float32)
        params = _params(bundle.manifest)
        self.fold = FoldIn(
            self.item_vectors,
            regularization=_number(params, "regularization", 0.01),
            alpha=_number(params, "alpha", 1.0),
        )
        self._features = FeatureEmbedding.from_bundle(bundle)
        self._precomputed = read_precomputed(bundle)
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
    ) -> Recommended:
        """Top ``k`` items for a member (module docstring: model, fold_in, features, popular)."""
        ask = Ask(member_id, profile, overlay, k, category, policy)
        return self.recommend_many([ask])[0]

    def recommend_many(self, asks: Sequence[Ask]) -> list[Recommended]:
        """:meth:`recommend` for many requests at once: members of the bundle without recent
        events are ranked by the blend in one vectorized call (one FAISS batch), members given
        by a vector (fold-in, features) in one more; then the rules, vectorized over all."""
        rows = [self.member_ids.get(ask.member_id) for ask in asks]
        found: list[tuple[RankedList, str] | None] = [None] * len(asks)
        tiers = [self.catalog.tier_rank(a.profile.tier if a.profile else None) for a in asks]
        done = self._from_precomputed(asks, rows, tiers)
        if done is not None and len(done) == len(asks):
            return [result for _, result in sorted(done.items())]
        for exclude_all in (False, True):
            group = [
                i
                for i, ask in enumerate(asks)
                if (ask.policy is PurchasedPolicy.EXCLUDE) == exclude_all
                and (done is None or i not in done)
            ]
            by_row = [i for i in group if asks[i].overlay is None and rows[i] >= 0]
            if by_row:
                ranked = self._rank_rows([rows[i] for i in by_row], exclude_all)
                for i, candidates in zip(by_row, ranked, strict=True):
                    found[i] = (candidates, "model")
            by_vector = [
                (i, v) for i in group if (v := self._vector_of(asks[i], rows[i])) is not None
            ]
            if by_vector:
                ranked = self._rank_vectors(
                    [v[1] for _, v in by_vector],
                    [(rows[i], asks[i].overlay) for i, _ in by_vector],
                    exclude_all,
                )
                for (i, (basis, _)), candidates in zip(by_vector, ranked, strict=True):
                    found[i] = (candidates, basis)
        rest = [i for i in range(len(asks)) if done is None or i not in done]
        complete = [found[i] or self._candidates(asks[i], rows[i]) for i in rest]
        codes = [self._category(asks[i].category) for i in rest]
        rules = [
            self._rules(asks[i], rows[i], tiers[i], code)
            for i, code in zip(rest, codes, strict=True)
        ]
        ranked_lists = rank_many(
            self.catalog,
            rules,
            [candidates for candidates, _ in complete],
            [self._fallbacks(tiers[i], code) for i, code in zip(rest, codes, strict=True)],
        )
        results = dict(done or {})
        for i, final, (_, basis) in zip(rest, ranked_lists, complete, strict=True):
            results[i] = self._external(
                final, basis, fallback=basis.startswith("popular"), tier=tiers[i]
            )
        return [results[i] for i in range(len(asks))]

    def _from_precomputed(
        self, asks: Sequence[Ask], rows: Sequence[int], tiers: Sequence[int]
    ) -> dict[int, Recommended] | None:
        """The requests the precomputed lists decide
        (:func:`serving.model_lanes.from_precomputed`)."""
        return model_lanes.from_precomputed(self, asks, rows, tiers)

    def _vector_of(self, ask: Ask, row: int) -> tuple[str, FloatArray] | None:
        """The basis and query vector of a member ranked from a vector, or None."""
        if ask.overlay is not None:
            return "fold_in", ask.overlay.vector
        if row < 0 and ask.profile is not None and self._features is not None:
            return "features", self._features.vector(ask.profile)
        return None

    @staticmethod
    def _candidates(ask: Ask, row: int) -> tuple[RankedList, str]:
        """Members without a vector: no candidates, the fallback lists alone."""
        return RankedList.empty(), "popular_in_tier" if ask.profile else "popular"

    def _rules(self, ask: Ask, row: int, tier: int, code: int | None) -> Rules:
        excluded = []
        if ask.policy is not PurchasedPolicy.KEEP and ask.overlay is not None:
            excluded.append(ask.overlay.items)
        if ask.policy is PurchasedPolicy.EXCLUDE:
            excluded.append(self._history_items(row))
        return Rules(
            k=ask.k,
            tier=tier,
            category=code,
            exclude=np.concatenate(excluded) if excluded else np.zeros(0, np.int64),
            max_per_category=None
            if code is not None
            else category_cap(ask.k, self.settings.max_per_category_share),
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
        code = self._category(category)
        fetch = min(self.catalog.n_items, max(50, 5 * k) + 1)
        found = self.index.search(self.item_vectors[seed], fetch, where=self._tier_filters[rank])
        ids = found.ids[0]
        ids = ids[ids >= 0]
        cosine = found.scores[0][: ids.size] / (self._item_norms[seed] * self._item_norms[ids])
        order = np.argsort(-cosine, kind="stable")
        candidates = RankedList.of(ids[order], cosine[order], SOURCE_SIMILAR)
        rules = Rules(
            k=k,
            tier=rank,
            category=code,
            exclude=np.asarray([seed], dtype=np.int64),
            max_per_category=None,
        )
        seed_category = int(self.catalog.category_codes[seed])
        fallbacks: list[Fallback] = []
        if code is None and seed_category >= 0:
            items, scores = self.catalog.popular_in_category(seed_category)
            fallbacks.append((items, scores, SOURCE_POPULAR_IN_CATEGORY))
        fallbacks.extend(self._fallbacks(rank, code))
        ranked = rank_with_fallbacks(self.catalog, rules, candidates, fallbacks)
        return self._external(ranked, "similar", fallback=False, tier=rank)

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

    def _category(self, name: str | None) -> int | None:
        if name is None:
            return None
        code = self.catalog.category_code(name)
        if code is None:
            # no item has it: the filter leaves nothing (an empty list, not an error)
            return len(self.catalog.categories)
        return code

    def _fallbacks(self, tier: int, category: int | None) -> list[Fallback]:
        if category is not None:
            if category >= len(self.catalog.categories):
                return []
            items, scores = self.catalog.popular_in_category(category)
            return [(items, scores, SOURCE_POPULAR_IN_CATEGORY)]
        return fallbacks(self.catalog, tier)

    def _history_row(self, row: int) -> tuple[IntArray, FloatArray]:
        history = self.blender.history
        start, stop = int(history.indptr[row]), int(history.indptr[row + 1])
        return (
            history.indices[start:stop].astype(np.int64),
            np.asarray(history.data[start:stop], dtype=np.float32),
        )

    def _history_items(self, row: int) -> IntArray:
        if row < 0:
            return np.zeros(0, np.int64)
        return self._history_row(row)[0]

    def _rank_rows(self, rows: Sequence[int], exclude_all: bool) -> list[RankedList]:
        return model_lanes.rank_rows(self, rows, exclude_all)

    def _rank_vectors(
        self,
        vectors: Sequence[FloatArray],
        members: Sequence[tuple[int, Overlay | None]],
        exclude_all: bool,
    ) -> list[RankedList]:
        """The blend for members given by vectors (:func:`serving.model_lanes.rank_vectors`)."""
        return model_lanes.rank_vectors(self, vectors, members, exclude_all)

    def _external(
        self, ranked: RankedList, basis: str, *, fallback: bool, tier: int
    ) -> Recommended:
        codes = self.catalog.category_codes[ranked.items]
        return Recommended(
            item_ids=self.item_ids.ids_at(ranked.items).tolist(),
            scores=[float(s) if math.isfinite(s) else 0.0 for s in ranked.scores.tolist()],
            sources=[SERVING_SOURCES[s] for s in ranked.sources.tolist()],
            categories=[c or None for c in self._categories[codes].tolist()],
            basis=basis,
            fallback=fallback,
            tier=self.catalog.tiers[tier],
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
