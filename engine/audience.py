"""Campaign audiences: rank members for a seed (items, categories, item tags or lookalike members).

The reverse of "for you": for a theme, which members are most likely to respond. A definition
(:class:`AudienceDefinition`, parsed and validated by :func:`parse_definition` from the JSON /
TOML document of docs/audiences.md) names a **seed**, **filters** on member attributes,
**exclusions** and a **size**. :class:`AudienceScorer` holds a model's member and item vectors
aligned once with the member attributes of a feature snapshot, and builds an :class:`Audience`:

1. the seed becomes one vector: item seeds map to item vectors, a lookalike seed to member
   vectors (docs/audiences.md, "Scoring");
2. every member with a vector is scored exactly, ``member_vectors @ seed`` (one float32 matrix
   product over all members); given the members' purchase history (a bundle's ``buy_again``
   matrix), item seeds add the member's own history with the seed items:
   ``score = model / max|model| + W * log1p(h) / max log1p(h)``, ``h`` = history summed over
   the seed's items (column slices of a CSC matrix), maxima over every member with a vector;
   the filters select the eligible members by vectorized lookups on integer codes (tags:
   counts over the selected columns of a CSR matrix);
3. members without a vector are never in an audience (counted as ``unscored``); exclusion masks
   given by the caller remove more (counted per reason);
4. the size rules (top N, minimum score, top percent; all given apply) keep a prefix of the
   members ordered by score descending, ties by attribute row.

Pure numpy/scipy: the caller reads the snapshot and computes the exclusion masks.

The parts live in sibling modules, re-exported here: definitions in engine.audience_definition,
seeds in engine.audience_seed, filters in engine.audience_filters, the built audience and the
size rules in engine.audience_result. This module aligns them and scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from engine.audience_definition import (
    AudienceDefinition,
    DefinitionError,
    Exclusions,
    Filters,
    Holdout,
    Seed,
    Size,
    TagFilter,
    parse_definition,
)
from engine.audience_filters import BoolArray, IntArray, MemberAttributes, MemberFilter
from engine.audience_result import (
    UNKNOWN,
    Audience,
    audience_size,
    breakdown,
    labels,
    percentiles,
    top_positions,
)
from engine.audience_seed import FloatArray, ItemSide, ResolvedSeed, SeedResolver
from engine.errors import InvalidInputError
from engine.ids import IdMap

#: Predicted incremental response of attribute rows, given their audience scores.
UpliftScorer = Callable[[IntArray, FloatArray], npt.NDArray[np.floating[Any]]]
#: Reason under which lookalike seed members are excluded from their own audience.
SEED_MEMBER: Final[str] = "seed_member"
#: Default weight of the member's own history with the seed items (docs/audiences.md).
HISTORY_WEIGHT: Final[float] = 2.0


class AudienceScorer:
    """A model's vectors aligned once with member attributes; builds audiences."""

    def __init__(
        self,
        attributes: MemberAttributes,
        member_vectors: npt.NDArray[np.float32],
        member_ids: IdMap,
        items: ItemSide,
        *,
        known_segments: Sequence[str] | None = None,
        history: sp.sparray | sp.spmatrix | None = None,
        history_weight: float = HISTORY_WEIGHT,
    ) -> None:
        """``history``: the members' purchase history with the items, (model members x
        items) in ``member_ids`` and ``items.ids`` order, e.g. a blend bundle's recency-weighted
        ``buy_again`` matrix; it adds ``history_weight`` times the history term to the score of
        item, category and tag seeds (docs/audiences.md, "Scoring"). None, or a weight of 0:
        the score is the pure vector score."""
        vectors = np.asarray(member_vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(member_ids):
            raise InvalidInputError(
                f"AudienceScorer: member_vectors has shape {vectors.shape}, expected "
                f"({len(member_ids)}, d) for the {len(member_ids)} member ids"
            )
        item_vectors = np.asarray(items.vectors)
        if item_vectors.ndim != 2 or item_vectors.shape != (len(items.ids), vectors.shape[1]):
            raise InvalidInputError(
                f"AudienceScorer: item vectors have shape {item_vectors.shape}, expected "
                f"({len(items.ids)}, {vectors.shape[1]})"
            )
        if items.categories.shape != (len(items.ids),):
            raise InvalidInputError("AudienceScorer: items.categories needs one entry per item")
        if items.tags is not None and items.tags.shape != (len(items.ids), len(items.tag_names)):
            raise InvalidInputError(
                f"AudienceScorer: items.tags has shape {items.tags.shape}, expected "
                f"({len(items.ids)}, {len(items.tag_names)})"
            )
        if items.popularity is not None and np.shape(items.popularity) != (len(items.ids),):
            raise InvalidInputError("AudienceScorer: items.popularity needs one value per item")
        n = int(np.shape(attributes.member_ids)[0])
        for what in (
            "tier_codes",
            "lifecycle_codes",
            "segment_codes",
            "region_codes",
            "birth_month",
            "points",
            "joined_at",
            "p_alive",
            "clv",
            "expected_spend",
        ):
            if np.shape(getattr(attributes, what)) != (n,):
                raise InvalidInputError(
                    f"AudienceScorer: attributes.{what} needs one value per member ({n})"
                )
        if attributes.tags.shape != (n, len(attributes.tag_names)):
            raise InvalidInputError(
                f"AudienceScorer: attributes.tags has shape {attributes.tags.shape}, expected "
                f"({n}, {len(attributes.tag_names)})"
            )
        if not (isinstance(history_weight, int | float) and math.isfinite(history_weight)) or (
            history_weight < 0
        ):
            raise InvalidInputError(
                f"AudienceScorer: history_weight must be a finite number >= 0, got "
                f"{history_weight!r}"
            )
        self._history: sp.csc_array | None = None
        if history is not None:
            if not sp.issparse(history):
                raise InvalidInputError(
                    f"AudienceScorer: history must be a scipy sparse matrix, got "
                    f"{type(history).__name__}"
                )
            expected = (len(member_ids), len(items.ids))
            if history.shape != expected:
                raise InvalidInputError(
                    f"AudienceScorer: history has shape {history.shape}, expected {expected} "
                    "(model members x model items)"
                )
            # CSC: the seed items' columns are contiguous slices of (indices, data); float32 to
            # halve the copy (sums are accumulated in float64)
            self._history = sp.csc_array(history, dtype=np.float32)
            self._history.sum_duplicates()
        self._history_weight = float(history_weight) if self._history is not None else 0.0
        self._attributes = attributes
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._n = n
        #: model row of each attribute row, -1 where the member has no vector
        self._model_rows = member_ids.lookup(attributes.member_ids)
        self._has_vector = self._model_rows >= 0
        self._filter = MemberFilter(attributes, known_segments=known_segments)
        self._seeds = SeedResolver(
            self._vectors,
            member_ids,
            items,
            np.ascontiguousarray(item_vectors, dtype=np.float32),
        )
        self._tier_labels = labels(attributes.tier_names)
        self._segment_labels = labels(attributes.segment_names)
        self._lifecycle_labels = labels(attributes.lifecycle_names)

    @property
    def members(self) -> int:
        """Attribute rows (members of the snapshot)."""
        return self._n

    @property
    def history_weight(self) -> float:
        """Weight of the history term in item seed scores; 0 without a history matrix."""
        return self._history_weight

    @property
    def model_rows(self) -> IntArray:
        """Model row of each attribute row; -1 where the member has no vector."""
        return self._model_rows

    # -- checking -------------------------------------------------------------------------

    def check(self, definition: AudienceDefinition) -> list[str]:
        """Raise :class:`DefinitionError` for what cannot be right (unknown tier, lifecycle
        stage or segment; a seed nothing of which is in the model); return warnings for what may
        be (some unknown seed ids, tags or regions nobody has)."""
        self._filter.check_names(definition.filters)
        seed_warnings = self._seeds.resolve(definition.seed).warnings
        return seed_warnings + self._filter.warnings(definition.filters)

    def eligible(self, filters: Filters) -> BoolArray:
        """Attribute rows passing every filter (vector or not)."""
        return self._filter.eligible(filters)

    def seed_items(self, seed: Seed) -> IntArray:
        """Dense item rows (sorted, unique) the seed expands to: its items, the items of its
        categories and the items with any of its tags. Empty for a lookalike seed."""
        return self._seeds.seed_items(seed)

    # -- scoring ---------------------------------------------------------------------------

    def scores(self, seed: Seed) -> FloatArray:
        """Score of every attribute row for ``seed`` (nan where the member has no vector)."""
        return self._attribute_scores(self._seeds.resolve(seed))

    def seed_history(self, item_rows: IntArray) -> npt.NDArray[np.float64]:
        """Per model member, the history summed over the items ``item_rows`` (negative sums,
        more returned than bought, count as 0); zeros without a history matrix."""
        n_model = self._vectors.shape[0]
        history = self._history
        if history is None or item_rows.size == 0:
            return np.zeros(n_model, dtype=np.float64)
        columns = np.asarray(item_rows, dtype=np.int64)
        starts = history.indptr[columns].astype(np.int64)
        lengths = history.indptr[columns + 1].astype(np.int64) - starts
        total = int(lengths.sum())
        # positions of every stored value of the selected columns, without a Python loop
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        positions = offsets + np.arange(total, dtype=np.int64)
        summed = np.bincount(
            history.indices[positions], weights=history.data[positions], minlength=n_model
        )
        return np.maximum(summed, 0.0)

    def _attribute_scores(self, resolved: ResolvedSeed) -> FloatArray:
        rows = self._model_rows[self._has_vector]
        scored = (self._vectors @ resolved.vector)[rows]
        if self._history_weight > 0 and resolved.item_rows.size:
            history = self.seed_history(resolved.item_rows)[rows]
            scored = _with_history(scored, history, self._history_weight)
        out = np.full(self._n, np.nan, dtype=np.float32)
        out[self._has_vector] = scored
        return out

    def build(
        self,
        definition: AudienceDefinition,
        *,
        exclude: Mapping[str, BoolArray] | None = None,
        uplift: UpliftScorer | None = None,
    ) -> Audience:
        """The audience of ``definition``. ``exclude`` maps a reason ("bought_seed",
        "contacted") to a bool mask over attribute rows of members to leave out. ``uplift``
        predicts the incremental response of the given attribute rows (with their audience
        scores); ``size.rank_by = "uplift"`` needs it."""
        self._filter.check_names(definition.filters)
        resolved = self._seeds.resolve(definition.seed)
        warnings = resolved.warnings + self._filter.warnings(definition.filters)
        masks: dict[str, BoolArray] = {}
        for reason, mask in (exclude or {}).items():
            array = np.asarray(mask)
            if array.dtype != np.bool_ or array.shape != (self._n,):
                raise InvalidInputError(
                    f"exclude[{reason!r}]: expected a bool mask of shape ({self._n},), "
                    f"got {array.dtype} {array.shape}"
                )
            masks[reason] = array
        if resolved.member_rows.size:
            seed_mask = np.zeros(self._n, dtype=np.bool_)
            is_seed = np.zeros(self._vectors.shape[0], dtype=np.bool_)
            is_seed[resolved.member_rows] = True
            seed_mask[self._has_vector] = is_seed[self._model_rows[self._has_vector]]
            masks[SEED_MEMBER] = seed_mask

        eligible = self.eligible(definition.filters)
        all_scores = self._attribute_scores(resolved)
        scorable = eligible & self._has_vector & np.isfinite(all_scores)
        counts = {
            "members": self._n,
            "eligible": int(np.count_nonzero(eligible)),
            "unscored": int(np.count_nonzero(eligible & ~scorable)),
        }
        keep = scorable.copy()
        for reason, mask in masks.items():
            counts[f"excluded_{reason}"] = int(np.count_nonzero(scorable & mask))
            keep &= ~mask
        counts["excluded"] = int(np.count_nonzero(scorable)) - int(np.count_nonzero(keep))
        population = np.flatnonzero(keep)
        scores = all_scores[population]
        n_scored = int(population.size)
        counts["scored"] = n_scored

        a = self._attributes
        if definition.size.rank_by == "uplift":
            if uplift is None:
                raise DefinitionError(
                    "size.rank_by",
                    "no uplift model is loaded: fit one on past campaigns with control groups "
                    "(`recsys campaign uplift fit`) and give it to the service "
                    "(RECSYS_UPLIFT_MODEL) or to `recsys audience build --uplift-model`",
                )
            ranking: FloatArray | None = np.asarray(uplift(population, scores), dtype=np.float32)
        else:
            ranking = _ranking_key(
                definition.size, scores, np.asarray(a.expected_spend)[population]
            )
        if ranking is None:
            k = audience_size(definition.size, scores)
            chosen = top_positions(scores, k)
            top_keys = scores[chosen]
        else:
            # min_score tests the audience score; top_n / top_percent cut the ranking order
            passing = (
                np.flatnonzero(scores.astype(np.float64) >= definition.size.min_score)
                if definition.size.min_score is not None
                else np.arange(n_scored, dtype=np.int64)
            )
            k = audience_size(replace(definition.size, min_score=None), scores[passing])
            k = min(k, int(passing.size))
            chosen = passing[top_positions(ranking[passing], k)]
            top_keys = ranking[chosen]
        rows = population[chosen]
        top_scores = scores[chosen]
        counts["selected"] = int(rows.size)
        if n_scored and definition.size.top_n and definition.size.top_n > k:
            warnings.append(
                f"size.top_n: only {k:,} members qualify (of {n_scored:,} scored), "
                f"fewer than {definition.size.top_n:,}"
            )
        if counts["unscored"]:
            warnings.append(
                f"{counts['unscored']:,} eligible members have no vector in the model and are "
                "not in the audience (unscored)"
            )
        return Audience(
            rows=rows.astype(np.int64),
            member_ids=np.asarray(a.member_ids)[rows],
            scores=top_scores.astype(np.float32),
            ranks=np.arange(1, rows.size + 1, dtype=np.int64),
            percentiles=percentiles(top_keys, n_scored),
            tiers=self._tier_labels[np.asarray(a.tier_codes)[rows]],
            segments=self._segment_labels[np.asarray(a.segment_codes)[rows]],
            lifecycles=self._lifecycle_labels[np.asarray(a.lifecycle_codes)[rows]],
            counts=counts,
            breakdown={
                "tier": breakdown(np.asarray(a.tier_codes)[rows], a.tier_names),
                "segment": breakdown(np.asarray(a.segment_codes)[rows], a.segment_names),
                "lifecycle": breakdown(np.asarray(a.lifecycle_codes)[rows], a.lifecycle_names),
            },
            warnings=tuple(warnings),
            seed_summary=resolved.summary,
        )


def _ranking_key(
    size: Size, scores: FloatArray, expected_spend: npt.NDArray[Any]
) -> FloatArray | None:
    """The order ``size.rank_by`` asks for (``score`` or ``expected_value``), or None for the
    audience score itself.

    ``expected_value``: the score floored at 0 (a negative affinity is no expected purchase)
    times the member's expected spend in the next 90 days; unknown spend counts as 0."""
    if size.rank_by == "score":
        return None
    spend = np.nan_to_num(np.asarray(expected_spend, dtype=np.float64), nan=0.0)
    return (np.maximum(scores.astype(np.float64), 0.0) * np.maximum(spend, 0.0)).astype(np.float32)


def _with_history(model: FloatArray, history: npt.NDArray[np.float64], weight: float) -> FloatArray:
    """``model / max|model| + weight * log1p(history) / max log1p(history)``, the maxima taken
    over the given members (a zero maximum leaves its term at 0)."""
    vector = model.astype(np.float64)
    finite = np.abs(vector[np.isfinite(vector)])
    top = float(finite.max()) if finite.size else 0.0
    if top > 0:
        vector /= top
    affinity = np.log1p(history)
    peak = float(affinity.max()) if affinity.size else 0.0
    if peak > 0:
        vector += affinity * (weight / peak)
    return vector.astype(np.float32)


__all__ = [
    "HISTORY_WEIGHT",
    "SEED_MEMBER",
    "UNKNOWN",
    "Audience",
    "AudienceDefinition",
    "AudienceScorer",
    "DefinitionError",
    "Exclusions",
    "Filters",
    "Holdout",
    "ItemSide",
    "MemberAttributes",
    "Seed",
    "Size",
    "TagFilter",
    "UpliftScorer",
    "parse_definition",
]
